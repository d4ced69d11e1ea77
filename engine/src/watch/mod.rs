//! The watch hub: hands applied events to watchers, synced and unsynced.
//!
//! Like etcd's `watchable_store`, watchers live in one of two groups:
//!
//! ```text
//!  applier ──publish(rev, events)──► WatchHub ─┬─ synced index ──try_send──► stream channel ─► kvapi
//!                                     │  ring  │   (exact map, prefix map,        ▲
//!                                     ▼        │    scanned ranges)               │
//!                               recent revisions└─ unsynced set ◄── channel full │
//!                                     │                 │                          │
//!                                     └───► syncer ◄────┘ (every ~100 ms) ─────────┘
//!                                            ▲  reads older history through EventSource
//!                                            └─ on a blocking thread, outside the lock
//! ```
//!
//! - A **synced** watcher has been sent every matching event up to the last published revision;
//!   [`WatchHub::publish`] sends it the next one with a non-blocking `try_send`. If its stream's
//!   channel is full, the watcher moves to the unsynced group with `next_rev` = that revision:
//!   the applier never waits for a consumer.
//! - An **unsynced** watcher is behind: it was created with a start revision in the past, or its
//!   channel filled up. The syncer replays `[next_rev, last published]` to it from the in-memory
//!   ring of recent revisions, or from the store ([`EventSource`]) when the ring no longer holds
//!   `next_rev`, and moves it back to synced once it is at `last published + 1`. A watcher whose
//!   `next_rev` is compacted gets [`WatchMessage::Compacted`] and is removed.
//! - When a snapshot replaces the store, [`WatchHub::restored`] moves the last published
//!   revision to the new store's, empties the ring and sends the synced watchers to the unsynced
//!   group, so the syncer replays the revisions they skipped from the new store (etcd's
//!   `watchableStore.Restore`).
//!
//! Every message for one watcher goes through one FIFO channel, and a watcher is fed either by
//! `publish` (synced) or by the syncer (unsynced), both under the hub lock, so it never sees a
//! revision twice, out of order, or with a gap.
//!
//! `RequestProgress` ([`WatchStream::request_progress`]) is answered only when every watcher of
//! the stream is synced (etcd #15220): the answer's revision then really is a point up to which
//! the client has seen everything.
//!
//! The API layer owns the wire protocol: it must send etcd's "created" response for a watch id
//! before it forwards that id's first [`WatchMessage`] (etcd's `sendLoop` buffers them), because
//! events may be queued as soon as [`WatchStream::create`] returns.

mod background;
mod hub;
mod index;
mod progress;
mod range;
mod ring;
mod stream;
mod syncer;
mod watcher;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;

use crate::error::KvError;
use crate::kv::Event;

pub use background::spawn_background;
pub use hub::WatchHub;
pub use stream::WatchStream;

/// Where catch-up reads history from (implemented by the MVCC store).
///
/// To ensure correctness:
/// - `events` returns every event with `from <= revision <= to`, in revision order (and
///   sub-revision order inside a revision). It may stop early after about `limit` events, but
///   only at a revision boundary: when it returns fewer than `limit` events, the hub takes the
///   whole `[from, to]` as covered; otherwise it takes the revisions up to the last returned one.
/// - `events` returns `Err(KvError::Compacted { compact_revision })` when `from < compact
///   revision` (a read from exactly the compact revision is served, as in etcd: the hub treats
///   a watcher as compacted only when its next revision is below the compact revision). The hub
///   calls it only on a blocking thread, never while holding its lock.
/// - `current_revision` and `compact_revision` must be cheap and non-blocking (an atomic load):
///   the hub calls them from async code.
pub trait EventSource: Send + Sync + 'static {
    fn current_revision(&self) -> i64;
    fn compact_revision(&self) -> i64;
    /// Events with revision in `[from, to]`, revision order, at most ~`limit` (never splitting a
    /// revision); `Err(KvError::Compacted{compact_revision})` if `from < compact revision`.
    fn events(&self, from: i64, to: i64, limit: usize) -> Result<Vec<Event>, KvError>;
}

/// What a client asks to watch (etcd's `WatchCreateRequest`, minus the wire).
///
/// `range_end` follows etcd: empty = the single key `key`; `"\0"` = every key `>= key`;
/// otherwise the half-open interval `[key, range_end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // etcd's flags, one to one
pub struct WatchSpec {
    pub key: Bytes,
    pub range_end: Bytes,
    /// First revision to deliver; `<= 0` = the next revision to be published.
    pub start_revision: i64,
    /// Deliver `prev_kv` in events (otherwise it is stripped).
    pub prev_kv: bool,
    /// Drop PUT events.
    pub filter_put: bool,
    /// Drop DELETE events.
    pub filter_delete: bool,
    /// Send periodic [`WatchMessage::Progress`] while the watcher is synced and idle.
    pub progress_notify: bool,
}

/// What a stream's receiver gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Events of one or more whole revisions, in order. `revision` is the header revision: the
    /// last published store revision when the message was queued.
    Events {
        watch_id: i64,
        revision: i64,
        events: Vec<Event>,
    },
    /// The watch needed history older than the compaction point; it has been canceled.
    Compacted {
        watch_id: i64,
        compact_revision: i64,
    },
    /// The watcher has seen every matching event up to `revision`. `watch_id == -1` answers
    /// [`WatchStream::request_progress`] for the whole stream.
    Progress { watch_id: i64, revision: i64 },
}

/// Sizes and periods of the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Capacity of each stream's channel, in messages.
    pub stream_buffer: usize,
    /// Most recent revisions kept in memory for catch-up without reading the store.
    pub ring_revisions: usize,
    /// Cap on the events held by the ring (oldest revisions are dropped first).
    pub ring_events: usize,
    /// How often the syncer looks at unsynced watchers when there is nothing else to do.
    pub sync_interval: Duration,
    /// Unsynced watchers handled per syncer pass (etcd: 512).
    pub max_watchers_per_sync: usize,
    /// `limit` passed to [`EventSource::events`].
    pub source_batch_events: usize,
    /// Events per catch-up message (a revision is never split, so a message may exceed it).
    pub max_events_per_message: usize,
    /// Events a syncer pass may examine while holding the hub lock, so catch-up never stalls
    /// `publish` for long. The rest waits for the next pass, which follows at once.
    pub sync_budget_events: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            stream_buffer: 1024,
            ring_revisions: 8192,
            ring_events: 65_536,
            sync_interval: Duration::from_millis(100),
            max_watchers_per_sync: 512,
            source_batch_events: 1000,
            max_events_per_message: 1000,
            sync_budget_events: 16_384,
        }
    }
}

/// Why a watch could not be created. Messages are etcd's `mvcc` errors, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    IdInUse { watch_id: i64 },
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    /// The stream is being torn down.
    #[error("watch stream closed")]
    StreamClosed,
}

pub type WatchResult<T> = Result<T, WatchError>;
