//! The only place where keys, revisions and records become bytes.
//!
//! Every integer is stored as an order-preserving 8-byte big-endian word: the two's complement
//! value with its sign bit flipped, so that byte order equals numeric order for every `i64`
//! (`-1` → `7f ff ff ff ff ff ff ff`, `0` → `80 00 00 00 00 00 00 00`,
//! `2` → `80 00 00 00 00 00 00 02`).
//!
//! A user key inside a composite table key is escaped so that the composite sorts first by the
//! user key and then by what follows it: every `00` byte becomes `00 ff` and the key ends with
//! `00 01`. The escaped form preserves byte order and no escaped key is a prefix of another, so
//! `(key, main, sub)` rows of one key are contiguous and ordered by revision.
//!
//! ```text
//! key "a\0b" at revision (7, 1) in the history table:
//!   61 00 ff 62 00 01 | 80 00 00 00 00 00 00 07 | 80 00 00 00 00 00 00 01
//!   escaped key         main                      sub
//! ```
//!
//! The table layout that uses these encodings is documented in [`super::tables`].

use crate::kv::KeyValue;
use crate::revision::RevisionId;

/// Length of one encoded integer.
pub(crate) const INT_LEN: usize = 8;
/// Length of an encoded `(main, sub)` pair.
pub(crate) const REV_LEN: usize = 2 * INT_LEN;
/// Marks the end of an escaped key.
const KEY_END: [u8; 2] = [0x00, 0x01];
/// Follows a `00` byte inside an escaped key.
const ZERO_ESCAPE: u8 = 0xff;
/// Bit 0 of a history record's flags: the row is a tombstone (the key was deleted).
const FLAG_TOMBSTONE: u8 = 0x01;
/// Length of the fixed part of a current-table value: create, mod, version, lease.
const CURRENT_HEADER_LEN: usize = 4 * INT_LEN;
/// Length of the fixed part of a history value: flags, create, version, lease.
const HISTORY_HEADER_LEN: usize = 1 + 3 * INT_LEN;

/// Encodes an integer so that byte order equals numeric order.
pub(crate) fn encode_i64(value: i64) -> [u8; INT_LEN] {
    ((value as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`encode_i64`]; `None` unless `bytes` is exactly 8 bytes long.
pub(crate) fn decode_i64(bytes: &[u8]) -> Option<i64> {
    let word: [u8; INT_LEN] = bytes.try_into().ok()?;
    Some((u64::from_be_bytes(word) ^ (1 << 63)) as i64)
}

fn read_i64(bytes: &[u8], at: usize) -> Option<i64> {
    decode_i64(bytes.get(at..at + INT_LEN)?)
}

/// Encodes a `(main, sub)` pair; this is also the key of the `changes` table.
pub(crate) fn encode_revision(rev: RevisionId) -> [u8; REV_LEN] {
    let mut out = [0; REV_LEN];
    out[..INT_LEN].copy_from_slice(&encode_i64(rev.main));
    out[INT_LEN..].copy_from_slice(&encode_i64(rev.sub));
    out
}

/// Decodes [`encode_revision`].
pub(crate) fn decode_revision(bytes: &[u8]) -> Option<RevisionId> {
    if bytes.len() != REV_LEN {
        return None;
    }
    Some(RevisionId {
        main: read_i64(bytes, 0)?,
        sub: read_i64(bytes, INT_LEN)?,
    })
}

/// The escaped form of `key`, terminator included: the prefix shared by all its history rows.
pub(crate) fn history_prefix(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + KEY_END.len() + REV_LEN);
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(ZERO_ESCAPE);
        }
    }
    out.extend_from_slice(&KEY_END);
    out
}

/// The history-table key of `key` at `rev`.
pub(crate) fn history_key(key: &[u8], rev: RevisionId) -> Vec<u8> {
    let mut out = history_prefix(key);
    out.extend_from_slice(&encode_revision(rev));
    out
}

/// Appends `rev` to a prefix made by [`history_prefix`].
pub(crate) fn history_key_from_prefix(prefix: &[u8], rev: RevisionId) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + REV_LEN);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&encode_revision(rev));
    out
}

/// A bound greater than or equal to every history key of the key whose prefix is given, and
/// smaller than every history key of any greater key.
pub(crate) fn history_prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + REV_LEN);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&[0xff; REV_LEN]);
    out
}

/// Splits a history-table key into its escaped-key prefix and its revision.
pub(crate) fn split_history_key(bytes: &[u8]) -> Option<(&[u8], RevisionId)> {
    let split = bytes.len().checked_sub(REV_LEN)?;
    let (prefix, rev) = bytes.split_at(split);
    if !prefix.ends_with(&KEY_END) {
        return None;
    }
    Some((prefix, decode_revision(rev)?))
}

/// Recovers the user key from a prefix made by [`history_prefix`].
pub(crate) fn unescape_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let body = prefix.strip_suffix(&KEY_END)?;
    let mut out = Vec::with_capacity(body.len());
    let mut bytes = body.iter();
    while let Some(&byte) = bytes.next() {
        out.push(byte);
        if byte == 0 && bytes.next() != Some(&ZERO_ESCAPE) {
            return None;
        }
    }
    Some(out)
}

/// The key of a `lease_keys` row: the lease id, then the raw user key.
pub(crate) fn lease_key(id: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INT_LEN + key.len());
    out.extend_from_slice(&encode_i64(id));
    out.extend_from_slice(key);
    out
}

/// The user key of a `lease_keys` row.
pub(crate) fn lease_key_user_key(bytes: &[u8]) -> Option<&[u8]> {
    bytes.get(INT_LEN..)
}

/// One decoded row of the `current` table, borrowing its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CurrentRecord<'a> {
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

impl CurrentRecord<'_> {
    /// The record as an etcd key-value, the value left out unless `with_value`.
    pub(crate) fn to_key_value(self, key: &[u8], with_value: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec().into(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: if with_value {
                self.value.to_vec().into()
            } else {
                bytes::Bytes::new()
            },
            lease: self.lease,
        }
    }
}

/// Encodes a `current` value: `create | mod | version | lease | value bytes`.
pub(crate) fn encode_current(record: &CurrentRecord<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(CURRENT_HEADER_LEN + record.value.len());
    out.extend_from_slice(&encode_i64(record.create_revision));
    out.extend_from_slice(&encode_i64(record.mod_revision));
    out.extend_from_slice(&encode_i64(record.version));
    out.extend_from_slice(&encode_i64(record.lease));
    out.extend_from_slice(record.value);
    out
}

/// Decodes [`encode_current`].
pub(crate) fn decode_current(bytes: &[u8]) -> Option<CurrentRecord<'_>> {
    Some(CurrentRecord {
        create_revision: read_i64(bytes, 0)?,
        mod_revision: read_i64(bytes, INT_LEN)?,
        version: read_i64(bytes, 2 * INT_LEN)?,
        lease: read_i64(bytes, 3 * INT_LEN)?,
        value: bytes.get(CURRENT_HEADER_LEN..)?,
    })
}

/// One decoded row of the `history` table, borrowing its value. The mod revision is the main
/// revision of the row's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HistoryRecord<'a> {
    pub tombstone: bool,
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
    pub value: &'a [u8],
}

impl HistoryRecord<'_> {
    /// The record as an etcd key-value at `mod_revision`; a tombstone has only key and revision.
    pub(crate) fn to_key_value(self, key: &[u8], mod_revision: i64, with_value: bool) -> KeyValue {
        KeyValue {
            key: key.to_vec().into(),
            create_revision: self.create_revision,
            mod_revision,
            version: self.version,
            value: if with_value {
                self.value.to_vec().into()
            } else {
                bytes::Bytes::new()
            },
            lease: self.lease,
        }
    }
}

/// Encodes a `history` value: `flags u8 | create | version | lease | value bytes`.
pub(crate) fn encode_history(record: &HistoryRecord<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(HISTORY_HEADER_LEN + record.value.len());
    out.push(if record.tombstone { FLAG_TOMBSTONE } else { 0 });
    out.extend_from_slice(&encode_i64(record.create_revision));
    out.extend_from_slice(&encode_i64(record.version));
    out.extend_from_slice(&encode_i64(record.lease));
    out.extend_from_slice(record.value);
    out
}

/// Decodes [`encode_history`].
pub(crate) fn decode_history(bytes: &[u8]) -> Option<HistoryRecord<'_>> {
    let flags = *bytes.first()?;
    Some(HistoryRecord {
        tombstone: flags & FLAG_TOMBSTONE != 0,
        create_revision: read_i64(bytes, 1)?,
        version: read_i64(bytes, 1 + INT_LEN)?,
        lease: read_i64(bytes, 1 + 2 * INT_LEN)?,
        value: bytes.get(HISTORY_HEADER_LEN..)?,
    })
}

/// Encodes a `u32` length or version as 4 big-endian bytes (snapshot framing).
pub(crate) fn encode_u32(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

/// Decodes [`encode_u32`].
pub(crate) fn decode_u32(bytes: [u8; 4]) -> u32 {
    u32::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rev(main: i64, sub: i64) -> RevisionId {
        RevisionId { main, sub }
    }

    #[test]
    fn integers_sort_numerically() {
        let values = [i64::MIN, -5, -1, 0, 1, 2, 255, 256, i64::MAX];
        for pair in values.windows(2) {
            assert!(encode_i64(pair[0]) < encode_i64(pair[1]), "{pair:?}");
        }
        for value in values {
            assert_eq!(decode_i64(&encode_i64(value)), Some(value));
        }
        assert_eq!(encode_i64(2), [0x80, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn history_key_example_from_module_doc() {
        let key = history_key(b"a\0b", rev(7, 1));
        assert_eq!(
            key,
            [
                0x61, 0x00, 0xff, 0x62, 0x00, 0x01, 0x80, 0, 0, 0, 0, 0, 0, 7, 0x80, 0, 0, 0, 0, 0,
                0, 1
            ]
        );
        let (prefix, at) = split_history_key(&key).expect("valid key");
        assert_eq!(at, rev(7, 1));
        assert_eq!(unescape_prefix(prefix).as_deref(), Some(&b"a\0b"[..]));
    }

    #[test]
    fn records_round_trip() {
        let current = CurrentRecord {
            create_revision: 2,
            mod_revision: 9,
            version: 3,
            lease: -4,
            value: b"v",
        };
        assert_eq!(decode_current(&encode_current(&current)), Some(current));
        let history = HistoryRecord {
            tombstone: true,
            create_revision: 0,
            version: 0,
            lease: 0,
            value: b"",
        };
        assert_eq!(decode_history(&encode_history(&history)), Some(history));
        assert_eq!(decode_current(b"short"), None);
    }

    proptest! {
        #[test]
        fn history_keys_sort_by_key_then_revision(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()], 0..6),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()], 0..6),
            ra in (1i64..1000, 0i64..4),
            rb in (1i64..1000, 0i64..4),
        ) {
            let ka = history_key(&a, rev(ra.0, ra.1));
            let kb = history_key(&b, rev(rb.0, rb.1));
            let expected = (a.as_slice(), ra).cmp(&(b.as_slice(), rb));
            prop_assert_eq!(ka.cmp(&kb), expected);
            let (prefix, at) = split_history_key(&ka).expect("valid key");
            prop_assert_eq!(unescape_prefix(prefix), Some(a.clone()));
            prop_assert_eq!(at, rev(ra.0, ra.1));
            prop_assert!(history_prefix_end(prefix) >= ka);
            if a < b {
                prop_assert!(history_prefix_end(prefix) < kb);
            }
        }
    }
}
