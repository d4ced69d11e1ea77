//! `RedbBackend`: jj-lib's commit [`Backend`] over redb, inside the data dir.
//!
//! Objects are encoded as jj's own `SimpleBackend` encodes them (its protobuf messages; files as
//! raw bytes). Writes go to an in-memory pending set that the history writer moves into its own
//! redb write transaction (with the indexes and the operation of the same batch), so one
//! applied batch is one commit of the database, never one file per object. The objects a
//! revision creates are stored together, as its pack, in a row of `pack_groups` with the packs
//! of the revisions recorded next (`pack.rs`); any other object is a row of `objects`, keyed by
//! kind + id.
//!
//! ```text
//! pack_groups  first locator u64  →  (locator, objects whose id has that locator,
//!                                      written while recording it)…
//! packs        locator u64  →  the same for one locator (format 5, read, no longer written)
//! objects      kind u8 | locator u64 BE | hash (24 bytes)  →  written i64 | object bytes
//! id           hash (24 bytes) | locator u64 BE  (32 bytes, shown hash first)
//! ```
//!
//! An id is the SHA-256 of the object's bytes, truncated to 24 bytes, followed by a *locator*:
//! a revision that is a function of the object's content, so ids stay content addresses (the
//! same state gives the same tree on every member, however it got there). For a file it is the
//! revision that wrote the value (the key's mod revision), for a tree or a commit the newest
//! locator among the ids it refers to, for an operation or a view the revision being recorded.
//! The table key puts the locator first: what a revision writes sorts together at the end of
//! the table, so recording appends to the B-tree instead of dirtying a random page per object.
//!
//! `written` is the newest revision whose batch (re)wrote the object: every write of an object,
//! even one already stored, refreshes it; a packed object was written by its locator's revision
//! (written again later, it is also stored as a row of its own). Retention relies on it (see
//! `retention.rs`): whatever a kept revision can reach was either reachable from the oldest
//! kept tree or written since. Readers look in the pack of the id's locator first (in its group,
//! then in `packs`), then in `objects`.
//!
//! Ids are 32 bytes for commits, trees and files; change ids 16 bytes. The root commit id is
//! all zeros, as in jj's simple backend.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;
use futures::io::Cursor;
use futures::stream::BoxStream;
use futures::{AsyncRead, AsyncReadExt};
use jj_lib::backend::{
    Backend, BackendError, BackendResult, ChangeId, Commit, CommitId, CopyHistory, CopyId,
    CopyRecord, FileId, MillisSinceEpoch, RelatedCopy, Signature, SigningFn, SymlinkId, Timestamp,
    Tree, TreeId, TreeValue, make_root_commit,
};
use jj_lib::conflict_labels::ConflictLabels;
use jj_lib::index::Index;
use jj_lib::merge::MergeBuilder;
use jj_lib::object_id::ObjectId;
use jj_lib::protos::simple_store as proto;
use jj_lib::repo_path::{RepoPath, RepoPathBuf, RepoPathComponentBuf};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use sha2::{Digest, Sha256};

use super::wire::{self, field_len, get_varint, put_bytes_field, put_tag, put_varint};
use super::{delta, pack};

/// Maps keyed by object ids and keys, which are hashes already: a fast hasher is enough.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");
pub(crate) const PACK_GROUPS: TableDefinition<u64, &[u8]> = TableDefinition::new("pack_groups");
/// One pack per row (format 5): read, no longer written.
pub(crate) const PACKS: TableDefinition<u64, &[u8]> = TableDefinition::new("packs");

/// Object kinds (the first byte of an `objects` key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    File = b'f' as isize,
    Tree = b't' as isize,
    Commit = b'c' as isize,
    View = b'v' as isize,
    Operation = b'o' as isize,
}

pub(crate) const ID_LEN: usize = 32;
const CHANGE_ID_LEN: usize = 16;
/// Decoded trees kept in memory for readers; the cache is dropped wholesale when full.
const TREE_CACHE_LIMIT: usize = 16 * 1024;
/// Bytes of resolved trees kept in memory (see [`TreeBytesCache`]): trees read from the database,
/// deltas applied, for the writer's directories it loads again after unloading them (`tree.rs`)
/// and for readers.
const RESOLVED_TREE_CACHE_BYTES: usize = 32 << 20;

/// Bytes of an id that are the content hash; the locator follows.
pub(crate) const HASH_LEN: usize = ID_LEN - 8;

/// The `objects` key of an object: kind, then the id's locator, then its hash.
pub(crate) fn object_key(kind: Kind, id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(kind as u8);
    if id.len() == ID_LEN {
        key.extend_from_slice(&id[HASH_LEN..]);
        key.extend_from_slice(&id[..HASH_LEN]);
    } else {
        key.extend_from_slice(id);
    }
    key
}

/// The `objects` key of an object with a located id ([`object_key`] without allocating).
pub(crate) type LocatedKey = [u8; 1 + ID_LEN];

fn located_key(kind: Kind, id: &[u8; ID_LEN]) -> LocatedKey {
    let mut key = [0; 1 + ID_LEN];
    key[0] = kind as u8;
    key[1..9].copy_from_slice(&id[HASH_LEN..]);
    key[9..].copy_from_slice(&id[..HASH_LEN]);
    key
}

/// The id of an object with these bytes and this locator (see the module docs).
pub(crate) fn located_id(locator: u64, bytes: &[u8]) -> [u8; ID_LEN] {
    let mut id = [0; ID_LEN];
    id[..HASH_LEN].copy_from_slice(&Sha256::digest(bytes)[..HASH_LEN]);
    id[HASH_LEN..].copy_from_slice(&locator.to_be_bytes());
    id
}

/// The locator and hash of an `objects` key of a located id; `None` for any other key.
pub(crate) fn split_object_key(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() != 1 + ID_LEN {
        return None;
    }
    let locator = u64::from_be_bytes(key[1..9].try_into().ok()?);
    Some((locator, &key[9..]))
}

/// The locator and hash of a pending object that goes into its locator's pack: one whose id
/// is located at the revision that wrote it.
fn packable(key: &[u8], revision: i64) -> Option<(u64, &[u8])> {
    split_object_key(key)
        .filter(|(locator, _)| *locator > 0 && *locator == revision_locator(revision))
}

/// The `objects` key of a packed object whose id has `locator`.
pub(crate) fn packed_object_key(locator: u64, object: &pack::Packed<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + ID_LEN);
    key.push(object.kind);
    key.extend_from_slice(&locator.to_be_bytes());
    key.extend_from_slice(object.hash);
    key
}

/// The locator of an id (0 for the root commit, the empty tree and ids of any other shape).
pub(crate) fn locator_of(id: &[u8]) -> u64 {
    id.get(HASH_LEN..)
        .and_then(|tail| <[u8; 8]>::try_from(tail).ok())
        .map_or(0, u64::from_be_bytes)
}

/// The locator of a revision (revisions are positive; anything else sorts first).
pub(crate) fn revision_locator(revision: i64) -> u64 {
    u64::try_from(revision).unwrap_or(0)
}

/// Objects written but not yet committed to the database, and decoded trees.
#[derive(Default)]
pub(crate) struct ObjectBuffer {
    /// Objects written since the last flush.
    pending: Mutex<Pending>,
    /// The revision being recorded: stamped on objects written now.
    writing: std::sync::atomic::AtomicI64,
    trees: Mutex<HashMap<TreeId, Arc<Tree>>>,
    /// Resolved trees, for the writer's reloads and for readers.
    tree_bytes: Mutex<TreeBytesCache>,
}

/// Objects written since the last flush: appended to their revision's pack as they come, or
/// kept for rows of their own.
///
/// Revisions are recorded in order, so only the newest pack ever grows: the packs are
/// consecutive ranges of one buffer, and a packed object is found by its locator's pack, not
/// by a map entry of its own (a revision writes a handful of objects; scanning its pack costs
/// less than hashing every key into a map).
#[derive(Default)]
struct Pending {
    /// The objects that get rows of their own, by `objects` key.
    rows: HashMap<LocatedKey, (i64, Vec<u8>)>,
    /// The packs being written, end to end.
    arena: Vec<u8>,
    /// Each pack's locator and where it starts in `arena` (it ends where the next starts),
    /// ascending (revisions are recorded in order).
    packs: Vec<(u64, usize)>,
    /// Bytes of the objects packed (headers aside).
    packed_bytes: u64,
}

/// Rows of their own kept room for between rounds (they are rare on a live server).
const ROWS_KEPT: usize = 1024;

/// Pack bytes whose room is kept between rounds: about what a live round (100 ms of writes) of
/// a busy server packs.
const ARENA_KEPT: usize = 4 << 20;

impl Pending {
    fn put(&mut self, key: LocatedKey, revision: i64, bytes: &[u8]) {
        if let Some((locator, hash)) = packable(&key, revision) {
            let newest = self.packs.last().filter(|(last, _)| *last == locator);
            let start = match newest {
                // Written again while recording its own revision: already in the pack.
                Some(&(_, start)) if pack::find(&self.arena[start..], key[0], hash).is_some() => {
                    return;
                }
                Some(&(_, start)) => start,
                None => {
                    self.packs.push((locator, self.arena.len()));
                    self.arena.len()
                }
            };
            if self.arena.len() - start + bytes.len() <= pack::PACK_LIMIT {
                pack::push(&mut self.arena, key[0], hash, bytes);
                self.packed_bytes += bytes.len() as u64;
                return;
            }
        }
        self.rows.insert(key, (revision, bytes.to_vec()));
    }

    /// The pack of `locator`, if one is pending.
    fn pack(&self, locator: u64) -> Option<&[u8]> {
        let index = self
            .packs
            .binary_search_by_key(&locator, |(locator, _)| *locator)
            .ok()?;
        Some(self.pack_at(index).1)
    }

    /// The `index`-th pending pack: its locator and bytes (up to where the next one starts).
    fn pack_at(&self, index: usize) -> (u64, &[u8]) {
        let (locator, start) = self.packs[index];
        let end = self
            .packs
            .get(index + 1)
            .map_or(self.arena.len(), |(_, next)| *next);
        (locator, &self.arena[start..end])
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let key: &LocatedKey = key.try_into().ok()?;
        if let Some((_, bytes)) = self.rows.get(key) {
            return Some(bytes.clone());
        }
        let (locator, hash) = split_object_key(key)?;
        pack::find(self.pack(locator)?, key[0], hash).map(<[u8]>::to_vec)
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.packs.is_empty()
    }

    /// Moves every object into `txn` (see [`ObjectBuffer::flush_into`]), leaving the buffers
    /// empty, a live round's room kept.
    fn flush_into(&mut self, txn: &WriteTransaction) -> Result<u64, redb::Error> {
        let mut bytes = std::mem::take(&mut self.packed_bytes);
        // In key order (kind, then locator): each kind's rows are appended where its part of
        // the table ends rather than scattered over its last pages.
        let mut rows: Vec<(LocatedKey, i64, Vec<u8>)> = self
            .rows
            .drain()
            .map(|(key, (revision, value))| (key, revision, value))
            .collect();
        // A catch-up round writes far more than a live one: keep only a live round's room.
        self.rows.shrink_to(ROWS_KEPT);
        rows.sort_unstable_by_key(|(key, ..)| *key);
        let mut table = txn.open_table(OBJECTS)?;
        let mut row = Vec::new();
        for (key, revision, value) in rows {
            bytes += value.len() as u64;
            row.clear();
            row.extend_from_slice(&super::index::encode_i64(revision));
            row.extend_from_slice(&value);
            table.insert(key.as_slice(), row.as_slice())?;
        }
        drop(table);
        let mut table = txn.open_table(PACK_GROUPS)?;
        // A revision's pack is written once, when it is recorded, but for the operation of a
        // trim (recorded at the head): that one joins the group already holding the head.
        let stored_through = match table.last()? {
            Some((first, group)) => pack::sections(group.value())
                .last()
                .map_or(first.value(), |(locator, _)| locator),
            None => 0,
        };
        let mut group = Vec::new();
        let mut group_first = 0;
        for (locator, pack) in (0..self.packs.len()).map(|index| self.pack_at(index)) {
            if pack.is_empty() {
                continue;
            }
            if locator <= stored_through {
                add_to_stored_group(&mut table, locator, pack)?;
                continue;
            }
            if !group.is_empty() && group.len() + pack.len() > pack::GROUP_LIMIT {
                table.insert(group_first, group.as_slice())?;
                group.clear();
            }
            if group.is_empty() {
                group_first = locator;
            }
            pack::push_section(&mut group, locator, pack);
        }
        if !group.is_empty() {
            table.insert(group_first, group.as_slice())?;
        }
        self.packs.clear();
        self.arena.clear();
        self.arena.shrink_to(ARENA_KEPT);
        Ok(bytes)
    }
}

/// Adds `pack`'s objects to `locator`'s section of the group that holds it, or would: the last
/// one keyed at or before it (a group of its own if there is none).
fn add_to_stored_group(
    table: &mut redb::Table<u64, &'static [u8]>,
    locator: u64,
    pack: &[u8],
) -> Result<(), redb::Error> {
    let holding = table
        .range(..=locator)?
        .next_back()
        .transpose()?
        .map(|(first, group)| (first.value(), group.value().to_vec()));
    let (first, group) = holding.unwrap_or((locator, Vec::new()));
    let grown = pack::with_objects_added(&group, locator, pack);
    table.insert(first, grown.as_slice())?;
    Ok(())
}

/// The pack of `locator`: from its group, else from its format-5 `packs` row.
fn find_packed(
    txn: &redb::ReadTransaction,
    locator: u64,
    kind: u8,
    hash: &[u8],
) -> Result<Option<Vec<u8>>, redb::Error> {
    match txn.open_table(PACK_GROUPS) {
        Ok(groups) => {
            if let Some(row) = groups.range(..=locator)?.next_back() {
                let (_, group) = row?;
                if let Some(bytes) = pack::section(group.value(), locator)
                    .and_then(|pack| pack::find(pack, kind, hash))
                {
                    return Ok(Some(bytes.to_vec()));
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(err) => return Err(err.into()),
    }
    match txn.open_table(PACKS) {
        Ok(packs) => Ok(packs
            .get(locator)?
            .and_then(|row| pack::find(row.value(), kind, hash).map(<[u8]>::to_vec))),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The cache of resolved trees (full encodings, deltas applied), bounded in bytes: two
/// generations, the young one filled by inserts and hits, retired wholesale when it holds half
/// the budget (an LRU's effect for the price of a hash map).
#[derive(Default)]
struct TreeBytesCache {
    young: HashMap<TreeId, ResolvedTree>,
    old: HashMap<TreeId, ResolvedTree>,
    young_bytes: usize,
}

/// A tree's full encoding, and the length of the delta chain it is stored as (0: whole).
#[derive(Clone)]
pub(crate) struct ResolvedTree {
    pub bytes: Arc<[u8]>,
    pub depth: u8,
}

impl TreeBytesCache {
    fn get(&mut self, id: &TreeId) -> Option<ResolvedTree> {
        if let Some(tree) = self.young.get(id) {
            return Some(tree.clone());
        }
        let tree = self.old.remove(id)?;
        self.insert(id.clone(), tree.clone());
        Some(tree)
    }

    fn insert(&mut self, id: TreeId, tree: ResolvedTree) {
        let size = tree.bytes.len() + ID_LEN;
        if self.young.insert(id, tree).is_some() {
            return;
        }
        self.young_bytes += size;
        if self.young_bytes > RESOLVED_TREE_CACHE_BYTES / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
    }
}

impl ObjectBuffer {
    pub(crate) fn put(&self, key: LocatedKey, bytes: &[u8]) {
        let revision = self.writing.load(std::sync::atomic::Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(key, revision, bytes);
    }

    /// Objects written from now on are stamped with `revision`.
    pub(crate) fn set_writing(&self, revision: i64) {
        self.writing
            .store(revision, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
    }

    /// Moves every pending object into `txn`: those whose locator is the revision that wrote
    /// them into that revision's pack, the others into rows of their own stamped with it.
    /// Returns how many bytes they hold.
    pub(crate) fn flush_into(&self, txn: &WriteTransaction) -> Result<u64, redb::Error> {
        let mut pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let result = pending.flush_into(txn);
        // Only the writer puts and flushes: keep the emptied map and list for the next round.
        let mut current = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_empty() {
            *current = pending;
        }
        result
    }

    /// Forgets pending objects (after a failed batch).
    pub(crate) fn discard(&self) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Pending::default();
    }

    fn cached_tree_bytes(&self, id: &TreeId) -> Option<ResolvedTree> {
        self.tree_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
    }

    fn cache_tree_bytes(&self, id: TreeId, tree: ResolvedTree) {
        self.tree_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, tree);
    }

    fn cached_tree(&self, id: &TreeId) -> Option<Arc<Tree>> {
        self.trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn cache_tree(&self, id: TreeId, tree: Arc<Tree>) {
        let mut trees = self.trees.lock().unwrap_or_else(PoisonError::into_inner);
        if trees.len() >= TREE_CACHE_LIMIT {
            trees.clear();
        }
        trees.insert(id, tree);
    }
}

/// jj's commit backend over redb; see the module docs.
pub struct RedbBackend {
    db: Arc<Database>,
    pub(crate) buffer: Arc<ObjectBuffer>,
    root_commit_id: CommitId,
    root_change_id: ChangeId,
    empty_tree_id: TreeId,
}

impl fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBackend").finish_non_exhaustive()
    }
}

impl RedbBackend {
    pub const NAME: &'static str = "cairn-redb";

    pub(crate) fn new(db: Arc<Database>) -> Self {
        let empty_tree_id =
            TreeId::new(located_id(0, &tree_to_proto(&Tree::default()).encode_to_vec()).to_vec());
        Self {
            db,
            buffer: Arc::new(ObjectBuffer::default()),
            root_commit_id: CommitId::new(vec![0; ID_LEN]),
            root_change_id: ChangeId::new(vec![0; CHANGE_ID_LEN]),
            empty_tree_id,
        }
    }

    /// Opens a backend over a database of its own at `path` (tools and benchmarks; the node
    /// uses the history database's).
    pub fn open_standalone(path: &std::path::Path) -> Result<Self, redb::Error> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(OBJECTS)?;
        txn.open_table(PACK_GROUPS)?;
        txn.commit()?;
        Ok(Self::new(Arc::new(db)))
    }

    /// Writes every pending object in one non-durable transaction (what the history writer
    /// does once per batch, with its indexes).
    pub fn commit_pending(&self) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        self.buffer.flush_into(&txn)?;
        txn.commit()?;
        Ok(())
    }

    /// Reads an object: pending first, then its locator's pack, then its own row. `None` if
    /// absent.
    pub(crate) fn read_object(&self, kind: Kind, id: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        self.stored_object(&object_key(kind, id))
    }

    /// [`Self::read_object`] of the object whose `objects` key is `key`.
    pub(crate) fn stored_object(&self, key: &[u8]) -> BackendResult<Option<Vec<u8>>> {
        if let Some(bytes) = self.buffer.get(key) {
            return Ok(Some(bytes));
        }
        let read = || -> Result<Option<Vec<u8>>, redb::Error> {
            let txn = self.db.begin_read()?;
            if let Some((locator, hash)) = split_object_key(key).filter(|(l, _)| *l > 0)
                && let Some(bytes) = find_packed(&txn, locator, key[0], hash)?
            {
                return Ok(Some(bytes));
            }
            let table = match txn.open_table(OBJECTS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            Ok(table
                .get(key)?
                .map(|row| row.value().get(8..).unwrap_or_default().to_vec()))
        };
        read().map_err(|err| BackendError::Other(Box::new(err)))
    }

    fn read_required(&self, kind: Kind, id: &impl ObjectId) -> BackendResult<Vec<u8>> {
        self.read_object(kind, id.as_bytes())?
            .ok_or_else(|| BackendError::ObjectNotFound {
                object_type: id.object_type(),
                hash: id.hex(),
                source: "not in the history database".into(),
            })
    }

    pub(crate) fn write_object(&self, kind: Kind, locator: u64, bytes: &[u8]) -> Vec<u8> {
        let id = located_id(locator, bytes);
        self.buffer.put(located_key(kind, &id), bytes);
        id.to_vec()
    }

    /// The revision being recorded, as a locator.
    pub(crate) fn writing_locator(&self) -> u64 {
        revision_locator(
            self.buffer
                .writing
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Reads a tree, through the decoded-tree cache.
    pub(crate) fn tree(&self, id: &TreeId) -> BackendResult<Arc<Tree>> {
        if id == &self.empty_tree_id {
            return Ok(Arc::new(Tree::default()));
        }
        if let Some(tree) = self.buffer.cached_tree(id) {
            return Ok(tree);
        }
        let bytes = self.resolve_tree(id)?.bytes;
        let tree = Arc::new(tree_from_proto(decode::<proto::Tree>(&bytes, id)?, id)?);
        self.buffer.cache_tree(id.clone(), Arc::clone(&tree));
        Ok(tree)
    }

    /// Writes a tree (synchronously).
    pub(crate) fn put_tree(&self, tree: &Tree) -> TreeId {
        let locator = tree
            .entries()
            .map(|entry| match entry.value() {
                TreeValue::File { id, .. } => locator_of(id.as_bytes()),
                TreeValue::Tree(id) => locator_of(id.as_bytes()),
                TreeValue::Symlink(id) => locator_of(id.as_bytes()),
                TreeValue::GitSubmodule(id) => locator_of(id.as_bytes()),
            })
            .max()
            .unwrap_or(0);
        TreeId::new(self.write_object(Kind::Tree, locator, &encode_jj_tree(tree)))
    }

    /// Writes the tree `id` (the writer's hot path; `id` is [`located_id`] of its
    /// [`encode_tree`] encoding) stored as `stored`: that encoding, or a delta (`delta.rs`). The
    /// writer keeps what it writes loaded (`tree.rs`), so the tree is not cached.
    pub(crate) fn put_tree_stored(&self, id: &[u8; ID_LEN], stored: &[u8]) {
        self.buffer.put(located_key(Kind::Tree, id), stored);
    }

    /// A tree's full encoding and how deep a delta chain stores it: from the writer's cache,
    /// or read and resolved (deltas applied to their bases, `delta.rs`).
    pub(crate) fn resolve_tree(&self, id: &TreeId) -> BackendResult<ResolvedTree> {
        self.resolve_tree_within(id, delta::MAX_DEPTH)
    }

    /// [`Self::resolve_tree`] of a tree whose chain may be at most `depth` long (each step of a
    /// chain is shorter, so even a corrupt chain ends).
    fn resolve_tree_within(&self, id: &TreeId, depth: u8) -> BackendResult<ResolvedTree> {
        if id == &self.empty_tree_id {
            return Ok(ResolvedTree {
                bytes: Arc::from(Vec::new()),
                depth: 0,
            });
        }
        if let Some(tree) = self.buffer.cached_tree_bytes(id) {
            return Ok(tree);
        }
        let stored = self.read_required(Kind::Tree, id)?;
        let tree = if delta::is_delta(&stored) {
            let corrupt = |what: &str| BackendError::ReadObject {
                object_type: "tree".to_owned(),
                hash: id.hex(),
                source: what.to_owned().into(),
            };
            let delta = delta::decode(&stored).ok_or_else(|| corrupt("undecodable delta"))?;
            if delta.depth == 0 || delta.depth > depth {
                return Err(corrupt("delta chain does not shorten"));
            }
            let base =
                self.resolve_tree_within(&TreeId::from_bytes(delta.base), delta.depth - 1)?;
            let (bytes, _) = splice_tree(&base.bytes, &delta.edits)
                .ok_or_else(|| corrupt("delta over a tree it cannot edit"))?;
            ResolvedTree {
                bytes: Arc::from(bytes),
                depth: delta.depth,
            }
        } else {
            ResolvedTree {
                bytes: Arc::from(stored),
                depth: 0,
            }
        };
        self.buffer.cache_tree_bytes(id.clone(), tree.clone());
        Ok(tree)
    }

    /// The entries of a tree, for editing: through the cache of resolved trees and
    /// [`decode_plain_tree`], or the general decoding for a tree that holds anything else.
    pub(crate) fn tree_entries(&self, id: &TreeId) -> BackendResult<Vec<(String, PlainEntry)>> {
        Ok(self.tree_entries_resolved(id)?.0)
    }

    /// [`Self::tree_entries`], and the tree resolved (its encoding and the length of the delta
    /// chain it is stored as).
    pub(crate) fn tree_entries_resolved(
        &self,
        id: &TreeId,
    ) -> BackendResult<(Vec<(String, PlainEntry)>, ResolvedTree)> {
        if id == &self.empty_tree_id {
            let empty = ResolvedTree {
                bytes: Arc::from(Vec::new()),
                depth: 0,
            };
            return Ok((Vec::new(), empty));
        }
        let resolved = self.resolve_tree(id)?;
        let bytes = &resolved.bytes;
        if let Some(entries) = decode_plain_tree(bytes) {
            return Ok((entries, resolved));
        }
        let tree = tree_from_proto(decode::<proto::Tree>(bytes, id)?, id)?;
        let entries = tree
            .entries()
            .map(|entry| {
                let value = match entry.value() {
                    TreeValue::Tree(id) => PlainEntry::Tree(id.to_bytes()),
                    TreeValue::File { id, .. } => PlainEntry::File(id.to_bytes()),
                    // History writes nothing else; keep the name so nothing is lost.
                    TreeValue::Symlink(_) | TreeValue::GitSubmodule(_) => {
                        PlainEntry::File(Vec::new())
                    }
                };
                (entry.name().as_internal_str().to_owned(), value)
            })
            .collect();
        Ok((entries, resolved))
    }

    /// Writes a file's content (synchronously: the writer's hot path); `mod_revision` is the
    /// revision that wrote the value.
    pub(crate) fn put_file(&self, content: &[u8], mod_revision: i64) -> FileId {
        FileId::new(self.write_object(Kind::File, revision_locator(mod_revision), content))
    }

    /// Reads a file's content.
    pub(crate) fn file(&self, id: &FileId) -> BackendResult<Vec<u8>> {
        self.read_required(Kind::File, id)
    }

    /// Writes a commit (synchronously), returning its id.
    pub(crate) fn put_commit(&self, commit: &Commit) -> CommitId {
        CommitId::new(self.write_object(
            Kind::Commit,
            commit_locator(commit),
            &wire::encode_commit(commit),
        ))
    }

    /// Writes `commit`, received already encoded as `bytes` (a history anchor), returning its
    /// id: the same id its writer computed, as ids are functions of the content.
    pub(crate) fn put_commit_bytes(&self, commit: &Commit, bytes: &[u8]) -> CommitId {
        CommitId::new(self.write_object(Kind::Commit, commit_locator(commit), bytes))
    }

    /// Reads a commit.
    pub(crate) fn commit(&self, id: &CommitId) -> BackendResult<Commit> {
        if id == &self.root_commit_id {
            return Ok(make_root_commit(
                self.root_change_id.clone(),
                self.empty_tree_id.clone(),
            ));
        }
        let bytes = self.read_required(Kind::Commit, id)?;
        Ok(commit_from_proto(decode::<proto::Commit>(&bytes, id)?))
    }

    pub(crate) fn empty_tree(&self) -> &TreeId {
        &self.empty_tree_id
    }

    pub(crate) fn root_commit(&self) -> &CommitId {
        &self.root_commit_id
    }
}

/// A commit's locator: the newest among its parents' and its tree's.
fn commit_locator(commit: &Commit) -> u64 {
    commit
        .parents
        .iter()
        .map(|id| locator_of(id.as_bytes()))
        .chain(commit.root_tree.iter().map(|id| locator_of(id.as_bytes())))
        .max()
        .unwrap_or(0)
}

fn decode<M: Message + Default>(bytes: &[u8], id: &impl ObjectId) -> BackendResult<M> {
    M::decode(bytes).map_err(|err| BackendError::ReadObject {
        object_type: id.object_type(),
        hash: id.hex(),
        source: Box::new(err),
    })
}

fn unsupported(what: &str) -> BackendError {
    BackendError::Unsupported(format!("the history backend stores no {what}"))
}

#[async_trait]
impl Backend for RedbBackend {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn commit_id_length(&self) -> usize {
        ID_LEN
    }

    fn change_id_length(&self) -> usize {
        CHANGE_ID_LEN
    }

    fn root_commit_id(&self) -> &CommitId {
        &self.root_commit_id
    }

    fn root_change_id(&self) -> &ChangeId {
        &self.root_change_id
    }

    fn empty_tree_id(&self) -> &TreeId {
        &self.empty_tree_id
    }

    fn concurrency(&self) -> usize {
        1
    }

    async fn read_file(
        &self,
        _path: &RepoPath,
        id: &FileId,
    ) -> BackendResult<Pin<Box<dyn AsyncRead + Send>>> {
        Ok(Box::pin(Cursor::new(self.file(id)?)))
    }

    async fn write_file(
        &self,
        _path: &RepoPath,
        contents: &mut (dyn AsyncRead + Send + Unpin),
    ) -> BackendResult<FileId> {
        let mut bytes = Vec::new();
        contents
            .read_to_end(&mut bytes)
            .await
            .map_err(|err| BackendError::WriteObject {
                object_type: "file",
                source: Box::new(err),
            })?;
        Ok(self.put_file(
            &bytes,
            self.buffer
                .writing
                .load(std::sync::atomic::Ordering::Relaxed),
        ))
    }

    async fn read_symlink(&self, _path: &RepoPath, _id: &SymlinkId) -> BackendResult<String> {
        Err(unsupported("symlinks"))
    }

    async fn write_symlink(&self, _path: &RepoPath, _target: &str) -> BackendResult<SymlinkId> {
        Err(unsupported("symlinks"))
    }

    async fn read_copy(&self, _id: &CopyId) -> BackendResult<CopyHistory> {
        Err(unsupported("copy histories"))
    }

    async fn write_copy(&self, _copy: &CopyHistory) -> BackendResult<CopyId> {
        Err(unsupported("copy histories"))
    }

    async fn get_related_copies(&self, _copy_id: &CopyId) -> BackendResult<Vec<RelatedCopy>> {
        Err(unsupported("copy histories"))
    }

    async fn read_tree(&self, _path: &RepoPath, id: &TreeId) -> BackendResult<Tree> {
        Ok(self.tree(id)?.as_ref().clone())
    }

    async fn write_tree(&self, _path: &RepoPath, contents: &Tree) -> BackendResult<TreeId> {
        Ok(self.put_tree(contents))
    }

    async fn read_commit(&self, id: &CommitId) -> BackendResult<Commit> {
        self.commit(id)
    }

    async fn write_commit(
        &self,
        contents: Commit,
        sign_with: Option<&mut SigningFn>,
    ) -> BackendResult<(CommitId, Commit)> {
        if sign_with.is_some() {
            return Err(unsupported("signatures"));
        }
        if contents.parents.is_empty() {
            return Err(BackendError::Other(
                "cannot write a commit with no parents".into(),
            ));
        }
        let id = self.put_commit(&contents);
        Ok((id, contents))
    }

    fn get_copy_records(
        &self,
        _paths: Option<&[RepoPathBuf]>,
        _root: &CommitId,
        _head: &CommitId,
    ) -> BackendResult<BoxStream<'_, BackendResult<CopyRecord>>> {
        Ok(Box::pin(futures::stream::empty()))
    }

    fn gc(&self, _index: &dyn Index, _keep_newer: SystemTime) -> BackendResult<()> {
        // Trimming is done by `--history-retention` (retention.rs), which knows which revisions
        // may go; jj's reachability gc has nothing to add for a linear history.
        Ok(())
    }
}

pub(crate) fn tree_to_proto(tree: &Tree) -> proto::Tree {
    proto::Tree {
        entries: tree
            .entries()
            .map(|entry| proto::tree::Entry {
                name: entry.name().as_internal_str().to_owned(),
                value: Some(tree_value_to_proto(entry.value())),
            })
            .collect(),
    }
}

fn tree_value_to_proto(value: &TreeValue) -> proto::TreeValue {
    let value = match value {
        TreeValue::File {
            id,
            executable,
            copy_id,
        } => proto::tree_value::Value::File(proto::tree_value::File {
            id: id.to_bytes(),
            executable: *executable,
            copy_id: copy_id.to_bytes(),
        }),
        TreeValue::Symlink(id) => proto::tree_value::Value::SymlinkId(id.to_bytes()),
        TreeValue::Tree(id) => proto::tree_value::Value::TreeId(id.to_bytes()),
        TreeValue::GitSubmodule(id) => proto::tree_value::Value::SymlinkId(id.to_bytes()),
    };
    proto::TreeValue { value: Some(value) }
}

fn tree_from_proto(tree: proto::Tree, id: &TreeId) -> BackendResult<Tree> {
    let corrupt = |what: &str| BackendError::ReadObject {
        object_type: "tree".to_owned(),
        hash: id.hex(),
        source: what.to_owned().into(),
    };
    let mut entries = Vec::with_capacity(tree.entries.len());
    for entry in tree.entries {
        let name = RepoPathComponentBuf::new(entry.name).map_err(|_| corrupt("bad entry name"))?;
        let value = match entry.value.and_then(|value| value.value) {
            Some(proto::tree_value::Value::File(file)) => TreeValue::File {
                id: FileId::new(file.id),
                executable: file.executable,
                copy_id: CopyId::new(file.copy_id),
            },
            Some(proto::tree_value::Value::TreeId(tree_id)) => {
                TreeValue::Tree(TreeId::new(tree_id))
            }
            Some(proto::tree_value::Value::SymlinkId(symlink)) => {
                TreeValue::Symlink(SymlinkId::new(symlink))
            }
            None => return Err(corrupt("entry without a value")),
        };
        entries.push((name, value));
    }
    Ok(Tree::from_sorted_entries(entries))
}

/// The prost message of a commit: what [`wire::encode_commit`] is tested against.
#[cfg(test)]
pub(crate) fn commit_to_proto(commit: &Commit) -> proto::Commit {
    proto::Commit {
        parents: commit.parents.iter().map(ObjectId::to_bytes).collect(),
        predecessors: commit.predecessors.iter().map(ObjectId::to_bytes).collect(),
        root_tree: commit.root_tree.iter().map(ObjectId::to_bytes).collect(),
        conflict_labels: if commit.conflict_labels.is_resolved() {
            Vec::new()
        } else {
            commit.conflict_labels.as_slice().to_owned()
        },
        change_id: commit.change_id.to_bytes(),
        description: commit.description.clone(),
        author: Some(signature_to_proto(&commit.author)),
        committer: Some(signature_to_proto(&commit.committer)),
        secure_sig: None,
    }
}

#[cfg(test)]
fn signature_to_proto(signature: &Signature) -> proto::commit::Signature {
    proto::commit::Signature {
        name: signature.name.clone(),
        email: signature.email.clone(),
        timestamp: Some(proto::commit::Timestamp {
            millis_since_epoch: signature.timestamp.timestamp.0,
            tz_offset: signature.timestamp.tz_offset,
        }),
    }
}

fn signature_from_proto(signature: proto::commit::Signature) -> Signature {
    let timestamp = signature.timestamp.unwrap_or_default();
    Signature {
        name: signature.name,
        email: signature.email,
        timestamp: Timestamp {
            timestamp: MillisSinceEpoch(timestamp.millis_since_epoch),
            tz_offset: timestamp.tz_offset,
        },
    }
}

/// Decodes an encoded commit; `None` if the bytes are not one.
pub(crate) fn decode_commit(bytes: &[u8]) -> Option<Commit> {
    proto::Commit::decode(bytes).ok().map(commit_from_proto)
}

fn commit_from_proto(commit: proto::Commit) -> Commit {
    let root_tree: MergeBuilder<TreeId> = commit.root_tree.into_iter().map(TreeId::new).collect();
    Commit {
        parents: commit.parents.into_iter().map(CommitId::new).collect(),
        predecessors: commit.predecessors.into_iter().map(CommitId::new).collect(),
        root_tree: root_tree.build(),
        conflict_labels: ConflictLabels::from_vec(commit.conflict_labels).into_merge(),
        change_id: ChangeId::new(commit.change_id),
        description: commit.description,
        author: signature_from_proto(commit.author.unwrap_or_default()),
        committer: signature_from_proto(commit.committer.unwrap_or_default()),
        secure_sig: None,
    }
}

/// Encodes a jj tree as [`encode_tree`] does; symlinks and submodules (which history never
/// writes) through prost.
fn encode_jj_tree(tree: &Tree) -> Vec<u8> {
    let plain = tree
        .entries()
        .all(|entry| matches!(entry.value(), TreeValue::File { executable: false, copy_id, .. } if copy_id.as_bytes().is_empty()) || matches!(entry.value(), TreeValue::Tree(_)));
    if !plain {
        return tree_to_proto(tree).encode_to_vec();
    }
    encode_tree(tree.entries().map(|entry| {
        let value = match entry.value() {
            TreeValue::File { id, .. } => TreeEntryRef::File(id.as_bytes()),
            TreeValue::Tree(id) => TreeEntryRef::Tree(id.as_bytes()),
            TreeValue::Symlink(_) | TreeValue::GitSubmodule(_) => unreachable!("checked above"),
        };
        (entry.name().as_internal_str(), value)
    }))
}

/// One entry of a decoded tree: a file or a subtree, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlainEntry {
    File(Vec<u8>),
    Tree(Vec<u8>),
}

/// Decodes a tree of plain entries (files neither executable nor with a copy id, subtrees: what
/// [`encode_tree`] writes) straight from its protobuf bytes, without the intermediate messages;
/// `None` for anything else (which [`tree_from_proto`] decodes).
pub(crate) fn decode_plain_tree(bytes: &[u8]) -> Option<Vec<(String, PlainEntry)>> {
    let mut entries = Vec::new();
    for entry in raw_entries(bytes) {
        let RawEntry { name, value, .. } = entry?;
        let value = match value {
            TreeEntryRef::File(id) => PlainEntry::File(id.to_vec()),
            TreeEntryRef::Tree(id) => PlainEntry::Tree(id.to_vec()),
        };
        entries.push((std::str::from_utf8(name).ok()?.to_owned(), value));
    }
    Some(entries)
}

/// One plain entry of an encoded tree: its bytes (field header included), its name's bytes
/// (not checked to be UTF-8) and its value.
struct RawEntry<'a> {
    whole: &'a [u8],
    name: &'a [u8],
    value: TreeEntryRef<'a>,
}

/// The entries of an encoded tree, in order. An item is `None`, and the last, where the bytes
/// stop being plain entries.
fn raw_entries(tree: &[u8]) -> impl Iterator<Item = Option<RawEntry<'_>>> {
    let mut rest = tree;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let before = rest;
        let entry = match next_field(&mut rest) {
            Some((1, entry)) => plain_entry(entry),
            _ => None,
        };
        let Some((name, value)) = entry else {
            rest = &[];
            return Some(None);
        };
        let whole = &before[..before.len() - rest.len()];
        Some(Some(RawEntry { whole, name, value }))
    })
}

/// The name (its bytes, not checked to be UTF-8) and value of one encoded tree entry of the
/// plain kind; `None` for anything else.
fn plain_entry(mut entry: &[u8]) -> Option<(&[u8], TreeEntryRef<'_>)> {
    let mut name = None;
    let mut value = None;
    while !entry.is_empty() {
        match next_field(&mut entry)? {
            (1, bytes) => name = Some(bytes),
            (2, mut tree_value) => {
                let (field, inner) = next_field(&mut tree_value)?;
                if !tree_value.is_empty() {
                    return None;
                }
                value = Some(match field {
                    2 => {
                        let mut file = inner;
                        let (1, id) = next_field(&mut file)? else {
                            return None;
                        };
                        if !file.is_empty() {
                            return None;
                        }
                        TreeEntryRef::File(id)
                    }
                    4 => TreeEntryRef::Tree(inner),
                    _ => return None,
                });
            }
            _ => return None,
        }
    }
    Some((name?, value?))
}

/// Whether `tree` is exactly what [`encode_tree`] writes for its entries: plain entries with
/// UTF-8 names, in name order, canonically encoded. Only such a tree can be spliced.
pub(crate) fn is_canonical_tree(tree: &[u8]) -> bool {
    let mut previous: Option<&[u8]> = None;
    for entry in raw_entries(tree) {
        let Some(RawEntry { whole, name, value }) = entry else {
            return false;
        };
        if std::str::from_utf8(name).is_err()
            || previous.is_some_and(|previous| previous >= name)
            || whole.len() != entry_len(name, value)
        {
            return false;
        }
        previous = Some(name);
    }
    true
}

/// [`encode_tree`] of the entries of `old` with `edits` applied (names in order, each with its
/// new value or `None` to remove it), and the newest locator among the result's ids. `None`
/// unless `old` is canonical ([`is_canonical_tree`]).
pub(crate) fn splice_tree(
    old: &[u8],
    edits: &[(&str, Option<TreeEntryRef<'_>>)],
) -> Option<(Vec<u8>, u64)> {
    if !is_canonical_tree(old) {
        return None;
    }
    splice_canonical(old, edits)
}

/// [`splice_tree`] of a tree already known to be canonical (checked when it was read, or
/// written by [`encode_tree`] or a splice): its entries are framed, not checked again. Entries
/// not edited are copied as they are: a pass over contiguous bytes instead of over every
/// entry's name and id wherever they live. `None` if `old` does not even frame as entries.
pub(crate) fn splice_canonical(
    old: &[u8],
    edits: &[(&str, Option<TreeEntryRef<'_>>)],
) -> Option<(Vec<u8>, u64)> {
    let mut out = Vec::with_capacity(old.len() + edits.len() * 64);
    let mut locator = 0;
    let put_edit = |out: &mut Vec<u8>, locator: &mut u64, name, value| {
        if let Some(value) = value {
            encode_entry(out, name, value);
            *locator = (*locator).max(locator_of(value.id()));
        }
    };
    let mut edits = edits.iter().peekable();
    for entry in raw_entries(old) {
        let RawEntry { whole, name, value } = entry?;
        // Names compare as their UTF-8 bytes compare.
        while let Some((edit, value)) = edits.next_if(|(edit, _)| edit.as_bytes() < name) {
            put_edit(&mut out, &mut locator, edit, *value);
        }
        if let Some((edit, value)) = edits.next_if(|(edit, _)| edit.as_bytes() == name) {
            put_edit(&mut out, &mut locator, edit, *value);
        } else {
            out.extend_from_slice(whole);
            locator = locator.max(locator_of(value.id()));
        }
    }
    for (edit, value) in edits {
        put_edit(&mut out, &mut locator, edit, *value);
    }
    Some((out, locator))
}

/// The most edits [`replace_ids_in_place`] makes; more are left to the splice (a revision
/// usually edits one entry of each directory on its path).
const MOST_IN_PLACE_EDITS: usize = 8;

/// Edits `tree` (canonical, [`is_canonical_tree`]) in place when every edit gives an entry it
/// already has a value of the same kind whose id is as long (a put to an existing key, a
/// subdirectory written again): each entry then keeps its length and only its id's bytes,
/// its last ones, change. Returns whether it did; when it did not, `tree` is untouched.
/// Only the entries' framing and names are read: the same result as [`splice_canonical`]
/// without a pass that copies every entry into a new tree.
pub(crate) fn replace_ids_in_place(
    tree: &mut [u8],
    edits: &[(&str, Option<TreeEntryRef<'_>>)],
) -> bool {
    let replaceable = |whole: &[u8], name: &[u8], value: Option<TreeEntryRef<'_>>| {
        let Some(value) = value else {
            return false;
        };
        let id = value.id();
        // The id is the entry's last field: its tag and length come just before it.
        let tag = match value {
            TreeEntryRef::File(_) => 0x0a,
            TreeEntryRef::Tree(_) => 0x22,
        };
        whole.len() == entry_len(name, value)
            && whole.len() > id.len() + 2
            && whole[whole.len() - id.len() - 2] == tag
            && usize::from(whole[whole.len() - id.len() - 1]) == id.len()
    };
    // Where each edited entry's id starts, found in one pass; written once all are checked
    // (all or nothing).
    if edits.len() > MOST_IN_PLACE_EDITS {
        return false;
    }
    let mut places = [0usize; MOST_IN_PLACE_EDITS];
    let mut found = 0;
    let mut at = 0;
    while found < edits.len() && at < tree.len() {
        let Some((len, name_at, name_len)) = framed_entry(&tree[at..]) else {
            return false;
        };
        let whole = &tree[at..at + len];
        let name = &whole[name_at..name_at + name_len];
        let (edit, value) = edits[found];
        match edit.as_bytes().cmp(name) {
            // An entry the tree does not have.
            std::cmp::Ordering::Less => return false,
            std::cmp::Ordering::Equal => {
                if !replaceable(whole, name, value) {
                    return false;
                }
                places[found] = at + len - value.map_or(0, |value| value.id().len());
                found += 1;
            }
            std::cmp::Ordering::Greater => {}
        }
        at += len;
    }
    if found < edits.len() {
        return false;
    }
    for (&place, (_, value)) in places.iter().zip(edits) {
        if let Some(value) = value {
            let id = value.id();
            tree[place..place + id.len()].copy_from_slice(id);
        }
    }
    true
}

/// The framing of the encoded tree entry `bytes` starts with: its length, header included, and
/// where its name is in it (offset, length). Reads headers only, so only for trees whose
/// entries are known to be plain ([`is_canonical_tree`]). `None` where it does not frame.
fn framed_entry(bytes: &[u8]) -> Option<(usize, usize, usize)> {
    // Entries of short names and ids have one-byte lengths: read those without the varint loop.
    if let [0x0a, len, 0x0a, name_len, ..] = *bytes
        && len < 0x80
        && name_len < 0x80
    {
        let whole = 2 + usize::from(len);
        let name_at = 4;
        return (whole <= bytes.len() && name_at + usize::from(name_len) <= whole).then_some((
            whole,
            name_at,
            usize::from(name_len),
        ));
    }
    let mut rest = bytes;
    if get_varint(&mut rest)? != (1 << 3) | 2 {
        return None;
    }
    let len = usize::try_from(get_varint(&mut rest)?).ok()?;
    let header = bytes.len() - rest.len();
    let whole = header
        .checked_add(len)
        .filter(|&whole| whole <= bytes.len())?;
    let mut entry = &rest[..len];
    if get_varint(&mut entry)? != (1 << 3) | 2 {
        return None;
    }
    let name_len = usize::try_from(get_varint(&mut entry)?).ok()?;
    let name_at = header + (len - entry.len());
    (name_at + name_len <= whole).then_some((whole, name_at, name_len))
}

/// The next length-delimited field of a message: (field number, payload). `None` at a field
/// of another wire type or a malformed one.
fn next_field<'a>(bytes: &mut &'a [u8]) -> Option<(u64, &'a [u8])> {
    let tag = get_varint(bytes)?;
    if tag & 7 != 2 {
        return None;
    }
    let len = usize::try_from(get_varint(bytes)?).ok()?;
    if len > bytes.len() {
        return None;
    }
    let (payload, rest) = bytes.split_at(len);
    *bytes = rest;
    Some((tag >> 3, payload))
}

/// One entry of a tree being encoded: a file or a subtree, by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TreeEntryRef<'a> {
    File(&'a [u8]),
    Tree(&'a [u8]),
}

impl<'a> TreeEntryRef<'a> {
    pub(crate) fn id(self) -> &'a [u8] {
        match self {
            TreeEntryRef::File(id) | TreeEntryRef::Tree(id) => id,
        }
    }
}

/// Encodes a tree (entries in name order) as jj's `simple_store.Tree` protobuf, byte for byte
/// what prost writes for the same tree built with [`tree_to_proto`] (files not executable, no
/// copy id), without building the intermediate messages.
pub(crate) fn encode_tree<'a>(
    entries: impl Iterator<Item = (&'a str, TreeEntryRef<'a>)>,
) -> Vec<u8> {
    // About what an entry with a short name and a located id takes.
    let mut out = Vec::with_capacity(entries.size_hint().0 * 64);
    for (name, value) in entries {
        encode_entry(&mut out, name, value);
    }
    out
}

/// The length of a `TreeValue` message holding `value`, and its id.
fn value_len(value: TreeEntryRef<'_>) -> usize {
    match value {
        // TreeValue.file (2) = File { id (1) }
        TreeEntryRef::File(id) => field_len(field_len(id.len())),
        // TreeValue.tree_id (4)
        TreeEntryRef::Tree(id) => field_len(id.len()),
    }
}

/// Bytes of one encoded tree entry, its field header included.
fn entry_len(name: &[u8], value: TreeEntryRef<'_>) -> usize {
    field_len(field_len(name.len()) + field_len(value_len(value)))
}

/// Appends the tree entry `Entry { name (1), value (2): TreeValue }` (field 1 of `Tree`),
/// written straight into `out`: the lengths of the nested messages are known up front.
fn encode_entry(out: &mut Vec<u8>, name: &str, value: TreeEntryRef<'_>) {
    let value_len = value_len(value);
    put_tag(out, 1);
    put_varint(out, (field_len(name.len()) + field_len(value_len)) as u64);
    put_bytes_field(out, 1, name.as_bytes());
    put_tag(out, 2);
    put_varint(out, value_len as u64);
    match value {
        TreeEntryRef::File(id) => {
            put_tag(out, 2);
            put_varint(out, field_len(id.len()) as u64);
            put_bytes_field(out, 1, id);
        }
        TreeEntryRef::Tree(id) => put_bytes_field(out, 4, id),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pending_objects_are_packed_once_and_written_again_later_as_rows() {
        let mut pending = Pending::default();
        let id = located_id(7, b"bytes");
        let key = located_key(Kind::File, &id);
        assert_eq!(key.as_slice(), object_key(Kind::File, &id), "the same key");
        pending.put(key, 7, b"bytes");
        pending.put(key, 7, b"bytes");
        let other = located_id(7, b"other");
        let other_key = located_key(Kind::Tree, &other);
        pending.put(other_key, 7, b"other");
        assert_eq!(
            pack::objects(pending.pack(7).unwrap()).count(),
            2,
            "packed once"
        );
        assert_eq!(pending.get(&key).as_deref(), Some(b"bytes".as_slice()));
        assert_eq!(
            pending.get(&other_key).as_deref(),
            Some(b"other".as_slice())
        );
        // Written again while recording a later revision: a row stamped with it as well.
        pending.put(key, 8, b"bytes");
        assert!(matches!(pending.rows.get(&key), Some((8, _))));
        assert_eq!(pending.packs.len(), 1, "no pack for revision 8");
        assert_eq!(pack::objects(pending.pack(7).unwrap()).count(), 2);
        assert_eq!(pending.get(&key).as_deref(), Some(b"bytes".as_slice()));
        // The next revision's pack follows; each is found by its locator.
        let next = located_id(9, b"next");
        let next_key = located_key(Kind::Commit, &next);
        pending.put(next_key, 9, b"next");
        assert_eq!(pack::objects(pending.pack(9).unwrap()).count(), 1);
        assert_eq!(pack::objects(pending.pack(7).unwrap()).count(), 2);
        assert_eq!(pending.get(&next_key).as_deref(), Some(b"next".as_slice()));
        assert_eq!(
            pending.get(&located_key(Kind::Commit, &located_id(9, b"no"))),
            None
        );
    }

    proptest! {
        #[test]
        fn hand_encoded_trees_equal_prost_encoded(entries in proptest::collection::btree_map(
            "[a-z%~#0-9]{1,200}",
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 32)),
            0..40,
        )) {
            let tree = Tree::from_sorted_entries(
                entries
                    .iter()
                    .map(|(name, (file, id))| {
                        let value = if *file {
                            TreeValue::File {
                                id: FileId::new(id.clone()),
                                executable: false,
                                copy_id: CopyId::placeholder(),
                            }
                        } else {
                            TreeValue::Tree(TreeId::new(id.clone()))
                        };
                        (RepoPathComponentBuf::new(name.clone()).expect("valid"), value)
                    })
                    .collect(),
            );
            let by_prost = tree_to_proto(&tree).encode_to_vec();
            let by_hand = encode_tree(entries.iter().map(|(name, (file, id))| {
                let value = if *file {
                    TreeEntryRef::File(id.as_slice())
                } else {
                    TreeEntryRef::Tree(id.as_slice())
                };
                (name.as_str(), value)
            }));
            prop_assert_eq!(&by_hand, &by_prost);
            let decoded = decode_plain_tree(&by_hand).expect("plain");
            let expected: Vec<(String, PlainEntry)> = entries
                .into_iter()
                .map(|(name, (file, id))| {
                    (name, if file { PlainEntry::File(id) } else { PlainEntry::Tree(id) })
                })
                .collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn plain_decoding_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_plain_tree(&bytes);
            let _ = splice_tree(&bytes, &[("a~", None)]);
            let id = located_id(1, b"x");
            let mut bytes = bytes;
            let _ = replace_ids_in_place(&mut bytes, &[("a~", Some(TreeEntryRef::File(&id)))]);
        }

        #[test]
        fn a_spliced_tree_is_the_edited_tree_encoded(
            old in proptest::collection::btree_map("[a-d]{1,3}~?", (any::<bool>(), 0u64..50), 0..12),
            edits in proptest::collection::btree_map(
                "[a-d]{1,3}~?",
                proptest::option::of((any::<bool>(), 0u64..50)),
                0..6,
            ),
        ) {
            // Ids are a fixed hash part and a locator, as `located_id` makes them.
            let id = |locator: u64| located_id(locator, b"same bytes").to_vec();
            let entry = |(file, locator): (bool, u64)| (file, id(locator));
            let old: BTreeMap<String, TestEntry> =
                old.into_iter().map(|(name, value)| (name, entry(value))).collect();
            let edits: Vec<(String, Option<TestEntry>)> =
                edits.into_iter().map(|(name, value)| (name, value.map(entry))).collect();
            let mut new = old.clone();
            for (name, value) in &edits {
                match value {
                    Some(value) => new.insert(name.clone(), value.clone()),
                    None => new.remove(name),
                };
            }
            let encoded_old = encode_tree(old.iter().map(|(name, value)| (name.as_str(), as_ref(value))));
            let edit_refs: Vec<(&str, Option<TreeEntryRef<'_>>)> =
                edits.iter().map(|(name, value)| (name.as_str(), value.as_ref().map(as_ref))).collect();
            let (spliced, locator) = splice_tree(&encoded_old, &edit_refs).expect("splices");
            let expected = encode_tree(new.iter().map(|(name, value)| (name.as_str(), as_ref(value))));
            prop_assert_eq!(&spliced, &expected);
            let newest = new.values().map(|(_, id)| locator_of(id)).max().unwrap_or(0);
            prop_assert_eq!(locator, newest);
            // In place: the same tree, or, refused, the old one untouched.
            let mut in_place = encoded_old.clone();
            if replace_ids_in_place(&mut in_place, &edit_refs) {
                prop_assert_eq!(in_place, expected);
            } else {
                prop_assert_eq!(in_place, encoded_old);
            }
        }

        #[test]
        fn new_ids_for_entries_a_tree_has_are_replaced_in_place(
            old in proptest::collection::btree_map("[a-z]{1,12}~?", (any::<bool>(), 0u64..50), 1..40),
            picks in proptest::collection::vec((any::<proptest::sample::Index>(), 0u64..50), 1..6),
        ) {
            let id = |locator: u64| located_id(locator, b"same bytes").to_vec();
            let old: BTreeMap<String, TestEntry> =
                old.into_iter().map(|(name, (file, locator))| (name, (file, id(locator)))).collect();
            let names: Vec<&String> = old.keys().collect();
            // New ids (other bytes) for some entries, each keeping its kind.
            let edits: BTreeMap<String, TestEntry> = picks
                .into_iter()
                .map(|(pick, locator)| {
                    let name = pick.get(&names);
                    let file = old[*name].0;
                    ((*name).clone(), (file, located_id(locator, b"other bytes").to_vec()))
                })
                .collect();
            let encoded_old = encode_tree(old.iter().map(|(name, value)| (name.as_str(), as_ref(value))));
            let edit_refs: Vec<(&str, Option<TreeEntryRef<'_>>)> =
                edits.iter().map(|(name, value)| (name.as_str(), Some(as_ref(value)))).collect();
            let mut new = old.clone();
            new.extend(edits.clone());
            let expected = encode_tree(new.iter().map(|(name, value)| (name.as_str(), as_ref(value))));
            let mut in_place = encoded_old;
            prop_assert!(replace_ids_in_place(&mut in_place, &edit_refs));
            prop_assert_eq!(in_place, expected);
        }
    }

    /// A test tree entry: whether it is a file, and its id.
    type TestEntry = (bool, Vec<u8>);

    fn as_ref((file, id): &TestEntry) -> TreeEntryRef<'_> {
        if *file {
            TreeEntryRef::File(id)
        } else {
            TreeEntryRef::Tree(id)
        }
    }

    #[test]
    fn splicing_refuses_what_encode_tree_would_not_write() {
        let id = located_id(3, b"x");
        let a = encode_tree([("a~", TreeEntryRef::File(&id))].into_iter());
        let b = encode_tree([("b~", TreeEntryRef::File(&id))].into_iter());
        // Out of name order.
        let mut unordered = b.clone();
        unordered.extend_from_slice(&a);
        assert!(splice_tree(&unordered, &[]).is_none());
        // A length written as a two-byte varint where one byte is enough.
        let mut padded = vec![a[0], a[1] | 0x80, 0];
        padded.extend_from_slice(&a[2..]);
        assert!(decode_plain_tree(&padded).is_some(), "decodes");
        assert!(splice_tree(&padded, &[]).is_none(), "but is not canonical");
        // A name that is not UTF-8.
        let mut latin1 = a.clone();
        let at = latin1
            .iter()
            .position(|&byte| byte == b'a')
            .expect("the name");
        latin1[at] = 0xe9;
        assert!(decode_plain_tree(&latin1).is_none());
        for malformed in [&unordered, &padded, &latin1] {
            assert!(!is_canonical_tree(malformed));
        }
        let mut ordered = a.clone();
        ordered.extend_from_slice(&b);
        assert!(is_canonical_tree(&ordered));
        assert_eq!(splice_tree(&ordered, &[]), Some((ordered.clone(), 3)));
    }

    #[test]
    fn trees_with_other_entries_are_left_to_the_general_decoder() {
        let executable = Tree::from_sorted_entries(vec![(
            RepoPathComponentBuf::new("run~".to_owned()).expect("valid"),
            TreeValue::File {
                id: FileId::new(vec![7; 32]),
                executable: true,
                copy_id: CopyId::placeholder(),
            },
        )]);
        assert_eq!(
            decode_plain_tree(&tree_to_proto(&executable).encode_to_vec()),
            None
        );
        let symlink = Tree::from_sorted_entries(vec![(
            RepoPathComponentBuf::new("link".to_owned()).expect("valid"),
            TreeValue::Symlink(SymlinkId::new(vec![1; 32])),
        )]);
        assert_eq!(
            decode_plain_tree(&tree_to_proto(&symlink).encode_to_vec()),
            None
        );
    }
}
