//! Progress notifications: per-stream `RequestProgress` answers and periodic per-watcher ones.
//!
//! A progress message at revision `R` promises the client that it has received every matching
//! event up to `R`. That holds only for synced watchers, so:
//! - a `RequestProgress` is deferred until every watcher of the stream is synced, then answered
//!   with `watch_id = -1` and the last published revision (etcd #15220 was answering early);
//! - the periodic notification goes only to synced watchers that asked for it and were sent no
//!   events during the last interval (as etcd's `serverWatchStream.progress` map).
//!
//! A full channel never blocks: a deferred answer is retried by the syncer, a periodic one is
//! simply skipped.

use tokio::sync::mpsc::error::TrySendError;

use super::WatchMessage;
use super::hub::{HubState, WatchHub};
use super::watcher::StreamId;

impl HubState {
    pub(super) fn request_progress(&mut self, stream: StreamId) {
        self.deferred_progress.insert(stream);
        self.try_answer_progress(stream);
    }

    /// Answers the stream's pending `RequestProgress` if all its watchers are synced and its
    /// channel has room; returns whether a request is still pending.
    pub(super) fn try_answer_progress(&mut self, id: StreamId) -> bool {
        if !self.deferred_progress.contains(&id) {
            return false;
        }
        let Some(stream) = self.streams.get(&id) else {
            self.deferred_progress.remove(&id);
            return false;
        };
        if stream.unsynced > 0 {
            return true;
        }
        let message = WatchMessage::Progress {
            watch_id: -1,
            revision: self.last_published,
        };
        match stream.tx.try_send(message) {
            Ok(()) | Err(TrySendError::Closed(_)) => {
                self.deferred_progress.remove(&id);
                false
            }
            Err(TrySendError::Full(_)) => true,
        }
    }

    /// Retries every pending `RequestProgress`; returns how many remain.
    pub(super) fn answer_deferred_progress(&mut self) -> usize {
        let pending: Vec<StreamId> = self.deferred_progress.iter().copied().collect();
        pending
            .into_iter()
            .filter(|&id| self.try_answer_progress(id))
            .count()
    }

    /// One periodic tick: `Progress { watch_id, revision }` to each synced watcher with
    /// `progress_notify` that was sent nothing since the previous tick.
    pub(super) fn notify_progress(&mut self) {
        let revision = self.last_published;
        for watcher in self.watchers.values_mut() {
            if !watcher.progress_notify || !watcher.is_synced() {
                continue;
            }
            if std::mem::take(&mut watcher.sent_since_progress) {
                continue;
            }
            let Some(stream) = self.streams.get(&watcher.stream) else {
                continue;
            };
            let message = WatchMessage::Progress {
                watch_id: watcher.watch_id,
                revision,
            };
            // Advisory: if the channel is full the client will hear again next interval.
            let _ = stream.tx.try_send(message);
        }
    }
}

impl WatchHub {
    /// Sends one round of periodic progress notifications (the background task's tick).
    pub(crate) fn send_progress_notifications(&self) {
        self.lock().notify_progress();
    }
}
