//! `MvccStateMachine`: openraft's state machine over the MVCC store.
//!
//! ```text
//!  committed entries ──► apply(): one MvccStore::apply (one redb write txn, Durability::None,
//!                        durable every `checkpoint_interval`) on the blocking pool
//!                   ──► ApplyObserver::applied (watch hub, lessor, metrics) after the commit
//!                   ──► responders get `Applied { revision, result }`
//! ```
//!
//! To ensure correctness:
//! - `last_applied` and the membership are stored in the same redb transaction as the data they
//!   describe, so after a crash the store reports exactly the state it holds; openraft re-applies
//!   the log from there. The log is never purged past a durable `last_applied`: purging only
//!   follows a snapshot, and building a snapshot first makes the store durable.
//! - A snapshot is a file written from one redb read transaction (see `mvcc::snapshot`), fsynced
//!   and renamed into place before it is reported.
//! - Installing a snapshot builds a complete new database beside the old one and swaps it in with
//!   a rename, so a crash leaves either the old or the new state, never a mix.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::{Stream, TryStreamExt};
use openraft::EntryPayload;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use serde::{Deserialize, Serialize};

use crate::kv::Event;
use crate::mvcc::{ApplyInput, ApplyOutput, MvccOptions, MvccStore};
use crate::raft::types::{Applied, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

/// Where applied results go besides the proposer: the watch hub, the lessor, metrics.
pub trait ApplyObserver: Send + Sync + 'static {
    /// Called for each entry of a batch, in log order, once the batch is committed and before
    /// its proposer is answered: the entry as applied (its proposal, None for raft's own
    /// entries, and its log id), its output (whose `events` are handed over separately, by
    /// value).
    fn applied(&self, input: &ApplyInput<'_>, output: &ApplyOutput, events: Vec<Event>);
    /// Called after a snapshot replaced the whole state.
    fn restored(&self, store: &MvccStore);
    /// Called once per applied batch, after `applied` for each of its entries, with the store's
    /// revision after the batch.
    fn batch_applied(&self, _revision: i64) {}
}

/// The current MVCC store; replaced wholesale when a snapshot is installed.
#[derive(Clone)]
pub struct StoreCell {
    inner: Arc<RwLock<Arc<MvccStore>>>,
}

impl StoreCell {
    pub fn new(store: MvccStore) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Arc::new(store))),
        }
    }

    /// The store to use for one operation.
    pub fn get(&self) -> Arc<MvccStore> {
        Arc::clone(
            &self
                .inner
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn replace(&self, store: MvccStore) {
        *self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(store);
    }
}

/// What the store records about raft next to the data: the `raft_state` bytes of `MvccStore::apply`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RaftState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

/// openraft's state machine: applies committed entries to the MVCC store.
pub struct MvccStateMachine {
    store: StoreCell,
    db_path: PathBuf,
    options: MvccOptions,
    snapshot_dir: PathBuf,
    observer: Arc<dyn ApplyObserver>,
    state: RaftState,
    checkpoint_interval: Duration,
    last_checkpoint: Instant,
}

impl MvccStateMachine {
    /// Opens (or creates) the store at `db_path`; snapshots live in `snapshot_dir`.
    pub fn open(
        db_path: &Path,
        options: MvccOptions,
        snapshot_dir: &Path,
        observer: Arc<dyn ApplyObserver>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(snapshot_dir)?;
        let store = MvccStore::open(db_path, options.clone()).map_err(io::Error::other)?;
        let state = read_raft_state(&store)?;
        Ok(Self {
            store: StoreCell::new(store),
            db_path: db_path.to_path_buf(),
            options,
            snapshot_dir: snapshot_dir.to_path_buf(),
            observer,
            state,
            checkpoint_interval: Duration::from_millis(500),
            last_checkpoint: Instant::now(),
        })
    }

    /// A handle readers use to reach the current store.
    pub fn store(&self) -> StoreCell {
        self.store.clone()
    }

    fn encoded_state(&self) -> io::Result<Vec<u8>> {
        postcard::to_allocvec(&self.state).map_err(io::Error::other)
    }

    /// Makes everything applied so far durable.
    async fn checkpoint(&mut self) -> io::Result<()> {
        let store = self.store.get();
        let raft_state = self.encoded_state()?;
        tokio::task::spawn_blocking(move || store.apply(&[], &raft_state, true))
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    fn meta_path(&self) -> PathBuf {
        self.snapshot_dir.join("current.meta")
    }
}

/// What the store applies of a raft log entry.
fn apply_input(entry: &crate::raft::types::Entry) -> ApplyInput<'_> {
    ApplyInput {
        proposal: match &entry.payload {
            EntryPayload::Normal(proposal) => Some(proposal),
            EntryPayload::Blank | EntryPayload::Membership(_) => None,
        },
        log_term: entry.log_id.committed_leader_id().term,
        log_index: entry.log_id.index(),
    }
}

fn read_raft_state(store: &MvccStore) -> io::Result<RaftState> {
    // Empty state: a data dir restored from a snapshot, starting a fresh cluster.
    match store.raft_state().map_err(io::Error::other)? {
        Some(bytes) if !bytes.is_empty() => postcard::from_bytes(&bytes).map_err(io::Error::other),
        _ => Ok(RaftState::default()),
    }
}

impl RaftStateMachine<TypeConfig> for MvccStateMachine {
    type SnapshotData = File;
    type SnapshotBuilder = MvccSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + Send,
    {
        let batch: Vec<EntryResponder<TypeConfig>> = entries.try_collect().await?;
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        self.state.last_applied = Some(last.log_id);
        for (entry, _) in &batch {
            if let EntryPayload::Membership(membership) = &entry.payload {
                self.state.membership =
                    StoredMembership::new(Some(entry.log_id), membership.clone());
            }
        }
        let raft_state = self.encoded_state()?;
        let durable = self.last_checkpoint.elapsed() >= self.checkpoint_interval;
        let (entries, responders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let store = self.store.get();
        let outputs = tokio::task::spawn_blocking(move || {
            let inputs: Vec<ApplyInput<'_>> = entries.iter().map(apply_input).collect();
            let outputs = store.apply(&inputs, &raft_state, durable);
            drop(inputs);
            outputs.map(|outputs| (entries, outputs))
        })
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)?;
        let (entries, outputs) = outputs;
        if durable {
            self.last_checkpoint = Instant::now();
        }
        for ((entry, mut output), responder) in entries.iter().zip(outputs).zip(responders) {
            // The events move to the observer (the watch hub), the answer to the proposer:
            // nothing is copied.
            let events = std::mem::take(&mut output.events);
            self.observer.applied(&apply_input(entry), &output, events);
            if let Some(responder) = responder {
                responder.send(Applied {
                    revision: output.revision,
                    result: output.result,
                });
            }
        }
        self.observer
            .batch_applied(self.store.get().current_revision());
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.builder()
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(self.builder())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: File,
    ) -> Result<(), io::Error> {
        let fresh = self.db_path.with_extension("installing");
        let options = self.options.clone();
        let fresh_path = fresh.clone();
        let store = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(&fresh_path);
            snapshot.rewind()?;
            let mut input = BufReader::new(snapshot);
            MvccStore::restore_snapshot(&fresh_path, &mut input, options).map_err(io::Error::other)
        })
        .await
        .map_err(io::Error::other)??;
        // The data carries the raft position it was taken at; it must be the one announced.
        let state = read_raft_state(&store)?;
        if state.last_applied != meta.last_log_id {
            let _ = std::fs::remove_file(&fresh);
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot data is at {:?} but its metadata says {:?}",
                    state.last_applied, meta.last_log_id
                ),
            ));
        }
        let db_path = self.db_path.clone();
        let store = tokio::task::spawn_blocking(move || -> io::Result<MvccStore> {
            std::fs::rename(&fresh, &db_path)?;
            sync_dir(&db_path)?;
            Ok(store)
        })
        .await
        .map_err(io::Error::other)??;
        // Swap first: the observer (watch hub, lessor) reads the new store.
        self.store.replace(store);
        self.observer.restored(&self.store.get());
        self.state = RaftState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        self.checkpoint().await?;
        // Keep the installed snapshot as the current one.
        let mut builder = self.builder();
        builder.build_snapshot().await?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let meta_path = self.meta_path();
        let dir = self.snapshot_dir.clone();
        tokio::task::spawn_blocking(move || {
            let meta: SnapshotMeta = match std::fs::read(&meta_path) {
                Ok(bytes) => postcard::from_bytes(&bytes).map_err(io::Error::other)?,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
            let file = File::open(snapshot_path(&dir, &meta))?;
            Ok(Some(Snapshot {
                meta,
                snapshot: file,
            }))
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl MvccStateMachine {
    fn builder(&self) -> MvccSnapshotBuilder {
        MvccSnapshotBuilder {
            store: self.store.get(),
            snapshot_dir: self.snapshot_dir.clone(),
            meta_path: self.meta_path(),
        }
    }
}

/// Builds a snapshot file from one read transaction of the store. The snapshot's raft metadata
/// (last log id, membership) is read in that same transaction, so data and metadata always agree
/// even while applies continue.
pub struct MvccSnapshotBuilder {
    store: Arc<MvccStore>,
    snapshot_dir: PathBuf,
    meta_path: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for MvccSnapshotBuilder {
    type SnapshotData = File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let store = Arc::clone(&self.store);
        let dir = self.snapshot_dir.clone();
        let meta_path = self.meta_path.clone();
        let (meta, path) =
            tokio::task::spawn_blocking(move || write_snapshot_file(&store, &dir, &meta_path))
                .await
                .map_err(io::Error::other)??;
        let file = File::open(&path)?;
        Ok(Snapshot {
            meta,
            snapshot: file,
        })
    }
}

/// Snapshot files are named by the last log index they contain.
fn snapshot_path(dir: &Path, meta: &SnapshotMeta) -> PathBuf {
    let index = meta.last_log_id.as_ref().map_or(0, LogId::index);
    dir.join(format!("snapshot-{index:020}.snap"))
}

/// Writes a snapshot file from one read transaction, makes the store durable up to it, then
/// renames the file into place and writes its meta (each fsynced), and removes older snapshot
/// files. Returns the meta and the file's path.
///
/// The store sync comes after the read: everything the snapshot holds is then durable in the
/// store too, so purging the log behind the snapshot never strands a store that restarts from
/// an older durable state.
fn write_snapshot_file(
    store: &MvccStore,
    dir: &Path,
    meta_path: &Path,
) -> io::Result<(SnapshotMeta, PathBuf)> {
    let tmp = dir.join("snapshot.tmp");
    let info = {
        let mut out = BufWriter::new(File::create(&tmp)?);
        let info = store.write_snapshot(&mut out).map_err(io::Error::other)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        info
    };
    store.sync().map_err(io::Error::other)?;
    let state: RaftState = match info.raft_state.as_deref() {
        Some(bytes) if !bytes.is_empty() => {
            postcard::from_bytes(bytes).map_err(io::Error::other)?
        }
        _ => RaftState::default(),
    };
    let meta = SnapshotMeta {
        last_log_id: state.last_applied,
        last_membership: state.membership,
    };
    let path = snapshot_path(dir, &meta);
    std::fs::rename(&tmp, &path)?;
    let meta_tmp = meta_path.with_extension("tmp");
    {
        let mut out = File::create(&meta_tmp)?;
        out.write_all(&postcard::to_allocvec(&meta).map_err(io::Error::other)?)?;
        out.sync_all()?;
    }
    std::fs::rename(&meta_tmp, meta_path)?;
    sync_dir(&path)?;
    for entry in std::fs::read_dir(dir)? {
        let old = entry?.path();
        if old.extension().is_some_and(|ext| ext == "snap") && old != path {
            let _ = std::fs::remove_file(old);
        }
    }
    Ok((meta, path))
}

/// fsyncs the directory holding `path`, so a rename or create in it is durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}
