//! Editing the keyspace tree, revision after revision: the writer keeps the directories it
//! edits loaded between revisions ([`WorkingTree`]), applies each revision's changes, and writes
//! the directories they dirtied, bottom-up.
//!
//! Directories are sharded as `path.rs` describes: inside one logical directory, a node holding
//! more than [`SHARD_THRESHOLD`] entries is split into `#0` … `#f` by the entry name's hash, level
//! by level, and a sharded node whose shards come to hold [`SHARD_THRESHOLD`] entries or fewer
//! is merged back. The layout, hence every tree id, is a function of the keyspace alone, not of
//! the revisions that led to it: a member that starts from a snapshot builds the same tree for
//! the same state as the members that replayed the log.
//!
//! ```text
//!  WorkingTree ── root Dir (loaded) ─┬─ Stored(id)            not loaded: only its id
//!                                    ├─ File(id)
//!                                    └─ Loaded(Dir) ─ …       clean: `stored` is its tree
//!                                                             dirty: edited since written
//! ```
//!
//! A revision touches O(depth) directories; the upper ones are the same for every revision, so
//! they stay loaded and only their encoding and hash are redone. Between rounds, directories not
//! edited in the last round are unloaded once more than [`LOADED_ENTRIES`] entries are loaded.
//!
//! The writer reads and writes trees as bytes (`RedbBackend::tree_entries`, `encode_tree`):
//! no jj `Tree` is built on this path.

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;

use jj_lib::backend::{BackendResult, FileId, Tree, TreeId, TreeValue};
use jj_lib::object_id::ObjectId;
use jj_lib::repo_path::RepoPathComponent;

use super::backend::{
    PlainEntry, RedbBackend, TreeEntryRef, encode_tree, is_canonical_tree, located_id, locator_of,
    replace_ids_in_place, splice_canonical,
};
use super::delta;
use super::path::{
    SHARD_THRESHOLD, is_shard, key_components, key_components_into, shard_at, shard_hash, shard_of,
};

/// Entries the working tree keeps loaded between rounds before it unloads directories the last
/// round did not edit (about 200 bytes each, their encoding included).
const LOADED_ENTRIES: usize = 128 * 1024;

/// The keyspace tree being recorded, kept loaded between revisions.
pub(crate) struct WorkingTree {
    root: Dir,
    /// Entries kept loaded between rounds ([`LOADED_ENTRIES`] but in tests).
    limit: usize,
    /// The tree `root` holds; `None` before anything is loaded.
    root_id: Option<TreeId>,
    /// Rounds ended so far: directories edited in the current one are kept when trimming.
    round: u64,
    /// Entries loaded since the last trim, plus those kept then (an upper bound).
    loaded: usize,
    /// The components of the key being set (their strings kept for the next key).
    components: Vec<String>,
}

impl Default for WorkingTree {
    fn default() -> Self {
        Self::with_limit(LOADED_ENTRIES)
    }
}

impl WorkingTree {
    /// A working tree that unloads directories when more than `limit` entries are loaded.
    pub(crate) fn with_limit(limit: usize) -> Self {
        Self {
            root: Dir::default(),
            limit,
            root_id: None,
            round: 0,
            loaded: 0,
            components: Vec::new(),
        }
    }

    /// How many entries it keeps loaded between rounds.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Makes the working tree hold `base` (the head's tree): kept as it is when it already
    /// does, loaded afresh otherwise.
    pub(crate) fn begin(&mut self, backend: &RedbBackend, base: &TreeId) -> BackendResult<()> {
        if self.root_id.as_ref() != Some(base) {
            self.root = Dir::load(backend, base)?;
            self.root_id = Some(base.clone());
            self.loaded = self.root.entries.len();
        }
        Ok(())
    }

    /// Sets `key` to the file `value`, or removes it.
    pub(crate) fn set(
        &mut self,
        backend: &RedbBackend,
        key: &[u8],
        value: Option<&FileId>,
    ) -> BackendResult<()> {
        key_components_into(key, &mut self.components);
        let mut cx = Cx {
            backend,
            round: self.round,
            loaded: &mut self.loaded,
        };
        self.root.apply(&mut cx, &self.components, value)
    }

    /// Writes the directories edited since the last write; returns the tree's id.
    pub(crate) fn write(&mut self, backend: &RedbBackend) -> TreeId {
        let id = if self.root.write(backend) {
            self.root.written_id().clone()
        } else {
            backend.empty_tree().clone()
        };
        self.root_id = Some(id.clone());
        id
    }

    /// Ends a round (after its transaction committed): unloads the directories it did not
    /// edit if too many entries are loaded.
    pub(crate) fn end_round(&mut self) {
        if self.loaded > self.limit {
            self.loaded = self.root.entries.len() + self.root.unload_unused(self.round);
        }
        self.round += 1;
    }
}

/// What editing needs besides the directory.
struct Cx<'a> {
    backend: &'a RedbBackend,
    round: u64,
    loaded: &'a mut usize,
}

/// A directory being edited.
#[derive(Default)]
struct Dir {
    /// By name: names are short (inline in the map's nodes, no pointer to follow per compare).
    entries: BTreeMap<CompactString, Slot>,
    /// Whether `entries` are shards (`#0` … `#f`), set where the layout changes (load, split,
    /// merge): asking the map means walking to its first key on every edit.
    sharded: bool,
    /// The tree this directory was last loaded from or written as, and the length of the delta
    /// chain that stores it; `None` for a new directory and after a split or a merge. The next
    /// version is stored as a delta over it (`delta.rs`).
    stored: Option<(TreeId, u8)>,
    /// The encoding of `stored`'s tree, when it is canonical (what `encode_tree` writes; checked
    /// when loaded): the next version is this with the touched entries spliced in
    /// (`splice_canonical`), not an encoding of every entry again, and is stored as a delta
    /// over it. `None`: the next version is encoded and stored whole.
    encoded: Option<Vec<u8>>,
    /// Edited since `stored`.
    dirty: bool,
    /// Names whose entry may differ from `stored`'s.
    touched: Vec<CompactString>,
    /// The round it was last edited in.
    used: u64,
}

enum Slot {
    File(FileId),
    /// A directory as stored (not loaded).
    Stored(TreeId),
    /// A directory loaded for editing.
    Loaded(Box<Dir>),
}

impl Dir {
    fn load(backend: &RedbBackend, id: &TreeId) -> BackendResult<Self> {
        let (entries, resolved) = backend.tree_entries_resolved(id)?;
        let stored = (id != backend.empty_tree()).then(|| (id.clone(), resolved.depth));
        let entries: BTreeMap<CompactString, Slot> = entries
            .into_iter()
            .map(|(name, entry)| {
                let slot = match entry {
                    PlainEntry::Tree(id) => Slot::Stored(TreeId::new(id)),
                    PlainEntry::File(id) => Slot::File(FileId::new(id)),
                };
                (CompactString::from(name), slot)
            })
            .collect();
        Ok(Self {
            stored,
            encoded: is_canonical_tree(&resolved.bytes).then(|| resolved.bytes.to_vec()),
            sharded: entries.keys().next().is_some_and(|name| is_shard(name)),
            entries,
            ..Self::default()
        })
    }

    /// Marks the entry `name` as edited.
    fn touch(&mut self, name: &str, round: u64) {
        self.dirty = true;
        self.used = round;
        if self.stored.is_some() {
            self.touched.push(CompactString::from(name));
        }
    }

    /// The layout changed (a split or a merge): the next version is stored whole.
    fn relayout(&mut self) {
        self.dirty = true;
        self.stored = None;
        self.encoded = None;
        self.touched.clear();
    }

    fn is_sharded(&self) -> bool {
        // A sharded node whose last shard was just removed holds nothing: it merges back.
        let sharded = self.sharded && !self.entries.is_empty();
        debug_assert_eq!(
            sharded,
            self.entries
                .keys()
                .next()
                .is_some_and(|name| is_shard(name)),
            "the layout flag follows the entries"
        );
        sharded
    }

    /// The loaded directory in `name`, loading or creating it.
    fn child(&mut self, cx: &mut Cx<'_>, name: &str) -> BackendResult<&mut Dir> {
        self.touch(name, cx.round);
        if !self.entries.contains_key(name) {
            let dir = Dir {
                dirty: true,
                ..Dir::default()
            };
            self.entries
                .insert(CompactString::from(name), Slot::Loaded(Box::new(dir)));
        }
        let slot = self.entries.get_mut(name).expect("inserted above");
        match slot {
            Slot::Stored(id) => {
                let dir = Dir::load(cx.backend, id)?;
                *cx.loaded += dir.entries.len();
                *slot = Slot::Loaded(Box::new(dir));
            }
            // A directory name never ends in `~` and a file name always does.
            Slot::File(_) => {
                let dir = Dir {
                    dirty: true,
                    ..Dir::default()
                };
                *slot = Slot::Loaded(Box::new(dir));
            }
            Slot::Loaded(_) => {}
        }
        match slot {
            Slot::Loaded(dir) => Ok(dir),
            Slot::File(_) | Slot::Stored(_) => unreachable!("made a loaded directory above"),
        }
    }

    /// Applies `value` (None = remove) at `components` below this logical directory.
    fn apply(
        &mut self,
        cx: &mut Cx<'_>,
        components: &[String],
        value: Option<&FileId>,
    ) -> BackendResult<()> {
        let mut hash = None;
        self.apply_at_level(cx, components, value, 0, &mut hash)
    }

    /// `hash` is the first component's [`shard_hash`], computed when first needed.
    fn apply_at_level(
        &mut self,
        cx: &mut Cx<'_>,
        components: &[String],
        value: Option<&FileId>,
        level: usize,
        hash: &mut Option<[u8; 32]>,
    ) -> BackendResult<()> {
        let name = &components[0];
        if self.is_sharded() {
            let shard = shard_at(hash.get_or_insert_with(|| shard_hash(name)), level);
            if value.is_none() && !self.entries.contains_key(shard) {
                return Ok(());
            }
            let child = self.child(cx, shard)?;
            child.apply_at_level(cx, components, value, level + 1, hash)?;
            if child.entries.is_empty() {
                self.entries.remove(shard);
            }
            if value.is_none() {
                self.merge_if_small(cx.backend)?;
            }
            return Ok(());
        }
        // Flat, or sharded and emptied since (its next entries are names).
        self.sharded = false;
        if components.len() == 1 {
            match value {
                Some(id) => {
                    self.touch(name, cx.round);
                    self.entries
                        .insert(CompactString::from(name.as_str()), Slot::File(id.clone()));
                }
                None => {
                    if self.entries.remove(name.as_str()).is_some() {
                        self.touch(name, cx.round);
                    }
                }
            }
        } else {
            if value.is_none() && !self.entries.contains_key(name.as_str()) {
                return Ok(());
            }
            let child = self.child(cx, name)?;
            child.apply(cx, &components[1..], value)?;
            if child.entries.is_empty() {
                self.entries.remove(name.as_str());
            }
        }
        if self.entries.len() > SHARD_THRESHOLD {
            self.split(level);
        }
        Ok(())
    }

    /// Splits a flat directory into shards by the names' hash digit at `level`.
    fn split(&mut self, level: usize) {
        self.relayout();
        let used = self.used;
        let mut shards: BTreeMap<&'static str, Dir> = BTreeMap::new();
        for (name, slot) in std::mem::take(&mut self.entries) {
            shards
                .entry(shard_at(&shard_hash(&name), level))
                .or_default()
                .entries
                .insert(name, slot);
        }
        for (shard, mut dir) in shards {
            dir.dirty = true;
            dir.used = used;
            if dir.entries.len() > SHARD_THRESHOLD {
                dir.split(level + 1);
            }
            self.entries
                .insert(CompactString::const_new(shard), Slot::Loaded(Box::new(dir)));
        }
        self.sharded = true;
    }

    /// Merges a sharded node back into a flat one when its shards hold no more than
    /// [`SHARD_THRESHOLD`] entries together. A sharded shard holds more than that by itself, so
    /// only nodes whose shards are all flat are counted, and counting stops past the threshold.
    fn merge_if_small(&mut self, backend: &RedbBackend) -> BackendResult<()> {
        if !self.is_sharded() {
            return Ok(());
        }
        let mut total = 0;
        for slot in self.entries.values() {
            let (count, sharded) = match slot {
                Slot::Loaded(dir) => (dir.entries.len(), dir.is_sharded()),
                Slot::Stored(id) => {
                    let entries = backend.tree_entries(id)?;
                    let sharded = entries.first().is_some_and(|(name, _)| is_shard(name));
                    (entries.len(), sharded)
                }
                Slot::File(_) => (1, false),
            };
            total += count;
            if sharded || total > SHARD_THRESHOLD {
                return Ok(());
            }
        }
        self.relayout();
        for (shard, slot) in std::mem::take(&mut self.entries) {
            let dir = match slot {
                Slot::Loaded(dir) => *dir,
                Slot::Stored(id) => Dir::load(backend, &id)?,
                Slot::File(id) => {
                    // Not a shard layout after all: keep the entry as it is.
                    self.entries.insert(shard, Slot::File(id));
                    continue;
                }
            };
            self.entries.extend(dir.entries);
        }
        self.sharded = false;
        Ok(())
    }

    /// Writes this directory if it was edited, and the edited ones below it, first; returns
    /// whether it holds anything (its id is then [`Self::written_id`]).
    fn write(&mut self, backend: &RedbBackend) -> bool {
        if !self.dirty {
            return self.stored.is_some();
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        if self.stored.is_some() {
            // Only entries touched since the last write can hold edited directories: the
            // others need not be visited (each a loaded directory elsewhere in memory).
            for name in &touched {
                if let Some(Slot::Loaded(dir)) = self.entries.get_mut(name)
                    && !dir.write(backend)
                {
                    self.entries.remove(name);
                }
            }
        } else {
            self.entries.retain(|_, slot| match slot {
                Slot::Loaded(dir) => dir.write(backend),
                Slot::File(_) | Slot::Stored(_) => true,
            });
        }
        self.dirty = false;
        if self.entries.is_empty() {
            self.stored = None;
            self.encoded = None;
            self.reuse_touched(touched);
            return false;
        }
        let edits: Vec<(&str, Option<TreeEntryRef<'_>>)> = touched
            .iter()
            .map(|name| (name.as_str(), self.entries.get(name).map(Slot::entry)))
            .collect();
        // The stored tree to build on: only a canonical one (which readers can splice a delta
        // into as well). Most edits only give entries new ids: the encoding is then edited
        // where it is, else spliced into a new one.
        let base = self.stored.take().filter(|_| self.encoded.is_some());
        let in_place = base.as_ref().and_then(|(base, _)| {
            let locator = newest_replacing(locator_of(base.as_bytes()), &edits)?;
            let encoded = self.encoded.as_mut()?;
            replace_ids_in_place(encoded, &edits).then_some(locator)
        });
        let (bytes, locator) = match in_place {
            Some(locator) => (self.encoded.take().expect("edited in place"), locator),
            None => base
                .as_ref()
                .and_then(|_| splice_canonical(self.encoded.as_deref()?, &edits))
                .unwrap_or_else(|| self.encode()),
        };
        debug_assert!(
            bytes == self.encode().0,
            "a spliced tree is the tree encoded"
        );
        let located = located_id(locator, &bytes);
        let id = TreeId::new(located.to_vec());
        // A delta names its base (33 bytes): over a small tree it can be the larger form.
        let delta = base
            .as_ref()
            .and_then(|(base, depth)| delta_over(backend, base, *depth, &id, &edits))
            .filter(|(delta, _)| delta.len() < bytes.len());
        let depth = if let Some((delta, depth)) = delta {
            backend.put_tree_stored(&located, &delta);
            depth
        } else {
            backend.put_tree_stored(&located, &bytes);
            0
        };
        self.stored = Some((id, depth));
        self.encoded = Some(bytes);
        drop(edits);
        self.reuse_touched(touched);
        true
    }

    /// Keeps the emptied list of touched names for the next edits (a directory on a busy path
    /// is touched every revision).
    fn reuse_touched(&mut self, mut touched: Vec<CompactString>) {
        touched.clear();
        if self.touched.is_empty() {
            self.touched = touched;
        }
    }

    /// Every entry encoded, and the newest locator among their ids.
    fn encode(&self) -> (Vec<u8>, u64) {
        let mut locator = 0;
        let bytes = encode_tree(self.entries.iter().map(|(name, slot)| {
            let entry = slot.entry();
            locator = locator.max(locator_of(entry.id()));
            (name.as_str(), entry)
        }));
        (bytes, locator)
    }

    /// The id of a directory written since its last edit.
    fn written_id(&self) -> &TreeId {
        match &self.stored {
            Some((id, _)) if !self.dirty => id,
            _ => unreachable!("directories are written before their parent"),
        }
    }

    /// Unloads the directories below this one not edited in `round`; returns how many entries
    /// the ones still loaded hold.
    fn unload_unused(&mut self, round: u64) -> usize {
        let mut loaded = 0;
        for slot in self.entries.values_mut() {
            let Slot::Loaded(dir) = slot else { continue };
            let unused = match &**dir {
                Dir {
                    stored: Some((id, _)),
                    dirty: false,
                    used,
                    ..
                } if *used < round => Some(id.clone()),
                _ => None,
            };
            match unused {
                Some(id) => *slot = Slot::Stored(id),
                None => loaded += dir.entries.len() + dir.unload_unused(round),
            }
        }
        loaded
    }
}

impl Slot {
    /// The entry of a written slot.
    fn entry(&self) -> TreeEntryRef<'_> {
        match self {
            Slot::File(id) => TreeEntryRef::File(id.as_bytes()),
            Slot::Stored(id) => TreeEntryRef::Tree(id.as_bytes()),
            Slot::Loaded(dir) => TreeEntryRef::Tree(dir.written_id().as_bytes()),
        }
    }
}

/// The newest locator of a tree whose newest was `old` once `edits` give entries new values,
/// when the edits alone decide it: every edit gives a value at least as new as `old` (the
/// entries they replace or leave were no newer). `None` otherwise (an entry removed, an older
/// id): only a pass over every entry tells.
fn newest_replacing(old: u64, edits: &[(&str, Option<TreeEntryRef<'_>>)]) -> Option<u64> {
    let mut newest = old;
    for (_, value) in edits {
        let locator = locator_of(value.as_ref()?.id());
        if locator < old {
            return None;
        }
        newest = newest.max(locator);
    }
    Some(newest)
}

/// The directory `id` as a delta over `base` (the tree it was loaded from or last written
/// as, stored as a chain of `base_depth` deltas): `edits` are the entries changed since, in
/// name order. `None` when it is to be stored whole.
fn delta_over(
    backend: &RedbBackend,
    base: &TreeId,
    base_depth: u8,
    id: &TreeId,
    edits: &[(&str, Option<TreeEntryRef<'_>>)],
) -> Option<(Vec<u8>, u8)> {
    if edits.len() > delta::MAX_EDITS || !delta::fits(base.as_bytes()) {
        return None;
    }
    // Only a tree first written by the revision being recorded (its locator is that
    // revision) is stored as a delta. A tree written again (a state that recurs, after a
    // delete) is stored whole: a delta could point back to a tree based on it, a cycle no
    // read resolves. So every delta points to older trees, and chains end.
    if locator_of(id.as_bytes()) != backend.writing_locator() || id == base {
        return None;
    }
    let depth = base_depth.checked_add(1)?;
    if depth > delta::MAX_DEPTH {
        return None;
    }
    Some((
        delta::encode(depth, base.as_bytes(), edits.iter().copied()),
        depth,
    ))
}

/// The entry `name` of the logical directory whose tree is `tree`, following its shards.
fn entry(
    backend: &RedbBackend,
    mut tree: Arc<Tree>,
    name: &str,
) -> BackendResult<Option<TreeValue>> {
    let mut level = 0;
    loop {
        let sharded = tree
            .names()
            .next()
            .is_some_and(|n| is_shard(n.as_internal_str()));
        let wanted = if sharded {
            shard_of(name, level)
        } else {
            name.to_owned()
        };
        let Ok(component) = RepoPathComponent::new(&wanted) else {
            return Ok(None);
        };
        let value = tree.value(component).cloned();
        match value {
            Some(TreeValue::Tree(id)) if sharded => {
                tree = backend.tree(&id)?;
                level += 1;
            }
            _ if sharded => return Ok(None),
            value => return Ok(value),
        }
    }
}

/// Finds `key` in the tree `root`: its file id, or `None`.
pub(crate) fn lookup(
    backend: &RedbBackend,
    root: &TreeId,
    key: &[u8],
) -> BackendResult<Option<FileId>> {
    let components = key_components(key);
    let (file, dirs) = components.split_last().expect("a key has a file component");
    let Some(dir) = subtree(backend, root, dirs)? else {
        return Ok(None);
    };
    match entry(backend, backend.tree(&dir)?, file)? {
        Some(TreeValue::File { id, .. }) => Ok(Some(id)),
        _ => Ok(None),
    }
}

/// Every file under the tree `id` (recursively), as (path components, file id), in tree order.
pub(crate) fn walk(
    backend: &RedbBackend,
    id: &TreeId,
    prefix: &mut Vec<String>,
    visit: &mut dyn FnMut(&[String], &FileId) -> bool,
) -> BackendResult<bool> {
    let tree = backend.tree(id)?;
    for entry in tree.entries() {
        prefix.push(entry.name().as_internal_str().to_owned());
        let go_on = match entry.value() {
            TreeValue::Tree(child) => walk(backend, child, prefix, visit)?,
            TreeValue::File { id, .. } => visit(prefix, id),
            TreeValue::Symlink(_) | TreeValue::GitSubmodule(_) => true,
        };
        prefix.pop();
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The tree at `components` (directories, shards resolved) below `root`; `None` if absent.
pub(crate) fn subtree(
    backend: &RedbBackend,
    root: &TreeId,
    components: &[String],
) -> BackendResult<Option<TreeId>> {
    let mut current = root.clone();
    for name in components {
        match entry(backend, backend.tree(&current)?, name)? {
            Some(TreeValue::Tree(id)) => current = id,
            _ => return Ok(None),
        }
    }
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn file(backend: &RedbBackend, value: u8) -> FileId {
        backend.put_file(&[value], 1)
    }

    /// The tree of `state` built from nothing, in key order.
    fn tree_of(backend: &RedbBackend, state: &BTreeMap<Vec<u8>, u8>) -> TreeId {
        let mut working = WorkingTree::default();
        working.begin(backend, backend.empty_tree()).expect("begin");
        for (key, value) in state {
            working
                .set(backend, key, Some(&file(backend, *value)))
                .expect("set");
        }
        working.write(backend)
    }

    /// Entries (files and non-shard directories) under `id` through its shards; asserts that
    /// sharded nodes hold more than the threshold and flat ones no more.
    fn check_layout(backend: &RedbBackend, id: &TreeId) -> usize {
        let entries = backend.tree_entries(id).expect("entries");
        let sharded = entries.first().is_some_and(|(name, _)| is_shard(name));
        let mut logical = 0;
        for (name, entry) in &entries {
            assert_eq!(is_shard(name), sharded, "shards and names never mix");
            match entry {
                PlainEntry::Tree(child) if sharded => {
                    logical += check_layout(backend, &TreeId::new(child.clone()));
                }
                PlainEntry::Tree(child) => {
                    check_layout(backend, &TreeId::new(child.clone()));
                    logical += 1;
                }
                PlainEntry::File(_) => logical += 1,
            }
        }
        if sharded {
            assert!(logical > SHARD_THRESHOLD, "a sharded node holds {logical}");
        } else {
            assert!(
                entries.len() <= SHARD_THRESHOLD,
                "a flat node holds {}",
                entries.len()
            );
        }
        logical
    }

    /// A tree jj wrote with entries the writer does not make (here executable files) cannot be
    /// spliced, by the writer or by a reader resolving a delta over it: the next version is
    /// encoded and stored whole, and reads back.
    #[test]
    fn a_tree_that_is_not_canonical_is_rewritten_whole() {
        use jj_lib::backend::CopyId;
        use jj_lib::repo_path::RepoPathComponentBuf;

        let dir = tempfile::tempdir().expect("tempdir");
        let backend = RedbBackend::open_standalone(&dir.path().join("t.redb")).expect("open");
        backend.buffer.set_writing(1);
        let entries = (0..8u8)
            .map(|n| {
                let name = RepoPathComponentBuf::new(format!("k{n}~")).expect("valid");
                let value = TreeValue::File {
                    id: file(&backend, n),
                    executable: true,
                    copy_id: CopyId::placeholder(),
                };
                (name, value)
            })
            .collect();
        let base = backend.put_tree(&Tree::from_sorted_entries(entries));
        backend.commit_pending().expect("commit");
        backend.buffer.set_writing(2);
        let mut working = WorkingTree::default();
        working.begin(&backend, &base).expect("begin");
        let value = backend.put_file(b"new", 2);
        working.set(&backend, b"k9", Some(&value)).expect("set");
        let written = working.write(&backend);
        backend.commit_pending().expect("commit");
        let names: Vec<String> = backend
            .tree_entries(&written)
            .expect("reads back")
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let expected: Vec<String> = (0..8).chain([9]).map(|n| format!("k{n}~")).collect();
        assert_eq!(names, expected);
    }

    /// The root is never removed by a parent: sharded, emptied by deletes (merging back on the
    /// way), then written to again, it is flat, as a tree built from scratch for that state.
    #[test]
    fn a_sharded_root_emptied_and_filled_again_is_flat() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = RedbBackend::open_standalone(&dir.path().join("t.redb")).expect("open");
        let keys: Vec<Vec<u8>> = (0..2 * SHARD_THRESHOLD)
            .map(|n| format!("k{n}").into_bytes())
            .collect();
        let mut working = WorkingTree::default();
        working
            .begin(&backend, backend.empty_tree())
            .expect("begin");
        for key in &keys {
            working
                .set(&backend, key, Some(&file(&backend, 1)))
                .expect("set");
        }
        let full = working.write(&backend);
        assert_eq!(check_layout(&backend, &full), keys.len(), "sharded");
        for key in &keys {
            working.set(&backend, key, None).expect("delete");
        }
        assert_eq!(&working.write(&backend), backend.empty_tree());
        working
            .set(&backend, b"again", Some(&file(&backend, 2)))
            .expect("set");
        let state = BTreeMap::from([(b"again".to_vec(), 2)]);
        assert_eq!(working.write(&backend), tree_of(&backend, &state));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

        /// However a state was reached (splits, merges, deletes emptying directories), its tree
        /// is the one built from scratch: the layout depends on the state alone. The working
        /// tree ends a round every `round` revisions and keeps at most `limit` entries loaded
        /// (0: it unloads all it can; large: it keeps everything).
        #[test]
        fn the_tree_is_a_function_of_the_state(
            fill in proptest::collection::vec((0u8..4, 0u16..400, any::<u8>()), 1..500),
            drain in proptest::collection::vec(0u16..400, 0..400),
            round in 1usize..50,
            limit in prop_oneof![Just(0usize), Just(40), Just(usize::MAX)],
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let backend = RedbBackend::open_standalone(&dir.path().join("t.redb")).expect("open");
            let mut state = BTreeMap::new();
            let mut tree = backend.empty_tree().clone();
            // Mostly puts (directories grow past the threshold and split), then deletes only
            // (they shrink back and merge).
            let ops = fill
                .into_iter()
                .chain(drain.into_iter().map(|n| (3, n, 0)));
            let mut working = WorkingTree::with_limit(limit);
            for (index, (op, n, value)) in ops.enumerate() {
                // Mostly one large directory; some keys nested one level below it.
                let key = if n % 7 == 0 {
                    format!("/big/sub{}/k{n}", n % 5)
                } else {
                    format!("/big/k{}", n % 120)
                }
                .into_bytes();
                working.begin(&backend, &tree).expect("begin");
                if op < 3 {
                    working.set(&backend, &key, Some(&file(&backend, value))).expect("set");
                    state.insert(key, value);
                } else {
                    working.set(&backend, &key, None).expect("delete");
                    state.remove(&key);
                }
                tree = working.write(&backend);
                if index % round == 0 {
                    working.end_round();
                }
            }
            check_layout(&backend, &tree);
            prop_assert_eq!(tree, tree_of(&backend, &state));
        }
    }
}
