//! `key_log` rows written in batches (see `index.rs`): the recorder keeps the rows of the
//! revisions past `key_log_through` in memory and inserts them, sorted, once they make a
//! batch, in the same transaction as the revisions that complete it.
//!
//! ```text
//!  round: changes ─► rows of the round ─┬─ batch not due: kept (after the commit)
//!                                       └─ due: batch + round inserted sorted,
//!                                          key_log_through = the round's last revision
//! ```
//!
//! After a restart the batch is read back from the rows of the revisions past
//! `key_log_through`, so nothing is lost with the memory: those rows are what readers use for
//! them meanwhile.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::db::{self, HistoryDb};
use super::error::HistoryResult;
use super::index::{self, Head};
use super::revision_blocks::RevisionRows;

/// A `key_log` row: its key and the change's kind ([`index::encode_kind`]).
pub(crate) type KeyLogRow = (Vec<u8>, u8);

/// The `key_log` rows not yet in the table.
#[derive(Debug, Default)]
pub(crate) struct KeyLogBatch {
    /// The newest revision whose rows are in the table.
    through: i64,
    rows: Vec<KeyLogRow>,
}

impl KeyLogBatch {
    /// The batch of the database's head: the rows of the revisions past `key_log_through`.
    pub(crate) fn load(db: &HistoryDb) -> HistoryResult<Self> {
        let txn = db.db.begin_read()?;
        let meta = txn.open_table(index::META)?;
        let head = db::read_head(&meta)?;
        let through = db::read_key_log_through(&meta, &head)?;
        let revisions = RevisionRows::open(&txn)?;
        let changed = txn.open_table(index::CHANGED)?;
        let mut rows = Vec::new();
        revisions.for_each_from(through.saturating_add(1), |revision, (_, inline)| {
            index::visit_changes(&changed, revision, inline, |kind, key| {
                rows.push((index::key_log_key(key, revision), kind));
                true
            })?;
            Ok(true)
        })?;
        Ok(Self { through, rows })
    }

    /// Whether the batch with `round`'s rows added is due once `head` is recorded.
    pub(crate) fn due(&self, head: i64, round: &[KeyLogRow]) -> bool {
        head - self.through >= index::KEY_LOG_BATCH
            || self.rows.len() + round.len() >= index::KEY_LOG_BATCH_CHANGES
    }

    /// Inserts the batch and `round`'s rows into `txn`, and records that the rows through
    /// `head` are written. The batch is emptied only by [`KeyLogBatch::committed`].
    pub(crate) fn write(
        &mut self,
        txn: &WriteTransaction,
        head: i64,
        round: &mut [KeyLogRow],
    ) -> HistoryResult<()> {
        // Two ascending sweeps over the newest span instead of one insert per page at random.
        self.rows.sort_unstable();
        round.sort_unstable();
        let mut table = txn.open_table(index::KEY_LOG)?;
        for (key, kind) in self.rows.iter().chain(round.iter()) {
            table.insert(key.as_slice(), [*kind].as_slice())?;
        }
        txn.open_table(index::META)?.insert(
            index::META_KEY_LOG_THROUGH,
            index::encode_i64(head).as_slice(),
        )?;
        Ok(())
    }

    /// The transaction that recorded `round` (through `head`) committed; `written` tells
    /// whether it wrote the batch.
    pub(crate) fn committed(&mut self, head: i64, round: Vec<KeyLogRow>, written: bool) {
        if written {
            self.rows.clear();
            self.through = head;
        } else {
            self.rows.extend(round);
        }
    }

    /// Retention trimmed the revisions before `keep_from`: their rows are dropped.
    pub(crate) fn trimmed(&mut self, keep_from: i64) {
        self.rows.retain(|(key, _)| {
            index::split_key_log_key(key).is_none_or(|(_, revision)| revision >= keep_from)
        });
    }
}

/// Writes `key_log_through` = `head` unless the database has the row (a new database, or one
/// of format ≤ 4, whose `key_log` holds every recorded revision).
pub(crate) fn ensure_through(txn: &WriteTransaction, head: &Head) -> HistoryResult<()> {
    let mut meta = txn.open_table(index::META)?;
    if meta.get(index::META_KEY_LOG_THROUGH)?.is_none() {
        meta.insert(
            index::META_KEY_LOG_THROUGH,
            index::encode_i64(head.revision).as_slice(),
        )?;
    }
    Ok(())
}
