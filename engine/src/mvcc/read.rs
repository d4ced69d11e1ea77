//! Range reads at the current or a historical revision, with etcd's filtering, sorting, limit,
//! count and `more` rules.
//!
//! The same code serves plain reads (over a redb read transaction) and ranges inside a write
//! transaction (over the tables being written, so a txn's ranges see its earlier writes).
//!
//! ```text
//! revision == view revision ─► current table: one forward scan of [key, range_end)
//! older revision           ─► history table: per key, one forward seek to find the key and
//!                              one reverse seek for its latest version <= revision
//! ```

use std::cmp::Ordering;
use std::ops::Bound;

use redb::ReadableTable;

use super::codec::{self, CurrentRecord, HistoryRecord};
use super::error::{MvccError, MvccResult, OpResult};
use crate::error::KvError;
use crate::kv::KeyValue;
use crate::request::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::revision::RevisionId;

/// The key set a request names, following etcd's `range_end` rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySpan<'a> {
    /// `range_end` empty: exactly `key`.
    Single(&'a [u8]),
    /// `[start, end)`, `end = None` meaning unbounded (`range_end = "\0"`).
    Range {
        start: &'a [u8],
        end: Option<&'a [u8]>,
    },
    /// `range_end <= key`: nothing.
    Empty,
}

impl<'a> KeySpan<'a> {
    pub(crate) fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::Range {
                start: key,
                end: None,
            },
            end if end <= key => KeySpan::Empty,
            end => KeySpan::Range {
                start: key,
                end: Some(end),
            },
        }
    }

    /// Whether `key` is inside the span.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeySpan::Single(single) => single == key,
            KeySpan::Range { start, end } => key >= start && end.is_none_or(|end| key < end),
            KeySpan::Empty => false,
        }
    }
}

/// The revisions a read is judged against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Revisions {
    /// The revision of the state the tables hold (inside a write transaction: including the
    /// command's own changes).
    pub current: i64,
    pub compact: i64,
}

impl Revisions {
    /// The revision a request reads at: `requested <= 0` is the current one. etcd refuses
    /// revisions strictly below the compact revision; the compact revision itself stays
    /// readable, since compaction keeps every key's latest version at or below it.
    pub(crate) fn resolve(self, requested: i64) -> Result<i64, KvError> {
        if requested <= 0 {
            Ok(self.current)
        } else if requested > self.current {
            Err(KvError::FutureRevision)
        } else if requested < self.compact {
            Err(KvError::Compacted {
                compact_revision: self.compact,
            })
        } else {
            Ok(requested)
        }
    }
}

/// One live key at the read revision, borrowed from the table row.
pub(crate) struct KvRef<'a> {
    pub key: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

impl KvRef<'_> {
    pub(crate) fn to_key_value(&self, with_value: bool) -> KeyValue {
        KeyValue {
            key: self.key.to_vec().into(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: if with_value {
                self.value.to_vec().into()
            } else {
                bytes::Bytes::new()
            },
            lease: self.lease,
        }
    }
}

/// Tables a read needs: the current values and the history.
pub(crate) struct ReadSource<'a, T> {
    pub current: &'a T,
    pub history: &'a T,
}

impl<T> ReadSource<'_, T>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    /// Calls `visit` for every key of `span` alive at `revision`, in key order. `revision` must
    /// have been resolved against `revisions`.
    pub(crate) fn visit(
        &self,
        span: KeySpan<'_>,
        revision: i64,
        revisions: Revisions,
        visit: impl FnMut(KvRef<'_>),
    ) -> MvccResult<()> {
        if revision >= revisions.current {
            self.visit_current(span, visit)
        } else {
            self.visit_history(span, revision, visit)
        }
    }

    fn visit_current(&self, span: KeySpan<'_>, mut visit: impl FnMut(KvRef<'_>)) -> MvccResult<()> {
        let corrupt = || MvccError::corrupt("current", "undecodable value");
        match span {
            KeySpan::Empty => {}
            KeySpan::Single(key) => {
                if let Some(row) = self.current.get(key)? {
                    let record = codec::decode_current(row.value()).ok_or_else(corrupt)?;
                    visit(current_ref(key, &record));
                }
            }
            KeySpan::Range { start, end } => {
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                for row in self
                    .current
                    .range::<&[u8]>((Bound::Included(start), upper))?
                {
                    let (key, value) = row?;
                    let record = codec::decode_current(value.value()).ok_or_else(corrupt)?;
                    visit(current_ref(key.value(), &record));
                }
            }
        }
        Ok(())
    }

    fn visit_history(
        &self,
        span: KeySpan<'_>,
        revision: i64,
        mut visit: impl FnMut(KvRef<'_>),
    ) -> MvccResult<()> {
        let (mut lower, upper) = match span {
            KeySpan::Empty => return Ok(()),
            KeySpan::Single(key) => {
                let prefix = codec::history_prefix(key);
                let end = codec::history_prefix_end(&prefix);
                (Bound::Included(prefix), Bound::Included(end))
            }
            KeySpan::Range { start, end } => (
                Bound::Included(codec::history_prefix(start)),
                end.map_or(Bound::Unbounded, |end| {
                    Bound::Excluded(codec::history_prefix(end))
                }),
            ),
        };
        loop {
            let first = {
                let bounds = (as_slice_bound(&lower), as_slice_bound(&upper));
                match self.history.range::<&[u8]>(bounds)?.next() {
                    Some(row) => row?.0.value().to_vec(),
                    None => return Ok(()),
                }
            };
            let (prefix, _) = codec::split_history_key(&first)
                .ok_or_else(|| MvccError::corrupt("history", "undecodable key"))?;
            self.visit_version_at(prefix, revision, &mut visit)?;
            lower = Bound::Excluded(codec::history_prefix_end(prefix));
        }
    }

    /// Visits the version of the key with history prefix `prefix` alive at `revision`, if any
    /// (its latest version at or below `revision`, unless that is a tombstone).
    fn visit_version_at(
        &self,
        prefix: &[u8],
        revision: i64,
        visit: &mut impl FnMut(KvRef<'_>),
    ) -> MvccResult<()> {
        let end = codec::history_key_from_prefix(
            prefix,
            RevisionId {
                main: revision,
                sub: i64::MAX,
            },
        );
        let mut rows = self.history.range::<&[u8]>(prefix..=end.as_slice())?;
        let Some(row) = rows.next_back() else {
            return Ok(());
        };
        let (row_key, value) = row?;
        let (_, at) = codec::split_history_key(row_key.value())
            .ok_or_else(|| MvccError::corrupt("history", "undecodable key"))?;
        let record = codec::decode_history(value.value())
            .ok_or_else(|| MvccError::corrupt("history", "undecodable value"))?;
        if record.tombstone {
            return Ok(());
        }
        let user_key = codec::unescape_prefix(prefix)
            .ok_or_else(|| MvccError::corrupt("history", "badly escaped key"))?;
        visit(KvRef {
            key: &user_key,
            create_revision: record.create_revision,
            mod_revision: at.main,
            version: record.version,
            lease: record.lease,
            value: record.value,
        });
        Ok(())
    }

    /// The live version of `key` at the view's current state.
    pub(crate) fn get(&self, key: &[u8]) -> MvccResult<Option<KeyValue>> {
        let Some(row) = self.current.get(key)? else {
            return Ok(None);
        };
        let record = codec::decode_current(row.value())
            .ok_or_else(|| MvccError::corrupt("current", "undecodable value"))?;
        Ok(Some(record.to_key_value(key, true)))
    }

    /// The version of `key` just before the change at `at`, if the key existed then.
    pub(crate) fn version_before(
        &self,
        key: &[u8],
        at: RevisionId,
    ) -> MvccResult<Option<KeyValue>> {
        let prefix = codec::history_prefix(key);
        let end = codec::history_key_from_prefix(&prefix, at);
        let mut rows = self
            .history
            .range::<&[u8]>(prefix.as_slice()..end.as_slice())?;
        let Some(row) = rows.next_back() else {
            return Ok(None);
        };
        let (row_key, value) = row?;
        history_kv(key, row_key.value(), value.value()).map(|kv| kv.filter(|kv| kv.version != 0))
    }

    /// The stored version of `key` written by the change at `at`, tombstones included.
    pub(crate) fn version_exact(&self, key: &[u8], at: RevisionId) -> MvccResult<Option<KeyValue>> {
        let row_key = codec::history_key(key, at);
        let Some(value) = self.history.get(row_key.as_slice())? else {
            return Ok(None);
        };
        history_kv(key, &row_key, value.value())
    }

    /// Executes an etcd range request against this view.
    pub(crate) fn range(
        &self,
        req: &RangeRequest,
        revisions: Revisions,
    ) -> OpResult<RangeResponse> {
        let revision = revisions.resolve(req.revision)?;
        let span = KeySpan::new(&req.key, &req.range_end);
        let plan = RangePlan::new(req);
        let mut count = 0i64;
        let mut kvs = Vec::new();
        self.visit(span, revision, revisions, |kv| {
            count += 1;
            if plan.wants(req, &kv, kvs.len()) {
                kvs.push(kv.to_key_value(plan.keep_values));
            }
        })?;
        Ok(plan.finish(req, kvs, count))
    }
}

/// Decodes one history row of `key` as a key-value (a tombstone keeps key and mod revision).
fn history_kv(key: &[u8], row_key: &[u8], value: &[u8]) -> MvccResult<Option<KeyValue>> {
    let (_, at) = codec::split_history_key(row_key)
        .ok_or_else(|| MvccError::corrupt("history", "undecodable key"))?;
    let record: HistoryRecord<'_> = codec::decode_history(value)
        .ok_or_else(|| MvccError::corrupt("history", "undecodable value"))?;
    Ok(Some(record.to_key_value(key, at.main, true)))
}

fn current_ref<'a>(key: &'a [u8], record: &CurrentRecord<'a>) -> KvRef<'a> {
    KvRef {
        key,
        create_revision: record.create_revision,
        mod_revision: record.mod_revision,
        version: record.version,
        lease: record.lease,
        value: record.value,
    }
}

fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(bytes) => Bound::Included(bytes.as_slice()),
        Bound::Excluded(bytes) => Bound::Excluded(bytes.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// How a range request turns the visited keys into a response (etcd's `executeRange`).
///
/// - `count` is the number of keys in the range at the revision. As in etcd, the mod/create
///   revision filters prune the returned keys but not `count`.
/// - Without sorting or filters only `limit + 1` keys are materialized (the extra one sets
///   `more`); otherwise every key is kept, filtered, sorted, then cut to `limit`.
/// - Sort order `None` with a target other than `Key` means ascending; ties keep key order.
struct RangePlan {
    order: SortOrder,
    keep_values: bool,
    materialize_limit: Option<usize>,
}

impl RangePlan {
    fn new(req: &RangeRequest) -> Self {
        let order = match (req.sort_target, req.sort_order) {
            (SortTarget::Key, SortOrder::Ascend) => SortOrder::None,
            (SortTarget::Key, order) => order,
            (_, SortOrder::None) => SortOrder::Ascend,
            (_, order) => order,
        };
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let materialize_limit =
            (req.limit > 0 && order == SortOrder::None && !filtered).then(|| {
                usize::try_from(req.limit)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1)
            });
        Self {
            order,
            keep_values: !req.keys_only || req.sort_target == SortTarget::Value,
            materialize_limit,
        }
    }

    fn wants(&self, req: &RangeRequest, kv: &KvRef<'_>, have: usize) -> bool {
        if req.count_only || self.materialize_limit.is_some_and(|limit| have >= limit) {
            return false;
        }
        !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
            || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
            || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
            || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
    }

    fn finish(&self, req: &RangeRequest, mut kvs: Vec<KeyValue>, count: i64) -> RangeResponse {
        if self.order != SortOrder::None {
            let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
                match req.sort_target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                }
            };
            if self.order == SortOrder::Descend {
                kvs.sort_by(|a, b| by(b, a));
            } else {
                kvs.sort_by(by);
            }
        }
        let mut more = false;
        if let Ok(limit) = usize::try_from(req.limit)
            && limit > 0
            && kvs.len() > limit
        {
            kvs.truncate(limit);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = bytes::Bytes::new();
            }
        }
        RangeResponse { kvs, more, count }
    }
}
