//! The history feed: revisions exactly as recorded, for the history layer.
//!
//! Unlike [`super::MvccStore::events`], this reads below the logical compact revision: the node
//! holds back the physical removal of a compaction until history has recorded every revision
//! it would remove, so history can always catch up from the store.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ApplyInput;
use super::codec;
use super::error::{MvccError, MvccResult};
use super::read::ReadSource;
use super::tables::ReadTables;
use crate::kv::{Event, EventKind};
use crate::request::Origin;
use crate::revision::RevisionId;

/// What is known about the raft entry that made a revision (stored in `revision_meta`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionMeta {
    pub log_term: u64,
    pub log_index: u64,
    /// The proposer's clock when the entry was proposed (ms since the Unix epoch).
    pub time_unix_ms: u64,
    pub origin: Origin,
}

impl RevisionMeta {
    /// What is recorded about the revision the entry `input` makes.
    pub(crate) fn of(input: &ApplyInput<'_>) -> Self {
        Self {
            log_term: input.log_term,
            log_index: input.log_index,
            time_unix_ms: input.proposal.map_or(0, |p| p.time_unix_ms),
            origin: input.proposal.map(|p| p.origin.clone()).unwrap_or_default(),
        }
    }
}

/// History's commit at a revision, kept in the store (see [`super::MvccStore::set_history_anchor`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryAnchor {
    pub revision: i64,
    /// The jj commit object, encoded as history stores it.
    pub commit: Vec<u8>,
}

impl HistoryAnchor {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = codec::encode_i64(self.revision).to_vec();
        bytes.extend_from_slice(&self.commit);
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let (revision, commit) = bytes.split_at_checked(8)?;
        Some(Self {
            revision: codec::decode_i64(revision)?,
            commit: commit.to_vec(),
        })
    }
}

/// The revision at and below which history cannot replay from the store (0: all of it can).
pub(crate) fn replay_floor(tables: &ReadTables) -> MvccResult<i64> {
    Ok(super::write::read_meta_i64(&tables.meta, super::tables::META_REPLAY_FLOOR)?.unwrap_or(0))
}

/// The history anchor the store holds, if any.
pub(crate) fn history_anchor(tables: &ReadTables) -> MvccResult<Option<HistoryAnchor>> {
    match tables.meta.get(super::tables::META_HISTORY_ANCHOR)? {
        Some(row) => HistoryAnchor::decode(row.value())
            .map(Some)
            .ok_or_else(|| MvccError::corrupt("meta", "undecodable history anchor")),
        None => Ok(None),
    }
}

/// One change of a recorded revision: the key's new value, or `None` for a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedChange {
    pub key: Bytes,
    pub value: Option<Bytes>,
    /// The revision that wrote `value`: the recorded revision itself, or, in a state imported
    /// whole, the key's mod revision.
    pub mod_revision: i64,
}

/// One revision with every change it made, in sub-revision order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRevision {
    pub revision: i64,
    /// Default (zeros) for revisions written before meta was recorded.
    pub meta: RevisionMeta,
    pub changes: Vec<RecordedChange>,
}

impl RecordedRevision {
    /// The revision the entry `input` made, `revision`, from the events its apply returned (one
    /// per change, in sub-revision order): what [`super::MvccStore::recorded_revisions`] reads
    /// back for it, without reading. `None` if it changed nothing.
    pub fn applied(input: &ApplyInput<'_>, revision: i64, events: &[Event]) -> Option<Self> {
        if events.is_empty() {
            return None;
        }
        let changes = events
            .iter()
            .map(|event| RecordedChange {
                key: event.kv.key.clone(),
                value: (event.kind == EventKind::Put).then(|| event.kv.value.clone()),
                mod_revision: revision,
            })
            .collect();
        Some(Self {
            revision,
            meta: RevisionMeta::of(input),
            changes,
        })
    }

    /// About how many bytes it holds (keys and values).
    pub fn size(&self) -> usize {
        self.changes
            .iter()
            .map(|change| change.key.len() + change.value.as_ref().map_or(0, Bytes::len) + 64)
            .sum()
    }
}

/// Revisions from `from` on, whole, until at least `max_changes` changes are gathered or the
/// store's revisions run out. A revision whose rows were already removed is simply absent: the
/// caller checks continuity.
pub(crate) fn read_recorded(
    tables: &ReadTables,
    from: i64,
    max_changes: usize,
) -> MvccResult<Vec<RecordedRevision>> {
    let source = ReadSource {
        current: &tables.current,
        history: &tables.history,
    };
    let start = codec::encode_revision(RevisionId {
        main: from.max(1),
        sub: 0,
    });
    let mut revisions: Vec<RecordedRevision> = Vec::new();
    for (gathered, row) in tables
        .changes
        .range::<&[u8]>(start.as_slice()..)?
        .enumerate()
    {
        let (at, key) = row?;
        let at = codec::decode_revision(at.value())
            .ok_or_else(|| MvccError::corrupt("changes", "undecodable key"))?;
        let starts_revision = revisions.last().is_none_or(|last| last.revision != at.main);
        if starts_revision {
            if gathered >= max_changes {
                break;
            }
            revisions.push(RecordedRevision {
                revision: at.main,
                meta: read_meta(tables, at.main)?,
                changes: Vec::new(),
            });
        }
        let key = key.value();
        let kv = source
            .version_exact(key, at)?
            .ok_or_else(|| MvccError::corrupt("history", "change without a version"))?;
        let value = (kv.version != 0).then_some(kv.value);
        if let Some(current) = revisions.last_mut() {
            current.changes.push(RecordedChange {
                key: Bytes::copy_from_slice(key),
                value,
                mod_revision: at.main,
            });
        }
    }
    Ok(revisions)
}

fn read_meta(tables: &ReadTables, revision: i64) -> MvccResult<RevisionMeta> {
    match tables
        .revision_meta
        .get(codec::encode_i64(revision).as_slice())?
    {
        Some(row) => postcard::from_bytes(row.value())
            .map_err(|_| MvccError::corrupt("revision_meta", "undecodable meta")),
        None => Ok(RevisionMeta::default()),
    }
}
