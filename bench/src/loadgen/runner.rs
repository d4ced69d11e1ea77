//! Drives concurrent clients, each with one request in flight, until `--total` requests were
//! issued or `--duration` passed, optionally paced to `--rate` requests per second overall.
//!
//! Pacing uses one shared ticket counter: request number `n` (over all clients) may start at
//! `start + n / rate`. A client that falls behind its schedule sends at once (no catch-up
//! burst beyond the clients' concurrency). Latency is measured from just before the request is
//! sent, as etcd's benchmark tool does, not from the scheduled time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::cli::CommonArgs;
use super::progress::{Goal, Progress};
use super::stats::Recorder;

/// The future of one request: `Ok` when the server answered successfully.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send + 'a>>;

/// One load-generating client: a connection handle plus whatever per-client state its workload
/// needs (a random generator, a keep-alive stream…).
pub trait Client: Send + 'static {
    /// Starts request number `seq` (unique over all clients); returns the operation's name for
    /// the report and the request's future.
    fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>);
}

/// When to stop and how fast to go.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    /// Requests per second over all clients; `None` = unpaced.
    pub rate: Option<f64>,
    pub progress: bool,
}

/// etcd's benchmark default when neither a total nor a duration is given.
pub const DEFAULT_TOTAL: u64 = 10_000;

impl RunSpec {
    pub fn from_common(common: &CommonArgs) -> Self {
        Self {
            total: match (common.total, common.duration) {
                (None, None) => Some(DEFAULT_TOTAL),
                (total, _) => total,
            },
            duration: common.duration,
            rate: (common.rate > 0.0).then_some(common.rate),
            progress: !common.no_progress,
        }
    }
}

/// What a run recorded.
#[derive(Debug)]
pub struct RunOutcome {
    pub recorder: Recorder,
    /// From the first request to the last response.
    pub elapsed: Duration,
}

struct Pacer {
    issued: AtomicU64,
    completed: Arc<AtomicU64>,
    start: Instant,
    total: Option<u64>,
    deadline: Option<Instant>,
    rate: Option<f64>,
}

impl Pacer {
    /// The next request number and when it may start, or `None` when the run is over.
    fn next(&self) -> Option<(u64, Option<Instant>)> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let seq = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.total.is_some_and(|total| seq >= total) {
            return None;
        }
        let at = self
            .rate
            .map(|rate| self.start + Duration::from_secs_f64(seq as f64 / rate));
        if let (Some(at), Some(deadline)) = (at, self.deadline)
            && at >= deadline
        {
            return None;
        }
        Some((seq, at))
    }
}

/// Runs `clients` concurrently under `spec` and merges what they recorded.
pub async fn run(spec: &RunSpec, clients: Vec<Box<dyn Client>>) -> anyhow::Result<RunOutcome> {
    let completed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let pacer = Arc::new(Pacer {
        issued: AtomicU64::new(0),
        completed: Arc::clone(&completed),
        start,
        total: spec.total,
        deadline: spec.duration.map(|d| start + d),
        rate: spec.rate,
    });
    let goal = match (spec.total, spec.duration) {
        (Some(total), None) => Goal::Requests(total),
        (_, Some(duration)) => Goal::Time(duration),
        (None, None) => Goal::Requests(0),
    };
    let mut progress = Progress::start(spec.progress, goal, completed);

    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let pacer = Arc::clone(&pacer);
            tokio::spawn(async move {
                let mut recorder = Recorder::new();
                while let Some((seq, at)) = pacer.next() {
                    if let Some(at) = at {
                        tokio::time::sleep_until(at).await;
                    }
                    let sent = std::time::Instant::now();
                    let (op, call) = client.call(seq);
                    match call.await {
                        Ok(()) => recorder.record_ok(op, sent.elapsed()),
                        Err(status) => recorder.record_error(op, &status_message(&status)),
                    }
                    pacer.completed.fetch_add(1, Ordering::Relaxed);
                }
                recorder
            })
        })
        .collect();

    let mut recorder = Recorder::new();
    for task in tasks {
        recorder.merge(&task.await.context("a client task panicked")?);
    }
    let elapsed = start.elapsed();
    progress.finish();
    Ok(RunOutcome { recorder, elapsed })
}

/// `Unavailable: etcdserver: no leader`.
pub fn status_message(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting {
        fail_every: u64,
    }

    impl Client for Counting {
        fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>) {
            let fail = self.fail_every > 0 && seq.is_multiple_of(self.fail_every);
            (
                "op",
                Box::pin(async move {
                    if fail {
                        Err(tonic::Status::unavailable("no"))
                    } else {
                        Ok(())
                    }
                }),
            )
        }
    }

    fn clients(n: usize, fail_every: u64) -> Vec<Box<dyn Client>> {
        (0..n)
            .map(|_| Box::new(Counting { fail_every }) as Box<dyn Client>)
            .collect()
    }

    #[tokio::test]
    async fn total_is_exact_over_all_clients() {
        let spec = RunSpec {
            total: Some(1000),
            duration: None,
            rate: None,
            progress: false,
        };
        let outcome = run(&spec, clients(7, 10)).await.expect("run");
        let report = outcome.recorder.report(outcome.elapsed);
        assert_eq!(report[0].requests + report[0].errors, 1000);
        assert_eq!(report[0].errors, 100);
    }

    #[tokio::test]
    async fn rate_paces_requests() {
        let spec = RunSpec {
            total: Some(20),
            duration: None,
            rate: Some(200.0),
            progress: false,
        };
        let outcome = run(&spec, clients(4, 0)).await.expect("run");
        // 20 requests at 200/s: the last may start at 95 ms.
        assert!(outcome.elapsed >= Duration::from_millis(90), "{outcome:?}");
        assert_eq!(outcome.recorder.count("op"), 20);
    }

    #[tokio::test]
    async fn duration_stops_the_run() {
        let spec = RunSpec {
            total: None,
            duration: Some(Duration::from_millis(100)),
            rate: Some(1000.0),
            progress: false,
        };
        let outcome = run(&spec, clients(2, 0)).await.expect("run");
        let done = outcome.recorder.count("op");
        assert!(done > 0 && done <= 100, "{done}");
    }
}
