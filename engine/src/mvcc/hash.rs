//! Consistency hashes: `hash_kv` (etcd `HashKV`) over the key-value history, `hash` over every
//! table.
//!
//! Both are crc32 (IEEE, crc32fast) over rows in table key order, each row fed as
//! `key len u32 BE | key | value len u32 BE | value` (`hash` also feeds the table id byte
//! before each row). Two stores that applied the same commands hold the same rows, hence the
//! same hashes.

use redb::ReadableTable;

use super::codec;
use super::error::{MvccError, MvccResult};
use super::read::Revisions;
use super::tables::{ReadTable, ReadTables};
use crate::error::KvError;

/// The answer to a `HashKV` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    pub hash: u32,
    /// The store's compact revision when the hash was taken.
    pub compact_revision: i64,
    /// The revision the hash covers up to (the current one when 0 was asked).
    pub hash_revision: i64,
}

/// Hashes every version with main revision `<= revision` that compaction has kept: the history
/// visible from the compact revision up to `revision`. `revision <= 0` means the current one.
pub(crate) fn hash_kv(
    tables: &ReadTables,
    revisions: Revisions,
    revision: i64,
) -> Result<HashKv, KvError> {
    let hash_revision = revisions.resolve(revision)?;
    let compact = revisions.compact;
    let mut hasher = crc32fast::Hasher::new();
    // Below the compact revision only each key's surviving version counts (its latest, unless a
    // tombstone), whether or not the physical removal has reached it yet (etcd's `keep` set).
    let mut group: Vec<u8> = Vec::new();
    let mut kept: Option<(Vec<u8>, Vec<u8>)> = None;
    let flush = |hasher: &mut crc32fast::Hasher, kept: &mut Option<(Vec<u8>, Vec<u8>)>| {
        if let Some((key, value)) = kept.take() {
            let tombstone = codec::decode_history(&value).is_some_and(|r| r.tombstone);
            if !tombstone {
                feed_row(hasher, &key, &value);
            }
        }
    };
    for row in tables.history.iter().map_err(MvccError::from)? {
        let (key, value) = row.map_err(MvccError::from)?;
        let (user_key, at) = codec::split_history_key(key.value())
            .ok_or_else(|| MvccError::corrupt("history", "undecodable key"))?;
        if user_key != group.as_slice() {
            flush(&mut hasher, &mut kept);
            group = user_key.to_vec();
        }
        if at.main <= compact {
            kept = Some((key.value().to_vec(), value.value().to_vec()));
            continue;
        }
        flush(&mut hasher, &mut kept);
        if at.main <= hash_revision {
            feed_row(&mut hasher, key.value(), value.value());
        }
    }
    flush(&mut hasher, &mut kept);
    Ok(HashKv {
        hash: hasher.finalize(),
        compact_revision: revisions.compact,
        hash_revision,
    })
}

/// Hashes the contents of every table, in table order then key order.
pub(crate) fn hash_all(tables: &ReadTables) -> MvccResult<u32> {
    let mut hasher = crc32fast::Hasher::new();
    for (id, table) in tables.by_id() {
        feed_table(&mut hasher, id, table)?;
    }
    Ok(hasher.finalize())
}

fn feed_table(hasher: &mut crc32fast::Hasher, id: u8, table: &ReadTable) -> MvccResult<()> {
    for row in table.iter()? {
        let (key, value) = row?;
        hasher.update(&[id]);
        feed_row(hasher, key.value(), value.value());
    }
    Ok(())
}

fn feed_row(hasher: &mut crc32fast::Hasher, key: &[u8], value: &[u8]) {
    hasher.update(&codec::encode_u32(key.len() as u32));
    hasher.update(key);
    hasher.update(&codec::encode_u32(value.len() as u32));
    hasher.update(value);
}
