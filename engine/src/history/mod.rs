//! History: every revision of the store as a commit in a jj-lib repository.
//!
//! ```text
//!  MvccStateMachine::apply ─► ApplyObserver ─► Feed: each revision made (its changes, from
//!                                                │    the apply's events), then the batch end
//!  history thread (std::thread, never a tokio worker) ◄┘
//!     takes revisions (head, applied] from the feed, or, past what its bounded queue kept,
//!     reads them from the MVCC store (`changes`, `history`, `revision_meta`)
//!     ─► one jj tree per revision (keys mapped by `path`), one jj commit per revision
//!        (parent = previous revision's commit), one jj operation per applied batch
//!     ─► objects, operations and indexes in one redb write transaction (`store`)
//! ```
//!
//! History is derived and deterministic: commit ids depend only on the replicated log (time and
//! origin come from the raft entry, change ids from the revision, author and host are fixed), so
//! every member computes the same commit id for the same revision, and a rebuild from the same
//! log reproduces them. MVCC compaction never removes history: the compactor's physical removal
//! stops at the history head, so history can always catch up from the store.
//!
//! This is the only module that imports jj-lib.

mod backend;
mod db;
mod delta;
mod error;
mod index;
mod key_log;
mod op_store;
mod pack;
mod revision_blocks;
mod tree;
mod wire;
mod writer;

mod model;
pub mod path;
#[cfg(test)]
mod tests;

pub use error::{HistoryError, HistoryResult};
pub use model::{
    At, BlameLine, ChangeKind, HistoryStatus, KeyChange, KeyDiff, KeyVersion, LogQuery,
    OperationEntry, Origin, RestoreOutcome, RevisionDetail, RevisionEntry,
};

mod reader;
mod retention;

pub use backend::RedbBackend;
pub use index::KEY_LOG_SPAN;
pub use reader::History;
pub use retention::Retention;

/// Runs `future` with `origin` as the origin of every proposal it makes; kvapi wraps each
/// request handler in it (user from authentication, agent from the `user-agent` header).
pub async fn with_origin<F: std::future::Future>(origin: Origin, future: F) -> F::Output {
    ORIGIN.scope(origin, future).await
}

tokio::task_local! {
    static ORIGIN: Origin;
}

/// The origin of the request being served, if the caller set one.
pub(crate) fn current_origin() -> Origin {
    ORIGIN.try_with(Origin::clone).unwrap_or_default()
}

pub use db::history_path;

/// The live history of a node: the database, the writer thread and its feed.
pub(crate) struct Recording {
    history: History,
    feed: Arc<writer::Feed>,
    progress: Arc<writer::Progress>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

use std::sync::Arc;

impl Recording {
    /// Opens the history database of `data_dir` and starts the history thread, which records
    /// whatever `store()` holds past the history head, then follows the feed.
    pub(crate) fn start(
        data_dir: &std::path::Path,
        store: crate::raft::state_machine::StoreCell,
        retention: Retention,
    ) -> HistoryResult<Self> {
        let db = Arc::new(db::HistoryDb::open(&history_path(data_dir))?);
        let progress = Arc::new(writer::Progress::default());
        let feed = Arc::new(writer::Feed::default());
        let recorder = writer::Recorder::new(Arc::clone(&db), Arc::clone(&progress))?
            .with_feed(Arc::clone(&feed));
        feed.batch_applied(store.get().current_revision());
        let applied_store = store.clone();
        let history = History::online(
            db,
            Arc::clone(&progress),
            Box::new(move || applied_store.get().current_revision()),
        );
        let thread_feed = Arc::clone(&feed);
        let thread = std::thread::Builder::new()
            .name("cairn-history".to_owned())
            .spawn(move || writer::run(recorder, &thread_feed, &|| store.get(), &retention))?;
        Ok(Self {
            history,
            feed,
            progress,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// History's commit at `revision`, as the store keeps it before a compaction removes what
    /// lies below (see `MvccStore::set_history_anchor`); `None` if history does not hold it.
    pub(crate) fn anchor(
        &self,
        revision: i64,
    ) -> HistoryResult<Option<crate::mvcc::HistoryAnchor>> {
        Ok(self
            .history
            .commit_object(revision)?
            .map(|commit| crate::mvcc::HistoryAnchor { revision, commit }))
    }

    /// An applied entry made `revision`: the history thread records it from memory rather than
    /// reading it back from the store, while the hand-over queue has room.
    pub(crate) fn revision_applied(&self, revision: crate::mvcc::RecordedRevision) {
        self.feed.revision_applied(revision);
    }

    /// A batch was applied; `revision` is the store's revision after it.
    pub(crate) fn batch_applied(&self, revision: i64) {
        self.feed.batch_applied(revision);
    }

    /// A snapshot replaced the store.
    pub(crate) fn restored(&self, revision: i64) {
        self.feed.restored(revision);
    }

    /// The newest revision recorded.
    pub(crate) fn head(&self) -> i64 {
        self.progress
            .head
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The newest revision recorded durably: the store may physically drop what is below it.
    pub(crate) fn durable_head(&self) -> i64 {
        self.progress
            .durable
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records what is pending, makes it durable and stops the thread (blocking).
    pub(crate) fn stop(&self) {
        self.feed.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the history thread panicked");
        }
    }
}

/// Rebuilds the history of a stopped server's data dir from its MVCC store: the old history
/// database is set aside (`history.redb.old`, removed on success) and every revision the store
/// still holds is recorded again. Replaying from revision 2 (a store never compacted) gives the
/// same commit ids as before; after a compaction, the state at the store's replay floor becomes
/// one commit (the one recorded before, when the store holds its history anchor) and the rest
/// follows. `progress(recorded head, store revision)` is called as it
/// goes.
pub fn rebuild(
    data_dir: &std::path::Path,
    progress: &mut dyn FnMut(i64, i64),
) -> HistoryResult<HistoryStatus> {
    let path = history_path(data_dir);
    let old = path.with_extension("redb.old");
    // Opening the store first also refuses a running server's data dir (redb's file lock).
    let store = crate::mvcc::MvccStore::open(
        &data_dir.join("member").join("mvcc.redb"),
        crate::mvcc::MvccOptions::default(),
    )
    .map_err(HistoryError::storage)?;
    if path.exists() {
        std::fs::rename(&path, &old)?;
    }
    let mut recorder = OfflineRecorder::open(&path)?;
    let target = store.current_revision();
    while recorder.step(&store)? > 0 {
        progress(recorder.head_revision(), target);
    }
    let status = recorder.history().status()?;
    drop(recorder);
    if old.exists() {
        std::fs::remove_file(&old)?;
    }
    Ok(status)
}

/// Records an MVCC store's revisions into a history database outside a running node: what
/// `rebuild` and the benchmarks use. Blocking.
pub struct OfflineRecorder {
    db: Arc<db::HistoryDb>,
    recorder: writer::Recorder,
}

impl OfflineRecorder {
    /// Opens (or creates) the history database at `path`.
    pub fn open(path: &std::path::Path) -> HistoryResult<Self> {
        let db = Arc::new(db::HistoryDb::open(path)?);
        let recorder =
            writer::Recorder::new(Arc::clone(&db), Arc::new(writer::Progress::default()))?;
        Ok(Self { db, recorder })
    }

    /// Records one transaction's worth of the revisions `store` holds past the head; returns
    /// how many (0 = caught up). Durable.
    pub fn step(&mut self, store: &crate::mvcc::MvccStore) -> HistoryResult<usize> {
        self.recorder
            .step(store, &mut std::collections::VecDeque::new(), true)
    }

    /// Records everything `store` holds past the head; returns how many revisions.
    pub fn record(&mut self, store: &crate::mvcc::MvccStore) -> HistoryResult<usize> {
        let mut marks = std::collections::VecDeque::from([store.current_revision()]);
        self.recorder.catch_up(store, &mut marks, false)
    }

    /// Records in transactions of about `changes` changes (default 20,000, what a catch-up
    /// uses; the live thread's transactions hold what 100 ms of writes applied).
    pub fn set_changes_per_transaction(&mut self, changes: usize) {
        self.recorder.set_changes_per_transaction(changes);
    }

    pub fn head_revision(&self) -> i64 {
        self.recorder.head_revision()
    }

    /// Queries over what was recorded.
    pub fn history(&self) -> History {
        History::offline(Arc::clone(&self.db))
    }

    /// Live bytes in the history database (not free pages).
    pub fn used_bytes(&self) -> HistoryResult<u64> {
        retention::used_bytes(&self.db)
    }
}
