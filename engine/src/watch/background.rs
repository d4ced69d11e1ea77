//! The hub's background task: runs the syncer and the periodic progress notifications.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::hub::WatchHub;

/// Runs catch-up for unsynced watchers (every `sync_interval`, at once when a watcher is created
/// in the past, and back to back while passes make progress; store reads on `spawn_blocking`)
/// and sends progress notifications every `progress_interval` (zero disables them) to synced
/// watchers that asked for them.
///
/// The task holds only a weak reference between rounds: it stops when the hub is dropped or
/// [`WatchHub::shutdown`] is called.
pub fn spawn_background(hub: Arc<WatchHub>, progress_interval: Duration) -> JoinHandle<()> {
    let weak = Arc::downgrade(&hub);
    let mut shutdown = hub.shutdown.subscribe();
    let wakeup = Arc::clone(&hub.sync_wakeup);
    let sync_interval = hub.options.sync_interval;
    drop(hub);

    tokio::spawn(async move {
        let mut progress = (!progress_interval.is_zero()).then(|| {
            let mut ticks =
                tokio::time::interval_at(Instant::now() + progress_interval, progress_interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticks
        });
        let mut delay = sync_interval;
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = progress_tick(progress.as_mut()) => {
                    let Some(hub) = weak.upgrade() else { break };
                    hub.send_progress_notifications();
                }
                () = sync_due(&wakeup, delay) => {
                    let Some(hub) = weak.upgrade() else { break };
                    let progressed = hub.sync_pass().await;
                    delay = if progressed && hub.unsynced_count() > 0 {
                        Duration::ZERO
                    } else {
                        sync_interval
                    };
                    drop(hub);
                    tokio::task::yield_now().await;
                }
            }
        }
    })
}

async fn progress_tick(ticks: Option<&mut tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sync_due(wakeup: &Notify, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = wakeup.notified() => {}
    }
}
