//! Packs: the objects a revision creates, stored together as one `packs` row.
//!
//! Recording a revision creates a handful of objects whose ids all carry that revision as their
//! locator (`backend.rs`): the new value's file, the trees on its path, the commit, and the
//! batch's operation and view. One row for all of them costs the database one insert instead
//! of one per object, and keeps them on the same pages, where readers of that revision look.
//!
//! ```text
//! packs    locator u64  →  object…
//! object   kind u8 | hash (24 bytes) | len varint | bytes
//! ```
//!
//! An object is packed when its locator is the revision being recorded; anything else (a tree
//! that recurs after a delete, the files of an imported state) is an `objects` row of its own,
//! and so is the rest of a revision whose objects would make its pack larger than
//! [`PACK_LIMIT`]. A malformed pack reads as ending where it stops making sense: its objects
//! are then missing, an error for the reader, never a panic.

use super::backend::HASH_LEN;
use super::wire::{get_varint, put_varint, varint_len};

/// The most bytes of objects a pack holds: readers scan a pack for the object they want.
pub(crate) const PACK_LIMIT: usize = 64 << 10;

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
