//! `revisions` rows stored in blocks: a round's rows (`index.rs`) go into `revision_blocks`
//! rows of about [`BLOCK_LIMIT`] bytes, keyed by their first revision, instead of a row each.
//!
//! ```text
//! revision_blocks  first revision (index::encode_i64)  →  entry…
//! entry            revision − first (varint) | len (varint) | revisions row (len bytes)
//! ```
//!
//! A block's revisions ascend and all come before the next block's first: the block holding a
//! revision is the last one keyed at or before it. A busy server's round (hundreds of
//! revisions) then costs a few inserts instead of one per revision; a lookup is still one seek,
//! then a scan of at most a block. Databases of format 6 and before hold their rows in
//! `revisions`, one per revision; they are read there, and what follows is recorded in blocks
//! (the legacy rows are all older than the first block's). A malformed block reads as ending
//! where it stops making sense: its rows are then missing, an error for the reader.

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, TableError, WriteTransaction,
};

use super::error::{HistoryError, HistoryResult};
use super::index::{self, BytesTable, InlineChanges, RevisionRecord};
use super::wire::{get_varint, put_varint};

pub(crate) const REVISION_BLOCKS: BytesTable = TableDefinition::new("revision_blocks");

/// About the most bytes a block holds: a lookup scans its block. A block and redb's leaf
/// header fit one 4 KiB page (a value just over a page would take two).
pub(crate) const BLOCK_LIMIT: usize = 3584;

/// Rows of consecutive recorded revisions, in ascending order, cut into blocks.
#[derive(Debug, Default)]
pub(crate) struct BlockWriter {
    /// The blocks filled so far: first revision and bytes.
    blocks: Vec<(i64, Vec<u8>)>,
}

impl BlockWriter {
    /// Appends `revision`'s row (revisions come in ascending order).
    pub(crate) fn push(&mut self, revision: i64, row: &[u8]) {
        // A block is never empty: a row larger than the limit makes a block of its own.
        let full = self
            .blocks
            .last()
            .is_none_or(|(_, block)| block.len() + row.len() > BLOCK_LIMIT);
        if full {
            self.blocks
                .push((revision, Vec::with_capacity(BLOCK_LIMIT + 256)));
        }
        let (first, block) = self.blocks.last_mut().expect("pushed above");
        put_varint(block, (revision - *first) as u64);
        put_varint(block, row.len() as u64);
        block.extend_from_slice(row);
    }

    /// Inserts the blocks into `txn`.
    pub(crate) fn write(&self, txn: &WriteTransaction) -> HistoryResult<()> {
        let mut table = txn.open_table(REVISION_BLOCKS)?;
        for (first, block) in &self.blocks {
            table.insert(index::encode_i64(*first).as_slice(), block.as_slice())?;
        }
        Ok(())
    }
}

/// The rows of a block whose first revision is `first`, in order: revision and row.
pub(crate) fn rows(first: i64, block: &[u8]) -> impl Iterator<Item = (i64, &[u8])> {
    let mut rest = block;
    std::iter::from_fn(move || {
        let offset = i64::try_from(get_varint(&mut rest)?).ok()?;
        let len = usize::try_from(get_varint(&mut rest)?).ok()?;
        let row = rest.get(..len)?;
        rest = &rest[len..];
        Some((first.checked_add(offset)?, row))
    })
}

/// The revisions rows of a read transaction: in the blocks (absent from a database of format 6
/// or before opened as it is), then in the legacy `revisions` table.
pub(crate) struct RevisionRows {
    blocks: Option<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    legacy: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

/// A decoded revisions row: the record and its inline changes.
pub(crate) type DecodedRow = (RevisionRecord, InlineChanges);

impl RevisionRows {
    pub(crate) fn open(txn: &ReadTransaction) -> HistoryResult<Self> {
        let blocks = match txn.open_table(REVISION_BLOCKS) {
            Ok(table) => Some(table),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(err) => return Err(err.into()),
        };
        Ok(Self {
            blocks,
            legacy: txn.open_table(index::REVISIONS)?,
        })
    }

    /// The row of `revision`, if there is one.
    pub(crate) fn get(&self, revision: i64) -> HistoryResult<Option<DecodedRow>> {
        if let Some(blocks) = &self.blocks
            && let Some(entry) = blocks
                .range::<&[u8]>(..=index::encode_i64(revision).as_slice())?
                .next_back()
        {
            let (first, block) = entry?;
            if let Some(first) = index::decode_i64(first.value())
                && let Some((_, row)) = rows(first, block.value()).find(|(r, _)| *r == revision)
            {
                return decode(row).map(Some);
            }
        }
        match self.legacy.get(index::encode_i64(revision).as_slice())? {
            Some(row) => decode(row.value()).map(Some),
            None => Ok(None),
        }
    }

    /// `visit(revision, row)` for each row from revision `from` on, in ascending order, while it
    /// returns `Ok(true)`.
    pub(crate) fn for_each_from(
        &self,
        from: i64,
        mut visit: impl FnMut(i64, DecodedRow) -> HistoryResult<bool>,
    ) -> HistoryResult<()> {
        let start = index::encode_i64(from);
        for entry in self.legacy.range::<&[u8]>(start.as_slice()..)? {
            let (key, row) = entry?;
            let revision = index::decode_i64(key.value()).ok_or_else(corrupt)?;
            if !visit(revision, decode(row.value())?)? {
                return Ok(());
            }
        }
        let Some(blocks) = &self.blocks else {
            return Ok(());
        };
        // The block holding `from`, then those after it.
        let first_key = match blocks.range::<&[u8]>(..=start.as_slice())?.next_back() {
            Some(entry) => entry?.0.value().to_vec(),
            None => start.to_vec(),
        };
        for entry in blocks.range::<&[u8]>(first_key.as_slice()..)? {
            let (key, block) = entry?;
            let first = index::decode_i64(key.value()).ok_or_else(corrupt)?;
            for (revision, row) in rows(first, block.value()) {
                if revision >= from && !visit(revision, decode(row)?)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn decode(row: &[u8]) -> HistoryResult<DecodedRow> {
    index::decode_revision_row(row)
        .map_err(|_| HistoryError::Corrupt("undecodable revision row".to_owned()))
}

/// Removes the rows of the revisions before `keep_from` from both tables: whole blocks before
/// it, and the rows before it from the block that holds it (kept as a block of its rest).
pub(crate) fn remove_before(txn: &WriteTransaction, keep_from: i64) -> HistoryResult<()> {
    let below = index::encode_i64(keep_from);
    txn.open_table(index::REVISIONS)?
        .retain_in::<&[u8], _>(..below.as_slice(), |_, _| false)?;
    let mut blocks = txn.open_table(REVISION_BLOCKS)?;
    let straddling = match blocks.range::<&[u8]>(..below.as_slice())?.next_back() {
        Some(entry) => {
            let (key, block) = entry?;
            let first = index::decode_i64(key.value()).ok_or_else(corrupt)?;
            let mut rest = BlockWriter::default();
            for (revision, row) in rows(first, block.value()).filter(|(r, _)| *r >= keep_from) {
                rest.push(revision, row);
            }
            rest.blocks
        }
        None => Vec::new(),
    };
    blocks.retain_in::<&[u8], _>(..below.as_slice(), |_, _| false)?;
    for (first, block) in straddling {
        blocks.insert(index::encode_i64(first).as_slice(), block.as_slice())?;
    }
    Ok(())
}

fn corrupt() -> HistoryError {
    HistoryError::Corrupt("undecodable revisions block".to_owned())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{BLOCK_LIMIT, BlockWriter, rows};

    proptest! {
        #[test]
        fn blocks_hold_every_row_in_order_within_their_limit(
            start in 1i64..1 << 40,
            sizes in proptest::collection::vec(0usize..1500, 0..40),
            gap in 0i64..5,
        ) {
            let mut writer = BlockWriter::default();
            let mut expected = Vec::new();
            let mut revision = start;
            for (i, size) in sizes.iter().enumerate() {
                let row = vec![i as u8; *size];
                writer.push(revision, &row);
                expected.push((revision, row));
                revision += 1 + if i == 3 { gap } else { 0 };
            }
            let mut read = Vec::new();
            let mut previous_first = 0;
            for (first, block) in &writer.blocks {
                prop_assert!(*first > previous_first, "blocks ascend");
                previous_first = *first;
                let held: Vec<(i64, Vec<u8>)> =
                    rows(*first, block).map(|(r, row)| (r, row.to_vec())).collect();
                prop_assert_eq!(held[0].0, *first, "a block is keyed by its first revision");
                // Past the limit only by a row's framing, or by a row larger than a block.
                prop_assert!(held.len() == 1 || block.len() <= BLOCK_LIMIT + 2 * 10);
                read.extend(held);
            }
            prop_assert_eq!(read, expected);
        }
    }
}
