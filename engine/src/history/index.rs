//! The history database's own tables beside jj's objects: what makes queries by revision, key
//! and time cheap without walking commits.
//!
//! ```text
//! table       key                               value
//! ─────────── ───────────────────────────────── ───────────────────────────────────────────
//! revisions   rev i64                           postcard RevisionRecord (commit, tree, time,
//!   (rows)                                      raft log id, origin, number of changes), then
//!                                               postcard [InlineChange] if the changes are here;
//!                                               in `revision_blocks` since format 7
//!                                               (`revision_blocks.rs`), one row each before
//! changed     rev i64 | seq u32                 kind u8 (1 put, 0 delete) | key bytes
//! key_log     span u64 | esc(key) | rev i64      kind u8 (format ≤ 4: then the file id)
//! operations  seq u64                           postcard OperationRecord (op id, revisions)
//! meta        name (ASCII)                      see `Head`; key_log_through rev i64
//! ```
//!
//! Integers are big-endian with the sign bit flipped, so byte order is numeric order.
//! `esc(key)` doubles 0x00 bytes (00 → 00 FF) and ends with 00 01, so within a span one key's
//! rows are contiguous, in revision order, and a key prefix is a byte prefix of every longer key.
//!
//! A revision's changes (kind and key, in the order applied) follow its record in its
//! `revisions` row when there are at most [`INLINE_CHANGES`] of them, which is nearly always:
//! one row per revision instead of one more per change. A larger revision (a big transaction,
//! an imported state) has a `changed` row per change instead, as every revision had before
//! format 5; a row without changes after the record means exactly that.
//!
//! `key_log` is split into *spans* of [`KEY_LOG_SPAN`] revisions (`span` = revision / span
//! length, big-endian). Recording inserts only into the newest span, which stays small whatever
//! the number of keys: a key's row no longer lands on a random page of one table as large as
//! the whole history (at 1M keys, recording took 1.3× as long). A query for one key seeks
//! once per span it covers, newest first, and stops at its limit. Values at a revision and
//! blame come from the trees (a file id's locator is the key's mod revision), not from here.
//!
//! `key_log` rows are written in batches (`writer.rs`), sorted, once the revisions past
//! `key_log_through` reach [`KEY_LOG_BATCH`] revisions or [`KEY_LOG_BATCH_CHANGES`] changes:
//! inserting them one transaction at a time, at random places in the newest span, cost the
//! history thread more than anything else in the index. A query for one key reads the changes
//! of the revisions past `key_log_through` (at most a batch) from their rows. Without the
//! `key_log_through` row (format ≤ 4) every revision has its `key_log` rows.

use jj_lib::backend::{CommitId, TreeId};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::error::{HistoryError, HistoryResult};
use super::model::{ChangeKind, Origin};

pub(crate) type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const REVISIONS: BytesTable = TableDefinition::new("revisions");
pub(crate) const CHANGED: BytesTable = TableDefinition::new("changed");
pub(crate) const KEY_LOG: BytesTable = TableDefinition::new("key_log_spans");
/// `key_log` of format 2: `esc(key) | rev`, one span (migrated at open, see `db.rs`).
pub(crate) const KEY_LOG_FORMAT2: BytesTable = TableDefinition::new("key_log");
pub(crate) const OPERATIONS: BytesTable = TableDefinition::new("operations");
pub(crate) const META: BytesTable = TableDefinition::new("meta");

pub(crate) const META_HEAD: &[u8] = b"head";
/// The newest revision whose `key_log` rows are written (absent: every revision's are).
pub(crate) const META_KEY_LOG_THROUGH: &[u8] = b"key_log_through";
/// The layout of ids and keys (`backend.rs`); a database without it predates located ids.
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const FORMAT: &[u8] = b"7";
/// Formats read as they are: 3, before packs (`pack.rs`; readers fall back to `objects`, which
/// holds everything it wrote), 4, before changes inline and `key_log` in batches (it has
/// `changed` rows for every revision and `key_log` rows through its head), 5, before groups of
/// packs (readers fall back to its `packs` rows), and 6, before revision blocks (readers fall
/// back to its `revisions` rows).
pub(crate) const FORMATS_READ_AS_IS: [&[u8]; 4] = [b"3", b"4", b"5", b"6"];
/// The format before `key_log` had spans: migrated in place at open.
pub(crate) const FORMAT_UNSPANNED: &[u8] = b"2";

/// Revisions per `key_log` span.
#[cfg(not(test))]
pub const KEY_LOG_SPAN: i64 = 1 << 12;
/// Tests cross spans every few revisions.
#[cfg(test)]
pub const KEY_LOG_SPAN: i64 = 4;

/// Revisions whose `key_log` rows are written together, at most.
#[cfg(not(test))]
pub(crate) const KEY_LOG_BATCH: i64 = 1 << 10;
/// Tests write batches every few revisions, across spans.
#[cfg(test)]
pub(crate) const KEY_LOG_BATCH: i64 = 3;
/// Changes whose `key_log` rows are written together, at most (bounds what a query for one key
/// reads from the revisions past `key_log_through`).
#[cfg(not(test))]
pub(crate) const KEY_LOG_BATCH_CHANGES: usize = 16 << 10;
#[cfg(test)]
pub(crate) const KEY_LOG_BATCH_CHANGES: usize = 5;

/// A revision with at most this many changes keeps them in its `revisions` row.
#[cfg(not(test))]
pub(crate) const INLINE_CHANGES: usize = 32;
/// Tests have both kinds of revisions.
#[cfg(test)]
pub(crate) const INLINE_CHANGES: usize = 2;

// Ids are (de)serialized as byte strings (`serde_bytes`): postcard writes a byte string and a
// sequence of `u8` alike (a length, then the bytes), but the former in one copy instead of a
// call per byte.

/// One recorded revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RevisionRecord {
    #[serde(with = "serde_bytes")]
    pub commit_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub parent_commit_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub tree_id: Vec<u8>,
    pub time_unix_ms: u64,
    pub log_term: u64,
    pub log_index: u64,
    pub origin: Origin,
    pub changes_total: u64,
}

/// A [`RevisionRecord`] that borrows what it holds: what the writer encodes (the same bytes),
/// without copying ids it already has.
#[derive(Debug, Serialize)]
pub(crate) struct RevisionRecordRef<'a> {
    #[serde(with = "serde_bytes")]
    pub commit_id: &'a [u8],
    #[serde(with = "serde_bytes")]
    pub parent_commit_id: &'a [u8],
    #[serde(with = "serde_bytes")]
    pub tree_id: &'a [u8],
    pub time_unix_ms: u64,
    pub log_term: u64,
    pub log_index: u64,
    pub origin: &'a Origin,
    pub changes_total: u64,
}

impl RevisionRecord {
    #[cfg(test)]
    pub(crate) fn as_ref(&self) -> RevisionRecordRef<'_> {
        RevisionRecordRef {
            commit_id: &self.commit_id,
            parent_commit_id: &self.parent_commit_id,
            tree_id: &self.tree_id,
            time_unix_ms: self.time_unix_ms,
            log_term: self.log_term,
            log_index: self.log_index,
            origin: &self.origin,
            changes_total: self.changes_total,
        }
    }
}

/// One change of a revision, after its record in its `revisions` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InlineChange<K> {
    /// [`encode_kind`].
    pub kind: u8,
    pub key: K,
}

/// A `revisions` row: the record, then the changes when they are inline (`None`: they are
/// `changed` rows).
#[cfg(test)]
pub(crate) fn encode_revision_row(
    record: &RevisionRecordRef<'_>,
    changes: Option<&[InlineChange<&serde_bytes::Bytes>]>,
) -> postcard::Result<Vec<u8>> {
    // Ids, times and a short origin, then a few keys: allocated once.
    encode_revision_row_onto(record, changes, Vec::with_capacity(256))
}

/// [`encode_revision_row`] appended to `out` (the writer's rows of a round share one buffer).
pub(crate) fn encode_revision_row_onto(
    record: &RevisionRecordRef<'_>,
    changes: Option<&[InlineChange<&serde_bytes::Bytes>]>,
    out: Vec<u8>,
) -> postcard::Result<Vec<u8>> {
    let mut out = postcard::to_extend(record, out)?;
    if let Some(changes) = changes {
        out = postcard::to_extend(changes, out)?;
    }
    Ok(out)
}

/// A revision's changes decoded from its `revisions` row (`None`: they are `changed` rows).
pub(crate) type InlineChanges = Option<Vec<InlineChange<serde_bytes::ByteBuf>>>;

/// Decodes a `revisions` row (see [`encode_revision_row`]).
pub(crate) fn decode_revision_row(row: &[u8]) -> postcard::Result<(RevisionRecord, InlineChanges)> {
    let (record, rest) = postcard::take_from_bytes(row)?;
    let changes = if rest.is_empty() {
        None
    } else {
        Some(postcard::from_bytes(rest)?)
    };
    Ok((record, changes))
}

/// Calls `visit` with the kind and key of each change of `revision`, in the order applied,
/// while it returns true: from `inline`, or from the `changed` rows when the changes are not
/// inline. Returns whether `visit` asked to stop.
pub(crate) fn visit_changes(
    changed: &impl ReadableTable<&'static [u8], &'static [u8]>,
    revision: i64,
    inline: InlineChanges,
    mut visit: impl FnMut(u8, &[u8]) -> bool,
) -> HistoryResult<bool> {
    if let Some(changes) = inline {
        return Ok(changes
            .iter()
            .any(|change| !visit(change.kind, &change.key)));
    }
    let start = changed_key(revision, 0);
    let end = changed_key(revision, u32::MAX);
    for row in changed.range::<&[u8]>(start.as_slice()..=end.as_slice())? {
        let (_, value) = row?;
        let (&kind, key) = value
            .value()
            .split_first()
            .ok_or_else(|| HistoryError::Corrupt("undecodable changed row".to_owned()))?;
        if !visit(kind, key) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One recorded operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    #[serde(with = "serde_bytes")]
    pub operation_id: Vec<u8>,
    pub first_revision: i64,
    pub last_revision: i64,
}

/// Where history stands (the `head` row of `meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// Newest revision recorded (0 = none yet).
    pub revision: i64,
    #[serde(with = "serde_bytes")]
    pub commit_id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub tree_id: Vec<u8>,
    pub time_unix_ms: u64,
    #[serde(with = "serde_bytes")]
    pub operation_id: Vec<u8>,
    /// Sequence number of the newest operation.
    pub operation_seq: u64,
    /// Oldest revision still kept (retention trims below it).
    pub oldest_revision: i64,
}

impl Head {
    /// The head commit's id; `root` (jj's root commit) before any revision.
    pub(crate) fn commit(&self, root: &CommitId) -> CommitId {
        if self.commit_id.is_empty() {
            root.clone()
        } else {
            CommitId::new(self.commit_id.clone())
        }
    }

    /// The head commit's tree; `empty` before any revision.
    pub(crate) fn tree(&self, empty: &TreeId) -> TreeId {
        if self.tree_id.is_empty() {
            empty.clone()
        } else {
            TreeId::new(self.tree_id.clone())
        }
    }
}

pub(crate) fn encode_i64(value: i64) -> [u8; 8] {
    (value as u64 ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn decode_i64(bytes: &[u8]) -> Option<i64> {
    let array: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(array) ^ (1 << 63)) as i64)
}

/// `changed` row key.
pub(crate) fn changed_key(revision: i64, seq: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&encode_i64(revision));
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Escapes a key (or, without the terminator, a key prefix) for `key_log`.
#[cfg(test)]
pub(crate) fn escape_key(key: &[u8], terminate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    escape_key_into(&mut out, key, terminate);
    out
}

/// [`escape_key`], appended to `out`.
fn escape_key_into(out: &mut Vec<u8>, key: &[u8], terminate: bool) {
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    if terminate {
        out.extend_from_slice(&[0, 1]);
    }
}

/// The `key_log` span of `revision` (revisions are positive; anything else is in span 0).
pub(crate) fn key_log_span(revision: i64) -> u64 {
    u64::try_from(revision / KEY_LOG_SPAN).unwrap_or(0)
}

/// `key_log` row key.
pub(crate) fn key_log_key(key: &[u8], revision: i64) -> Vec<u8> {
    key_log_key_in(key_log_span(revision), key, revision)
}

/// A `key_log` key in `span` (bounds of a range within one span).
pub(crate) fn key_log_key_in(span: u64, key: &[u8], revision: i64) -> Vec<u8> {
    // Span, key (a zero byte grows by one), terminator, revision: allocated once.
    let mut out = Vec::with_capacity(8 + key.len() + 2 + 8 + 4);
    out.extend_from_slice(&span.to_be_bytes());
    escape_key_into(&mut out, key, true);
    out.extend_from_slice(&encode_i64(revision));
    out
}

/// Splits a `key_log` row key into the key and the revision.
pub(crate) fn split_key_log_key(bytes: &[u8]) -> Option<(Vec<u8>, i64)> {
    split_unspanned_key_log_key(bytes.get(8..)?)
}

/// Splits a format-2 `key_log` row key (no span) into the key and the revision.
pub(crate) fn split_unspanned_key_log_key(bytes: &[u8]) -> Option<(Vec<u8>, i64)> {
    let (escaped, revision) = bytes.split_at(bytes.len().checked_sub(8)?);
    let revision = decode_i64(revision)?;
    let escaped = escaped.strip_suffix(&[0, 1])?;
    let mut key = Vec::with_capacity(escaped.len());
    let mut index = 0;
    while index < escaped.len() {
        let byte = escaped[index];
        key.push(byte);
        if byte == 0 {
            if escaped.get(index + 1) != Some(&0xff) {
                return None;
            }
            index += 1;
        }
        index += 1;
    }
    Some((key, revision))
}

pub(crate) fn encode_kind(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Put => 1,
        ChangeKind::Delete => 0,
    }
}

pub(crate) fn decode_kind(byte: u8) -> ChangeKind {
    if byte == 1 {
        ChangeKind::Put
    } else {
        ChangeKind::Delete
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn key_log_keys_round_trip(key in proptest::collection::vec(any::<u8>(), 0..16), rev in any::<i64>()) {
            let encoded = key_log_key(&key, rev);
            prop_assert_eq!(split_key_log_key(&encoded), Some((key.clone(), rev)));
            let span = key_log_span(rev);
            prop_assert!(encoded[8..].starts_with(&escape_key(&key, false)));
            prop_assert_eq!(encoded, key_log_key_in(span, &key, rev));
        }

        #[test]
        fn spans_sort_newer_after_older(a in proptest::collection::vec(any::<u8>(), 0..6),
                                        b in proptest::collection::vec(any::<u8>(), 0..6),
                                        r1 in 1i64..1 << 20, r2 in 1i64..1 << 20) {
            prop_assume!(key_log_span(r1) < key_log_span(r2));
            prop_assert!(key_log_key(&a, r1) < key_log_key(&b, r2));
        }

        #[test]
        fn records_read_what_byte_sequences_wrote(
            commit in proptest::collection::vec(any::<u8>(), 0..40),
            tree in proptest::collection::vec(any::<u8>(), 0..40),
            time in any::<u64>(),
        ) {
            // The layout of rows written before ids were byte strings: sequences of `u8`.
            #[derive(Serialize)]
            struct Before<'a> {
                commit_id: &'a Vec<u8>,
                parent_commit_id: &'a Vec<u8>,
                tree_id: &'a Vec<u8>,
                time_unix_ms: u64,
                log_term: u64,
                log_index: u64,
                origin: Origin,
                changes_total: u64,
            }
            let origin = Origin { user: "u".to_owned(), agent: "a".to_owned() };
            let before = postcard::to_allocvec(&Before {
                commit_id: &commit,
                parent_commit_id: &tree,
                tree_id: &tree,
                time_unix_ms: time,
                log_term: 3,
                log_index: 9,
                origin: origin.clone(),
                changes_total: 1,
            }).expect("encode");
            let record = RevisionRecord {
                commit_id: commit.clone(),
                parent_commit_id: tree.clone(),
                tree_id: tree.clone(),
                time_unix_ms: time,
                log_term: 3,
                log_index: 9,
                origin,
                changes_total: 1,
            };
            prop_assert_eq!(postcard::from_bytes::<RevisionRecord>(&before).expect("decode"), record.clone());
            prop_assert_eq!(postcard::to_allocvec(&record).expect("encode"), before.clone());
            prop_assert_eq!(postcard::to_allocvec(&record.as_ref()).expect("encode"), before);
        }

        #[test]
        fn integers_sort_numerically(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), encode_i64(a).cmp(&encode_i64(b)));
        }

        #[test]
        fn one_keys_rows_are_contiguous_in_a_span(a in proptest::collection::vec(any::<u8>(), 0..6),
                                        b in proptest::collection::vec(any::<u8>(), 0..6),
                                        r1 in 0i64..KEY_LOG_SPAN, r2 in 0i64..KEY_LOG_SPAN) {
            // Rows of a sort entirely before or after rows of b: the key decides, not the revision.
            prop_assume!(a != b);
            let order = key_log_key(&a, r1).cmp(&key_log_key(&b, r2));
            prop_assert_eq!(order, key_log_key(&a, r2).cmp(&key_log_key(&b, r1)));
        }
    }
}
