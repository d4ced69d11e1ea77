//! [`WatchStream`]: one client stream's handle to create and cancel watchers on the hub.

use std::sync::Arc;

use super::hub::WatchHub;
use super::range::KeyRange;
use super::watcher::{Shaping, StreamId, SyncState, Watcher};
use super::{WatchError, WatchResult, WatchSpec};

/// A stream of watchers sharing one message channel (etcd's `WatchStream`, one per gRPC
/// `Watch` call). Dropping it removes all its watchers.
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: StreamId,
}

impl WatchStream {
    pub(super) fn new(hub: Arc<WatchHub>, id: StreamId) -> Self {
        Self { hub, id }
    }

    /// Creates a watcher and returns its watch id: `watch_id`, or when `None` the lowest free id
    /// counting up from the last one assigned (from 0, skipping ids in use, as etcd).
    ///
    /// A start revision `<= 0` or past the last published revision starts synced; an older one
    /// starts unsynced and is caught up by the syncer (or told it is compacted).
    pub fn create(&self, watch_id: Option<i64>, spec: WatchSpec) -> WatchResult<i64> {
        self.create_at(watch_id, spec).map(|(id, _)| id)
    }

    /// Like [`WatchStream::create`], also returning the last revision published when the watcher
    /// was registered: the header revision of etcd's "created" response. Every event the watcher
    /// gets from a `start_revision` of 0 is newer than it, with no gap.
    pub fn create_at(&self, watch_id: Option<i64>, spec: WatchSpec) -> WatchResult<(i64, i64)> {
        let WatchSpec {
            key,
            range_end,
            start_revision: start,
            prev_kv,
            filter_put,
            filter_delete,
            progress_notify,
        } = spec;
        let range = KeyRange::new(key, range_end)?;
        let shaping = Shaping {
            prev_kv,
            filter_put,
            filter_delete,
        };
        let (id, unsynced, last) = {
            let mut state = self.hub.lock();
            let last = state.last_published;
            // Only `Drop` removes the stream from the hub, so it is present while `self` lives.
            let Some(stream) = state.streams.get_mut(&self.id) else {
                return Err(WatchError::StreamClosed);
            };
            let id = match watch_id {
                Some(id) if stream.watch_ids.contains_key(&id) => {
                    return Err(WatchError::IdInUse { watch_id: id });
                }
                Some(id) => id,
                None => {
                    while stream.watch_ids.contains_key(&stream.next_auto_id) {
                        stream.next_auto_id += 1;
                    }
                    stream.next_auto_id += 1;
                    stream.next_auto_id - 1
                }
            };
            let (min_rev, sync_state) = if start <= 0 || start > last {
                ((last + 1).max(start), SyncState::Synced)
            } else {
                (start, SyncState::Unsynced { next_rev: start })
            };
            let watcher = Watcher::new(
                self.id,
                id,
                range,
                shaping,
                progress_notify,
                min_rev,
                sync_state,
            );
            let unsynced = !watcher.is_synced();
            state.add_watcher(watcher);
            (id, unsynced, last)
        };
        if unsynced {
            self.hub.sync_wakeup.notify_one();
        }
        Ok((id, last))
    }

    /// Removes a watcher; `false` if this stream has no watcher with that id. Messages already
    /// queued for it stay in the channel.
    pub fn cancel(&self, watch_id: i64) -> bool {
        let mut state = self.hub.lock();
        let Some(key) = state
            .streams
            .get(&self.id)
            .and_then(|stream| stream.watch_ids.get(&watch_id).copied())
        else {
            return false;
        };
        state.remove_watcher(key);
        state.try_answer_progress(self.id);
        true
    }

    /// Sends `Progress { watch_id: -1, revision: current }` once every watcher of this stream is
    /// synced: immediately if they are, otherwise as soon as the syncer brings the last one up
    /// to date. Requests made while one is pending are answered by that one answer.
    pub fn request_progress(&self) {
        self.hub.lock().request_progress(self.id);
    }

    /// Ids of this stream's watchers, in no particular order.
    pub fn watch_ids(&self) -> Vec<i64> {
        self.hub
            .lock()
            .streams
            .get(&self.id)
            .map(|stream| stream.watch_ids.keys().copied().collect())
            .unwrap_or_default()
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.hub.lock().remove_stream(self.id);
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("id", &self.id.0)
            .finish_non_exhaustive()
    }
}
