//! MVCC key-value state on redb: current values, history, leases and alarms.
//!
//! [`MvccStore`] is the raft state machine's storage, with etcd's MVCC semantics: one store
//! revision per write command that changes something (sub-revisions inside it), per-key
//! create/mod revisions and versions, tombstones, historical reads and compaction.
//!
//! ```text
//!  raft apply ──► MvccStore::apply(batch) ─ one redb write txn ─► Writer (write.rs)
//!                   │  per entry: quota.rs ─► apply.rs ─► put / delete / txn.rs /
//!                   │                                      compact.rs / leases.rs / alarms
//!                   └─► ApplyOutput { revision, result, events } per entry (events feed watchers)
//!  reads ──► MvccStore::range / events / hash_kv ─ one redb read txn ─► read.rs
//!  snapshots ──► snapshot.rs (one read txn out, one write txn in)
//! ```
//!
//! All methods block: call them from a blocking thread, never from an async worker. Tables and
//! byte layouts are documented in `tables.rs` and `codec.rs`.

mod apply;
mod codec;
mod compact;
mod error;
mod feed;
mod hash;
mod leases;
mod quota;
mod read;
mod snapshot;
mod tables;
mod txn;
mod write;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

pub use error::{MvccError, MvccResult};
pub use feed::{HistoryAnchor, RecordedChange, RecordedRevision, RevisionMeta};
pub use hash::HashKv;
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, SnapshotInfo};

use crate::error::KvError;
use crate::kv::Event;
use crate::request::{
    AlarmMember, Command, CommandResponse, Proposal, RangeRequest, RangeResponse,
};
use crate::revision::RevisionId;
use read::{ReadSource, Revisions};
use tables::{ReadTables, WriteTables};
use write::Writer;

/// Settings of an [`MvccStore`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MvccOptions {
    /// Space quota in bytes of database file; 0 = no quota. See `quota.rs`.
    pub quota_bytes: u64,
    /// This member's id, named in the NOSPACE alarm the quota raises.
    pub member_id: u64,
}

/// One raft log entry to apply.
#[derive(Clone, Copy, Debug)]
pub struct ApplyInput<'a> {
    /// The entry's proposal; `None` for raft's own blank and membership entries.
    pub proposal: Option<&'a Proposal>,
    /// The entry's raft log id (term, index), recorded with the revision it makes.
    pub log_term: u64,
    pub log_index: u64,
}

/// The outcome of applying one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOutput {
    /// The store revision after the entry.
    pub revision: i64,
    /// The response, or the request error (which changed nothing). Raft's own entries answer
    /// `Ok(Txn { succeeded: true, responses: [] })`, an empty transaction.
    pub result: Result<CommandResponse, KvError>,
    /// One event per change, in sub-revision order, each with `prev_kv` when the key existed.
    pub events: Vec<Event>,
}

/// The MVCC store; see the module docs.
///
/// The redb database sits behind a lock only so that [`MvccStore::defragment`] can have it to
/// itself: every other method takes the lock shared.
pub struct MvccStore {
    db: RwLock<Database>,
    path: PathBuf,
    options: MvccOptions,
    current_revision: AtomicI64,
    compact_revision: AtomicI64,
    sizes: Sizes,
}

/// How often a durable apply recomputes the in-use size (a walk of every b-tree).
pub const SIZE_IN_USE_REFRESH: Duration = Duration::from_secs(30);

/// Cached sizes: status and metrics read them from async code without touching redb.
#[derive(Debug, Default)]
struct Sizes {
    file: AtomicU64,
    in_use: AtomicU64,
    in_use_at: Mutex<Option<Instant>>,
}

impl Sizes {
    fn in_use_is_stale(&self) -> bool {
        self.in_use_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|at| at.elapsed() >= SIZE_IN_USE_REFRESH)
    }
}

/// The size of the file at `path`; 0 if it cannot be read.
fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

impl MvccStore {
    /// Opens the store at `path`, creating it if missing.
    pub fn open(path: &Path, options: MvccOptions) -> MvccResult<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        let (current, compact) = {
            let mut tables = WriteTables::open(&txn)?;
            let current = write::read_meta_i64(&tables.meta, tables::META_CURRENT_REVISION)?;
            let compact = write::read_meta_i64(&tables.meta, tables::META_COMPACT_REVISION)?;
            if current.is_none() {
                tables.meta.insert(
                    tables::META_CURRENT_REVISION,
                    codec::encode_i64(1).as_slice(),
                )?;
            }
            if compact.is_none() {
                tables.meta.insert(
                    tables::META_COMPACT_REVISION,
                    codec::encode_i64(0).as_slice(),
                )?;
            }
            (current.unwrap_or(1), compact.unwrap_or(0))
        };
        txn.commit()?;
        let store = Self {
            db: RwLock::new(db),
            path: path.to_path_buf(),
            options,
            current_revision: AtomicI64::new(current),
            compact_revision: AtomicI64::new(compact),
            sizes: Sizes::default(),
        };
        store.refresh_size_in_use();
        Ok(store)
    }

    /// The store revision: 1 on an empty store, as in etcd.
    pub fn current_revision(&self) -> i64 {
        self.current_revision.load(Ordering::Acquire)
    }

    /// The revision of the last compaction; 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision.load(Ordering::Acquire)
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        // A panic while the lock was held cannot leave the database half-changed: redb
        // transactions are atomic, so a poisoned lock is still safe to use.
        self.db.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `read` on one read transaction, with the revisions of that transaction's snapshot.
    fn read<T>(&self, read: impl FnOnce(&ReadTables, Revisions) -> T) -> MvccResult<T> {
        let db = self.db();
        let txn = db.begin_read()?;
        let tables = ReadTables::open(&txn)?;
        let revisions = Revisions {
            current: write::read_meta_i64(&tables.meta, tables::META_CURRENT_REVISION)?
                .unwrap_or(1),
            compact: write::read_meta_i64(&tables.meta, tables::META_COMPACT_REVISION)?
                .unwrap_or(0),
        };
        Ok(read(&tables, revisions))
    }

    /// Applies entries in one redb write transaction (durable only if `durable`), storing
    /// `raft_state` (opaque bytes of the raft layer) in the same transaction. One output per
    /// input, in order. An error aborts the whole batch: nothing of it is stored.
    pub fn apply(
        &self,
        inputs: &[ApplyInput<'_>],
        raft_state: &[u8],
        durable: bool,
    ) -> MvccResult<Vec<ApplyOutput>> {
        let db = self.db();
        let mut txn = db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let (outputs, current, compact) = {
            let mut writer = Writer::load(WriteTables::open(&txn)?)?;
            let mut outputs = Vec::with_capacity(inputs.len());
            for input in inputs {
                let before = writer.revision();
                let output = apply::apply_one(&mut writer, *input)?;
                if output.revision > before {
                    record_revision_meta(&mut writer, input, output.revision)?;
                }
                outputs.push(output);
            }
            let (current, compact) = writer.finish(raft_state)?;
            (outputs, current, compact)
        };
        txn.commit()?;
        self.current_revision.store(current, Ordering::Release);
        self.compact_revision.store(compact, Ordering::Release);
        self.sizes
            .file
            .store(file_size(&self.path), Ordering::Relaxed);
        if durable && self.sizes.in_use_is_stale() {
            self.refresh_size_in_use();
        }
        Ok(outputs)
    }

    /// Does one bounded step of the pending compaction's physical removal (at most `budget`
    /// changes, in its own non-durable write transaction); returns whether work remains. Call
    /// from a blocking thread, repeatedly, after a Compact is applied and at start.
    pub fn compact_step(&self, budget: usize) -> MvccResult<bool> {
        let db = self.db();
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)?;
        let more = {
            let mut tables = WriteTables::open(&txn)?;
            compact::step(&mut tables, budget)?
        };
        txn.commit()?;
        Ok(more)
    }

    /// Makes every commit so far durable (an empty `Durability::Immediate` commit: redb
    /// persists the non-durable commits before it).
    pub fn sync(&self) -> MvccResult<()> {
        let db = self.db();
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        Ok(())
    }

    /// The raft state stored by the last [`MvccStore::apply`], if any.
    pub fn raft_state(&self) -> MvccResult<Option<Vec<u8>>> {
        self.read(|tables, _| -> MvccResult<_> {
            Ok(tables
                .meta
                .get(tables::META_RAFT_STATE)?
                .map(|row| row.value().to_vec()))
        })?
    }

    /// An etcd range read; returns the response and the revision of the state it read (the
    /// response header's revision).
    pub fn range(&self, req: &RangeRequest) -> Result<(RangeResponse, i64), KvError> {
        self.read(|tables, revisions| {
            let source = ReadSource {
                current: &tables.current,
                history: &tables.history,
            };
            source
                .range(req, revisions)
                .map(|response| (response, revisions.current))
        })?
        .map_err(KvError::from)
    }

    /// Every event with revision in `[from, to]`, in revision order, each with `prev_kv` when
    /// the key existed before. At most `limit` events, except that the events of one revision
    /// are never split (so a revision with more than `limit` changes comes whole).
    /// `Compacted` if `from` is at or below a compaction.
    pub fn events(&self, from: i64, to: i64, limit: usize) -> Result<Vec<Event>, KvError> {
        self.read(|tables, revisions| read_events(tables, revisions, from, to, limit))?
    }

    /// Revisions from `from` on, whole, until about `max_changes` changes are gathered, read
    /// regardless of the compact revision (see `feed.rs`): what history records.
    pub fn recorded_revisions(
        &self,
        from: i64,
        max_changes: usize,
    ) -> MvccResult<Vec<RecordedRevision>> {
        self.read(|tables, _| feed::read_recorded(tables, from, max_changes))?
    }

    /// The revision at and below which the physical removal of a compaction may have taken
    /// rows, so that history can replay only the revisions above it (0: every revision).
    pub fn replay_floor(&self) -> MvccResult<i64> {
        self.read(|tables, _| feed::replay_floor(tables))?
    }

    /// History's commit at a revision, for a member whose history must start there.
    pub fn history_anchor(&self) -> MvccResult<Option<HistoryAnchor>> {
        self.read(|tables, _| feed::history_anchor(tables))?
    }

    /// Keeps `anchor` in the store (replacing any other): the node stores history's commit at
    /// a compact revision before removing what lies below it, so every copy of the store
    /// (snapshots sent to followers, restored backups) carries it. Not replicated: each member
    /// writes its own, and members that record history write the same bytes.
    pub fn set_history_anchor(&self, anchor: &HistoryAnchor) -> MvccResult<()> {
        let db = self.db();
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut meta = txn.open_table(tables::META)?;
            meta.insert(tables::META_HISTORY_ANCHOR, anchor.encode().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every lease with its granted TTL, by id.
    pub fn leases(&self) -> MvccResult<Vec<(i64, i64)>> {
        self.read(|tables, _| -> MvccResult<_> {
            let mut leases = Vec::new();
            for row in tables.leases.iter()? {
                let (id, ttl) = row?;
                let decoded = codec::decode_i64(id.value()).zip(codec::decode_i64(ttl.value()));
                leases
                    .push(decoded.ok_or_else(|| MvccError::corrupt("leases", "undecodable row"))?);
            }
            Ok(leases)
        })?
    }

    /// The keys attached to lease `id`, in key order.
    pub fn lease_keys(&self, id: i64) -> MvccResult<Vec<Bytes>> {
        self.read(|tables, _| write::lease_keys(&tables.lease_keys, id))?
    }

    pub fn lease_exists(&self, id: i64) -> MvccResult<bool> {
        self.read(|tables, _| -> MvccResult<_> {
            Ok(tables
                .leases
                .get(codec::encode_i64(id).as_slice())?
                .is_some())
        })?
    }

    /// The raised alarms, sorted.
    pub fn alarms(&self) -> MvccResult<Vec<AlarmMember>> {
        self.read(|tables, _| write::read_alarms(&tables.meta))?
    }

    /// etcd `HashKV` at `revision` (0 = current); see `hash.rs`.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv, KvError> {
        self.read(|tables, revisions| hash::hash_kv(tables, revisions, revision))?
    }

    /// crc32 over every table's contents in key order.
    pub fn hash(&self) -> MvccResult<u32> {
        self.read(|tables, _| hash::hash_all(tables))?
    }

    /// The database file's size on disk (what the quota measures), as of the last commit.
    /// Cheap: a cached number, safe to call from async code.
    pub fn db_size(&self) -> u64 {
        self.sizes.file.load(Ordering::Relaxed)
    }

    /// Bytes of the file holding live pages (redb's allocated pages times the page size), as of
    /// the last refresh: at open, after a defragment, and at most every
    /// [`SIZE_IN_USE_REFRESH`] on a durable apply. Cheap: a cached number.
    pub fn db_size_in_use(&self) -> u64 {
        self.sizes.in_use.load(Ordering::Relaxed)
    }

    /// Recomputes [`MvccStore::db_size_in_use`]. Walks every b-tree and waits for an apply in
    /// progress: call it from a blocking thread.
    pub fn refresh_size_in_use(&self) {
        let bytes = match self.allocated_bytes() {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read redb page statistics");
                self.db_size()
            }
        };
        self.sizes
            .file
            .store(file_size(&self.path), Ordering::Relaxed);
        self.sizes.in_use.store(bytes, Ordering::Relaxed);
        *self
            .sizes
            .in_use_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether applying `command` would take the database past `--quota-backend-bytes` (etcd's
    /// quota check, made by the proposer before proposing; never inside apply, which must not
    /// depend on local file sizes).
    pub fn exceeds_quota(&self, command: &Command) -> bool {
        let cost = quota::cost(command);
        cost > 0
            && self.options.quota_bytes > 0
            && self.db_size().saturating_add(cost) >= self.options.quota_bytes
    }

    fn allocated_bytes(&self) -> MvccResult<u64> {
        let db = self.db();
        let txn = db.begin_write()?;
        let stats = txn.stats()?;
        txn.abort()?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }

    /// Rewrites the database file compactly and shrinks it (redb `Database::compact`). Waits for
    /// every read and apply in progress, and holds them off while it runs.
    pub fn defragment(&self) -> MvccResult<()> {
        {
            let mut db = self.db.write().unwrap_or_else(PoisonError::into_inner);
            db.compact()?;
        }
        self.refresh_size_in_use();
        Ok(())
    }

    /// Writes a snapshot of the whole store to `out`, from one read transaction; see
    /// `snapshot.rs` for the format.
    pub fn write_snapshot(&self, out: &mut dyn std::io::Write) -> MvccResult<SnapshotInfo> {
        self.read(|tables, _| snapshot::write(tables, out))?
    }

    /// Builds a new database at `path` (which must not exist) from a snapshot, in one durable
    /// write transaction after verifying the snapshot's digest, then opens it.
    pub fn restore_snapshot(
        path: &Path,
        input: &mut dyn std::io::Read,
        options: MvccOptions,
    ) -> MvccResult<Self> {
        if path.exists() {
            return Err(MvccError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let built = (|| -> MvccResult<()> {
            let db = Database::create(path)?;
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            snapshot::restore(&txn, input)?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(err) = built {
            // Leave no half-built database behind; the restore error is the one to report.
            let _ = std::fs::remove_file(path);
            return Err(err);
        }
        Self::open(path, options)
    }
}

/// The events of `[from, to]`; see [`MvccStore::events`].
/// What history needs to know about the entry that made `revision`, stored beside it.
fn record_revision_meta(
    writer: &mut Writer<'_>,
    input: &ApplyInput<'_>,
    revision: i64,
) -> MvccResult<()> {
    let bytes = postcard::to_allocvec(&RevisionMeta::of(input))
        .map_err(|_| MvccError::corrupt("revision_meta", "unencodable meta"))?;
    writer
        .tables
        .revision_meta
        .insert(codec::encode_i64(revision).as_slice(), bytes.as_slice())?;
    Ok(())
}

fn read_events(
    tables: &ReadTables,
    revisions: Revisions,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<Event>, KvError> {
    // As etcd, a read from exactly the compact revision is allowed: it still sees the changes
    // made at that revision (except deletes, whose tombstones compaction drops).
    if revisions.compact > 0 && from < revisions.compact {
        return Err(KvError::Compacted {
            compact_revision: revisions.compact,
        });
    }
    let from = from.max(1);
    let to = to.min(revisions.current);
    let mut events: Vec<Event> = Vec::new();
    if from > to {
        return Ok(events);
    }
    let source = ReadSource {
        current: &tables.current,
        history: &tables.history,
    };
    let start = codec::encode_revision(RevisionId { main: from, sub: 0 });
    let end = codec::encode_revision(RevisionId {
        main: to,
        sub: i64::MAX,
    });
    for row in tables
        .changes
        .range::<&[u8]>(start.as_slice()..=end.as_slice())
        .map_err(MvccError::from)?
    {
        let (at, key) = row.map_err(MvccError::from)?;
        let at = codec::decode_revision(at.value())
            .ok_or_else(|| MvccError::corrupt("changes", "undecodable key"))?;
        if events.len() >= limit && events.last().is_none_or(|last| last.revision() != at.main) {
            break;
        }
        let key = key.value();
        let kv = source
            .version_exact(key, at)?
            .ok_or_else(|| MvccError::corrupt("history", "change without a version"))?;
        // As etcd (a range at revision - 1), an event at or below the compact revision has no
        // prev_kv: that read is compacted, whether or not the version is physically gone yet.
        let prev_kv = if at.main <= revisions.compact {
            None
        } else {
            source.version_before(key, at)?
        };
        let kind = if kv.version == 0 {
            crate::kv::EventKind::Delete
        } else {
            crate::kv::EventKind::Put
        };
        events.push(Event { kind, kv, prev_kv });
    }
    Ok(events)
}
