//! The in-memory ring of recent revisions, so most catch-up never reads the store.
//!
//! The ring holds a contiguous run of revisions `(floor, last]`. Example with room for three:
//!
//! ```text
//!  floor = 4  entries = [5, 6, 7]      covers 5..=7
//!  push 8  →  floor = 5  entries = [6, 7, 8]
//!  push 10 →  (gap: 9 never published here) floor = 9  entries = [10]
//! ```
//!
//! A watcher whose `next_rev > floor` can be caught up from memory; older ones read the store.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::kv::Event;

#[derive(Debug)]
pub(super) struct EventRing {
    /// `entries[i]` holds the events of revision `floor + 1 + i`.
    entries: VecDeque<Arc<[Event]>>,
    floor: i64,
    events: usize,
    max_revisions: usize,
    max_events: usize,
}

impl EventRing {
    /// An empty ring whose next revision is `last_revision + 1`.
    pub(super) fn new(last_revision: i64, max_revisions: usize, max_events: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            floor: last_revision,
            events: 0,
            max_revisions,
            max_events,
        }
    }

    /// Every revision in `(floor, last]` is held.
    pub(super) fn floor(&self) -> i64 {
        self.floor
    }

    pub(super) fn last(&self) -> i64 {
        self.floor + self.entries.len() as i64
    }

    pub(super) fn covers(&self, revision: i64) -> bool {
        revision > self.floor && revision <= self.last()
    }

    pub(super) fn get(&self, revision: i64) -> Option<&Arc<[Event]>> {
        if !self.covers(revision) {
            return None;
        }
        self.entries.get((revision - self.floor - 1) as usize)
    }

    /// Drops every entry; the next revision is `last_revision + 1` (the store was replaced, so
    /// the entries may describe another history).
    pub(super) fn reset(&mut self, last_revision: i64) {
        self.entries.clear();
        self.events = 0;
        self.floor = last_revision;
    }

    /// Appends `revision`; a revision that does not follow `last` restarts the ring at it.
    pub(super) fn push(&mut self, revision: i64, events: Arc<[Event]>) {
        if revision != self.last() + 1 {
            self.entries.clear();
            self.events = 0;
            self.floor = revision - 1;
        }
        self.events += events.len();
        self.entries.push_back(events);
        while self.entries.len() > self.max_revisions || self.events > self.max_events {
            let Some(oldest) = self.entries.pop_front() else {
                break;
            };
            self.events -= oldest.len();
            self.floor += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{EventKind, KeyValue};

    fn events(rev: i64, n: usize) -> Arc<[Event]> {
        (0..n)
            .map(|_| Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    mod_revision: rev,
                    ..KeyValue::default()
                },
                prev_kv: None,
            })
            .collect()
    }

    #[test]
    fn keeps_the_most_recent_revisions() {
        let mut ring = EventRing::new(4, 3, 100);
        assert!(!ring.covers(4));
        assert!(!ring.covers(5));
        for rev in 5..=8 {
            ring.push(rev, events(rev, 1));
        }
        assert_eq!((ring.floor(), ring.last()), (5, 8));
        assert!(!ring.covers(5));
        assert_eq!(ring.get(6).map(|e| e[0].revision()), Some(6));
        assert_eq!(ring.get(8).map(|e| e[0].revision()), Some(8));
        assert!(ring.get(9).is_none());
    }

    #[test]
    fn restarts_after_a_gap_and_caps_events() {
        let mut ring = EventRing::new(0, 10, 4);
        ring.push(1, events(1, 2));
        ring.push(3, events(3, 2));
        assert_eq!((ring.floor(), ring.last()), (2, 3));
        ring.push(4, events(4, 3));
        assert_eq!((ring.floor(), ring.last()), (3, 4));
        ring.push(5, events(5, 9));
        assert_eq!((ring.floor(), ring.last()), (5, 5));
        assert!(!ring.covers(5));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut ring = EventRing::new(0, 10, 100);
        for rev in 1..=3 {
            ring.push(rev, events(rev, 1));
        }
        ring.reset(50);
        assert_eq!((ring.floor(), ring.last()), (50, 50));
        assert!(ring.get(3).is_none());
        ring.push(51, events(51, 2));
        assert_eq!((ring.floor(), ring.last()), (50, 51));
        assert_eq!(ring.get(51).map(|e| e.len()), Some(2));
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let mut ring = EventRing::new(0, 0, 100);
        ring.push(1, events(1, 1));
        assert_eq!((ring.floor(), ring.last()), (1, 1));
        assert!(ring.get(1).is_none());
    }
}
