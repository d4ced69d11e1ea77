//! The history database's own tables beside jj's objects: what makes queries by revision, key
//! and time cheap without walking commits.
//!
//! ```text
//! table       key                               value
//! ─────────── ───────────────────────────────── ───────────────────────────────────────────
//! revisions   rev i64                           postcard RevisionRecord (commit, tree, time,
//!                                               raft log id, origin, number of changes)
//! changed     rev i64 | seq u32                 kind u8 (1 put, 0 delete) | key bytes
//! key_log     esc(key) | rev i64                kind u8 | file id (32 bytes, puts only)
//! operations  seq u64                           postcard OperationRecord (op id, revisions)
//! meta        name (ASCII)                      see `Head`
//! ```
//!
//! Integers are big-endian with the sign bit flipped, so byte order is numeric order.
//! `esc(key)` doubles 0x00 bytes (00 → 00 FF) and ends with 00 01, so one key's rows are
//! contiguous, in revision order, and a key prefix is a byte prefix of every longer key.

use jj_lib::backend::{CommitId, TreeId};
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::model::{ChangeKind, Origin};

pub(crate) type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

pub(crate) const REVISIONS: BytesTable = TableDefinition::new("revisions");
pub(crate) const CHANGED: BytesTable = TableDefinition::new("changed");
pub(crate) const KEY_LOG: BytesTable = TableDefinition::new("key_log");
pub(crate) const OPERATIONS: BytesTable = TableDefinition::new("operations");
pub(crate) const META: BytesTable = TableDefinition::new("meta");

pub(crate) const META_HEAD: &[u8] = b"head";
/// The layout of ids and keys (`backend.rs`); a database without it predates located ids.
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const FORMAT: &[u8] = b"2";

/// One recorded revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RevisionRecord {
    pub commit_id: Vec<u8>,
    pub parent_commit_id: Vec<u8>,
    pub tree_id: Vec<u8>,
    pub time_unix_ms: u64,
    pub log_term: u64,
    pub log_index: u64,
    pub origin: Origin,
    pub changes_total: u64,
}

/// One recorded operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OperationRecord {
    pub operation_id: Vec<u8>,
    pub first_revision: i64,
    pub last_revision: i64,
}

/// Where history stands (the `head` row of `meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    /// Newest revision recorded (0 = none yet).
    pub revision: i64,
    pub commit_id: Vec<u8>,
    pub tree_id: Vec<u8>,
    pub time_unix_ms: u64,
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
pub(crate) fn escape_key(key: &[u8], terminate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    if terminate {
        out.extend_from_slice(&[0, 1]);
    }
    out
}

/// `key_log` row key.
pub(crate) fn key_log_key(key: &[u8], revision: i64) -> Vec<u8> {
    let mut out = escape_key(key, true);
    out.extend_from_slice(&encode_i64(revision));
    out
}

/// Splits a `key_log` row key into the key and the revision.
pub(crate) fn split_key_log_key(bytes: &[u8]) -> Option<(Vec<u8>, i64)> {
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
            prop_assert!(encoded.starts_with(&escape_key(&key, false)));
        }

        #[test]
        fn integers_sort_numerically(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(a.cmp(&b), encode_i64(a).cmp(&encode_i64(b)));
        }

        #[test]
        fn one_keys_rows_are_contiguous(a in proptest::collection::vec(any::<u8>(), 0..6),
                                        b in proptest::collection::vec(any::<u8>(), 0..6),
                                        r1 in 0i64..100, r2 in 0i64..100) {
            // Rows of a sort entirely before or after rows of b: the key decides, not the revision.
            prop_assume!(a != b);
            let order = key_log_key(&a, r1).cmp(&key_log_key(&b, r2));
            prop_assert_eq!(order, key_log_key(&a, r2).cmp(&key_log_key(&b, r1)));
        }
    }
}
