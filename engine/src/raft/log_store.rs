//! `WalLogStore`: openraft's log storage ([`RaftLogStorage`]) over the segmented [`Wal`].
//!
//! ```text
//!  append(entries, cb) ──postcard──► Wal::append_with ──► writer thread: pwrite, ONE fdatasync
//!                                                          per drained batch ──► cb.io_completed
//!  save_vote / purge   ──► raft-meta (vote, committed, last purged), replaced atomically
//!  truncate_after / purge ──► Wal::truncate_after / Wal::purge
//!  WalLogReader (cheap clone, shares the Wal) ──► try_get_log_entries, read_vote
//! ```
//!
//! Each raft entry is one WAL record: the postcard encoding of [`Entry`], stored at the entry's
//! index. The vote, the last purged log id and (lazily) the committed log id live in the WAL's
//! auxiliary file `raft-meta`: one crc-framed record, postcard-encoded [`RaftMeta`].
//!
//! To ensure correctness:
//! - `append` returns once the entries are readable (they sit in the WAL's pending set); the
//!   callback fires only after an `fdatasync` covering them.
//! - Every write goes through the WAL's single writer queue, so writes take effect in the order
//!   they were made: a vote or purge record is written only after every earlier append is
//!   durable, and a truncation never overtakes an append.
//! - `save_vote` returns only once `raft-meta` holding the vote is durable (temp file, fsync,
//!   rename, fsync of the directory).
//! - `purge` makes the new last purged log id durable in `raft-meta` before any segment is
//!   deleted; an interrupted purge is finished on open.
//! - The committed log id is persisted lazily (every [`COMMITTED_PERSIST_INTERVAL`] entries and
//!   with every vote or purge). Each write is queued behind the appends that hold the committed
//!   entries, so a persisted committed log id never points past the durable log; a stale one
//!   only means openraft re-applies less on restart.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use openraft::OptionalSend;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use serde::{Deserialize, Serialize};

use crate::raft::types::{Entry, LogId, TypeConfig, Vote};
use crate::wal::{Completion, Wal, WalError, WalOptions, WalStats};

/// Name of the metadata file in the WAL directory.
const META_FILE: &str = "raft-meta";
/// Format version of [`RaftMeta`].
const META_VERSION: u32 = 1;
/// Persist the committed log id when it moved this many entries past the persisted one.
pub const COMMITTED_PERSIST_INTERVAL: u64 = 1024;

/// The content of `raft-meta`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RaftMeta {
    version: u32,
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
}

/// Raft metadata shared by the store and its readers.
#[derive(Debug, Default)]
struct MetaState {
    /// The content of the last `raft-meta` write (queued or done): what a restart will read.
    persisted: RaftMeta,
    /// The vote as of the last completed `save_vote`: readers never see a vote before it is
    /// durable.
    vote: Option<Vote>,
    /// The latest committed log id given to `save_committed`.
    committed: Option<LogId>,
}

type SharedMeta = Arc<Mutex<MetaState>>;

fn lock(meta: &Mutex<MetaState>) -> MutexGuard<'_, MetaState> {
    // Updates replace whole fields after the I/O they describe succeeded; a panic cannot leave
    // a half-written value behind.
    meta.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Failures to turn WAL records into raft entries (or back).
#[derive(Debug, thiserror::Error)]
pub enum EntryCodecError {
    #[error("raft log entry {index} cannot be encoded")]
    Encode {
        index: u64,
        #[source]
        source: postcard::Error,
    },
    #[error("raft log record {index} does not decode")]
    Decode {
        index: u64,
        #[source]
        source: postcard::Error,
    },
    #[error("raft log record {index} holds the entry of index {found}")]
    Misplaced { index: u64, found: u64 },
    #[error("raft log record {index} is missing")]
    Missing { index: u64 },
}

impl From<EntryCodecError> for io::Error {
    fn from(e: EntryCodecError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

fn wal_err(e: WalError) -> io::Error {
    io::Error::other(e)
}

fn encode_meta(meta: &RaftMeta) -> Bytes {
    // Serializing plain structs of integers and options into a Vec cannot fail.
    Bytes::from(postcard::to_allocvec(meta).unwrap_or_default())
}

fn decode_entry(index: u64, payload: &[u8]) -> Result<Entry, EntryCodecError> {
    let entry: Entry = postcard::from_bytes(payload)
        .map_err(|source| EntryCodecError::Decode { index, source })?;
    if entry.index() != index {
        return Err(EntryCodecError::Misplaced {
            index,
            found: entry.index(),
        });
    }
    Ok(entry)
}

fn read_entries(wal: &Wal, range: impl RangeBounds<u64>) -> io::Result<Vec<Entry>> {
    let records = wal.read(range).map_err(wal_err)?;
    records
        .iter()
        .map(|(index, payload)| decode_entry(*index, payload).map_err(io::Error::from))
        .collect()
}

/// The raft log store of one node. See the module docs for the durability contract.
pub struct WalLogStore {
    wal: Arc<Wal>,
    meta: SharedMeta,
}

/// A read handle on the log: shares the WAL and the vote with its [`WalLogStore`].
#[derive(Clone)]
pub struct WalLogReader {
    wal: Arc<Wal>,
    meta: SharedMeta,
}

impl WalLogStore {
    /// Opens the log in `dir` (created if missing), finishing an interrupted purge. Blocking:
    /// call it from a thread that may block (or `spawn_blocking`).
    pub fn open(dir: &Path, options: WalOptions) -> Result<Self, WalError> {
        let wal = Wal::open(dir, options)?;
        let meta_path = || PathBuf::from(dir).join(META_FILE);
        let persisted = match wal.read_aux(META_FILE)? {
            Some(bytes) => postcard::from_bytes::<RaftMeta>(&bytes)
                .ok()
                .filter(|m| m.version == META_VERSION)
                .ok_or_else(|| WalError::CorruptAux { path: meta_path() })?,
            None => RaftMeta {
                version: META_VERSION,
                ..RaftMeta::default()
            },
        };
        if let Some(purged) = &persisted.last_purged
            && wal.purged_index().is_none_or(|p| p < purged.index)
        {
            wal.purge(purged.index).wait()?;
        }
        let meta = MetaState {
            committed: persisted.committed,
            vote: persisted.vote,
            persisted,
        };
        Ok(Self {
            wal: Arc::new(wal),
            meta: Arc::new(Mutex::new(meta)),
        })
    }

    /// Counters of the WAL writer (fsync count and seconds, for metrics).
    pub fn wal_stats(&self) -> Arc<WalStats> {
        Arc::clone(self.wal.stats())
    }

    /// A read handle sharing this store's WAL.
    pub fn reader(&self) -> WalLogReader {
        WalLogReader {
            wal: Arc::clone(&self.wal),
            meta: Arc::clone(&self.meta),
        }
    }

    /// Queues a `raft-meta` write of the persisted metadata changed by `update`, with the latest
    /// committed log id.
    fn write_meta(&self, update: impl FnOnce(&mut RaftMeta)) -> Completion {
        let mut meta = lock(&self.meta);
        let mut next = meta.persisted.clone();
        next.committed.clone_from(&meta.committed);
        update(&mut next);
        let completion = self.wal.write_aux(META_FILE, encode_meta(&next));
        meta.persisted = next;
        completion
    }
}

impl RaftLogReader<TypeConfig> for WalLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        read_entries(&self.wal, range)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(lock(&self.meta).vote)
    }
}

impl RaftLogStorage<TypeConfig> for WalLogStore {
    type LogReader = WalLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id = lock(&self.meta).persisted.last_purged;
        let last_log_id = match self.wal.last_index() {
            Some(index) => {
                let payload = self
                    .wal
                    .get(index)
                    .map_err(wal_err)?
                    .ok_or(EntryCodecError::Missing { index })?;
                Some(decode_entry(index, &payload)?.log_id())
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        let completion = self.write_meta(|m| m.vote = Some(vote));
        completion.await.map_err(wal_err)?;
        lock(&self.meta).vote = Some(vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let due = {
            let mut meta = lock(&self.meta);
            meta.committed = committed;
            match (&committed, &meta.persisted.committed) {
                (Some(c), Some(p)) => c.index >= p.index + COMMITTED_PERSIST_INTERVAL,
                (Some(_), None) => true,
                (None, _) => false,
            }
        };
        if due {
            let completion = self.write_meta(|_| {});
            // Lazy: not awaited. A failed write stops the WAL, and the next append, vote or
            // purge reports it.
            drop(completion);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(lock(&self.meta).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        for entry in entries {
            let index = entry.index();
            let payload = postcard::to_allocvec(&entry)
                .map_err(|source| EntryCodecError::Encode { index, source })?;
            records.push((index, Bytes::from(payload)));
        }
        self.wal
            .append_with(records, move |result| {
                callback.io_completed(result.map_err(wal_err));
            })
            .map_err(wal_err)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.wal
            .truncate_after(last_log_id.map(|id| id.index))
            .await
            .map_err(wal_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let already = lock(&self.meta)
            .persisted
            .last_purged
            .is_some_and(|p| p.index >= log_id.index);
        if already {
            return Ok(());
        }
        // Both are queued in order: the metadata is durable before any segment is deleted.
        let meta_written = self.write_meta(|m| m.last_purged = Some(log_id));
        let purged = self.wal.purge(log_id.index);
        meta_written.await.map_err(wal_err)?;
        purged.await.map_err(wal_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let meta = RaftMeta {
            version: META_VERSION,
            vote: Some(Vote::new(3, 7)),
            committed: None,
            last_purged: None,
        };
        let bytes = encode_meta(&meta);
        assert_eq!(postcard::from_bytes::<RaftMeta>(&bytes).unwrap(), meta);
    }
}
