//! One watcher: what it matches, how its events are shaped, and where it stands.

use crate::kv::{Event, EventKind};

use super::range::KeyRange;

/// Hub-wide identity of a watcher (never reused), distinct from the client's per-stream watch id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct WatcherKey(pub(super) u64);

/// Hub-wide identity of a stream (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct StreamId(pub(super) u64);

/// Where a watcher stands relative to the last published revision `L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SyncState {
    /// Has been sent every matching event up to `L`; `publish` feeds it.
    Synced,
    /// Has been sent every matching event before `next_rev` (`next_rev <= L`); the syncer feeds it.
    Unsynced { next_rev: i64 },
    /// Must be told that its history is compacted; removed once the message is queued.
    Compacted { compact_revision: i64 },
}

/// How a watcher's events are shaped: etcd's filters and `prev_kv`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Shaping {
    pub(super) prev_kv: bool,
    pub(super) filter_put: bool,
    pub(super) filter_delete: bool,
}

#[derive(Debug)]
pub(super) struct Watcher {
    pub(super) stream: StreamId,
    pub(super) watch_id: i64,
    pub(super) range: KeyRange,
    shaping: Shaping,
    pub(super) progress_notify: bool,
    /// Events below this revision are never delivered (a start revision in the future).
    pub(super) min_rev: i64,
    pub(super) state: SyncState,
    /// Events were queued since the last periodic progress tick (etcd sends progress only to
    /// watchers that were idle for a whole interval).
    pub(super) sent_since_progress: bool,
}

impl Watcher {
    pub(super) fn new(
        stream: StreamId,
        watch_id: i64,
        range: KeyRange,
        shaping: Shaping,
        progress_notify: bool,
        min_rev: i64,
        state: SyncState,
    ) -> Self {
        Self {
            stream,
            watch_id,
            range,
            shaping,
            progress_notify,
            min_rev,
            state,
            sent_since_progress: false,
        }
    }

    pub(super) fn is_synced(&self) -> bool {
        self.state == SyncState::Synced
    }

    /// The event as this watcher must receive it, or `None` if its range or filters exclude it.
    pub(super) fn select(&self, event: &Event) -> Option<Event> {
        if !self.range.contains(&event.kv.key) {
            return None;
        }
        self.shape(event)
    }

    /// Applies the filters and strips `prev_kv` unless asked for; the key is known to match.
    /// Payloads are `Bytes`, so the copy only bumps reference counts.
    pub(super) fn shape(&self, event: &Event) -> Option<Event> {
        let filtered = match event.kind {
            EventKind::Put => self.shaping.filter_put,
            EventKind::Delete => self.shaping.filter_delete,
        };
        if filtered || event.revision() < self.min_rev {
            return None;
        }
        Some(Event {
            kind: event.kind,
            kv: event.kv.clone(),
            prev_kv: if self.shaping.prev_kv {
                event.prev_kv.clone()
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::kv::KeyValue;

    fn event(kind: EventKind, key: &'static [u8], rev: i64) -> Event {
        let kv = KeyValue {
            key: Bytes::from_static(key),
            mod_revision: rev,
            ..KeyValue::default()
        };
        Event {
            kind,
            kv: kv.clone(),
            prev_kv: Some(kv),
        }
    }

    fn watcher(shaping: Shaping) -> Watcher {
        let range = KeyRange::Exact(Bytes::from_static(b"k"));
        Watcher::new(StreamId(0), 0, range, shaping, false, 0, SyncState::Synced)
    }

    #[test]
    fn filters_drop_kinds_and_strip_prev_kv() {
        let w = watcher(Shaping {
            filter_delete: true,
            ..Shaping::default()
        });
        let put = w
            .select(&event(EventKind::Put, b"k", 2))
            .expect("put passes");
        assert_eq!(put.prev_kv, None);
        assert_eq!(w.select(&event(EventKind::Delete, b"k", 3)), None);
        assert_eq!(w.select(&event(EventKind::Put, b"other", 3)), None);

        let w = watcher(Shaping {
            prev_kv: true,
            filter_put: true,
            ..Shaping::default()
        });
        assert_eq!(w.select(&event(EventKind::Put, b"k", 2)), None);
        let del = w
            .select(&event(EventKind::Delete, b"k", 3))
            .expect("delete passes");
        assert!(del.prev_kv.is_some());
    }

    #[test]
    fn events_below_min_rev_are_dropped() {
        let mut w = watcher(Shaping::default());
        w.min_rev = 5;
        assert_eq!(w.select(&event(EventKind::Put, b"k", 4)), None);
        assert!(w.select(&event(EventKind::Put, b"k", 5)).is_some());
    }
}
