//! Catch-up of unsynced watchers (etcd's `syncWatchers`).
//!
//! One pass, in three steps so the hub lock is never held across I/O:
//!
//! ```text
//!  lock   plan_sync:  pick up to N unsynced watchers round-robin (skipping streams whose channel
//!                     is full); if some need revisions older than the ring, the store range
//!                     [min next_rev, ring floor] to read
//!  ----   EventSource::events on a blocking thread (no lock)
//!  lock   apply_sync: per watcher, replay [next_rev, ..] from the store batch then the ring,
//!                     in messages of whole revisions; stop at the first full channel; back to
//!                     synced only if it reached last_published + 1 (else it stays for the next
//!                     pass); compacted next_rev → Compacted message and removal
//! ```
//!
//! Meanwhile `publish` may have advanced `last_published` and evicted ring entries; `apply_sync`
//! works from the state it finds under the lock, so a watcher is synced only when it really has
//! everything up to the latest revision. If [`WatchHub::restored`] ran in between, the store read
//! may come from the replaced store: `apply_sync` drops the whole plan and the next pass
//! starts over.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::KvError;
use crate::kv::Event;

use super::hub::{HubState, WatchHub};
use super::watcher::{SyncState, Watcher, WatcherKey};
use super::{EventSource, WatchMessage, WatchOptions};

/// What one pass will work on.
#[derive(Debug)]
pub(super) struct SyncPlan {
    pub(super) watchers: Vec<WatcherKey>,
    pub(super) source: Option<SourceRange>,
    /// The hub's generation when planned; a restore in between voids the plan.
    pub(super) generation: u64,
}

/// A store read: events of revisions `[from, to]`, at most about `limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SourceRange {
    from: i64,
    to: i64,
    limit: usize,
}

/// Every event of revisions `[from, covered_to]`, in order.
#[derive(Debug)]
pub(super) struct SourceBatch {
    from: i64,
    covered_to: i64,
    events: Vec<Event>,
}

impl SourceRange {
    pub(super) fn read(self, source: &dyn EventSource) -> Result<SourceBatch, KvError> {
        let mut events = source.events(self.from, self.to, self.limit)?;
        // Fewer than `limit` events means the whole range; otherwise the source stopped at a
        // revision boundary and only revisions up to the last returned one are complete.
        let covered_to = match events.last() {
            Some(last) if events.len() >= self.limit => last.revision().min(self.to),
            _ => self.to,
        };
        events.retain(|e| (self.from..=covered_to).contains(&e.revision()));
        Ok(SourceBatch {
            from: self.from,
            covered_to,
            events,
        })
    }
}

impl WatchHub {
    /// One catch-up pass; returns whether any watcher moved forward (so another pass should
    /// follow at once).
    pub(crate) async fn sync_pass(&self) -> bool {
        let compact_revision = self.source.compact_revision();
        let plan = {
            let mut state = self.lock();
            state.answer_deferred_progress();
            state.plan_sync(compact_revision, &self.options)
        };
        let Some(plan) = plan else {
            return false;
        };
        let batch = match plan.source {
            None => Ok(None),
            Some(range) => {
                let source = Arc::clone(&self.source);
                match tokio::task::spawn_blocking(move || range.read(source.as_ref())).await {
                    Ok(read) => read.map(Some),
                    Err(error) => {
                        tracing::error!(%error, "watch catch-up: history read failed");
                        return false;
                    }
                }
            }
        };
        self.lock()
            .apply_sync(plan, batch, compact_revision, &self.options)
    }
}

impl HubState {
    pub(super) fn plan_sync(
        &mut self,
        compact_revision: i64,
        options: &WatchOptions,
    ) -> Option<SyncPlan> {
        let floor = self.ring.floor();
        let cursor = WatcherKey(self.sync_cursor);
        let mut watchers = Vec::new();
        let mut from: Option<i64> = None;
        let ordered = self
            .unsynced
            .range(cursor..)
            .chain(self.unsynced.range(..cursor));
        for &key in ordered {
            if watchers.len() >= options.max_watchers_per_sync.max(1) {
                break;
            }
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            // A consumer that is not draining could not take anything: leave it alone.
            if self
                .streams
                .get(&watcher.stream)
                .is_none_or(|s| s.tx.capacity() == 0)
            {
                continue;
            }
            watchers.push(key);
            if let SyncState::Unsynced { next_rev } = watcher.state
                && next_rev >= compact_revision
                && next_rev <= floor
            {
                from = Some(from.map_or(next_rev, |f| f.min(next_rev)));
            }
        }
        if watchers.is_empty() {
            return None;
        }
        let source = from.map(|from| SourceRange {
            from,
            to: floor,
            limit: options.source_batch_events.max(1),
        });
        Some(SyncPlan {
            watchers,
            source,
            generation: self.generation,
        })
    }

    pub(super) fn apply_sync(
        &mut self,
        plan: SyncPlan,
        batch: Result<Option<SourceBatch>, KvError>,
        mut compact_revision: i64,
        options: &WatchOptions,
    ) -> bool {
        if plan.generation != self.generation {
            // The store was replaced since the plan: the batch and `compact_revision` may
            // describe the old one. Report progress so the next pass follows at once.
            return true;
        }
        let batch = match batch {
            Ok(batch) => batch,
            Err(KvError::Compacted {
                compact_revision: compacted,
            }) => {
                compact_revision = compact_revision.max(compacted);
                None
            }
            Err(error) => {
                tracing::warn!(%error, "watch catch-up: history read failed; retrying");
                None
            }
        };
        let mut budget = options.sync_budget_events.max(1);
        let mut progressed = false;
        for key in plan.watchers {
            if budget == 0 {
                break;
            }
            self.sync_cursor = key.0 + 1;
            let Some(watcher) = self.watchers.get(&key) else {
                continue;
            };
            progressed |= match watcher.state {
                SyncState::Synced => false,
                SyncState::Compacted { compact_revision } => {
                    self.send_compacted(key, compact_revision)
                }
                SyncState::Unsynced { next_rev } if next_rev < compact_revision => {
                    self.send_compacted(key, compact_revision)
                }
                SyncState::Unsynced { next_rev } => {
                    let max_events = options.max_events_per_message.max(1);
                    self.catch_up(key, next_rev, batch.as_ref(), &mut budget, max_events)
                }
            };
        }
        self.answer_deferred_progress();
        progressed
    }

    /// Queues `Compacted` and removes the watcher; if the channel is full, it stays marked and
    /// the next pass retries (etcd does the same). Returns whether the watcher was removed.
    fn send_compacted(&mut self, key: WatcherKey, compact_revision: i64) -> bool {
        let Some(watcher) = self.watchers.get_mut(&key) else {
            return false;
        };
        watcher.state = SyncState::Compacted { compact_revision };
        let message = WatchMessage::Compacted {
            watch_id: watcher.watch_id,
            compact_revision,
        };
        let sent = self
            .streams
            .get(&watcher.stream)
            .is_none_or(|s| !matches!(s.tx.try_send(message), Err(TrySendError::Full(_))));
        if sent {
            self.remove_watcher(key);
        }
        sent
    }

    /// Replays what `key` missed from `next_rev` on: the store batch first, then the ring.
    fn catch_up(
        &mut self,
        key: WatcherKey,
        next_rev: i64,
        batch: Option<&SourceBatch>,
        budget: &mut usize,
        max_events: usize,
    ) -> bool {
        let last = self.last_published;
        let Some(watcher) = self.watchers.get(&key) else {
            return false;
        };
        let Some(stream) = self.streams.get(&watcher.stream) else {
            return false;
        };
        let mut delivery = Delivery::new(watcher, &stream.tx, last, max_events, next_rev);

        if let Some(batch) = batch.filter(|b| (b.from..=b.covered_to).contains(&next_rev)) {
            let start = batch.events.partition_point(|e| e.revision() < next_rev);
            let mut complete = true;
            for revision in batch.events[start..].chunk_by(|a, b| a.revision() == b.revision()) {
                if *budget == 0 || delivery.blocked {
                    complete = false;
                    break;
                }
                *budget = budget.saturating_sub(revision.len());
                delivery.offer(revision[0].revision(), revision);
            }
            if complete && !delivery.blocked {
                delivery.skip_to(batch.covered_to + 1);
            }
        }
        while *budget > 0 && !delivery.blocked && delivery.next <= last {
            let Some(events) = self.ring.get(delivery.next) else {
                break;
            };
            *budget = budget.saturating_sub(events.len().max(1));
            delivery.offer(delivery.next, events);
        }
        let (next, sent) = delivery.finish();

        if let Some(watcher) = self.watchers.get_mut(&key) {
            watcher.sent_since_progress |= sent;
            if next > last {
                self.mark_synced(key);
                return true;
            }
            watcher.state = SyncState::Unsynced { next_rev: next };
        }
        sent || next != next_rev
    }
}

/// Messages of whole revisions for one catching-up watcher, stopping at the first full channel.
struct Delivery<'a> {
    watcher: &'a Watcher,
    tx: &'a mpsc::Sender<WatchMessage>,
    /// Header revision of the messages.
    header: i64,
    max_events: usize,
    /// Every matching event before `next` is queued, in the channel or in `chunk`.
    next: i64,
    chunk: Vec<Event>,
    /// Revision of the first event in `chunk`.
    chunk_start: i64,
    sent: bool,
    blocked: bool,
}

impl<'a> Delivery<'a> {
    fn new(
        watcher: &'a Watcher,
        tx: &'a mpsc::Sender<WatchMessage>,
        header: i64,
        max_events: usize,
        next: i64,
    ) -> Self {
        Self {
            watcher,
            tx,
            header,
            max_events,
            next,
            chunk: Vec::new(),
            chunk_start: next,
            sent: false,
            blocked: false,
        }
    }

    /// Adds the events of `revision` (the one at `next`).
    fn offer(&mut self, revision: i64, events: &[Event]) {
        if self.chunk.is_empty() {
            self.chunk_start = revision;
        }
        let watcher = self.watcher;
        self.chunk
            .extend(events.iter().filter_map(|e| watcher.select(e)));
        self.next = revision + 1;
        if self.chunk.len() >= self.max_events {
            self.flush();
        }
    }

    /// Revisions before `next` are known to hold nothing more for this watcher.
    fn skip_to(&mut self, next: i64) {
        self.next = self.next.max(next);
    }

    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let message = WatchMessage::Events {
            watch_id: self.watcher.watch_id,
            revision: self.header,
            events: std::mem::take(&mut self.chunk),
        };
        if self.tx.try_send(message).is_ok() {
            self.sent = true;
        } else {
            // Nothing of the failed chunk reached the client: resume at its first revision.
            self.blocked = true;
            self.next = self.chunk_start;
        }
    }

    /// Flushes the last chunk; returns the watcher's new `next_rev` and whether anything was sent.
    fn finish(mut self) -> (i64, bool) {
        if !self.blocked {
            self.flush();
        }
        (self.next, self.sent)
    }
}
