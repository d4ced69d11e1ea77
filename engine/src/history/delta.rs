//! Trees stored as deltas: how a tree that differs from the tree it was edited from by a few
//! entries is stored (in its revision's pack or its own `objects` row, `backend.rs`).
//!
//! A revision rewrites every tree on the path to each key it changes, and a tree differs from
//! its previous version by one entry, so storing each whole would write kilobytes per
//! revision for a few changed bytes. The stored form of such a tree is instead its base's id and
//! the changed entries; readers resolve it back to the full encoding (`RedbBackend`), so ids,
//! jj's `Backend` and everything above see whole trees. A chain of deltas is at most
//! [`MAX_DEPTH`] long: the next version is stored whole.
//!
//! ```text
//! delta   0xff | depth u8 | base id len u8 | base id | edits…
//! edit    name len varint | name | 0 (removed) | 1 file id | 2 tree id   (ids: len u8 | id)
//! ```
//!
//! `0xff` never starts a protobuf message (wire type 7 does not exist), so the two forms cannot
//! be confused.

use super::backend::TreeEntryRef;
use super::wire::{get_varint, put_varint};

/// The first byte of a delta.
const MAGIC: u8 = 0xff;
/// Longest chain of deltas before a tree is stored whole again.
pub(crate) const MAX_DEPTH: u8 = 8;
/// More changed entries than this and the tree is stored whole.
pub(crate) const MAX_EDITS: usize = 8;

/// A decoded delta, borrowing its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delta<'a> {
    pub depth: u8,
    pub base: &'a [u8],
    /// Changed entries in name order: the new value, or `None` if removed.
    pub edits: Vec<(&'a str, Option<TreeEntryRef<'a>>)>,
}

pub(crate) fn is_delta(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MAGIC)
}

/// Encodes a delta of `depth` over `base`; `edits` in name order.
pub(crate) fn encode<'a>(
    depth: u8,
    base: &[u8],
    edits: impl Iterator<Item = (&'a str, Option<TreeEntryRef<'a>>)>,
) -> Vec<u8> {
    // Header and base, then a few edits of a short name and an id each.
    let mut out = Vec::with_capacity(3 + base.len() + edits.size_hint().0.max(1) * 64);
    out.extend_from_slice(&[MAGIC, depth]);
    put_id(&mut out, base);
    for (name, value) in edits {
        put_varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        match value {
            None => out.push(0),
            Some(TreeEntryRef::File(id)) => {
                out.push(1);
                put_id(&mut out, id);
            }
            Some(TreeEntryRef::Tree(id)) => {
                out.push(2);
                put_id(&mut out, id);
            }
        }
    }
    out
}

/// Decodes a delta; `None` if `bytes` is not a well-formed one.
pub(crate) fn decode(bytes: &[u8]) -> Option<Delta<'_>> {
    let (&MAGIC, rest) = bytes.split_first()? else {
        return None;
    };
    let (&depth, mut rest) = rest.split_first()?;
    let base = take_id(&mut rest)?;
    let mut edits: Vec<(&str, Option<TreeEntryRef<'_>>)> = Vec::new();
    while !rest.is_empty() {
        let len = usize::try_from(get_varint(&mut rest)?).ok()?;
        let name = take(&mut rest, len)?;
        let name = std::str::from_utf8(name).ok()?;
        let (&kind, tail) = rest.split_first()?;
        rest = tail;
        let value = match kind {
            0 => None,
            1 => Some(TreeEntryRef::File(take_id(&mut rest)?)),
            2 => Some(TreeEntryRef::Tree(take_id(&mut rest)?)),
            _ => return None,
        };
        if edits.last().is_some_and(|(last, _)| *last >= name) {
            return None;
        }
        edits.push((name, value));
    }
    Some(Delta { depth, base, edits })
}

fn put_id(out: &mut Vec<u8>, id: &[u8]) {
    // Ids are 32 bytes; anything longer is not written as a delta (see `fits`).
    out.push(id.len() as u8);
    out.extend_from_slice(id);
}

/// Whether an id can be written in a delta.
pub(crate) fn fits(id: &[u8]) -> bool {
    u8::try_from(id.len()).is_ok()
}

fn take_id<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&len, rest) = bytes.split_first()?;
    *bytes = rest;
    take(bytes, usize::from(len))
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if len > bytes.len() {
        return None;
    }
    let (taken, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(taken)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::history::backend::{PlainEntry, decode_plain_tree, encode_tree, splice_tree};

    fn entry(kind: bool, id: u8) -> PlainEntry {
        if kind {
            PlainEntry::File(vec![id; 32])
        } else {
            PlainEntry::Tree(vec![id; 32])
        }
    }

    proptest! {
        /// Applying the delta between two trees to the first gives the second.
        #[test]
        fn a_delta_turns_its_base_into_the_tree(
            base in prop::collection::btree_map("[a-e]{1,3}", (any::<bool>(), 0u8..4), 0..12),
            changes in prop::collection::btree_map("[a-e]{1,3}", prop::option::of((any::<bool>(), 0u8..4)), 0..6),
        ) {
            let base_entries: Vec<(String, PlainEntry)> =
                base.iter().map(|(name, (kind, id))| (name.clone(), entry(*kind, *id))).collect();
            let mut expected: BTreeMap<String, PlainEntry> = base_entries.iter().cloned().collect();
            for (name, change) in &changes {
                match change {
                    Some((kind, id)) => { expected.insert(name.clone(), entry(*kind, *id)); }
                    None => { expected.remove(name); }
                }
            }
            let edits: Vec<(String, Option<PlainEntry>)> = changes
                .iter()
                .map(|(name, change)| (name.clone(), change.map(|(kind, id)| entry(kind, id))))
                .collect();
            let bytes = encode(3, &[9; 32], edits.iter().map(|(name, value)| {
                let value = value.as_ref().map(|value| match value {
                    PlainEntry::File(id) => TreeEntryRef::File(id),
                    PlainEntry::Tree(id) => TreeEntryRef::Tree(id),
                });
                (name.as_str(), value)
            }));
            prop_assert!(is_delta(&bytes));
            let delta = decode(&bytes).expect("decodes");
            prop_assert_eq!(delta.depth, 3);
            prop_assert_eq!(delta.base, &[9u8; 32][..]);
            let base_bytes = encode_tree(base_entries.iter().map(|(name, entry)| {
                let value = match entry {
                    PlainEntry::File(id) => TreeEntryRef::File(id),
                    PlainEntry::Tree(id) => TreeEntryRef::Tree(id),
                };
                (name.as_str(), value)
            }));
            let (applied, _) = splice_tree(&base_bytes, &delta.edits).expect("applies");
            prop_assert_eq!(
                decode_plain_tree(&applied).expect("a plain tree"),
                expected.into_iter().collect::<Vec<_>>()
            );
        }

        /// Garbage never panics the decoder.
        #[test]
        fn garbage_is_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let mut bytes = bytes;
            if let Some(first) = bytes.first_mut() {
                *first = MAGIC;
            }
            let _ = decode(&bytes);
        }
    }
}
