//! Editing the keyspace tree of one revision: load only the directories a change touches,
//! apply every change of the revision, then write the dirty directories bottom-up.
//!
//! Directories are sharded as `path.rs` describes: inside one logical directory, a node holding
//! more than [`SHARD_THRESHOLD`] entries is split into `#0` … `#f` by the entry name's hash, level
//! by level, and a sharded node whose shards come to hold [`SHARD_THRESHOLD`] entries or fewer
//! is merged back. The layout, hence every tree id, is a function of the keyspace alone, not of
//! the revisions that led to it: a member that starts from a snapshot builds the same tree for
//! the same state as the members that replayed the log.
//!
//! The writer reads and writes trees as bytes (`RedbBackend::tree_entries`, `encode_tree`):
//! no jj `Tree` is built on this path.

use std::collections::BTreeMap;
use std::sync::Arc;

use jj_lib::backend::{BackendResult, FileId, Tree, TreeId, TreeValue};
use jj_lib::object_id::ObjectId;
use jj_lib::repo_path::RepoPathComponent;

use super::backend::{PlainEntry, RedbBackend, TreeEntryRef, encode_tree, located_id, locator_of};
use super::delta;
use super::path::{SHARD_THRESHOLD, is_shard, key_components, shard_of};

/// A directory being edited.
#[derive(Default)]
struct Dir {
    entries: BTreeMap<String, Slot>,
    /// The stored tree this one was loaded from, while the edits are entry by entry (not a
    /// split or a merge): the new tree is then stored as a delta over it (`delta.rs`).
    base: Option<TreeId>,
    /// Names whose entry may differ from the base's.
    touched: Vec<String>,
}

enum Slot {
    File(FileId),
    /// A directory as stored (not loaded).
    Stored(TreeId),
    /// A directory loaded for editing.
    Loaded(Dir),
}

impl Dir {
    fn load(backend: &RedbBackend, id: &TreeId) -> BackendResult<Self> {
        let base = (id != backend.empty_tree()).then(|| id.clone());
        let entries = backend
            .tree_entries(id)?
            .into_iter()
            .map(|(name, entry)| {
                let slot = match entry {
                    PlainEntry::Tree(id) => Slot::Stored(TreeId::new(id)),
                    PlainEntry::File(id) => Slot::File(FileId::new(id)),
                };
                (name, slot)
            })
            .collect();
        Ok(Self {
            entries,
            base,
            touched: Vec::new(),
        })
    }

    fn touch(&mut self, name: &str) {
        if self.base.is_some() {
            self.touched.push(name.to_owned());
        }
    }

    fn is_sharded(&self) -> bool {
        self.entries
            .keys()
            .next()
            .is_some_and(|name| is_shard(name))
    }

    /// The loaded directory in `name`, loading or creating it.
    fn child(&mut self, backend: &RedbBackend, name: &str) -> BackendResult<&mut Dir> {
        self.touch(name);
        let slot = self
            .entries
            .entry(name.to_owned())
            .or_insert_with(|| Slot::Loaded(Dir::default()));
        if let Slot::Stored(id) = slot {
            *slot = Slot::Loaded(Dir::load(backend, id)?);
        }
        if let Slot::File(_) = slot {
            // A directory name never ends in `~` and a file name always does.
            *slot = Slot::Loaded(Dir::default());
        }
        match slot {
            Slot::Loaded(dir) => Ok(dir),
            Slot::File(_) | Slot::Stored(_) => unreachable!("made a loaded directory above"),
        }
    }

    /// Applies `value` (None = remove) at `components` below this logical directory.
    fn apply(
        &mut self,
        backend: &RedbBackend,
        components: &[String],
        value: Option<&FileId>,
    ) -> BackendResult<()> {
        self.apply_at_level(backend, components, value, 0)
    }

    fn apply_at_level(
        &mut self,
        backend: &RedbBackend,
        components: &[String],
        value: Option<&FileId>,
        level: usize,
    ) -> BackendResult<()> {
        let name = &components[0];
        if self.is_sharded() {
            let shard = shard_of(name, level);
            if value.is_none() && !self.entries.contains_key(&shard) {
                return Ok(());
            }
            let child = self.child(backend, &shard)?;
            child.apply_at_level(backend, components, value, level + 1)?;
            if child.entries.is_empty() {
                self.entries.remove(&shard);
            }
            if value.is_none() {
                self.merge_if_small(backend)?;
            }
            return Ok(());
        }
        if components.len() == 1 {
            self.touch(name);
            match value {
                Some(id) => {
                    self.entries.insert(name.clone(), Slot::File(id.clone()));
                }
                None => {
                    self.entries.remove(name);
                }
            }
        } else {
            if value.is_none() && !self.entries.contains_key(name) {
                return Ok(());
            }
            let child = self.child(backend, name)?;
            child.apply(backend, &components[1..], value)?;
            if child.entries.is_empty() {
                self.entries.remove(name);
            }
        }
        if self.entries.len() > SHARD_THRESHOLD {
            self.split(level);
        }
        Ok(())
    }

    /// Splits a flat directory into shards by the names' hash digit at `level`.
    fn split(&mut self, level: usize) {
        self.base = None;
        let mut shards: BTreeMap<String, Dir> = BTreeMap::new();
        for (name, slot) in std::mem::take(&mut self.entries) {
            shards
                .entry(shard_of(&name, level))
                .or_default()
                .entries
                .insert(name, slot);
        }
        for (shard, mut dir) in shards {
            if dir.entries.len() > SHARD_THRESHOLD {
                dir.split(level + 1);
            }
            self.entries.insert(shard, Slot::Loaded(dir));
        }
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
        self.base = None;
        for (shard, slot) in std::mem::take(&mut self.entries) {
            let dir = match slot {
                Slot::Loaded(dir) => dir,
                Slot::Stored(id) => Dir::load(backend, &id)?,
                Slot::File(id) => {
                    // Not a shard layout after all: keep the entry as it is.
                    self.entries.insert(shard, Slot::File(id));
                    continue;
                }
            };
            self.entries.extend(dir.entries);
        }
        Ok(())
    }

    /// Writes this directory and every loaded one below it; `None` if empty.
    fn write(self, backend: &RedbBackend) -> Option<TreeId> {
        let mut entries: Vec<(String, Slot)> = Vec::with_capacity(self.entries.len());
        for (name, slot) in self.entries {
            let slot = match slot {
                Slot::Loaded(dir) => match dir.write(backend) {
                    Some(id) => Slot::Stored(id),
                    None => continue,
                },
                stored_or_file => stored_or_file,
            };
            entries.push((name, slot));
        }
        if entries.is_empty() {
            return None;
        }
        let locator = entries
            .iter()
            .map(|(_, slot)| match slot {
                Slot::File(id) => locator_of(id.as_bytes()),
                Slot::Stored(id) => locator_of(id.as_bytes()),
                Slot::Loaded(_) => unreachable!("written above"),
            })
            .max()
            .unwrap_or(0);
        let bytes = encode_tree(
            entries
                .iter()
                .map(|(name, slot)| (name.as_str(), slot.entry())),
        );
        let id = TreeId::new(located_id(locator, &bytes));
        let delta = self
            .base
            .as_ref()
            .and_then(|base| delta_over(backend, base, &id, &entries, self.touched));
        backend.put_tree_bytes(&id, bytes, delta);
        Some(id)
    }
}

impl Slot {
    /// The entry of a written slot.
    fn entry(&self) -> TreeEntryRef<'_> {
        match self {
            Slot::File(id) => TreeEntryRef::File(id.as_bytes()),
            Slot::Stored(id) => TreeEntryRef::Tree(id.as_bytes()),
            Slot::Loaded(_) => unreachable!("directories are written before their parent"),
        }
    }
}

/// The delta (and its depth) that stores the tree `id` of `entries` over `base`, if it is short
/// enough and the chain not too long; `None` stores it whole.
fn delta_over(
    backend: &RedbBackend,
    base: &TreeId,
    id: &TreeId,
    entries: &[(String, Slot)],
    mut touched: Vec<String>,
) -> Option<(Vec<u8>, u8)> {
    touched.sort_unstable();
    touched.dedup();
    if touched.len() > delta::MAX_EDITS || !delta::fits(base.as_bytes()) {
        return None;
    }
    // Only a tree first written by the revision being recorded (its locator is that revision)
    // is stored as a delta. A tree written again (a state that recurs, after a delete) is
    // stored whole: a delta could point back to a tree based on it, a cycle no read resolves.
    // So every delta points to older trees, and chains end.
    if locator_of(id.as_bytes()) != backend.writing_locator() || id == base {
        return None;
    }
    let depth = backend.resolve_tree(base).ok()?.depth.checked_add(1)?;
    if depth > delta::MAX_DEPTH {
        return None;
    }
    let edits = touched.iter().map(|name| {
        let value = entries
            .binary_search_by(|(entry, _)| entry.as_str().cmp(name))
            .ok()
            .map(|at| entries[at].1.entry());
        (name.as_str(), value)
    });
    Some((delta::encode(depth, base.as_bytes(), edits), depth))
}

/// One revision's edit of the keyspace tree.
pub(crate) struct TreeEdit<'a> {
    backend: &'a RedbBackend,
    root: Dir,
}

impl<'a> TreeEdit<'a> {
    pub(crate) fn new(backend: &'a RedbBackend, base: &TreeId) -> BackendResult<Self> {
        Ok(Self {
            backend,
            root: Dir::load(backend, base)?,
        })
    }

    /// Sets `key` to the file `value`, or removes it.
    pub(crate) fn set(&mut self, key: &[u8], value: Option<&FileId>) -> BackendResult<()> {
        let components = key_components(key);
        self.root.apply(self.backend, &components, value)
    }

    /// Writes the edited tree; returns its id.
    pub(crate) fn write(self) -> TreeId {
        let backend = self.backend;
        self.root
            .write(backend)
            .unwrap_or_else(|| backend.empty_tree().clone())
    }
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
#[cfg(test)]
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
        let mut edit = TreeEdit::new(backend, backend.empty_tree()).expect("edit");
        for (key, value) in state {
            edit.set(key, Some(&file(backend, *value))).expect("set");
        }
        edit.write()
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

        /// However a state was reached (splits, merges, deletes emptying directories), its tree
        /// is the one built from scratch: the layout depends on the state alone.
        #[test]
        fn the_tree_is_a_function_of_the_state(
            fill in proptest::collection::vec((0u8..4, 0u16..400, any::<u8>()), 1..500),
            drain in proptest::collection::vec(0u16..400, 0..400),
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
            for (op, n, value) in ops {
                // Mostly one large directory; some keys nested one level below it.
                let key = if n % 7 == 0 {
                    format!("/big/sub{}/k{n}", n % 5)
                } else {
                    format!("/big/k{}", n % 120)
                }
                .into_bytes();
                let mut edit = TreeEdit::new(&backend, &tree).expect("edit");
                if op < 3 {
                    edit.set(&key, Some(&file(&backend, value))).expect("set");
                    state.insert(key, value);
                } else {
                    edit.set(&key, None).expect("delete");
                    state.remove(&key);
                }
                tree = edit.write();
            }
            check_layout(&backend, &tree);
            prop_assert_eq!(tree, tree_of(&backend, &state));
        }
    }
}
