//! Packs: the objects a revision creates, stored together, and the groups of packs that are
//! the `pack_groups` rows.
//!
//! Recording a revision creates a handful of objects whose ids all carry that revision as their
//! locator (`backend.rs`): the new value's file, the trees on its path, the commit, and the
//! batch's operation and view. They make one pack; the packs of consecutive revisions recorded
//! in one round make one group, a row of up to about [`GROUP_LIMIT`] bytes keyed by its first
//! revision. A round of a busy server (hundreds of revisions) then costs the database a few
//! inserts instead of one per revision (format 5 wrote a `packs` row per revision, still read),
//! and a revision's objects stay on the same pages, where readers of that revision look.
//!
//! ```text
//! pack_groups  first locator u64  →  section…
//! section      locator u64 (big-endian) | len varint | pack (len bytes)
//! pack         object…
//! object       kind u8 | hash (24 bytes) | len varint | bytes
//! ```
//!
//! A group's key is at most the locator of each of its sections, which are in ascending order
//! and below the next group's key: the group holding a locator is the last one keyed at or
//! before it. An object is packed when its locator is the revision being recorded; anything
//! else (a tree that recurs after a delete, the files of an imported state) is an `objects` row
//! of its own, and so is the rest of a revision whose objects would make its pack larger than
//! [`PACK_LIMIT`]. A malformed pack or group reads as ending where it stops making sense: its
//! objects are then missing, an error for the reader, never a panic.

use super::backend::HASH_LEN;
use super::wire::{get_varint, put_varint, varint_len};

/// The most bytes of objects a pack holds: readers scan a pack for the object they want.
pub(crate) const PACK_LIMIT: usize = 64 << 10;

/// About the most bytes a group of packs holds: readers of one object read its whole group.
/// A round's packs fill groups up to here (a pack larger than what is left starts the next).
pub(crate) const GROUP_LIMIT: usize = 32 << 10;

/// One object of a pack, borrowing the pack's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Packed<'a> {
    pub kind: u8,
    pub hash: &'a [u8],
    pub bytes: &'a [u8],
}

/// The bytes an object of `len` bytes takes in a pack before its own.
pub(crate) fn header_len(len: usize) -> usize {
    1 + HASH_LEN + varint_len(len as u64)
}

/// Appends an object to `pack`. `hash` is [`HASH_LEN`] bytes.
pub(crate) fn push(pack: &mut Vec<u8>, kind: u8, hash: &[u8], bytes: &[u8]) {
    debug_assert_eq!(hash.len(), HASH_LEN);
    pack.reserve(header_len(bytes.len()) + bytes.len());
    pack.push(kind);
    pack.extend_from_slice(hash);
    put_varint(pack, bytes.len() as u64);
    pack.extend_from_slice(bytes);
}

/// The objects of `pack`, in the order they were pushed (up to the first malformed one).
pub(crate) fn objects(pack: &[u8]) -> impl Iterator<Item = Packed<'_>> {
    let mut rest = pack;
    std::iter::from_fn(move || {
        let (&kind, tail) = rest.split_first()?;
        let hash = tail.get(..HASH_LEN)?;
        let mut tail = &tail[HASH_LEN..];
        let len = usize::try_from(get_varint(&mut tail)?).ok()?;
        let bytes = tail.get(..len)?;
        rest = &tail[len..];
        Some(Packed { kind, hash, bytes })
    })
}

/// The bytes of the object `kind` + `hash` in `pack`.
pub(crate) fn find<'a>(pack: &'a [u8], kind: u8, hash: &[u8]) -> Option<&'a [u8]> {
    objects(pack)
        .find(|object| object.kind == kind && object.hash == hash)
        .map(|object| object.bytes)
}

/// Appends the section of `locator`'s pack to `group`.
pub(crate) fn push_section(group: &mut Vec<u8>, locator: u64, pack: &[u8]) {
    group.reserve(8 + varint_len(pack.len() as u64) + pack.len());
    group.extend_from_slice(&locator.to_be_bytes());
    put_varint(group, pack.len() as u64);
    group.extend_from_slice(pack);
}

/// The sections of `group`, in order: (locator, pack), up to the first malformed one.
pub(crate) fn sections(group: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut rest = group;
    std::iter::from_fn(move || {
        let (locator, tail) = rest.split_first_chunk::<8>()?;
        let mut tail = tail;
        let len = usize::try_from(get_varint(&mut tail)?).ok()?;
        let pack = tail.get(..len)?;
        rest = &tail[len..];
        Some((u64::from_be_bytes(*locator), pack))
    })
}

/// The pack of `locator` in `group`, if it has one.
pub(crate) fn section(group: &[u8], locator: u64) -> Option<&[u8]> {
    sections(group)
        .take_while(|(at, _)| *at <= locator)
        .find(|(at, _)| *at == locator)
        .map(|(_, pack)| pack)
}

/// `group` with `pack`'s objects added to `locator`'s section (a new one, in order, if it has
/// none).
pub(crate) fn with_objects_added(group: &[u8], locator: u64, pack: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(group.len() + pack.len() + 16);
    let mut added = false;
    for (at, existing) in sections(group) {
        if !added && at >= locator {
            if at == locator {
                let mut merged = existing.to_vec();
                merged.extend_from_slice(pack);
                push_section(&mut out, locator, &merged);
                added = true;
                continue;
            }
            push_section(&mut out, locator, pack);
            added = true;
        }
        push_section(&mut out, at, existing);
    }
    if !added {
        push_section(&mut out, locator, pack);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn pushed_objects_are_found_and_listed_in_order(
            objects in proptest::collection::vec(
                (any::<u8>(), proptest::array::uniform24(any::<u8>()),
                 proptest::collection::vec(any::<u8>(), 0..300)),
                0..12,
            )
        ) {
            let mut pack = Vec::new();
            for (kind, hash, bytes) in &objects {
                push(&mut pack, *kind, hash, bytes);
            }
            let listed: Vec<Packed<'_>> = super::objects(&pack).collect();
            prop_assert_eq!(listed.len(), objects.len());
            for ((kind, hash, bytes), packed) in objects.iter().zip(&listed) {
                prop_assert_eq!(packed.kind, *kind);
                prop_assert_eq!(packed.hash, hash.as_slice());
                prop_assert_eq!(packed.bytes, bytes.as_slice());
                // The first object with this kind and hash is the one found.
                let first = objects
                    .iter()
                    .find(|(k, h, _)| k == kind && h == hash)
                    .map(|(_, _, b)| b.as_slice());
                prop_assert_eq!(find(&pack, *kind, hash), first);
            }
            prop_assert_eq!(find(&pack, 0, &[0xee; HASH_LEN]).is_some(),
                objects.iter().any(|(k, h, _)| *k == 0 && h == &[0xee; HASH_LEN]));
        }

        #[test]
        fn garbage_never_panics(pack in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = super::objects(&pack).count();
            let _ = find(&pack, b't', &[0; HASH_LEN]);
            let _ = super::sections(&pack).count();
            let _ = section(&pack, 7);
        }

        #[test]
        fn sections_are_found_and_grow_in_order(
            packs in proptest::collection::btree_map(1u64..40, proptest::collection::vec(any::<u8>(), 0..50), 0..8),
            added in (1u64..40, proptest::collection::vec(any::<u8>(), 1..50)),
        ) {
            let mut group = Vec::new();
            for (locator, pack) in &packs {
                push_section(&mut group, *locator, pack);
            }
            let listed: Vec<(u64, &[u8])> = super::sections(&group).collect();
            let expected: Vec<(u64, &[u8])> =
                packs.iter().map(|(locator, pack)| (*locator, pack.as_slice())).collect();
            prop_assert_eq!(listed, expected);
            for locator in 0..41 {
                prop_assert_eq!(section(&group, locator), packs.get(&locator).map(Vec::as_slice));
            }
            // Objects added to one section: that section grows, the others stay.
            let (locator, bytes) = added;
            let grown = with_objects_added(&group, locator, &bytes);
            let mut model = packs.clone();
            model.entry(locator).or_default().extend_from_slice(&bytes);
            let listed: Vec<(u64, Vec<u8>)> =
                super::sections(&grown).map(|(at, pack)| (at, pack.to_vec())).collect();
            prop_assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_truncated_pack_lists_the_objects_before_the_cut() {
        let mut pack = Vec::new();
        push(&mut pack, b'f', &[1; HASH_LEN], b"first");
        let whole = pack.len();
        push(&mut pack, b't', &[2; HASH_LEN], b"second");
        pack.truncate(pack.len() - 1);
        assert_eq!(objects(&pack).count(), 1);
        assert_eq!(find(&pack, b'f', &[1; HASH_LEN]), Some(&b"first"[..]));
        assert_eq!(find(&pack, b't', &[2; HASH_LEN]), None);
        assert_eq!(whole, 1 + HASH_LEN + 1 + 5);
        assert_eq!(whole, header_len(5) + 5);
    }
}
