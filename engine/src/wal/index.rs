//! The in-memory index shared by the writer thread and readers: raft index → (segment, offset,
//! len) for every synced record, plus the appended records the writer has not synced yet.
//!
//! Readers see the log as submitted: the indexes `[tail.first, tail.last]`, each read from
//! `pending` if it is at or above the first pending index, from `segments` otherwise. So an
//! append is readable as soon as it is accepted (as the raft log store contract requires), and
//! a queued truncation or purge hides its records at once. A pending record at index `i`
//! supersedes every synced record at `i` or above: it was submitted after a truncation that
//! has not run yet.
//!
//! ```text
//!   segments:  [ 1 2 3 ][ 4 5 6 7 ]          (synced; 6, 7 to be truncated)
//!   pending:                  [ 6' 7' 8' ]     (submitted after truncate_after(5))
//!   tail:       first = 1, last = 8
//!   reads:      1 2 3   4 5   6' 7' 8'
//! ```

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::error::{WalError, WalResult};
use super::segment::Segment;

/// An appended record not yet synced, tagged with the ticket of its append so the writer only
/// removes its own records (a later append after a truncation may reuse the index).
pub struct Pending {
    pub ticket: u64,
    pub payload: Bytes,
}

/// The log as the submitter sees it: every submitted append, truncation and purge applied.
/// Used to validate appends and to answer `first_index`/`last_index`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    pub first: Option<u64>,
    pub last: Option<u64>,
    pub purged: Option<u64>,
}

impl Tail {
    /// The index the next append must start at; `None` accepts any index (empty, never purged).
    pub fn expected_next(&self) -> Option<u64> {
        self.last.or(self.purged).map(|i| i + 1)
    }

    pub fn append(&mut self, first: u64, last: u64) {
        if self.last.is_none() {
            self.first = Some(first);
        }
        self.last = Some(last);
    }

    pub fn truncate_after(&mut self, index: Option<u64>) {
        match (index, self.last, self.first) {
            (Some(n), Some(last), Some(first)) if n < last => {
                if n < first {
                    *self = Tail {
                        purged: self.purged,
                        ..Tail::default()
                    };
                } else {
                    self.last = Some(n);
                }
            }
            (None, _, _) => {
                *self = Tail {
                    purged: self.purged,
                    ..Tail::default()
                };
            }
            _ => {}
        }
    }

    pub fn purge(&mut self, upto: u64) {
        self.purged = Some(self.purged.map_or(upto, |p| p.max(upto)));
        if self.last.is_some_and(|last| last <= upto) {
            self.first = None;
            self.last = None;
        } else if self.first.is_some_and(|first| first <= upto) {
            self.first = Some(upto + 1);
        }
    }
}

pub struct Shared {
    /// Segments in log order; the last one may be the writer's active segment.
    pub segments: Vec<Segment>,
    /// The purge point the writer has made durable.
    pub purged: Option<u64>,
    pub pending: BTreeMap<u64, Pending>,
    pub tail: Tail,
    /// Set when the writer failed; every later write reports it.
    pub failed: Option<WalError>,
    pub next_ticket: u64,
}

impl Shared {
    /// The last synced record's index.
    pub fn synced_last(&self) -> Option<u64> {
        self.segments.iter().rev().find_map(Segment::last_index)
    }

    /// The first readable synced record's index.
    pub fn synced_first(&self) -> Option<u64> {
        let last = self.synced_last()?;
        let first = self.segments.first()?.first_index;
        let first = self.purged.map_or(first, |p| first.max(p + 1));
        (first <= last).then_some(first)
    }

    fn read_synced(&self, index: u64) -> WalResult<Option<Bytes>> {
        let after = self.segments.partition_point(|s| s.first_index <= index);
        let Some(segment) = after.checked_sub(1).and_then(|k| self.segments.get(k)) else {
            return Ok(None);
        };
        match segment.record(index) {
            Some(pos) => segment.read(pos).map(Some),
            None => Ok(None),
        }
    }

    /// The records in `[start, end)` of the log as submitted (see [`Tail`]): truncations and
    /// purges take effect for readers when they are queued, appends when they are accepted.
    pub fn read(&self, start: u64, end: u64) -> WalResult<Vec<(u64, Bytes)>> {
        let (Some(first), Some(last)) = (self.tail.first, self.tail.last) else {
            return Ok(Vec::new());
        };
        let pending_first = self.pending.keys().next().copied();
        let (lo, hi) = (start.max(first), end.min(last.saturating_add(1)));
        let mut out = Vec::with_capacity(
            usize::try_from(hi.saturating_sub(lo))
                .unwrap_or(0)
                .min(1024),
        );
        for index in lo..hi {
            let payload = match pending_first {
                Some(p) if index >= p => self.pending.get(&index).map(|p| p.payload.clone()),
                _ => self.read_synced(index)?,
            };
            let payload = payload.ok_or(WalError::MissingRecord { index })?;
            out.push((index, payload));
        }
        Ok(out)
    }
}

/// Locks the index for reading. A panic while the lock was held cannot leave the index half
/// updated in a way readers could misuse (every update is a push, pop or truncate of whole
/// records), so a poisoned lock is used as is.
pub fn read_lock(shared: &RwLock<Shared>) -> RwLockReadGuard<'_, Shared> {
    shared.read().unwrap_or_else(PoisonError::into_inner)
}

/// Locks the index for writing; see [`read_lock`] on poisoning.
pub fn write_lock(shared: &RwLock<Shared>) -> RwLockWriteGuard<'_, Shared> {
    shared.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_tracks_submitted_operations() {
        let mut t = Tail::default();
        assert_eq!(t.expected_next(), None);
        t.append(5, 9);
        assert_eq!(
            (t.first, t.last, t.expected_next()),
            (Some(5), Some(9), Some(10))
        );
        t.truncate_after(Some(7));
        assert_eq!((t.first, t.last), (Some(5), Some(7)));
        t.truncate_after(Some(20));
        assert_eq!(t.last, Some(7));
        t.purge(5);
        assert_eq!((t.first, t.last, t.purged), (Some(6), Some(7), Some(5)));
        t.purge(20);
        assert_eq!((t.first, t.last, t.expected_next()), (None, None, Some(21)));
        t.append(21, 21);
        t.truncate_after(None);
        assert_eq!((t.first, t.last, t.expected_next()), (None, None, Some(21)));
    }
}
