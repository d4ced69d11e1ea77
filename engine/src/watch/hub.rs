//! [`WatchHub`]: the shared state of all watchers and the applier's entry point, `publish`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, watch};

use crate::kv::Event;

use super::index::WatcherIndex;
use super::ring::EventRing;
use super::stream::WatchStream;
use super::watcher::{StreamId, SyncState, Watcher, WatcherKey};
use super::{EventSource, WatchMessage, WatchOptions};

/// Hands applied events to watchers; see the [module docs](super).
pub struct WatchHub {
    pub(super) source: Arc<dyn EventSource>,
    pub(super) options: WatchOptions,
    state: Mutex<HubState>,
    /// Wakes the syncer early (a watcher was created in the past).
    pub(super) sync_wakeup: Arc<Notify>,
    /// Set to `true` by [`WatchHub::shutdown`]; dropped with the hub. Both stop the background task.
    pub(super) shutdown: watch::Sender<bool>,
}

/// Everything behind the hub lock. Its methods never block and never do I/O: sends are
/// `try_send` on bounded channels.
#[derive(Debug)]
pub(super) struct HubState {
    /// The last revision handed to `publish` (or the store revision when the hub was created).
    pub(super) last_published: i64,
    pub(super) watchers: HashMap<WatcherKey, Watcher>,
    pub(super) synced: WatcherIndex,
    /// Unsynced and compacted-pending watchers, ordered so the syncer can go round-robin.
    pub(super) unsynced: BTreeSet<WatcherKey>,
    pub(super) streams: HashMap<StreamId, StreamState>,
    pub(super) ring: EventRing,
    /// Streams with a `RequestProgress` not answered yet.
    pub(super) deferred_progress: BTreeSet<StreamId>,
    /// Where the syncer's next round-robin pass starts.
    pub(super) sync_cursor: u64,
    /// Bumped by [`WatchHub::restored`]: a syncer pass planned before a restore drops its work,
    /// since its store read and compact revision may come from the replaced store.
    pub(super) generation: u64,
    next_watcher: u64,
    next_stream: u64,
}

#[derive(Debug)]
pub(super) struct StreamState {
    pub(super) tx: mpsc::Sender<WatchMessage>,
    pub(super) watch_ids: HashMap<i64, WatcherKey>,
    pub(super) next_auto_id: i64,
    /// Watchers of this stream that are not synced (unsynced or compacted-pending).
    pub(super) unsynced: usize,
}

impl WatchHub {
    /// A hub whose first published revision will be `source.current_revision() + 1`.
    pub fn new(source: Arc<dyn EventSource>, options: WatchOptions) -> Arc<Self> {
        let last = source.current_revision();
        let state = HubState {
            last_published: last,
            watchers: HashMap::new(),
            synced: WatcherIndex::default(),
            unsynced: BTreeSet::new(),
            streams: HashMap::new(),
            ring: EventRing::new(last, options.ring_revisions, options.ring_events),
            deferred_progress: BTreeSet::new(),
            sync_cursor: 0,
            generation: 0,
            next_watcher: 0,
            next_stream: 0,
        };
        Arc::new(Self {
            source,
            options,
            state: Mutex::new(state),
            sync_wakeup: Arc::new(Notify::new()),
            shutdown: watch::Sender::new(false),
        })
    }

    /// Called by the applier after each committed revision batch, strictly in revision order.
    ///
    /// Cheap and never blocking: O(events × matching watchers) plus a few hash lookups per
    /// event, bounded `try_send`s, no I/O. A watcher whose channel is full moves to the unsynced
    /// group and is caught up by the syncer. A revision at or below the last published one is
    /// ignored; a jump (a snapshot was installed) sends the watchers that may have missed the
    /// skipped revisions to catch up from the store.
    pub fn publish(&self, revision: i64, events: Arc<[Event]>) {
        self.lock().publish(revision, events);
    }

    /// The store under the hub was replaced (a snapshot was installed): makes the hub describe
    /// the new store. Call it after the new store is in place and before publishing any revision
    /// applied on top of it; the next [`WatchHub::publish`] is then `current_revision() + 1`.
    ///
    /// - The last published revision becomes `source.current_revision()`, and the ring of recent
    ///   revisions is emptied (its entries came from the old store).
    /// - Every synced watcher that wants a revision in `(old last published, new current]`
    ///   becomes unsynced with its next wanted revision unchanged, and the syncer (woken here)
    ///   replays the missed revisions from the [`EventSource`], as for a watcher created in the
    ///   past. One whose next revision is below `source.compact_revision()` gets
    ///   [`WatchMessage::Compacted`] and is removed, as etcd does. Watchers whose start revision
    ///   is past the new current revision stay synced: there is nothing for them to replay.
    /// - Unsynced watchers keep their place; since the ring is empty they catch up from the
    ///   store. A syncer pass already in flight discards its work and the next one starts over.
    /// - Progress stays truthful: a `RequestProgress` on a stream with a watcher behind is
    ///   deferred until it is caught up, and periodic progress skips unsynced watchers.
    ///
    /// If the new store is behind the last published revision (raft never does that), watchers
    /// stay where they are and will be sent the new store's revisions after its current one.
    ///
    /// Like `publish`, never blocks and does no I/O: it reads `source.current_revision()` (an
    /// atomic load) before taking the lock; the compaction check is the syncer's.
    pub fn restored(&self) {
        let current = self.source.current_revision();
        let unsynced = self.lock().restored(current);
        if unsynced > 0 {
            self.sync_wakeup.notify_one();
        }
    }

    /// A new stream: a handle to create watchers on, and the receiver of all their messages.
    pub fn open_stream(self: &Arc<Self>) -> (WatchStream, mpsc::Receiver<WatchMessage>) {
        let (tx, rx) = mpsc::channel(self.options.stream_buffer.max(1));
        let id = self.lock().add_stream(tx);
        (WatchStream::new(Arc::clone(self), id), rx)
    }

    pub fn watcher_count(&self) -> usize {
        self.lock().watchers.len()
    }

    pub fn unsynced_count(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// The last revision handed to [`WatchHub::publish`].
    pub fn last_published(&self) -> i64 {
        self.lock().last_published
    }

    /// Stops the background task started by [`super::spawn_background`].
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The hub lock. A panic while holding it cannot leave the state half-updated in a way that
    /// matters more than losing every watch, so poisoning is ignored.
    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl HubState {
    fn add_stream(&mut self, tx: mpsc::Sender<WatchMessage>) -> StreamId {
        let id = StreamId(self.next_stream);
        self.next_stream += 1;
        let stream = StreamState {
            tx,
            watch_ids: HashMap::new(),
            next_auto_id: 0,
            unsynced: 0,
        };
        self.streams.insert(id, stream);
        id
    }

    pub(super) fn remove_stream(&mut self, id: StreamId) {
        self.deferred_progress.remove(&id);
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        for key in stream.watch_ids.into_values() {
            self.forget_watcher(key);
        }
    }

    /// Registers a watcher already validated against its stream's ids.
    pub(super) fn add_watcher(&mut self, watcher: Watcher) -> WatcherKey {
        let key = WatcherKey(self.next_watcher);
        self.next_watcher += 1;
        if let Some(stream) = self.streams.get_mut(&watcher.stream) {
            stream.watch_ids.insert(watcher.watch_id, key);
            if !watcher.is_synced() {
                stream.unsynced += 1;
            }
        }
        if watcher.is_synced() {
            self.synced.insert(key, &watcher.range);
        } else {
            self.unsynced.insert(key);
        }
        self.watchers.insert(key, watcher);
        key
    }

    /// Removes a watcher from the hub and from its stream's id table.
    pub(super) fn remove_watcher(&mut self, key: WatcherKey) -> Option<Watcher> {
        let watcher = self.forget_watcher(key)?;
        if let Some(stream) = self.streams.get_mut(&watcher.stream) {
            stream.watch_ids.remove(&watcher.watch_id);
            if !watcher.is_synced() {
                stream.unsynced -= 1;
            }
        }
        Some(watcher)
    }

    fn forget_watcher(&mut self, key: WatcherKey) -> Option<Watcher> {
        let watcher = self.watchers.remove(&key)?;
        if watcher.is_synced() {
            self.synced.remove(key, &watcher.range);
        } else {
            self.unsynced.remove(&key);
        }
        Some(watcher)
    }

    /// Moves a watcher out of the synced group; it has been sent everything before `next_rev`.
    pub(super) fn mark_unsynced(&mut self, key: WatcherKey, next_rev: i64) {
        let Some(watcher) = self.watchers.get_mut(&key) else {
            return;
        };
        if watcher.is_synced() {
            self.synced.remove(key, &watcher.range);
            self.unsynced.insert(key);
            if let Some(stream) = self.streams.get_mut(&watcher.stream) {
                stream.unsynced += 1;
            }
        }
        watcher.state = SyncState::Unsynced { next_rev };
    }

    /// Moves a caught-up watcher back to the synced group, and answers its stream's deferred
    /// progress request if it was the last one behind.
    pub(super) fn mark_synced(&mut self, key: WatcherKey) {
        let Some(watcher) = self.watchers.get_mut(&key) else {
            return;
        };
        if watcher.is_synced() {
            return;
        }
        watcher.state = SyncState::Synced;
        self.unsynced.remove(&key);
        self.synced.insert(key, &watcher.range);
        let stream_id = watcher.stream;
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            stream.unsynced -= 1;
        }
        self.try_answer_progress(stream_id);
    }

    pub(super) fn publish(&mut self, revision: i64, events: Arc<[Event]>) {
        if revision <= self.last_published {
            tracing::warn!(
                revision,
                last = self.last_published,
                "watch hub: ignoring stale publish"
            );
            return;
        }
        if revision != self.last_published + 1 {
            tracing::info!(
                revision,
                last = self.last_published,
                "watch hub: revisions skipped"
            );
            self.unsync_for_gap(revision);
        }
        self.last_published = revision;
        let batches = self.match_synced(&events);
        self.ring.push(revision, events);

        for (key, events) in batches {
            let Some(watcher) = self.watchers.get_mut(&key) else {
                continue;
            };
            let Some(stream) = self.streams.get(&watcher.stream) else {
                continue;
            };
            let message = WatchMessage::Events {
                watch_id: watcher.watch_id,
                revision,
                events,
            };
            match stream.tx.try_send(message) {
                Ok(()) => watcher.sent_since_progress = true,
                Err(TrySendError::Full(_)) => self.mark_unsynced(key, revision),
                // The receiver is gone; the stream's handle removes its watchers when dropped.
                Err(TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Per matching synced watcher, its shaped events of one revision, in event order.
    fn match_synced(&self, events: &[Event]) -> Vec<(WatcherKey, Vec<Event>)> {
        let mut batches: Vec<(WatcherKey, Vec<Event>)> = Vec::new();
        if self.synced.is_empty() {
            return batches;
        }
        let mut position: HashMap<WatcherKey, usize> = HashMap::new();
        for event in events {
            self.synced.for_each_match(&event.kv.key, |key| {
                let Some(shaped) = self.watchers.get(&key).and_then(|w| w.shape(event)) else {
                    return;
                };
                let slot = *position.entry(key).or_insert_with(|| {
                    batches.push((key, Vec::new()));
                    batches.len() - 1
                });
                batches[slot].1.push(shaped);
            });
        }
        batches
    }

    /// See [`WatchHub::restored`]; returns how many watchers are now unsynced.
    pub(super) fn restored(&mut self, current: i64) -> usize {
        let previous = self.last_published;
        if current > previous {
            tracing::info!(
                revision = current,
                last = previous,
                "watch hub: store restored; watchers catch up from it"
            );
            self.unsync_for_gap(current + 1);
        } else if current < previous {
            tracing::warn!(
                revision = current,
                last = previous,
                "watch hub: restored store is behind the last published revision"
            );
        }
        self.last_published = current;
        self.ring.reset(current);
        self.generation += 1;
        self.unsynced.len()
    }

    /// Revisions `(last_published, revision)` were never published here (a snapshot was
    /// installed): synced watchers that could match them catch up from the store.
    fn unsync_for_gap(&mut self, revision: i64) {
        let next_rev = self.last_published + 1;
        let behind: Vec<WatcherKey> = self
            .synced
            .all()
            .filter(|key| self.watchers.get(key).is_some_and(|w| w.min_rev < revision))
            .collect();
        for key in behind {
            if let Some(watcher) = self.watchers.get(&key) {
                let from = next_rev.max(watcher.min_rev);
                self.mark_unsynced(key, from);
            }
        }
    }
}
