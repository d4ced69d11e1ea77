//! The history thread: records applied revisions as jj commits, in order, off the apply path.
//!
//! ```text
//!  apply (state machine) ── Feed::revision_applied(revision) ─► hand-over queue (bounded)
//!                        ── Feed::batch_applied(last revision) ──► condvar
//!  history thread: wait ─► the queue from head + 1, else MvccStore::recorded_revisions(head + 1, …)
//!     ─► per revision:
//!     WorkingTree (tree.rs) ─► jj commit (parent = head) ─► index rows (index.rs)
//!     per applied batch: jj operation (view = new head) ─► one redb write transaction
//! ```
//!
//! Commits are deterministic: the tree from the changes, the time from the raft entry (never
//! earlier than the parent's), the change id from the revision, fixed committer. Operations
//! record this member's batches (raft log ids, origins).
//!
//! The database commit is non-durable except about once a second; [`Progress::durable`] is what
//! the compactor waits for before physically removing revisions, so after a crash history
//! always finds what it lost still in the MVCC store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use jj_lib::backend::{ChangeId, Commit, CommitId, MillisSinceEpoch, Signature, Timestamp, TreeId};
use jj_lib::hex_util::encode_hex;
use jj_lib::merge::Merge;
use jj_lib::object_id::ObjectId;
use redb::Durability;
use sha2::{Digest, Sha256};

use super::db::HistoryDb;
use super::error::{HistoryError, HistoryResult};
use super::index::{self, Head, InlineChange, OperationRecord, RevisionRecordRef};
use super::key_log::{KeyLogBatch, KeyLogRow};
use super::model::{ChangeKind, Origin};
use super::retention::{self, Retention};
use super::revision_blocks::BlockWriter;
use super::tree::WorkingTree;
use crate::mvcc::{HistoryAnchor, MvccStore, RecordedChange, RecordedRevision, RevisionMeta};
use crate::request::RangeRequest;

/// Changes read from the store per write transaction.
const CHANGES_PER_TRANSACTION: usize = 20_000;
/// The least time between two recording rounds: revisions applied meanwhile share one
/// database transaction (history lags the store by at most about this much more).
const GATHER: Duration = Duration::from_millis(100);
/// How often the history database is made durable.
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// At most this many batch boundaries are remembered; older ones merge (bounded memory).
const MAX_MARKS: usize = 100_000;
/// Bytes of revisions (keys and values) the hand-over queue holds at most: past that, the
/// history thread reads what the queue could not take from the store.
const HANDED_BYTES: usize = 32 << 20;
/// How often retention is checked.
const RETENTION_CHECK: Duration = Duration::from_secs(60);
/// Keys listed in a commit description.
const DESCRIBED_KEYS: usize = 20;

/// What the apply path tells the history thread.
#[derive(Default)]
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    wake: Condvar,
}

#[derive(Default)]
struct FeedState {
    /// The newest revision applied.
    applied: i64,
    /// The last revision of each applied batch not yet recorded, oldest first.
    marks: VecDeque<i64>,
    stop: bool,
    /// The history thread waits for work (in [`Feed::wait`]): batches wake it until it finds
    /// one past its head (it may have recorded from the store ahead of the feed). At any other
    /// time it is recording or letting revisions gather, and waking it would only cost both
    /// sides a futex call and a context switch per applied batch.
    idle: bool,
    /// Revisions handed over by the apply path, oldest first: what the store holds for them,
    /// built from the apply's events (`RecordedRevision::applied`). There may be gaps (the
    /// queue was full); the thread reads those from the store.
    handed: VecDeque<RecordedRevision>,
    /// What `handed` holds, in [`RecordedRevision::size`] bytes.
    handed_bytes: usize,
}

impl Feed {
    /// A batch was applied whose newest revision is `revision`.
    pub(crate) fn batch_applied(&self, revision: i64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if revision > state.applied {
            state.applied = revision;
            if state.marks.len() >= MAX_MARKS {
                state.marks.pop_front();
            }
            state.marks.push_back(revision);
            if state.idle {
                self.wake.notify_one();
            }
        }
    }

    /// An applied entry made `revision`: queued for the history thread if there is room (it
    /// reads it from the store otherwise).
    pub(crate) fn revision_applied(&self, revision: RecordedRevision) {
        let size = revision.size();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.handed_bytes + size <= HANDED_BYTES {
            state.handed_bytes += size;
            state.handed.push_back(revision);
        }
    }

    /// The handed-over revisions that continue from `next`, consecutive, until about
    /// `max_changes` changes; empty if the queue does not hold `next`. Forgets those before it.
    fn take_handed(&self, next: i64, max_changes: usize) -> Vec<RecordedRevision> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *state;
        while state.handed.front().is_some_and(|r| r.revision < next) {
            let stale = state.handed.pop_front().expect("checked");
            state.handed_bytes -= stale.size();
        }
        let mut taken: Vec<RecordedRevision> = Vec::new();
        let mut changes = 0;
        while changes < max_changes
            && state
                .handed
                .front()
                .is_some_and(|r| r.revision == next + taken.len() as i64)
        {
            let revision = state.handed.pop_front().expect("checked");
            state.handed_bytes -= revision.size();
            changes += revision.changes.len();
            taken.push(revision);
        }
        taken
    }

    #[cfg(test)]
    pub(crate) fn handed_len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .handed
            .len()
    }

    /// The store was replaced (snapshot installed): start from its revision.
    pub(crate) fn restored(&self, revision: i64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.applied = revision;
        state.marks.clear();
        state.handed.clear();
        state.handed_bytes = 0;
        self.wake.notify_one();
    }

    pub(crate) fn stop(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.wake.notify_all();
    }

    /// Sleeps for `duration`, or less if the thread is asked to stop.
    fn sleep_unless_stopped(&self, duration: Duration) {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .wake
            .wait_timeout_while(state, duration, |state| !state.stop)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Waits until something past `head` was applied (or a second passed); returns the marks
    /// and whether to stop.
    fn wait(&self, head: i64) -> (VecDeque<i64>, bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.idle = true;
        let (mut state, _) = self
            .wake
            .wait_timeout_while(state, DURABLE_EVERY, |state| {
                !state.stop && state.applied <= head
            })
            .unwrap_or_else(PoisonError::into_inner);
        state.idle = false;
        (std::mem::take(&mut state.marks), state.stop)
    }
}

/// The recorded position, for status, metrics and the compactor.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub head: AtomicI64,
    pub durable: AtomicI64,
    pub head_commit: Mutex<String>,
    pub failed: std::sync::atomic::AtomicBool,
}

/// Records revisions into the history database.
pub(crate) struct Recorder {
    db: Arc<HistoryDb>,
    head: Head,
    progress: Arc<Progress>,
    last_durable: Instant,
    /// The head's tree, loaded where the last revisions edited it.
    working: WorkingTree,
    /// Changes read from the store per round (one write transaction).
    changes_per_round: usize,
    /// Where the apply path hands revisions over (none offline: everything is read).
    feed: Option<Arc<Feed>>,
    /// The `key_log` rows of the revisions past `key_log_through`.
    key_log: KeyLogBatch,
}

impl Recorder {
    pub(crate) fn new(db: Arc<HistoryDb>, progress: Arc<Progress>) -> HistoryResult<Self> {
        let head = db.head()?;
        progress.head.store(head.revision, Ordering::Release);
        progress.durable.store(head.revision, Ordering::Release);
        *progress
            .head_commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = encode_hex(&head.commit_id);
        Ok(Self {
            key_log: KeyLogBatch::load(&db)?,
            db,
            head,
            progress,
            last_durable: Instant::now(),
            working: WorkingTree::default(),
            changes_per_round: CHANGES_PER_TRANSACTION,
            feed: None,
        })
    }

    /// Records the revisions `feed` was handed, when they continue the head, instead of
    /// reading them from the store.
    pub(crate) fn with_feed(mut self, feed: Arc<Feed>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Records in transactions of about `changes` changes (catching up: the live thread's
    /// rounds are cut short by time).
    pub(crate) fn set_changes_per_transaction(&mut self, changes: usize) {
        self.changes_per_round = changes.max(1);
    }

    /// Records in rounds of about `changes` changes, with a working tree that keeps at most
    /// `loaded` entries between rounds (tests: many rounds, directories unloaded and reloaded).
    #[cfg(test)]
    pub(crate) fn with_small_rounds(mut self, changes: usize, loaded: usize) -> Self {
        self.changes_per_round = changes;
        self.working = WorkingTree::with_limit(loaded);
        self
    }

    pub(crate) fn head_revision(&self) -> i64 {
        self.head.revision
    }

    /// Records everything the store holds past the head; returns how many revisions.
    pub(crate) fn catch_up(
        &mut self,
        store: &MvccStore,
        marks: &mut VecDeque<i64>,
        force_durable: bool,
    ) -> HistoryResult<usize> {
        let mut recorded = 0;
        loop {
            let step = self.step(store, marks, force_durable)?;
            if step == 0 {
                break;
            }
            recorded += step;
        }
        if force_durable {
            self.make_durable()?;
        }
        Ok(recorded)
    }

    /// Records the next transaction's worth of revisions; returns how many (0 = caught up).
    pub(crate) fn step(
        &mut self,
        store: &MvccStore,
        marks: &mut VecDeque<i64>,
        force_durable: bool,
    ) -> HistoryResult<usize> {
        // Below the floor a compaction's removal may have taken rows: start from the state at
        // the floor instead (a snapshot from a compacted leader, a rebuild after compaction).
        let floor = store.replay_floor().map_err(HistoryError::storage)?;
        if self.head.revision < floor {
            self.import_state(store, floor)?;
            return Ok(1);
        }
        let expected = if self.head.revision == 0 {
            2
        } else {
            self.head.revision + 1
        };
        let handed = self.feed.as_ref().map_or_else(Vec::new, |feed| {
            feed.take_handed(expected, self.changes_per_round)
        });
        let revisions = if handed.is_empty() {
            store
                .recorded_revisions(self.head.revision + 1, self.changes_per_round)
                .map_err(HistoryError::storage)?
        } else {
            handed
        };
        let Some(first) = revisions.first() else {
            return Ok(0);
        };
        if first.revision != expected {
            self.import_state(store, first.revision - 1)?;
            return Ok(1);
        }
        self.record(&revisions, marks, force_durable, None)?;
        Ok(revisions.len())
    }

    /// Records `revisions` (consecutive, starting at head + 1, unless one imported state) in
    /// one write transaction. `anchor` is the commit its peers recorded for the one revision
    /// imported, used as it is when its tree is the one built here.
    fn record(
        &mut self,
        revisions: &[RecordedRevision],
        marks: &mut VecDeque<i64>,
        force_durable: bool,
        anchor: Option<&HistoryAnchor>,
    ) -> HistoryResult<()> {
        // A failed round leaves the working tree holding trees that were never committed: it
        // is kept only when the round commits.
        let mut working = std::mem::take(&mut self.working);
        self.record_with(&mut working, revisions, marks, force_durable, anchor)?;
        working.end_round();
        self.working = working;
        Ok(())
    }

    fn record_with(
        &mut self,
        working: &mut WorkingTree,
        revisions: &[RecordedRevision],
        marks: &mut VecDeque<i64>,
        force_durable: bool,
        anchor: Option<&HistoryAnchor>,
    ) -> HistoryResult<()> {
        let backend = Arc::clone(&self.db.backend);
        let mut head = self.head.clone();
        // `revisions` rows, encoded into `row`, gathered in blocks.
        let mut row: Vec<u8> = Vec::with_capacity(256);
        let mut blocks = BlockWriter::default();
        let mut changed_rows: Vec<([u8; 12], Vec<u8>)> = Vec::new();
        let mut key_log_rows: Vec<KeyLogRow> = Vec::new();
        let mut operations: Vec<(u64, OperationRecord)> = Vec::new();
        let mut group: Vec<(i64, CommitId, &RevisionMeta)> = Vec::new();
        // The head's commit and tree as the loop goes: each revision's are the next's.
        let mut parent = head.commit(self.db.backend.root_commit());
        let mut base = head.tree(self.db.backend.empty_tree());
        for revision in revisions {
            backend.buffer.set_writing(revision.revision);
            working.begin(&backend, &base)?;
            // The changes go into the revision's row, unless there are too many.
            let mut inline_changes: Option<Vec<InlineChange<&serde_bytes::Bytes>>> =
                (revision.changes.len() <= index::INLINE_CHANGES)
                    .then(|| Vec::with_capacity(revision.changes.len()));
            for (seq, change) in revision.changes.iter().enumerate() {
                let file = change
                    .value
                    .as_ref()
                    .map(|value| backend.put_file(value, change.mod_revision));
                working.set(&backend, &change.key, file.as_ref())?;
                let kind = change_kind(change);
                if let Some(inline) = &mut inline_changes {
                    inline.push(InlineChange {
                        kind,
                        key: serde_bytes::Bytes::new(&change.key),
                    });
                } else {
                    let mut row = vec![kind];
                    row.extend_from_slice(&change.key);
                    changed_rows.push((index::changed_key(revision.revision, seq as u32), row));
                }
                key_log_rows.push((index::key_log_key(&change.key, revision.revision), kind));
            }
            let tree = working.write(&backend);
            let anchored = anchor.and_then(|anchor| anchored_commit(anchor, revision, &tree));
            let (time, commit_id) = if let Some((commit, bytes)) = anchored {
                let time = u64::try_from(commit.committer.timestamp.timestamp.0).unwrap_or(0);
                parent = commit.parents[0].clone();
                (time, backend.put_commit_bytes(&commit, &bytes))
            } else {
                let time = revision.meta.time_unix_ms.max(head.time_unix_ms);
                let commit = revision_commit(revision, &parent, &tree, time);
                (time, backend.put_commit(&commit))
            };
            if head.revision + 1 < revision.revision && head.revision > 0 {
                // Imported past a gap: what came before is no longer this history's.
                head.oldest_revision = revision.revision;
            }
            let record = RevisionRecordRef {
                commit_id: commit_id.as_bytes(),
                parent_commit_id: parent.as_bytes(),
                tree_id: tree.as_bytes(),
                time_unix_ms: time,
                log_term: revision.meta.log_term,
                log_index: revision.meta.log_index,
                origin: &revision.meta.origin,
                changes_total: revision.changes.len() as u64,
            };
            row.clear();
            row = index::encode_revision_row_onto(&record, inline_changes.as_deref(), row)
                .map_err(HistoryError::storage)?;
            blocks.push(revision.revision, &row);
            head.revision = revision.revision;
            head.commit_id.clear();
            head.commit_id.extend_from_slice(commit_id.as_bytes());
            head.tree_id.clear();
            head.tree_id.extend_from_slice(tree.as_bytes());
            head.time_unix_ms = time;
            if head.oldest_revision == 0 {
                head.oldest_revision = revision.revision;
            }
            group.push((revision.revision, commit_id.clone(), &revision.meta));
            parent = commit_id;
            base = tree;
            while marks.front().is_some_and(|&mark| mark < revision.revision) {
                marks.pop_front();
            }
            let batch_ends = marks.front() == Some(&revision.revision);
            if batch_ends {
                marks.pop_front();
            }
            let last = std::ptr::eq(revision, revisions.last().expect("not empty"));
            if batch_ends || last {
                let (seq, record) = self.write_operation(&mut head, &group)?;
                operations.push((seq, record));
                group.clear();
            }
        }

        let durable = force_durable || self.last_durable.elapsed() >= DURABLE_EVERY;
        let key_log_due = self.key_log.due(head.revision, &key_log_rows);
        let mut txn = self.db.db.begin_write()?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        let result = (|| -> HistoryResult<()> {
            backend
                .buffer
                .flush_into(&txn)
                .map_err(HistoryError::storage)?;
            blocks.write(&txn)?;
            let mut table = txn.open_table(index::CHANGED)?;
            for (key, row) in &changed_rows {
                table.insert(key.as_slice(), row.as_slice())?;
            }
            drop(table);
            if key_log_due {
                self.key_log.write(&txn, head.revision, &mut key_log_rows)?;
            }
            let mut table = txn.open_table(index::OPERATIONS)?;
            for (seq, record) in &operations {
                let bytes = postcard::to_allocvec(record).map_err(HistoryError::storage)?;
                table.insert(seq.to_be_bytes().as_slice(), bytes.as_slice())?;
            }
            drop(table);
            let mut meta = txn.open_table(index::META)?;
            let bytes = postcard::to_allocvec(&head).map_err(HistoryError::storage)?;
            meta.insert(index::META_HEAD, bytes.as_slice())?;
            Ok(())
        })();
        if let Err(err) = result {
            backend.buffer.discard();
            return Err(err);
        }
        txn.commit()?;
        self.key_log
            .committed(head.revision, key_log_rows, key_log_due);
        self.head = head;
        self.published(durable);
        Ok(())
    }

    /// Writes the jj operation for `group` (revisions recorded together); returns its index row.
    fn write_operation(
        &self,
        head: &mut Head,
        group: &[(i64, CommitId, &RevisionMeta)],
    ) -> HistoryResult<(u64, OperationRecord)> {
        let (first_revision, _, first) = group.first().expect("a group has revisions");
        let (last_revision, _, last) = group.last().expect("a group has revisions");
        // A batch's revisions mostly share one origin: repeats in a row are dropped first.
        let mut origins: Vec<&Origin> = Vec::new();
        for (_, _, meta) in group {
            if origins.last() != Some(&&meta.origin) {
                origins.push(&meta.origin);
            }
        }
        if origins.len() > 1 {
            origins.sort_unstable();
            origins.dedup();
        }
        let mut log_id = String::with_capacity(48);
        push_log_id(&mut log_id, first);
        log_id.push_str("..");
        push_log_id(&mut log_id, last);
        let mut revisions = String::with_capacity(24);
        push_decimal(&mut revisions, *first_revision);
        revisions.push_str("..");
        push_decimal(&mut revisions, *last_revision);
        let mut attributes = BTreeMap::new();
        attributes.insert("raft.log_id".to_owned(), log_id);
        attributes.insert("cairn.revisions".to_owned(), revisions);
        let mut users: Vec<&str> = origins
            .iter()
            .map(|o| o.user.as_str())
            .filter(|u| !u.is_empty())
            .collect();
        let mut agents: Vec<&str> = origins
            .iter()
            .map(|o| o.agent.as_str())
            .filter(|a| !a.is_empty())
            .collect();
        if !users.is_empty() {
            attributes.insert("origin.user".to_owned(), dedup_join(&mut users));
        }
        if !agents.is_empty() {
            attributes.insert("origin.agent".to_owned(), dedup_join(&mut agents));
        }
        let mut description = String::with_capacity(48);
        description.push_str(if first_revision == last_revision {
            "apply revision "
        } else {
            "apply revisions "
        });
        push_decimal(&mut description, *first_revision);
        if first_revision != last_revision {
            description.push_str("..");
            push_decimal(&mut description, *last_revision);
        }
        let id = self.db.op_store.append(
            head,
            description,
            (first.time_unix_ms, last.time_unix_ms),
            attributes,
            group.iter().map(|(_, commit, _)| commit.clone()),
        )?;
        Ok((
            head.operation_seq,
            OperationRecord {
                operation_id: id.to_bytes(),
                first_revision: *first_revision,
                last_revision: *last_revision,
            },
        ))
    }

    /// Records the whole state at `revision` as one commit: used when the revisions before it
    /// are gone from the store (history enabled on a compacted store, a snapshot installed
    /// past the head, or a rebuild after compaction). The commit is the store's history anchor
    /// when that is the commit of this revision and state (so it is the one the peers recorded),
    /// otherwise one of its own.
    fn import_state(&mut self, store: &MvccStore, revision: i64) -> HistoryResult<()> {
        tracing::warn!(
            head = self.head.revision,
            revision,
            "history cannot replay revisions up to {revision}: recording the state at it as one commit"
        );
        let mut changes = Vec::new();
        let mut from = Bytes::from_static(b"\0");
        // The current tree is replaced: deletes for what it holds, puts for the state.
        let existing = self.keys_at_head()?;
        loop {
            let request = RangeRequest {
                key: from.clone(),
                range_end: Bytes::from_static(b"\0"),
                revision,
                limit: 10_000,
                ..RangeRequest::default()
            };
            let (response, _) = store.range(&request).map_err(HistoryError::storage)?;
            for kv in &response.kvs {
                changes.push(RecordedChange {
                    key: kv.key.clone(),
                    value: Some(kv.value.clone()),
                    mod_revision: kv.mod_revision,
                });
            }
            match response.kvs.last() {
                Some(last) if response.more => {
                    let mut next = last.key.to_vec();
                    next.push(0);
                    from = Bytes::from(next);
                }
                _ => break,
            }
        }
        let present: BTreeSet<&[u8]> = changes.iter().map(|c| c.key.as_ref()).collect();
        let removals: Vec<RecordedChange> = existing
            .into_iter()
            .filter(|key| !present.contains(key.as_slice()))
            .map(|key| RecordedChange {
                key: Bytes::from(key),
                value: None,
                mod_revision: revision,
            })
            .collect();
        changes.extend(removals);
        let imported = RecordedRevision {
            revision,
            meta: RevisionMeta::default(),
            changes,
        };
        let anchor = store
            .history_anchor()
            .map_err(HistoryError::storage)?
            .filter(|anchor| anchor.revision == revision);
        self.record(
            std::slice::from_ref(&imported),
            &mut VecDeque::new(),
            true,
            anchor.as_ref(),
        )
    }

    fn keys_at_head(&self) -> HistoryResult<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        if self.head.tree_id.is_empty() {
            return Ok(keys);
        }
        super::tree::walk(
            &self.db.backend,
            &TreeId::new(self.head.tree_id.clone()),
            &mut Vec::new(),
            &mut |components, _| {
                if let Some(key) =
                    super::path::key_from_components(components.iter().map(String::as_str))
                {
                    keys.push(key);
                }
                true
            },
        )?;
        Ok(keys)
    }

    fn make_durable(&mut self) -> HistoryResult<()> {
        let mut txn = self.db.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        self.published(true);
        Ok(())
    }

    fn published(&mut self, durable: bool) {
        self.progress
            .head
            .store(self.head.revision, Ordering::Release);
        *self
            .progress
            .head_commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = encode_hex(&self.head.commit_id);
        if durable {
            self.last_durable = Instant::now();
            self.progress
                .durable
                .store(self.head.revision, Ordering::Release);
        }
    }

    /// Trims history as `retention` asks, if it asks for anything now; returns the revision
    /// history now starts at when it trimmed.
    pub(crate) fn trim_if_needed(
        &mut self,
        retention: &Retention,
        now_unix_ms: u64,
    ) -> HistoryResult<Option<i64>> {
        if retention.keeps_everything() {
            return Ok(None);
        }
        let Some(point) = retention::trim_point(&self.db, &self.head, retention, now_unix_ms)?
        else {
            return Ok(None);
        };
        self.working = WorkingTree::with_limit(self.working.limit());
        self.head = retention::trim(
            &self.db,
            &self.head,
            point,
            now_unix_ms,
            &retention.to_string(),
        )?;
        self.key_log.trimmed(point);
        Ok(Some(point))
    }

    /// Makes the database durable if the last durable commit is older than [`DURABLE_EVERY`].
    fn tick(&mut self) -> HistoryResult<()> {
        if self.progress.durable.load(Ordering::Acquire) < self.head.revision
            && self.last_durable.elapsed() >= DURABLE_EVERY
        {
            self.make_durable()?;
        }
        Ok(())
    }
}

/// The history thread's loop: runs until the feed is stopped.
pub(crate) fn run(
    mut recorder: Recorder,
    feed: &Feed,
    store: &dyn Fn() -> Arc<MvccStore>,
    retention: &Retention,
) {
    let mut failures = 0u32;
    let mut last_trim_check = Instant::now();
    let mut last_round = Instant::now();
    loop {
        // Under load, let revisions gather for a moment: one database transaction for many
        // revisions costs less per revision than one for each.
        if let Some(rest) = GATHER.checked_sub(last_round.elapsed()) {
            feed.sleep_unless_stopped(rest);
        }
        let (mut marks, stop) = feed.wait(recorder.head_revision());
        last_round = Instant::now();
        let mut result = recorder
            .catch_up(&store(), &mut marks, stop)
            .and_then(|_| recorder.tick());
        if result.is_ok() && !stop && last_trim_check.elapsed() >= RETENTION_CHECK {
            last_trim_check = Instant::now();
            result = recorder
                .trim_if_needed(retention, crate::node::now_unix_ms())
                .map(|_| ());
        }
        match result {
            Ok(()) => failures = 0,
            Err(err) => {
                failures += 1;
                recorder.progress.failed.store(true, Ordering::Release);
                tracing::error!(%err, "recording history; will retry");
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(50))));
            }
        }
        if stop {
            return;
        }
    }
}

/// The anchor's commit (decoded and encoded) if it is the commit of `revision` with `tree`;
/// `None` (and a warning) if it is not, which leaves the import to make its own commit.
fn anchored_commit(
    anchor: &HistoryAnchor,
    revision: &RecordedRevision,
    tree: &TreeId,
) -> Option<(Commit, Vec<u8>)> {
    let commit = super::backend::decode_commit(&anchor.commit);
    let usable = commit.as_ref().filter(|commit| {
        anchor.revision == revision.revision
            && commit.change_id == change_id(revision.revision)
            && commit.root_tree.as_resolved() == Some(tree)
            && commit.parents.len() == 1
            && commit.committer.timestamp.timestamp.0 >= 0
    });
    let Some(commit) = usable else {
        tracing::warn!(
            revision = revision.revision,
            "the store's history anchor does not match the state: recording an import commit"
        );
        return None;
    };
    Some((commit.clone(), anchor.commit.clone()))
}

/// The jj commit of one revision.
fn revision_commit(
    revision: &RecordedRevision,
    parent: &CommitId,
    tree: &TreeId,
    time: u64,
) -> Commit {
    let meta = &revision.meta;
    let described: usize = revision
        .changes
        .iter()
        .take(DESCRIBED_KEYS)
        .map(|change| change.key.len() + 8)
        .sum();
    let mut description = String::with_capacity(described + 160);
    description.push_str("revision ");
    push_decimal(&mut description, revision.revision);
    description.push_str("\n\n");
    for change in revision.changes.iter().take(DESCRIBED_KEYS) {
        let verb = if change.value.is_some() {
            "put "
        } else {
            "delete "
        };
        description.push_str(verb);
        push_escaped(&mut description, &change.key);
        description.push('\n');
    }
    if revision.changes.len() > DESCRIBED_KEYS {
        description.push_str("… and ");
        push_decimal(&mut description, revision.changes.len() - DESCRIBED_KEYS);
        description.push_str(" more\n");
    }
    description.push_str("\nRaft-Log-Id: ");
    push_log_id(&mut description, meta);
    description.push('\n');
    if !meta.origin.user.is_empty() {
        description.push_str("Origin-User: ");
        description.push_str(&meta.origin.user);
        description.push('\n');
    }
    if !meta.origin.agent.is_empty() {
        description.push_str("Origin-Agent: ");
        description.push_str(&meta.origin.agent);
        description.push('\n');
    }
    let author = if meta.origin.user.is_empty() {
        "cairn".to_owned()
    } else {
        meta.origin.user.clone()
    };
    Commit {
        parents: vec![parent.clone()],
        predecessors: Vec::new(),
        root_tree: Merge::resolved(tree.clone()),
        conflict_labels: Merge::resolved(String::new()),
        change_id: change_id(revision.revision),
        description,
        author: Signature {
            name: author,
            email: String::new(),
            timestamp: timestamp(time),
        },
        committer: Signature {
            name: "cairn".to_owned(),
            email: String::new(),
            timestamp: timestamp(time),
        },
        secure_sig: None,
    }
}

/// A change's kind, as the indexes encode it.
fn change_kind(change: &RecordedChange) -> u8 {
    index::encode_kind(if change.value.is_some() {
        ChangeKind::Put
    } else {
        ChangeKind::Delete
    })
}

/// The change id of a revision: a function of the revision alone.
fn change_id(revision: i64) -> ChangeId {
    let mut hasher = Sha256::new();
    hasher.update(b"cairn revision ");
    hasher.update(revision.to_be_bytes());
    ChangeId::new(hasher.finalize()[..16].to_vec())
}

pub(crate) fn timestamp(unix_ms: u64) -> Timestamp {
    Timestamp {
        timestamp: MillisSinceEpoch(unix_ms as i64),
        tz_offset: 0,
    }
}

fn dedup_join(values: &mut Vec<&str>) -> String {
    values.sort_unstable();
    values.dedup();
    values.join(", ")
}

/// Appends `value` in decimal (the recorder's descriptions are built without `fmt`).
fn push_decimal(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Appends a raft log id as `term-index`.
fn push_log_id(out: &mut String, meta: &RevisionMeta) {
    push_decimal(out, meta.log_term);
    out.push('-');
    push_decimal(out, meta.log_index);
}

/// Appends `key` as [`<[u8]>::escape_ascii`] shows it: as it is when nothing needs escaping.
fn push_escaped(out: &mut String, key: &[u8]) {
    let plain = key
        .iter()
        .all(|&b| b == b' ' || (b.is_ascii_graphic() && !matches!(b, b'\\' | b'\'' | b'"')));
    match std::str::from_utf8(key) {
        Ok(text) if plain => out.push_str(text),
        _ => out.extend(key.escape_ascii().map(char::from)),
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use bytes::Bytes;
    use jj_lib::backend::{CommitId, TreeId};
    use proptest::prelude::*;

    use crate::mvcc::{RecordedChange, RecordedRevision, RevisionMeta};
    use crate::request::Origin;

    /// A commit's description as `fmt` wrote it before: commit ids are functions of it, so
    /// every version must write the same bytes.
    fn description_as_before(revision: &RecordedRevision) -> String {
        let meta = &revision.meta;
        let mut description = String::new();
        let _ = write!(description, "revision {}\n\n", revision.revision);
        for change in revision.changes.iter().take(super::DESCRIBED_KEYS) {
            let verb = if change.value.is_some() {
                "put"
            } else {
                "delete"
            };
            let _ = writeln!(description, "{verb} {}", change.key.escape_ascii());
        }
        if revision.changes.len() > super::DESCRIBED_KEYS {
            let more = revision.changes.len() - super::DESCRIBED_KEYS;
            let _ = writeln!(description, "… and {more} more");
        }
        let _ = writeln!(
            description,
            "\nRaft-Log-Id: {}-{}",
            meta.log_term, meta.log_index
        );
        if !meta.origin.user.is_empty() {
            let _ = writeln!(description, "Origin-User: {}", meta.origin.user);
        }
        if !meta.origin.agent.is_empty() {
            let _ = writeln!(description, "Origin-Agent: {}", meta.origin.agent);
        }
        description
    }

    #[test]
    fn commit_descriptions_are_written_as_before() {
        let change = |i: usize| RecordedChange {
            key: Bytes::from(format!("/registry/pods/ns-{i}/\"web\"\t\u{e9}")),
            value: (!i.is_multiple_of(3)).then(|| Bytes::from_static(b"v")),
            mod_revision: 7,
        };
        for (changes, user, agent) in [(1, "", ""), (3, "alice", ""), (23, "", "kubectl/v1.34")] {
            let revision = RecordedRevision {
                revision: 7,
                meta: RevisionMeta {
                    log_term: 3,
                    log_index: 18_446_744_073_709,
                    time_unix_ms: 1,
                    origin: Origin {
                        user: user.to_owned(),
                        agent: agent.to_owned(),
                    },
                },
                changes: (0..changes).map(change).collect(),
            };
            let parent = CommitId::new(vec![1; 32]);
            let tree = TreeId::new(vec![2; 32]);
            let commit = super::revision_commit(&revision, &parent, &tree, 1);
            assert_eq!(commit.description, description_as_before(&revision));
        }
    }

    proptest! {
        #[test]
        fn keys_are_escaped_as_escape_ascii_shows_them(
            key in proptest::collection::vec(prop_oneof![any::<u8>(), 0x20u8..0x7f], 0..24),
        ) {
            let mut out = String::from("put ");
            super::push_escaped(&mut out, &key);
            prop_assert_eq!(out, format!("put {}", key.escape_ascii()));
        }

        #[test]
        fn decimals_are_what_display_writes(value in any::<i64>(), small in any::<usize>()) {
            let mut out = String::new();
            super::push_decimal(&mut out, value);
            out.push(' ');
            super::push_decimal(&mut out, small);
            prop_assert_eq!(out, format!("{value} {small}"));
        }
    }
}
