//! Segmented append-only write-ahead log with crc32-framed records.
//!
//! The WAL stores opaque payloads at consecutive `u64` indexes (raft log indexes); it knows
//! nothing of raft. [`crate::raft::log_store`] puts openraft entries in it.
//!
//! ```text
//!  append(entries, done) ──► pending (readable at once) ──► writer thread
//!                                                           pwrite frames, ONE fdatasync per batch
//!  read(range) ◄── index: sealed segments (mmap) + active segment (pread) + pending
//! ```
//!
//! # On-disk layout
//!
//! A directory holding:
//!
//! - `SSSSSSSSSSSSSSSS-IIIIIIIIIIIIIIII.wal`: segments. `S` is the segment sequence number and
//!   `I` the index of its first record, each 16 lower-case hex digits. Record `k` of a segment
//!   holds index `I + k`. A new segment is started when the next record would take the active
//!   one past [`WalOptions::segment_size`] (64 MiB by default).
//! - a segment is a run of records, each framed as
//!
//!   ```text
//!   offset  size  field
//!   0       4     len    payload length, u32 little-endian, 1 ..= 256 MiB
//!   4       4     crc    CRC-32 (IEEE) of the payload, u32 little-endian
//!   8       len   payload
//!   ```
//!
//!   with no file header and no padding.
//! - `wal-purged`: the purge marker, one framed record whose payload is the purged index
//!   (u64 little-endian). Records at or below it are gone even if their segment survives.
//! - auxiliary files written with [`Wal::write_aux`] (e.g. `raft-meta`), one framed record each,
//!   replaced atomically (`NAME.tmp`, fsync, rename, fsync the directory).
//! - `LOCK`: held with an exclusive file lock while the WAL is open.
//!
//! # Guarantees
//!
//! - An append's callback reports success only after an `fdatasync` covering it; appends
//!   queued together share one `fdatasync` (group commit).
//! - Operations take effect on disk in submission order; truncations, purges and auxiliary
//!   writes wait for earlier appends to be durable.
//! - On open, a torn tail of the last segment is cut; damage anywhere else is an error.
//! - The directory is fsynced after files are created, renamed or removed.

mod aux_file;
mod completion;
mod error;
mod index;
mod record;
mod recovery;
mod segment;
mod writer;

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;

pub use self::completion::Completion;
use self::error::IoContext;
pub use self::error::{WalError, WalResult};
use self::index::{Pending, Shared, Tail, read_lock, write_lock};
pub use self::record::MAX_PAYLOAD_LEN;
use self::writer::{Done, Op, Writer};

/// Name of the purge marker file.
const PURGED_FILE: &str = "wal-purged";
/// Name of the lock file.
const LOCK_FILE: &str = "LOCK";

/// Called with the duration of every segment `fdatasync` (for a latency histogram such as
/// etcd's `etcd_disk_wal_fsync_duration_seconds`). Runs on the writer thread: keep it cheap.
pub type FsyncObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// Tuning of a [`Wal`].
#[derive(Clone)]
pub struct WalOptions {
    /// Start a new segment when the next record would take the active one past this size.
    pub segment_size: u64,
    pub on_fsync: Option<FsyncObserver>,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 * 1024 * 1024,
            on_fsync: None,
        }
    }
}

impl fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalOptions")
            .field("segment_size", &self.segment_size)
            .field("on_fsync", &self.on_fsync.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Counters of the writer, updated as it works.
#[derive(Debug, Default)]
pub struct WalStats {
    fsyncs: AtomicU64,
    fsync_nanos: AtomicU64,
    batches: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl WalStats {
    /// Number of segment `fdatasync` calls.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Total time spent in segment `fdatasync` calls.
    pub fn fsync_seconds(&self) -> f64 {
        Duration::from_nanos(self.fsync_nanos.load(Ordering::Relaxed)).as_secs_f64()
    }

    /// Number of batches the writer took from its queue.
    pub fn batch_count(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Number of records written.
    pub fn entry_count(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    /// Payload bytes written.
    pub fn payload_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn record_fsync(&self, elapsed: Duration) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn record_batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    fn record_append(&self, len: usize) {
        self.entries.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// An open write-ahead log. Share it behind an `Arc`; dropping the last handle stops the
/// writer thread after it finished the queued work.
pub struct Wal {
    dir: PathBuf,
    shared: Arc<RwLock<Shared>>,
    tx: Option<Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    stats: Arc<WalStats>,
    _lock: File,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, recovering as described in the module docs,
    /// and starts its writer thread. Blocking.
    pub fn open(dir: &Path, options: WalOptions) -> WalResult<Self> {
        fs::create_dir_all(dir).at(dir)?;
        let dir_file = File::open(dir).at(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(WalError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(WalError::io(lock_path, e)),
        }

        let recovered = recovery::recover(dir, &dir_file)?;
        let mut shared = Shared {
            segments: recovered.segments,
            purged: recovered.purged,
            pending: std::collections::BTreeMap::new(),
            tail: Tail::default(),
            failed: None,
            next_ticket: 0,
        };
        let purged = recovered.purged;
        shared.tail = Tail {
            first: shared.synced_first(),
            last: shared
                .synced_last()
                .filter(|&l| purged.is_none_or(|p| l > p)),
            purged,
        };
        let shared = Arc::new(RwLock::new(shared));
        let stats = Arc::new(WalStats::default());
        let writer = Writer::new(
            dir.to_path_buf(),
            dir_file,
            Arc::clone(&shared),
            Arc::clone(&stats),
            options,
            recovered.active,
            recovered.next_seq,
        );
        let (tx, rx) = mpsc::channel();
        let handle = thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(&rx))
            .at(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            shared,
            tx: Some(tx),
            writer: Some(handle),
            stats,
            _lock: lock,
        })
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writer counters (fsync count and time, batches, records).
    pub fn stats(&self) -> &Arc<WalStats> {
        &self.stats
    }

    /// Appends records at consecutive indexes starting where the log ends (any index if the log
    /// is empty and was never purged; right after the purged index if it was purged).
    ///
    /// The records are readable when this returns. `done` is called on the writer thread once
    /// they are durable (or failed); it must not block. On `Err`, `done` is dropped uncalled.
    pub fn append_with(
        &self,
        entries: Vec<(u64, Bytes)>,
        done: impl FnOnce(WalResult<()>) + Send + 'static,
    ) -> WalResult<()> {
        let done: Done = Box::new(done);
        if entries.is_empty() {
            return self.submit(|_| Op::Flush { done });
        }
        let mut shared = write_lock(&self.shared);
        if let Some(cause) = &shared.failed {
            return Err(WalError::Failed {
                cause: Box::new(cause.clone()),
            });
        }
        let mut expected = shared.tail.expected_next();
        for (index, payload) in &entries {
            if payload.is_empty() {
                return Err(WalError::EmptyRecord);
            }
            if payload.len() > MAX_PAYLOAD_LEN {
                return Err(WalError::RecordTooLarge {
                    len: payload.len(),
                    max: MAX_PAYLOAD_LEN,
                });
            }
            if let Some(expected) = expected
                && *index != expected
            {
                return Err(WalError::NonContiguous {
                    expected,
                    found: *index,
                });
            }
            expected = Some(index + 1);
        }
        let ticket = shared.next_ticket;
        shared.next_ticket += 1;
        let (first, last) = (entries[0].0, entries[entries.len() - 1].0);
        for (index, payload) in &entries {
            shared.pending.insert(
                *index,
                Pending {
                    ticket,
                    payload: payload.clone(),
                },
            );
        }
        shared.tail.append(first, last);
        self.send(Op::Append {
            ticket,
            entries,
            done,
        })
    }

    /// [`Wal::append_with`], completed through a [`Completion`].
    pub fn append(&self, entries: Vec<(u64, Bytes)>) -> Completion {
        let (completion, done) = Completion::channel();
        match self.append_with(entries, done) {
            Ok(()) => completion,
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// Removes every record after `index` (every record for `None`). Readers stop seeing them
    /// at once; the files are cut when the completion resolves. Appends may follow at once.
    pub fn truncate_after(&self, index: Option<u64>) -> Completion {
        self.submit_completion(|tail, done| {
            tail.truncate_after(index);
            Op::TruncateAfter { index, done }
        })
    }

    /// Removes every record at or below `upto`: readers stop seeing them at once; the writer
    /// records the purge point durably, then deletes the segments holding nothing above it. A
    /// segment that still holds records above `upto` is kept (its purged records are hidden).
    pub fn purge(&self, upto: u64) -> Completion {
        self.submit_completion(|tail, done| {
            tail.purge(upto);
            Op::Purge { upto, done }
        })
    }

    /// Durably replaces the auxiliary file `name` (letters, digits, `-`, `_`) with `data`,
    /// after every earlier append is durable.
    pub fn write_aux(&self, name: &str, data: Bytes) -> Completion {
        if !aux_file::valid_name(name) || name == PURGED_FILE {
            return Completion::ready(Err(WalError::BadAuxName {
                name: name.to_owned(),
            }));
        }
        let name = name.to_owned();
        self.submit_completion(|_, done| Op::WriteAux { name, data, done })
    }

    /// Reads the durable content of the auxiliary file `name`. Blocking.
    pub fn read_aux(&self, name: &str) -> WalResult<Option<Bytes>> {
        if !aux_file::valid_name(name) {
            return Err(WalError::BadAuxName {
                name: name.to_owned(),
            });
        }
        aux_file::read(&self.dir, name)
    }

    /// Resolves once every operation submitted before it is durable.
    pub fn flush(&self) -> Completion {
        self.submit_completion(|_, done| Op::Flush { done })
    }

    /// The records in `range` that the log holds (a consecutive run, possibly empty), read from
    /// memory for unsynced ones, from the files otherwise, as one consistent view. Every
    /// record's crc is checked.
    pub fn read(&self, range: impl RangeBounds<u64>) -> WalResult<Vec<(u64, Bytes)>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            return Ok(Vec::new());
        }
        read_lock(&self.shared).read(start, end)
    }

    /// The record at `index`, if the log holds it.
    pub fn get(&self, index: u64) -> WalResult<Option<Bytes>> {
        Ok(self.read(index..=index)?.pop().map(|(_, payload)| payload))
    }

    /// The first index the log holds, counting every submitted operation.
    pub fn first_index(&self) -> Option<u64> {
        read_lock(&self.shared).tail.first
    }

    /// The last index the log holds, counting every submitted operation.
    pub fn last_index(&self) -> Option<u64> {
        read_lock(&self.shared).tail.last
    }

    /// The highest purged index, counting every submitted purge.
    pub fn purged_index(&self) -> Option<u64> {
        read_lock(&self.shared).tail.purged
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        read_lock(&self.shared).segments.len()
    }

    fn submit_completion(&self, make: impl FnOnce(&mut Tail, Done) -> Op) -> Completion {
        let (completion, done) = Completion::channel();
        match self.submit(|tail| make(tail, done)) {
            Ok(()) => completion,
            Err(e) => Completion::ready(Err(e)),
        }
    }

    /// Applies an operation to the submit-side view and queues it, under the index lock so
    /// that the queue order matches the view.
    fn submit(&self, make: impl FnOnce(&mut Tail) -> Op) -> WalResult<()> {
        let mut shared = write_lock(&self.shared);
        if let Some(cause) = &shared.failed {
            return Err(WalError::Failed {
                cause: Box::new(cause.clone()),
            });
        }
        let op = make(&mut shared.tail);
        self.send(op)
    }

    fn send(&self, op: Op) -> WalResult<()> {
        let tx = self.tx.as_ref().ok_or(WalError::Closed)?;
        tx.send(op).map_err(|_| WalError::Closed)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.writer.take()
            && handle.thread().id() != thread::current().id()
        {
            // The writer finishes the queued work and exits once the channel is closed.
            let _ = handle.join();
        }
    }
}
