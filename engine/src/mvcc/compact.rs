//! Compaction: dropping the history no read at or after the compact revision can see.
//!
//! For every key changed in `(old compact, revision]` (found through the `changes` table, so the
//! cost is proportional to the changes compacted, never to the size of the keyspace), only the
//! key's latest version at or below `revision` survives, and not even that one when it is a
//! tombstone; then the `changes` rows below `revision` go, and those at `revision` whose version
//! did not survive. Reads at exactly `revision` still see
//! every live key, and `prev_kv` of later events is still found.
//!
//! ```text
//! key a: put@2  put@3  delete@4  put@6        compact(5) → history a: put@6
//! key b: put@2  put@5                         compact(5) → history b: put@5
//! ```

use std::collections::BTreeSet;

use redb::ReadableTable;

use super::codec;
use super::error::{MvccError, OpResult};
use super::write::Writer;
use crate::error::KvError;
use crate::revision::RevisionId;

/// Compacts the store at `revision` (etcd `Compact`); changes no revision.
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
    let through = codec::encode_revision(RevisionId {
        main: revision,
        sub: i64::MAX,
    });
    let mut keys = BTreeSet::new();
    for row in writer
        .tables
        .changes
        .range::<&[u8]>(..=through.as_slice())?
    {
        keys.insert(row?.1.value().to_vec());
    }
    for key in &keys {
        compact_key(writer, key, revision)?;
    }
    // Rows below `revision` go. Rows at `revision` stay while their history row does, so a
    // watch from exactly the compact revision still sees that revision's puts (as in etcd).
    let at_revision = codec::encode_revision(RevisionId {
        main: revision,
        sub: 0,
    });
    writer
        .tables
        .changes
        .retain_in::<&[u8], _>(..at_revision.as_slice(), |_, _| false)?;
    let mut dropped = Vec::new();
    for row in writer
        .tables
        .changes
        .range::<&[u8]>(at_revision.as_slice()..=through.as_slice())?
    {
        let (change, key) = row?;
        let rev = codec::decode_revision(change.value())
            .ok_or_else(|| MvccError::corrupt("changes", "undecodable key"))?;
        let history_row = codec::history_key(key.value(), rev);
        if writer.tables.history.get(history_row.as_slice())?.is_none() {
            dropped.push(change.value().to_vec());
        }
    }
    for change in dropped {
        writer.tables.changes.remove(change.as_slice())?;
    }
    writer.set_compact_revision(revision)?;
    Ok(())
}

/// Removes the versions of `key` at or below `revision` except the latest, and that one too if
/// it is a tombstone.
fn compact_key(writer: &mut Writer<'_>, key: &[u8], revision: i64) -> OpResult<()> {
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
    for row in writer
        .tables
        .history
        .range::<&[u8]>(prefix.as_slice()..=through.as_slice())?
    {
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
        writer.tables.history.remove(row_key.as_slice())?;
    }
    Ok(())
}
