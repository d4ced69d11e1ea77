//! Queries over recorded history: by revision and time through the revisions rows (in
//! `revision_blocks`, or `revisions` for databases of format 6 and before), by key through
//! `key_log`, whole states through the jj trees.
//!
//! Costs: a key's log is one range scan of its own rows per span, after reading the changes of
//! the revisions not yet in `key_log` (at most a batch); a prefix log walks revisions newest
//! first until the page is full; `get` is one reverse seek; `diff` reads the changes between the
//! two revisions; `range` walks the tree under the prefix's directory; time → revision is a
//! binary search (commit times never decrease).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use jj_lib::backend::{FileId, TreeId};
use jj_lib::hex_util::encode_hex;
use jj_lib::object_id::ObjectId as _;
use jj_lib::op_store::OperationId;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::db::{HistoryDb, history_path};
use super::index::{self, Head, OperationRecord, RevisionRecord};
use super::revision_blocks::{DecodedRow, RevisionRows};
use super::writer::Progress;
use super::{
    At, BlameLine, HistoryError, HistoryResult, HistoryStatus, KeyChange, KeyDiff, KeyVersion,
    LogQuery, OperationEntry, RevisionDetail, RevisionEntry,
};

/// Default page size of `log` and `oplog`.
const PAGE: usize = 100;

/// A handle on recorded history; cheap to clone. Every method blocks (redb, jj-lib): call it
/// from `spawn_blocking` or a plain thread, never on a tokio worker.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<HistoryDb>,
    /// The live writer's progress (None offline).
    progress: Option<Arc<Progress>>,
    /// The store's applied revision (None offline).
    applied: Option<Box<dyn Fn() -> i64 + Send + Sync>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.inner.db.path)
            .finish_non_exhaustive()
    }
}

type Table = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// One read transaction's tables.
struct View {
    head: Head,
    /// The newest revision whose `key_log` rows are written.
    key_log_through: i64,
    /// The revisions rows.
    rows: RevisionRows,
    changed: Table,
    key_log: Table,
    operations: Table,
}

impl History {
    pub(crate) fn online(
        db: Arc<HistoryDb>,
        progress: Arc<Progress>,
        applied: Box<dyn Fn() -> i64 + Send + Sync>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                progress: Some(progress),
                applied: Some(applied),
            }),
        }
    }

    #[cfg(test)]
    pub(crate) fn db(&self) -> Arc<HistoryDb> {
        Arc::clone(&self.inner.db)
    }

    /// Opens the history of a stopped server's data dir, read-only.
    pub fn open_read_only(data_dir: &Path) -> HistoryResult<Self> {
        let db = HistoryDb::open_existing(&history_path(data_dir))?;
        Ok(Self::offline(Arc::new(db)))
    }

    /// History with no writer running: status comes from the database alone.
    pub(crate) fn offline(db: Arc<HistoryDb>) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                progress: None,
                applied: None,
            }),
        }
    }

    fn view(&self) -> HistoryResult<View> {
        let txn: ReadTransaction = self.inner.db.db.begin_read()?;
        let meta = txn.open_table(index::META)?;
        let head = super::db::read_head(&meta)?;
        Ok(View {
            key_log_through: super::db::read_key_log_through(&meta, &head)?,
            head,
            rows: RevisionRows::open(&txn)?,
            changed: txn.open_table(index::CHANGED)?,
            key_log: txn.open_table(index::KEY_LOG)?,
            operations: txn.open_table(index::OPERATIONS)?,
        })
    }

    /// The encoded jj commit recorded for `revision`, if history holds it: what the store keeps
    /// as its history anchor.
    pub(crate) fn commit_object(&self, revision: i64) -> HistoryResult<Option<Vec<u8>>> {
        let view = self.view()?;
        let Some(record) = revision_record(&view, revision)? else {
            return Ok(None);
        };
        Ok(self
            .inner
            .db
            .backend
            .read_object(super::backend::Kind::Commit, &record.commit_id)?)
    }

    pub fn status(&self) -> HistoryResult<HistoryStatus> {
        let head = self.inner.db.head()?;
        // Revision 1 is the empty store: there is nothing to record, so history is there.
        let head_revision = self
            .inner
            .progress
            .as_ref()
            .map_or(head.revision, |p| {
                p.head.load(Ordering::Acquire).max(head.revision)
            })
            .max(1);
        let head_commit_id = match &self.inner.progress {
            Some(progress) => progress
                .head_commit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            None => encode_hex(&head.commit_id),
        };
        Ok(HistoryStatus {
            head_revision,
            head_commit_id,
            applied_revision: self.inner.applied.as_ref().map_or(head_revision, |f| f()),
            oldest_revision: head.oldest_revision,
            db_size_bytes: self.inner.db.size(),
        })
    }

    /// Revisions matching `query`, newest first.
    pub fn log(&self, query: &LogQuery) -> HistoryResult<Vec<RevisionEntry>> {
        let view = self.view()?;
        let limit = if query.limit == 0 { PAGE } else { query.limit };
        let mut max = if query.max_revision > 0 {
            query.max_revision.min(view.head.revision)
        } else {
            view.head.revision
        };
        let mut min = query.min_revision.max(view.head.oldest_revision).max(1);
        if query.since_unix_ms > 0 {
            min = min.max(first_at_or_after(&view, query.since_unix_ms)?);
        }
        if query.until_unix_ms > 0 {
            max = max.min(last_at_or_before(&view, query.until_unix_ms)?);
        }
        let mut revisions = Vec::new();
        if min > max {
            return Ok(Vec::new());
        }
        match (&query.key, query.prefix) {
            (Some(key), false) => {
                // The revisions whose `key_log` rows are not written yet, from their changes.
                let mut revision = max;
                while revision > view.key_log_through && revision >= min && revisions.len() < limit
                {
                    if changes_matching(&view, revision, |changed| changed == &key[..])? {
                        revisions.push(revision);
                    }
                    revision -= 1;
                }
                let max = revision;
                // Newest span first; a span's rows for the key are contiguous.
                let oldest_span = index::key_log_span(min);
                let mut span = index::key_log_span(max);
                while revisions.len() < limit && min <= max {
                    let from = index::key_log_key_in(span, key, min);
                    let to = index::key_log_key_in(span, key, max);
                    for row in view
                        .key_log
                        .range::<&[u8]>(from.as_slice()..=to.as_slice())?
                        .rev()
                        .take(limit - revisions.len())
                    {
                        let (row_key, _) = row?;
                        let (_, revision) = index::split_key_log_key(row_key.value())
                            .ok_or_else(|| corrupt("key_log key"))?;
                        revisions.push(revision);
                    }
                    if span <= oldest_span {
                        break;
                    }
                    span -= 1;
                }
            }
            (prefix, _) => {
                let prefix = prefix.as_deref().unwrap_or_default();
                let mut revision = max;
                while revision >= min && revisions.len() < limit {
                    if prefix.is_empty()
                        || changes_matching(&view, revision, |key| key.starts_with(prefix))?
                    {
                        revisions.push(revision);
                    }
                    revision -= 1;
                }
            }
        }
        revisions
            .into_iter()
            .map(|revision| entry(&view, revision, query.changes_limit))
            .collect()
    }

    /// One revision with the values before and after each change.
    pub fn show(&self, revision: i64) -> HistoryResult<RevisionDetail> {
        let view = self.view()?;
        check_revision(&view, revision)?;
        let entry = entry(&view, revision, 0)?;
        let (before, after) = (root_at(&view, revision - 1)?, root_at(&view, revision)?);
        let mut diffs = Vec::with_capacity(entry.changes.len());
        for change in &entry.changes {
            diffs.push(KeyDiff {
                key: change.key.clone(),
                before: self.value_in(before.as_ref(), &change.key)?.map(|(v, _)| v),
                after: self.value_in(after.as_ref(), &change.key)?.map(|(v, _)| v),
            });
        }
        Ok(RevisionDetail { entry, diffs })
    }

    /// The keys (under `prefix`; empty = all) whose values differ between two revisions.
    pub fn diff(&self, from: i64, to: i64, prefix: &[u8]) -> HistoryResult<Vec<KeyDiff>> {
        if from > to {
            return Err(HistoryError::Invalid(format!(
                "diff from revision {from} to the older revision {to}; give the older one first"
            )));
        }
        let view = self.view()?;
        check_revision(&view, from)?;
        check_revision(&view, to)?;
        let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
        view.rows.for_each_from(from + 1, |revision, (_, inline)| {
            if revision > to {
                return Ok(false);
            }
            index::visit_changes(&view.changed, revision, inline, |_, key| {
                if key.starts_with(prefix) {
                    keys.insert(key.to_vec());
                }
                true
            })?;
            Ok(true)
        })?;
        let (from_root, to_root) = (root_at(&view, from)?, root_at(&view, to)?);
        let mut diffs = Vec::new();
        for key in keys {
            let before = self.value_in(from_root.as_ref(), &key)?.map(|(v, _)| v);
            let after = self.value_in(to_root.as_ref(), &key)?.map(|(v, _)| v);
            if before != after {
                diffs.push(KeyDiff {
                    key: Bytes::from(key),
                    before,
                    after,
                });
            }
        }
        Ok(diffs)
    }

    /// `key` at a revision or time; `None` when absent then.
    pub fn get(&self, key: &[u8], at: At) -> HistoryResult<Option<KeyVersion>> {
        let view = self.view()?;
        let revision = resolve(&view, at)?;
        Ok(self
            .value_in(root_at(&view, revision)?.as_ref(), key)?
            .map(|(value, mod_revision)| KeyVersion {
                key: Bytes::copy_from_slice(key),
                value,
                mod_revision,
                revision,
            }))
    }

    /// Every key under `prefix` present at `at`, with its value, in key order, starting after
    /// `after` (exclusive; empty = from the start), at most `limit` (0 = all).
    pub fn range(
        &self,
        prefix: &[u8],
        at: At,
        after: &[u8],
        limit: usize,
    ) -> HistoryResult<Vec<KeyVersion>> {
        let view = self.view()?;
        let revision = resolve(&view, at)?;
        let backend = &self.inner.db.backend;
        self.files_under(&view, revision, prefix, after, limit)?
            .into_iter()
            .map(|(key, file)| {
                Ok(KeyVersion {
                    value: Bytes::from(backend.file(&file)?),
                    key: Bytes::from(key),
                    mod_revision: file_revision(&file),
                    revision,
                })
            })
            .collect()
    }

    /// Every key under `prefix` present at `revision`, with its file, in key order, starting
    /// after `after` (exclusive; empty = from the start), at most `limit` (0 = all).
    fn files_under(
        &self,
        view: &View,
        revision: i64,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> HistoryResult<Vec<(Vec<u8>, FileId)>> {
        let Some(root) = root_at(view, revision)? else {
            return Ok(Vec::new());
        };
        let backend = &self.inner.db.backend;
        let (dirs, _) = super::path::prefix_components(prefix);
        let Some(subtree) = super::tree::subtree(backend, &root, &dirs)? else {
            return Ok(Vec::new());
        };
        let mut found: Vec<(Vec<u8>, FileId)> = Vec::new();
        let mut components = dirs.clone();
        super::tree::walk(backend, &subtree, &mut components, &mut |path, file| {
            if let Some(key) = super::path::key_from_components(path.iter().map(String::as_str))
                && key.starts_with(prefix)
                && (after.is_empty() || key.as_slice() > after)
            {
                found.push((key, file.clone()));
            }
            true
        })?;
        found.sort();
        if limit > 0 {
            found.truncate(limit);
        }
        Ok(found)
    }

    /// For each key under `prefix` present at `at` (default head), the revision that last
    /// changed it, in key order, at most `limit` (0 = all).
    pub fn blame(
        &self,
        prefix: &[u8],
        at: Option<i64>,
        limit: usize,
    ) -> HistoryResult<Vec<BlameLine>> {
        let view = self.view()?;
        let at = match at {
            Some(revision) => {
                check_revision(&view, revision)?;
                revision
            }
            None => view.head.revision,
        };
        // A file id's locator is the revision that wrote the value: the key's last change.
        self.files_under(&view, at, prefix, &[], limit)?
            .into_iter()
            .map(|(key, file)| {
                let revision = file_revision(&file);
                // Empty when retention trimmed that revision (the value is still kept).
                let record = revision_record(&view, revision)?.unwrap_or_default();
                Ok(BlameLine {
                    key: Bytes::from(key),
                    revision,
                    commit_id: encode_hex(&record.commit_id),
                    time_unix_ms: record.time_unix_ms,
                    origin: record.origin,
                })
            })
            .collect()
    }

    /// The newest `limit` operations (0 = 100), newest first.
    pub fn oplog(&self, limit: usize) -> HistoryResult<Vec<OperationEntry>> {
        let view = self.view()?;
        let limit = if limit == 0 { PAGE } else { limit };
        let mut entries = Vec::new();
        for row in view.operations.iter()?.rev().take(limit) {
            let (_, value) = row?;
            let record: OperationRecord =
                postcard::from_bytes(value.value()).map_err(|_| corrupt("operation row"))?;
            let operation = self
                .inner
                .db
                .op_store
                .operation(&OperationId::new(record.operation_id.clone()))?;
            let metadata = operation.metadata;
            entries.push(OperationEntry {
                operation_id: encode_hex(&record.operation_id),
                time_unix_ms: metadata.time.end.timestamp.0.max(0) as u64,
                description: metadata.description,
                first_revision: record.first_revision,
                last_revision: record.last_revision,
                attributes: metadata.attributes.into_iter().collect(),
            });
        }
        Ok(entries)
    }

    /// The value of `key` in the tree `root` (`None`: no recorded revision, nothing there)
    /// and the revision that wrote it.
    fn value_in(&self, root: Option<&TreeId>, key: &[u8]) -> HistoryResult<Option<(Bytes, i64)>> {
        let Some(root) = root else {
            return Ok(None);
        };
        let backend = &self.inner.db.backend;
        let Some(file) = super::tree::lookup(backend, root, key)? else {
            return Ok(None);
        };
        let content = backend.file(&file)?;
        Ok(Some((Bytes::from(content), file_revision(&file))))
    }
}

/// The tree of `revision`; `None` when it has no row (revision 1, the empty store, or trimmed).
fn root_at(view: &View, revision: i64) -> HistoryResult<Option<TreeId>> {
    Ok(revision_record(view, revision)?.map(|record| TreeId::new(record.tree_id)))
}

/// The revision that wrote a file's value: its id's locator (`backend.rs`).
fn file_revision(file: &FileId) -> i64 {
    i64::try_from(super::backend::locator_of(file.as_bytes())).unwrap_or(i64::MAX)
}

fn corrupt(what: &str) -> HistoryError {
    HistoryError::Corrupt(format!("undecodable {what}"))
}

fn check_revision(view: &View, revision: i64) -> HistoryResult<()> {
    // Revision 1, the empty store, is always known.
    let head = view.head.revision.max(1);
    if revision > head {
        return Err(HistoryError::FutureRevision { revision, head });
    }
    if revision < view.head.oldest_revision && view.head.oldest_revision > 2 {
        return Err(HistoryError::Trimmed {
            revision,
            oldest: view.head.oldest_revision,
        });
    }
    if revision < 1 {
        return Err(HistoryError::Invalid(format!(
            "revision {revision} is not a revision (they start at 1)"
        )));
    }
    Ok(())
}

fn resolve(view: &View, at: At) -> HistoryResult<i64> {
    match at {
        At::Revision(revision) => {
            check_revision(view, revision)?;
            Ok(revision)
        }
        At::Time(unix_ms) => last_at_or_before(view, unix_ms),
    }
}

fn revision_record(view: &View, revision: i64) -> HistoryResult<Option<RevisionRecord>> {
    Ok(revision_row(view, revision)?.map(|(record, _)| record))
}

/// The record of `revision` and its inline changes.
fn revision_row(view: &View, revision: i64) -> HistoryResult<Option<DecodedRow>> {
    view.rows.get(revision)
}

fn time_of(view: &View, revision: i64) -> HistoryResult<u64> {
    Ok(revision_record(view, revision)?
        .ok_or_else(|| corrupt("missing revision row"))?
        .time_unix_ms)
}

/// The newest revision whose time is at or before `unix_ms` (1 if none: the empty store).
fn last_at_or_before(view: &View, unix_ms: u64) -> HistoryResult<i64> {
    let (mut low, mut high) = (view.head.oldest_revision.max(1), view.head.revision);
    if high < low || time_of(view, low)? > unix_ms {
        return Ok(low.saturating_sub(1).max(1));
    }
    while low < high {
        let middle = low + (high - low + 1) / 2;
        if time_of(view, middle)? <= unix_ms {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    Ok(low)
}

/// The oldest revision whose time is at or after `unix_ms` (head + 1 if none).
fn first_at_or_after(view: &View, unix_ms: u64) -> HistoryResult<i64> {
    let before = last_at_or_before(view, unix_ms.saturating_sub(1))?;
    let first = view.head.oldest_revision.max(1);
    if before == first && time_of(view, first).is_ok_and(|t| t >= unix_ms) {
        return Ok(first);
    }
    Ok(before + 1)
}

/// Whether `revision` changed a key that `matches` (none: no row for it).
fn changes_matching(
    view: &View,
    revision: i64,
    matches: impl Fn(&[u8]) -> bool,
) -> HistoryResult<bool> {
    let Some((_, inline)) = revision_row(view, revision)? else {
        return Ok(false);
    };
    index::visit_changes(&view.changed, revision, inline, |_, key| !matches(key))
}

fn entry(view: &View, revision: i64, changes_limit: usize) -> HistoryResult<RevisionEntry> {
    let (record, inline) =
        revision_row(view, revision)?.ok_or(HistoryError::NoSuchRevision(revision))?;
    let mut changes = Vec::new();
    index::visit_changes(&view.changed, revision, inline, |kind, key| {
        if changes_limit > 0 && changes.len() >= changes_limit {
            return false;
        }
        changes.push(KeyChange {
            kind: index::decode_kind(kind),
            key: Bytes::copy_from_slice(key),
        });
        true
    })?;
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(RevisionEntry {
        revision,
        commit_id: encode_hex(&record.commit_id),
        parent_commit_id: encode_hex(&record.parent_commit_id),
        time_unix_ms: record.time_unix_ms,
        log_term: record.log_term,
        log_index: record.log_index,
        origin: record.origin,
        changes,
        changes_total: record.changes_total,
    })
}
