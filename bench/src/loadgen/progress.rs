//! The progress bar drawn on stderr while a run is going (only on a terminal).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// What the bar counts to.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    Requests(u64),
    Time(Duration),
}

/// A bar refreshed from a shared counter of completed requests; stopped by [`Progress::finish`]
/// or on drop.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar if `enabled` and stderr is a terminal; otherwise a no-op handle.
    pub fn start(enabled: bool, goal: Goal, completed: Arc<AtomicU64>) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self {
                bar: None,
                ticker: None,
            };
        }
        let (length, template) = match goal {
            Goal::Requests(total) => (
                total,
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec}",
            ),
            Goal::Time(duration) => (
                u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
            ),
        };
        let bar = ProgressBar::new(length);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let ticking = bar.clone();
        let started = tokio::time::Instant::now();
        let ticker = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            loop {
                ticks.tick().await;
                let done = completed.load(Ordering::Relaxed);
                match goal {
                    Goal::Requests(_) => ticking.set_position(done),
                    Goal::Time(_) => {
                        let elapsed = started.elapsed();
                        ticking
                            .set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
                        let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
                        ticking.set_message(format!("{done} requests, {rate:.0}/s"));
                    }
                }
            }
        });
        Self {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    /// Stops refreshing and clears the bar.
    pub fn finish(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
