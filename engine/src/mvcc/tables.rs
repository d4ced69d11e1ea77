//! The redb tables of the MVCC store and their byte layout.
//!
//! Every table maps `&[u8]` to `&[u8]`; the encodings live in [`super::codec`] (integers are
//! 8-byte order-preserving big-endian words, written `i64` below; `esc(key)` is the escaped key
//! ending in `00 01`).
//!
//! ```text
//! table       key                                   value
//! ─────────── ───────────────────────────────────── ─────────────────────────────────────────────
//! current     key bytes (raw)                       create i64 | mod i64 | version i64 |
//!                                                   lease i64 | value bytes
//! history     esc(key) | main i64 | sub i64          flags u8 (bit 0 = tombstone) | create i64 |
//!                                                   version i64 | lease i64 | value bytes
//! changes     main i64 | sub i64                    key bytes (raw)
//! leases      id i64                                granted ttl i64
//! revision_meta main i64                           postcard RevisionMeta (raft log id, time,
//!                                                   origin of the entry that made the revision)
//! lease_keys  id i64 | key bytes (raw)              empty
//! meta        name (ASCII)                          see below
//! ```
//!
//! - `current` holds the live keys only: reads at the current revision and prefix scans never
//!   touch history rows.
//! - `history` holds every version still needed: one row per change (a delete writes a tombstone
//!   row with create = version = lease = 0 and an empty value). Rows of one key are contiguous and
//!   ordered by revision, so "the latest version of `k` at revision `r`" is one reverse seek.
//! - `changes` lists the changes in revision order; it drives [`super::MvccStore::events`] and
//!   compaction, whose cost is therefore proportional to the changes it compacts.
//! - `meta` rows: `current_revision` (i64), `compact_revision` (i64), `raft_state` (opaque bytes
//!   from the raft layer), `alarms` (postcard `Vec<AlarmMember>`, sorted), `compact_pending`
//!   (i64, present while the physical removal of a compaction is unfinished).
//!
//! Worked example: `put a=1` at revision 2, `put a=2` at 3, `delete a` at 4, `put a=3` at 5:
//!
//! ```text
//! current  a → create 5 | mod 5 | version 1 | lease 0 | "3"
//! history  (a,2,0) → put    create 2 version 1 "1"
//!          (a,3,0) → put    create 2 version 2 "2"
//!          (a,4,0) → tombstone
//!          (a,5,0) → put    create 5 version 1 "3"
//! changes  (2,0) → a   (3,0) → a   (4,0) → a   (5,0) → a
//! ```
//!
//! `compact(4)` keeps, for each key changed in the compacted window, only its latest version at
//! or below 4 and drops it too when it is a tombstone: rows (a,2,0), (a,3,0), (a,4,0) and the
//! changes rows up to 4 go, leaving `(a,5,0)`.

use redb::{ReadOnlyTable, ReadTransaction, Table, TableDefinition, WriteTransaction};

use super::error::MvccResult;

/// The type of every table of the store.
pub(crate) type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// A table opened in a read transaction.
pub(crate) type ReadTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

pub(crate) const CURRENT: BytesTable = TableDefinition::new("current");
pub(crate) const HISTORY: BytesTable = TableDefinition::new("history");
pub(crate) const CHANGES: BytesTable = TableDefinition::new("changes");
pub(crate) const LEASES: BytesTable = TableDefinition::new("leases");
pub(crate) const LEASE_KEYS: BytesTable = TableDefinition::new("lease_keys");
pub(crate) const META: BytesTable = TableDefinition::new("meta");
pub(crate) const REVISION_META: BytesTable = TableDefinition::new("revision_meta");

/// Every table with its snapshot/hash id, in the order snapshots and hashes visit them.
pub(crate) const ALL: [(u8, BytesTable); 7] = [
    (1, CURRENT),
    (2, HISTORY),
    (3, CHANGES),
    (4, LEASES),
    (5, LEASE_KEYS),
    (6, META),
    (7, REVISION_META),
];

pub(crate) const META_CURRENT_REVISION: &[u8] = b"current_revision";
pub(crate) const META_COMPACT_REVISION: &[u8] = b"compact_revision";
pub(crate) const META_RAFT_STATE: &[u8] = b"raft_state";
pub(crate) const META_ALARMS: &[u8] = b"alarms";
pub(crate) const META_COMPACT_PENDING: &[u8] = b"compact_pending";
/// The newest compact revision whose physical removal has begun: revisions at and below it
/// may have lost rows, so history cannot replay them (see `feed.rs`).
pub(crate) const META_REPLAY_FLOOR: &[u8] = b"replay_floor";
/// History's commit at the replay floor, so that a member whose history must start there (from
/// a snapshot, or rebuilt) records the very commit its peers did: revision i64 BE | jj commit.
pub(crate) const META_HISTORY_ANCHOR: &[u8] = b"history_anchor";

/// All tables opened for reading in one read transaction.
pub(crate) struct ReadTables {
    pub current: ReadTable,
    pub history: ReadTable,
    pub changes: ReadTable,
    pub leases: ReadTable,
    pub lease_keys: ReadTable,
    pub meta: ReadTable,
    pub revision_meta: ReadTable,
}

impl ReadTables {
    pub(crate) fn open(txn: &ReadTransaction) -> MvccResult<Self> {
        Ok(Self {
            current: txn.open_table(CURRENT)?,
            history: txn.open_table(HISTORY)?,
            changes: txn.open_table(CHANGES)?,
            leases: txn.open_table(LEASES)?,
            lease_keys: txn.open_table(LEASE_KEYS)?,
            meta: txn.open_table(META)?,
            revision_meta: txn.open_table(REVISION_META)?,
        })
    }

    /// Every table with its id, in [`ALL`] order.
    pub(crate) fn by_id(&self) -> [(u8, &ReadTable); 7] {
        [
            (ALL[0].0, &self.current),
            (ALL[1].0, &self.history),
            (ALL[2].0, &self.changes),
            (ALL[3].0, &self.leases),
            (ALL[4].0, &self.lease_keys),
            (ALL[5].0, &self.meta),
            (ALL[6].0, &self.revision_meta),
        ]
    }
}

/// All tables opened for writing in one write transaction.
pub(crate) struct WriteTables<'txn> {
    pub current: Table<'txn, &'static [u8], &'static [u8]>,
    pub history: Table<'txn, &'static [u8], &'static [u8]>,
    pub changes: Table<'txn, &'static [u8], &'static [u8]>,
    pub leases: Table<'txn, &'static [u8], &'static [u8]>,
    pub lease_keys: Table<'txn, &'static [u8], &'static [u8]>,
    pub meta: Table<'txn, &'static [u8], &'static [u8]>,
    pub revision_meta: Table<'txn, &'static [u8], &'static [u8]>,
}

impl<'txn> WriteTables<'txn> {
    /// Opens (creating when missing) every table.
    pub(crate) fn open(txn: &'txn WriteTransaction) -> MvccResult<Self> {
        Ok(Self {
            current: txn.open_table(CURRENT)?,
            history: txn.open_table(HISTORY)?,
            changes: txn.open_table(CHANGES)?,
            leases: txn.open_table(LEASES)?,
            lease_keys: txn.open_table(LEASE_KEYS)?,
            meta: txn.open_table(META)?,
            revision_meta: txn.open_table(REVISION_META)?,
        })
    }
}
