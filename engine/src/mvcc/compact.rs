//! Compaction: dropping the history no read at or after the compact revision can see.
//!
//! As in etcd, compaction has two halves:
//! - **Apply** (`compact`): validates the revision, records it as the compact revision (from
//!   then on reads and watches below it are refused) and marks it pending in `meta`. Cheap, so
//!   applying a Compact never stops the world.
//! - **Physical removal** (`step`, driven by a background task through
//!   [`super::MvccStore::compact_step`]): in small write transactions of at most `budget`
//!   changes each, for every key changed below the pending revision only the key's latest
//!   version at or below it survives, and not even that one when it is a tombstone; then those
//!   `changes` rows go. Applies interleave with the steps, waiting at most one small step.
//!   The pending marker lives in `meta`, so a crash resumes the work on the next start.
//!
//! The cost is proportional to the changes compacted, never to the size of the keyspace. Rows
//! of `changes` at exactly the compact revision stay while their version does, so a watch from
//! exactly the compact revision still sees that revision's puts (etcd's rule).
//!
//! ```text
//! key a: put@2  put@3  delete@4  put@6        compact(5) → history a: put@6
//! key b: put@2  put@5                         compact(5) → history b: put@5
//! ```
//!
//! Nothing a read can observe depends on how far the removal has got: reads at or above the
//! compact revision find the same latest versions either way, and `hash_kv` counts, below the
//! compact revision, only the versions that survive.

use std::collections::BTreeSet;

use redb::{ReadableTable, Table};

use super::codec;
use super::error::{MvccError, MvccResult, OpResult};
use super::tables::{self, WriteTables};
use super::write::{Writer, read_meta_i64};
use crate::error::KvError;
use crate::revision::RevisionId;

type BytesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// Compacts the store at `revision` (etcd `Compact`): changes no revision and removes nothing
/// yet; the removal is left to [`step`].
pub(crate) fn compact(writer: &mut Writer<'_>, revision: i64) -> OpResult<()> {
    let old = writer.compact_revision();
    // A store never compacted has compact revision 0 here and -1 in etcd, which accepts
    // `Compact(0)` on a fresh store: so do we (it removes nothing).
    let fresh_zero = revision == 0 && old == 0;
    if revision <= old && !fresh_zero {
        return Err(KvError::Compacted {
            compact_revision: old,
        }
        .into());
    }
    if revision > writer.revision() {
        return Err(KvError::FutureRevision.into());
    }
    writer.set_compact_revision(revision)?;
    writer.tables.meta.insert(
        tables::META_COMPACT_PENDING,
        codec::encode_i64(revision).as_slice(),
    )?;
    Ok(())
}

/// The revision whose physical compaction is still pending, if any.
pub(crate) fn pending(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> MvccResult<Option<i64>> {
    read_meta_i64(meta, tables::META_COMPACT_PENDING)
}

/// Removes what at most `budget` changes below the pending compaction made obsolete. Returns
/// whether work remains.
pub(crate) fn step(tables: &mut WriteTables<'_>, budget: usize) -> MvccResult<bool> {
    let Some(revision) = pending(&tables.meta)? else {
        return Ok(false);
    };
    // From this transaction on, revisions up to `revision` may miss rows.
    tables.meta.insert(
        tables::META_REPLAY_FLOOR,
        codec::encode_i64(revision).as_slice(),
    )?;
    let below = codec::encode_revision(RevisionId {
        main: revision,
        sub: 0,
    });
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for row in tables.changes.range::<&[u8]>(..below.as_slice())? {
        if batch.len() >= budget {
            break;
        }
        let (change, key) = row?;
        batch.push((change.value().to_vec(), key.value().to_vec()));
    }
    if !batch.is_empty() {
        let keys: BTreeSet<&[u8]> = batch.iter().map(|(_, key)| key.as_slice()).collect();
        for key in keys {
            compact_key(&mut tables.history, key, revision)?;
        }
        for (change, _) in &batch {
            tables.changes.remove(change.as_slice())?;
        }
        return Ok(true);
    }
    // The raft facts of compacted revisions go too (history has recorded them by now).
    let mut doomed_meta = Vec::new();
    let meta_below = codec::encode_i64(revision);
    for row in tables
        .revision_meta
        .range::<&[u8]>(..meta_below.as_slice())?
        .take(budget)
    {
        doomed_meta.push(row?.0.value().to_vec());
    }
    if !doomed_meta.is_empty() {
        for row_key in doomed_meta {
            tables.revision_meta.remove(row_key.as_slice())?;
        }
        return Ok(true);
    }
    finish_at_revision(tables, revision)?;
    tables.meta.remove(tables::META_COMPACT_PENDING)?;
    Ok(false)
}

/// The changes at exactly `revision` (one transaction's worth): compact their keys, then drop
/// the rows whose version did not survive (tombstones).
fn finish_at_revision(tables: &mut WriteTables<'_>, revision: i64) -> MvccResult<()> {
    let from = codec::encode_revision(RevisionId {
        main: revision,
        sub: 0,
    });
    let through = codec::encode_revision(RevisionId {
        main: revision,
        sub: i64::MAX,
    });
    let mut at_revision: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for row in tables
        .changes
        .range::<&[u8]>(from.as_slice()..=through.as_slice())?
    {
        let (change, key) = row?;
        at_revision.push((change.value().to_vec(), key.value().to_vec()));
    }
    let keys: BTreeSet<&[u8]> = at_revision.iter().map(|(_, key)| key.as_slice()).collect();
    for key in keys {
        compact_key(&mut tables.history, key, revision)?;
    }
    for (change, key) in &at_revision {
        let rev = codec::decode_revision(change)
            .ok_or_else(|| MvccError::corrupt("changes", "undecodable key"))?;
        let history_row = codec::history_key(key, rev);
        if tables.history.get(history_row.as_slice())?.is_none() {
            tables.changes.remove(change.as_slice())?;
        }
    }
    Ok(())
}

/// Removes the versions of `key` at or below `revision` except the latest, and that one too if
/// it is a tombstone.
fn compact_key(history: &mut BytesTable<'_>, key: &[u8], revision: i64) -> MvccResult<()> {
    let prefix = codec::history_prefix(key);
    let through = codec::history_key_from_prefix(
        &prefix,
        RevisionId {
            main: revision,
            sub: i64::MAX,
        },
    );
    let mut doomed = Vec::new();
    let mut latest_is_tombstone = false;
    for row in history.range::<&[u8]>(prefix.as_slice()..=through.as_slice())? {
        let (row_key, value) = row?;
        let record = codec::decode_history(value.value())
            .ok_or_else(|| MvccError::corrupt("history", "undecodable value"))?;
        doomed.push(row_key.value().to_vec());
        latest_is_tombstone = record.tombstone;
    }
    if !latest_is_tombstone {
        doomed.pop();
    }
    for row_key in doomed {
        history.remove(row_key.as_slice())?;
    }
    Ok(())
}
