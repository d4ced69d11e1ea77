//! The protobuf wire format, written by hand where the writer's hot path would otherwise build
//! prost messages only to encode them: varints, length-delimited fields (shared with the tree
//! encoder, packs and deltas), jj's `simple_store.Commit` written straight from a [`Commit`] and
//! `simple_op_store.Operation` from an [`Operation`].
//!
//! [`encode_commit`] writes byte for byte what prost writes for the message
//! `backend::commit_to_proto` builds: fields in the order prost writes them (declaration order,
//! so `conflict_labels` (10) before `change_id` (4)), proto3 defaults left out, nested lengths
//! computed up front. [`encode_operation`] does the same for `op_store::operation_to_proto`,
//! but for the attributes map: prost writes a `HashMap` in its iteration order, which differs
//! from one process to the next, so the same operation got other bytes, hence another id; here
//! the entries are in key order. Property tests hold both to prost's output.

use jj_lib::backend::{Commit, Signature, Timestamp};
use jj_lib::object_id::ObjectId;
use jj_lib::op_store::Operation;

/// Bytes of a varint.
pub(crate) fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint off the front of `bytes`; `None` if it is cut short or too long.
pub(crate) fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Bytes of a length-delimited field with a one-byte tag and `len` payload bytes.
pub(crate) fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A length-delimited field's tag (field numbers here are below 16: one byte).
pub(crate) fn put_tag(out: &mut Vec<u8>, field: u8) {
    out.push((field << 3) | 2);
}

pub(crate) fn put_bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    put_tag(out, field);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varint field (wire type 0) holding `value`; proto3 leaves zero out.
fn put_varint_field(out: &mut Vec<u8>, field: u8, value: u64) {
    if value != 0 {
        out.push(field << 3);
        put_varint(out, value);
    }
}

fn varint_field_len(value: u64) -> usize {
    if value == 0 { 0 } else { 1 + varint_len(value) }
}

/// A string or bytes field; proto3 leaves an empty one out.
fn put_nonempty_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_bytes_field(out, field, bytes);
    }
}

fn nonempty_field_len(len: usize) -> usize {
    if len == 0 { 0 } else { field_len(len) }
}

/// Encodes `commit` as jj's `simple_store.Commit`: the bytes of
/// `commit_to_proto(commit).encode_to_vec()`, without copying ids and strings into a message
/// first. Like `commit_to_proto`, it stores no secure signature.
pub(crate) fn encode_commit(commit: &Commit) -> Vec<u8> {
    // Two ids, a change id, a description of a few lines and two signatures.
    let mut out = Vec::with_capacity(commit.description.len() + 160);
    // parents (1), predecessors (2), root_tree (3): repeated bytes, empty ones included.
    for id in &commit.parents {
        put_bytes_field(&mut out, 1, id.as_bytes());
    }
    for id in &commit.predecessors {
        put_bytes_field(&mut out, 2, id.as_bytes());
    }
    for id in &commit.root_tree {
        put_bytes_field(&mut out, 3, id.as_bytes());
    }
    // conflict_labels (10), declared before change_id: only for a conflicted commit.
    if !commit.conflict_labels.is_resolved() {
        for label in commit.conflict_labels.as_slice() {
            put_bytes_field(&mut out, 10, label.as_bytes());
        }
    }
    put_nonempty_field(&mut out, 4, commit.change_id.as_bytes());
    put_nonempty_field(&mut out, 5, commit.description.as_bytes());
    put_signature(&mut out, 6, &commit.author);
    put_signature(&mut out, 7, &commit.committer);
    out
}

/// `Signature { name (1), email (2), timestamp (3): Timestamp }` as field `field`: present
/// even when empty, as are the timestamps `commit_to_proto` sets.
fn put_signature(out: &mut Vec<u8>, field: u8, signature: &Signature) {
    let len = nonempty_field_len(signature.name.len())
        + nonempty_field_len(signature.email.len())
        + field_len(timestamp_len(&signature.timestamp));
    put_tag(out, field);
    put_varint(out, len as u64);
    put_nonempty_field(out, 1, signature.name.as_bytes());
    put_nonempty_field(out, 2, signature.email.as_bytes());
    put_timestamp(out, 3, &signature.timestamp);
}

/// The payload length of `Timestamp { millis_since_epoch (1), tz_offset (2) }` (the same
/// message in `simple_store` and `simple_op_store`). int64 and int32 are written as their
/// two's complement, sign-extended to 64 bits.
fn timestamp_len(timestamp: &Timestamp) -> usize {
    varint_field_len(timestamp.timestamp.0 as u64)
        + varint_field_len(i64::from(timestamp.tz_offset) as u64)
}

fn put_timestamp(out: &mut Vec<u8>, field: u8, timestamp: &Timestamp) {
    put_tag(out, field);
    put_varint(out, timestamp_len(timestamp) as u64);
    put_varint_field(out, 1, timestamp.timestamp.0 as u64);
    put_varint_field(out, 2, i64::from(timestamp.tz_offset) as u64);
}

/// Encodes `operation` as jj's `simple_op_store.Operation`: what prost writes for the message
/// `op_store::operation_to_proto` builds (which stores no workspace name), with the attributes
/// in key order (see the module docs).
pub(crate) fn encode_operation(operation: &Operation) -> Vec<u8> {
    let metadata = &operation.metadata;
    let attribute_len =
        |key: &str, value: &str| nonempty_field_len(key.len()) + nonempty_field_len(value.len());
    let metadata_len = field_len(timestamp_len(&metadata.time.start))
        + field_len(timestamp_len(&metadata.time.end))
        + nonempty_field_len(metadata.description.len())
        + nonempty_field_len(metadata.hostname.len())
        + nonempty_field_len(metadata.username.len())
        + varint_field_len(u64::from(metadata.is_snapshot))
        + metadata
            .attributes
            .iter()
            .map(|(key, value)| field_len(attribute_len(key, value)))
            .sum::<usize>();
    let mut out = Vec::with_capacity(metadata_len + 128);
    put_nonempty_field(&mut out, 1, operation.view_id.as_bytes());
    for parent in &operation.parents {
        put_bytes_field(&mut out, 2, parent.as_bytes());
    }
    // metadata (3): fields in the order prost writes them, `attributes` (6) before
    // `is_snapshot` (7).
    put_tag(&mut out, 3);
    put_varint(&mut out, metadata_len as u64);
    put_timestamp(&mut out, 1, &metadata.time.start);
    put_timestamp(&mut out, 2, &metadata.time.end);
    put_nonempty_field(&mut out, 3, metadata.description.as_bytes());
    put_nonempty_field(&mut out, 4, metadata.hostname.as_bytes());
    put_nonempty_field(&mut out, 5, metadata.username.as_bytes());
    for (key, value) in &metadata.attributes {
        put_tag(&mut out, 6);
        put_varint(&mut out, attribute_len(key, value) as u64);
        put_nonempty_field(&mut out, 1, key.as_bytes());
        put_nonempty_field(&mut out, 2, value.as_bytes());
    }
    put_varint_field(&mut out, 7, u64::from(metadata.is_snapshot));
    // commit_predecessors (4): `CommitPredecessors { commit_id (1), predecessor_ids (2) }`.
    for (commit, predecessors) in operation.commit_predecessors.iter().flatten() {
        let len = nonempty_field_len(commit.as_bytes().len())
            + predecessors
                .iter()
                .map(|id| field_len(id.as_bytes().len()))
                .sum::<usize>();
        put_tag(&mut out, 4);
        put_varint(&mut out, len as u64);
        put_nonempty_field(&mut out, 1, commit.as_bytes());
        for id in predecessors {
            put_bytes_field(&mut out, 2, id.as_bytes());
        }
    }
    put_varint_field(
        &mut out,
        5,
        u64::from(operation.commit_predecessors.is_some()),
    );
    out
}

#[cfg(test)]
mod tests {
    use jj_lib::backend::{ChangeId, CommitId, MillisSinceEpoch, Timestamp, TreeId};
    use jj_lib::merge::Merge;
    use proptest::prelude::*;
    use prost::Message;

    use jj_lib::op_store::{OperationId, OperationMetadata, TimestampRange, ViewId};

    use super::*;
    use crate::history::backend::commit_to_proto;
    use crate::history::op_store::operation_to_proto;

    fn signature() -> impl Strategy<Value = Signature> {
        (".{0,12}", ".{0,12}", any::<i64>(), any::<i32>()).prop_map(
            |(name, email, millis, tz_offset)| Signature {
                name,
                email,
                timestamp: Timestamp {
                    timestamp: MillisSinceEpoch(millis),
                    tz_offset,
                },
            },
        )
    }

    fn ids(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..max)
    }

    proptest! {
        #[test]
        fn commits_encode_as_prost_encodes_them(
            parents in ids(3),
            predecessors in ids(2),
            conflicted in any::<bool>(),
            trees in ids(3),
            labels in proptest::collection::vec(".{0,6}", 3),
            change_id in proptest::collection::vec(any::<u8>(), 0..20),
            description in "(.|\n){0,300}",
            author in signature(),
            committer in signature(),
        ) {
            let tree = |bytes: &Vec<u8>| TreeId::new(bytes.clone());
            let (root_tree, conflict_labels) = match trees.as_slice() {
                [a, b, c] if conflicted => (
                    Merge::from_vec(vec![tree(a), tree(b), tree(c)]),
                    Merge::from_vec(labels),
                ),
                _ => (
                    Merge::resolved(tree(trees.first().unwrap_or(&Vec::new()))),
                    Merge::resolved(String::new()),
                ),
            };
            let commit = Commit {
                parents: parents.into_iter().map(CommitId::new).collect(),
                predecessors: predecessors.into_iter().map(CommitId::new).collect(),
                root_tree,
                conflict_labels,
                change_id: ChangeId::new(change_id),
                description,
                author,
                committer,
                secure_sig: None,
            };
            prop_assert_eq!(encode_commit(&commit), commit_to_proto(&commit).encode_to_vec());
        }

        #[test]
        fn operations_encode_as_prost_decodes_them(
            view_id in proptest::collection::vec(any::<u8>(), 0..40),
            parents in ids(3),
            times in (any::<i64>(), any::<i32>(), any::<i64>(), any::<i32>()),
            strings in ("(.|\n){0,200}", ".{0,8}", ".{0,8}"),
            is_snapshot in any::<bool>(),
            attributes in proptest::collection::btree_map(".{0,8}", ".{0,12}", 0..4),
            predecessors in proptest::option::of(proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..40), ids(3), 0..4)),
        ) {
            let (start, start_tz, end, end_tz) = times;
            let (description, hostname, username) = strings;
            let timestamp = |millis, tz_offset| Timestamp {
                timestamp: MillisSinceEpoch(millis),
                tz_offset,
            };
            let operation = Operation {
                view_id: ViewId::new(view_id),
                parents: parents.into_iter().map(OperationId::new).collect(),
                metadata: OperationMetadata {
                    time: TimestampRange {
                        start: timestamp(start, start_tz),
                        end: timestamp(end, end_tz),
                    },
                    description,
                    hostname,
                    username,
                    is_snapshot,
                    workspace_name: None,
                    attributes,
                },
                commit_predecessors: predecessors.map(|map| {
                    map.into_iter()
                        .map(|(commit, ids)| {
                            (CommitId::new(commit), ids.into_iter().map(CommitId::new).collect())
                        })
                        .collect()
                }),
            };
            let encoded = encode_operation(&operation);
            let message = operation_to_proto(&operation);
            let decoded = jj_lib::protos::simple_op_store::Operation::decode(encoded.as_slice());
            prop_assert_eq!(decoded.ok(), Some(message.clone()));
            // With at most one attribute prost's order is the only one: the very same bytes.
            if operation.metadata.attributes.len() <= 1 {
                prop_assert_eq!(encoded, message.encode_to_vec());
            }
        }

        #[test]
        fn varints_read_what_they_wrote(value in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            prop_assert_eq!(out.len(), varint_len(value));
            let mut bytes = out.as_slice();
            prop_assert_eq!(get_varint(&mut bytes), Some(value));
            prop_assert!(bytes.is_empty());
        }
    }
}
