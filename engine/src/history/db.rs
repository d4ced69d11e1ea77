//! The history database: one redb file (`member/history.redb`) holding jj's objects (through
//! [`RedbBackend`] and [`RedbOpStore`]) and the indexes of `index.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::backend::{OBJECTS, PACK_GROUPS, PACKS, RedbBackend};
use super::error::{HistoryError, HistoryResult};
use super::index::{self, Head};
use super::op_store::RedbOpStore;

/// The history database and jj's stores over it.
pub(crate) struct HistoryDb {
    pub db: Arc<Database>,
    pub backend: Arc<RedbBackend>,
    pub op_store: RedbOpStore,
    pub path: PathBuf,
}

/// redb's page cache for the history database. redb's default (1 GiB) lets the cache grow with
/// the database; recording touches the newest pages and the writer keeps its own trees
/// (`tree.rs`), so a small cache costs little and bounds the memory history takes.
const CACHE_BYTES: usize = 32 << 20;

fn builder() -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// Where the history database of a data dir lives.
pub fn history_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("history.redb")
}

impl HistoryDb {
    /// Opens (creating if missing) the database at `path`, with every table present. A
    /// database of format 3 to 6 is used as it is (what is recorded from then on has the
    /// current layout: groups of packs, revision blocks, changes inline, `key_log` in batches),
    /// one of format 2 is
    /// migrated in place (`key_log` split into spans). One of an older
    /// format is set aside (renamed `*.format1`, never deleted) and a new one started: history
    /// is derived, and the history thread records it again from the store.
    pub(crate) fn open(path: &Path) -> HistoryResult<Self> {
        let db = builder().create(path)?;
        let format = format_of(&db)?;
        if format == Format::Unspanned {
            migrate_unspanned(&db)?;
        }
        if format == Format::Older {
            drop(db);
            let aside = path.with_extension("redb.format1");
            tracing::warn!(
                path = %path.display(),
                aside = %aside.display(),
                "the history database has an older format: setting it aside and recording \
                 history again from the store"
            );
            std::fs::rename(path, &aside)?;
            return Self::open(path);
        }
        let txn = db.begin_write()?;
        for table in [
            index::REVISIONS,
            index::CHANGED,
            index::KEY_LOG,
            index::OPERATIONS,
            index::META,
        ] {
            txn.open_table(table)?;
        }
        txn.open_table(OBJECTS)?;
        txn.open_table(PACK_GROUPS)?;
        txn.open_table(PACKS)?;
        txn.open_table(super::revision_blocks::REVISION_BLOCKS)?;
        let head = read_head(&txn.open_table(index::META)?)?;
        super::key_log::ensure_through(&txn, &head)?;
        txn.open_table(index::META)?
            .insert(index::META_FORMAT, index::FORMAT)?;
        txn.commit()?;
        Ok(Self::wrap(db, path))
    }

    /// Opens an existing database (a stopped server's), failing if it is missing.
    pub(crate) fn open_existing(path: &Path) -> HistoryResult<Self> {
        if !path.exists() {
            return Err(HistoryError::Storage(format!(
                "no history database at {}",
                path.display()
            )));
        }
        let db = builder().open(path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => HistoryError::Storage(format!(
                "{} is in use (is the server still running? use --endpoints)",
                path.display()
            )),
            other => HistoryError::storage(other),
        })?;
        match format_of(&db)? {
            Format::Current => {}
            Format::Unspanned => {
                return Err(HistoryError::Storage(format!(
                    "{} has an older format: start the server once (it migrates it in place)",
                    path.display()
                )));
            }
            Format::Older => {
                return Err(HistoryError::Storage(format!(
                    "{} has an older format: start the server (it records history again) or \
                     run `cairn history rebuild`",
                    path.display()
                )));
            }
        }
        Ok(Self::wrap(db, path))
    }

    fn wrap(db: Database, path: &Path) -> Self {
        let db = Arc::new(db);
        let backend = Arc::new(RedbBackend::new(Arc::clone(&db)));
        let op_store = RedbOpStore::new(Arc::clone(&backend));
        Self {
            db,
            backend,
            op_store,
            path: path.to_path_buf(),
        }
    }

    /// The recorded head (default when nothing is recorded yet).
    pub(crate) fn head(&self) -> HistoryResult<Head> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(index::META)?;
        read_head(&meta)
    }

    pub(crate) fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |meta| meta.len())
    }
}

/// What a database's layout needs before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// New (nothing recorded) or of the current format.
    Current,
    /// Format 2: `key_log` without spans, migrated in place.
    Unspanned,
    /// Before located ids: set aside, history recorded again.
    Older,
}

fn format_of(db: &Database) -> HistoryResult<Format> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(index::META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Format::Current),
        Err(err) => return Err(err.into()),
    };
    Ok(match meta.get(index::META_FORMAT)? {
        Some(format)
            if format.value() == index::FORMAT
                || index::FORMATS_READ_AS_IS.contains(&format.value()) =>
        {
            Format::Current
        }
        Some(format) if format.value() == index::FORMAT_UNSPANNED => Format::Unspanned,
        None if meta.get(index::META_HEAD)?.is_none() => Format::Current,
        // Format 1 or none (before located ids).
        Some(_) | None => Format::Older,
    })
}

/// Format 2 → 3: every `key_log` row moves into its span (one transaction: a crash leaves
/// format 2, migrated again at the next start).
fn migrate_unspanned(db: &Database) -> HistoryResult<()> {
    let txn = db.begin_write()?;
    let mut moved = 0u64;
    {
        let old = txn.open_table(index::KEY_LOG_FORMAT2)?;
        let mut new = txn.open_table(index::KEY_LOG)?;
        for row in old.iter()? {
            let (row_key, value) = row?;
            let (key, revision) = index::split_unspanned_key_log_key(row_key.value())
                .ok_or_else(|| HistoryError::Corrupt("undecodable key_log key".to_owned()))?;
            new.insert(index::key_log_key(&key, revision).as_slice(), value.value())?;
            moved += 1;
        }
    }
    txn.delete_table(index::KEY_LOG_FORMAT2)?;
    txn.open_table(index::META)?
        .insert(index::META_FORMAT, index::FORMAT)?;
    txn.commit()?;
    tracing::info!(
        rows = moved,
        "history database migrated to format 3 (key_log spans)"
    );
    Ok(())
}

pub(crate) fn read_head(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> HistoryResult<Head> {
    match meta.get(index::META_HEAD)? {
        Some(row) => postcard::from_bytes(row.value())
            .map_err(|_| HistoryError::Corrupt("undecodable head".to_owned())),
        None => Ok(Head::default()),
    }
}

/// The newest revision whose `key_log` rows are written: `head` when the row is absent (a
/// database of format ≤ 4 wrote them with every revision).
pub(crate) fn read_key_log_through(
    meta: &impl ReadableTable<&'static [u8], &'static [u8]>,
    head: &Head,
) -> HistoryResult<i64> {
    match meta.get(index::META_KEY_LOG_THROUGH)? {
        Some(row) => index::decode_i64(row.value())
            .ok_or_else(|| HistoryError::Corrupt("undecodable key_log_through".to_owned())),
        None => Ok(head.revision),
    }
}
