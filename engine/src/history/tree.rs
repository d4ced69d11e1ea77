//! Editing the keyspace tree of one revision: load only the directories a change touches,
//! apply every change of the revision, then write the dirty directories bottom-up.
//!
//! Directories are sharded as `path.rs` describes: inside one logical directory, a tree with
//! more than [`SHARD_THRESHOLD`] entries is split into `#0` … `#f` by the entry name's hash,
//! level by level. A directory stays sharded once split (it disappears when emptied), so the
//! layout depends only on the sequence of revisions: replaying the same log gives the same
//! trees, hence the same commit ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use jj_lib::backend::{BackendResult, CopyId, FileId, Tree, TreeId, TreeValue};
use jj_lib::repo_path::{RepoPathComponent, RepoPathComponentBuf};

use super::backend::RedbBackend;
use super::path::{SHARD_THRESHOLD, is_shard, key_components, shard_of};

/// A directory being edited.
#[derive(Default)]
struct Dir {
    entries: BTreeMap<String, Slot>,
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
        let tree = backend.tree(id)?;
        let entries = tree
            .entries()
            .map(|entry| {
                let slot = match entry.value() {
                    TreeValue::Tree(id) => Slot::Stored(id.clone()),
                    TreeValue::File { id, .. } => Slot::File(id.clone()),
                    // History writes nothing else; keep the name so nothing is lost.
                    TreeValue::Symlink(_) | TreeValue::GitSubmodule(_) => {
                        Slot::File(FileId::new(Vec::new()))
                    }
                };
                (entry.name().as_internal_str().to_owned(), slot)
            })
            .collect();
        Ok(Self { entries })
    }

    fn is_sharded(&self) -> bool {
        self.entries
            .keys()
            .next()
            .is_some_and(|name| is_shard(name))
    }

    /// The loaded directory in `name`, loading or creating it.
    fn child(&mut self, backend: &RedbBackend, name: &str) -> BackendResult<&mut Dir> {
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
            let child = self.child(backend, &shard)?;
            child.apply_at_level(backend, components, value, level + 1)?;
            if child.entries.is_empty() {
                self.entries.remove(&shard);
            }
            return Ok(());
        }
        if components.len() == 1 {
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

    /// Writes this directory and every loaded one below it; `None` if empty.
    fn write(self, backend: &RedbBackend) -> Option<TreeId> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for (name, slot) in self.entries {
            let value = match slot {
                Slot::File(id) => TreeValue::File {
                    id,
                    executable: false,
                    copy_id: CopyId::placeholder(),
                },
                Slot::Stored(id) => TreeValue::Tree(id),
                Slot::Loaded(dir) => match dir.write(backend) {
                    Some(id) => TreeValue::Tree(id),
                    None => continue,
                },
            };
            let name = RepoPathComponentBuf::new(name).expect("components are valid by path.rs");
            entries.push((name, value));
        }
        if entries.is_empty() {
            return None;
        }
        Some(backend.put_tree_owned(Tree::from_sorted_entries(entries)))
    }
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
