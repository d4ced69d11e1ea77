//! What the history answers: revisions, key changes, diffs, blame lines and operations.
//!
//! These are plain data, free of jj-lib types, so that kvapi and kvctl never import jj-lib.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use crate::request::Origin;

/// Whether a change wrote or removed a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One key changed by a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChange {
    pub key: Bytes,
    pub kind: ChangeKind,
}

/// One revision as history recorded it: a jj commit whose parent is the previous revision's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionEntry {
    pub revision: i64,
    /// Hex of the jj commit id; equal on every member for the same revision.
    pub commit_id: String,
    /// Hex of the parent commit id (the previous revision's commit, or jj's root commit).
    pub parent_commit_id: String,
    /// When the revision was proposed (milliseconds since the Unix epoch, from the raft entry;
    /// never earlier than the previous revision's time).
    pub time_unix_ms: u64,
    /// The raft log entry that produced the revision: (term, index).
    pub log_term: u64,
    pub log_index: u64,
    pub origin: Origin,
    /// The keys the revision changed, in key order. Only the first `changes_limit` when the
    /// query asked for fewer; `changes_total` is the full count.
    pub changes: Vec<KeyChange>,
    pub changes_total: u64,
}

/// A filter over revisions, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only revisions that changed this key (or, with `prefix`, a key starting with it).
    pub key: Option<Bytes>,
    pub prefix: bool,
    /// Inclusive revision bounds (0 = unbounded).
    pub min_revision: i64,
    pub max_revision: i64,
    /// Inclusive time bounds in ms since the epoch (0 = unbounded).
    pub since_unix_ms: u64,
    pub until_unix_ms: u64,
    /// At most this many revisions (0 = the server's page size, 100).
    pub limit: usize,
    /// At most this many changed keys listed per revision (0 = all).
    pub changes_limit: usize,
}

/// One key's values on either side of a diff (`None` = absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDiff {
    pub key: Bytes,
    pub before: Option<Bytes>,
    pub after: Option<Bytes>,
}

/// A revision with the values its changes replaced and wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionDetail {
    pub entry: RevisionEntry,
    pub diffs: Vec<KeyDiff>,
}

/// Which revision a point read is at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Revision(i64),
    /// The newest revision proposed at or before this time (ms since the epoch).
    Time(u64),
}

/// A key's value at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVersion {
    pub key: Bytes,
    pub value: Bytes,
    /// The revision that wrote this value.
    pub mod_revision: i64,
    /// The revision the read resolved to.
    pub revision: i64,
}

/// The revision that last changed a key (which is present at the queried revision).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlameLine {
    pub key: Bytes,
    pub revision: i64,
    pub commit_id: String,
    pub time_unix_ms: u64,
    pub origin: Origin,
}

/// One jj operation: the record of one applied batch (or of a history maintenance step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationEntry {
    /// Hex of the jj operation id.
    pub operation_id: String,
    pub time_unix_ms: u64,
    pub description: String,
    /// First and last revision the operation recorded (0, 0 for maintenance operations).
    pub first_revision: i64,
    pub last_revision: i64,
    /// The operation's metadata attributes: `raft.log_id`, `origin.user`, `origin.agent`, ….
    pub attributes: Vec<(String, String)>,
}

/// Where the history stands relative to the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryStatus {
    /// The newest revision recorded, and its commit id (hex).
    pub head_revision: i64,
    pub head_commit_id: String,
    /// The store's applied revision when this was read.
    pub applied_revision: i64,
    /// The oldest revision still kept (retention trims older ones).
    pub oldest_revision: i64,
    /// Bytes used by the history database.
    pub db_size_bytes: u64,
}

impl HistoryStatus {
    /// Revisions applied but not yet recorded.
    pub fn lag(&self) -> i64 {
        (self.applied_revision - self.head_revision).max(0)
    }
}

/// The outcome of a restore: the revision that wrote it and the keys it put back or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// 0 when nothing differed (no write was made).
    pub revision: i64,
    pub changes: Vec<KeyChange>,
}
