//! JSON output (`-o json`): one object per line per entry, for `jq` and scripts.
//!
//! Keys and values are strings when they are UTF-8; otherwise base64, with a marker field
//! `<field>_encoding: "base64"` beside them. Absent values (a key created or deleted) are
//! `null`. Times are RFC 3339 in UTC with milliseconds, and also given as `time_unix_ms`.
//!
//! ```json
//! {"revision":12,"commit_id":"3f2a…","parent_commit_id":"9c1d…","time":"2026-11-22T10:00:00.000Z",
//!  "time_unix_ms":1795341600000,"log_term":2,"log_index":14,"origin":{"user":"","agent":"etcdctl"},
//!  "changes":[{"kind":"put","key":"/a"},{"kind":"delete","key":"/\u00ff","key_encoding":"base64"}],
//!  "changes_total":2}
//! ```

use base64::Engine as _;
use cairn_engine::history::{
    BlameLine, ChangeKind, HistoryStatus, KeyChange, KeyDiff, KeyVersion, OperationEntry, Origin,
    RestoreOutcome, RevisionDetail, RevisionEntry,
};
use serde_json::{Map, Value, json};

use super::rfc3339;

/// Puts `bytes` under `field`: as a string when UTF-8, else base64 with `<field>_encoding`.
pub fn insert_bytes(object: &mut Map<String, Value>, field: &str, bytes: Option<&[u8]>) {
    let Some(bytes) = bytes else {
        object.insert(field.to_owned(), Value::Null);
        return;
    };
    if let Ok(text) = std::str::from_utf8(bytes) {
        object.insert(field.to_owned(), Value::from(text));
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        object.insert(field.to_owned(), Value::from(encoded));
        object.insert(format!("{field}_encoding"), Value::from("base64"));
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn origin(origin: &Origin) -> Value {
    json!({ "user": origin.user, "agent": origin.agent })
}

fn kind(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Put => "put",
        ChangeKind::Delete => "delete",
    }
}

pub fn change(change: &KeyChange) -> Value {
    let mut map = object(json!({ "kind": kind(change.kind) }));
    insert_bytes(&mut map, "key", Some(&change.key));
    Value::Object(map)
}

/// A `log` line.
pub fn revision(entry: &RevisionEntry) -> Value {
    json!({
        "revision": entry.revision,
        "commit_id": entry.commit_id,
        "parent_commit_id": entry.parent_commit_id,
        "time": rfc3339(entry.time_unix_ms),
        "time_unix_ms": entry.time_unix_ms,
        "log_term": entry.log_term,
        "log_index": entry.log_index,
        "origin": origin(&entry.origin),
        "changes": entry.changes.iter().map(change).collect::<Vec<_>>(),
        "changes_total": entry.changes_total,
    })
}

/// A key's values on either side (no revisions: `show` and `diff` add them).
fn key_diff_fields(diff: &KeyDiff) -> Map<String, Value> {
    let mut map = Map::new();
    insert_bytes(&mut map, "key", Some(&diff.key));
    insert_bytes(&mut map, "before", diff.before.as_deref());
    insert_bytes(&mut map, "after", diff.after.as_deref());
    map
}

/// A `diff` line: one key.
pub fn key_diff(diff: &KeyDiff, from: i64, to: i64) -> Value {
    let mut map = object(json!({ "from_revision": from, "to_revision": to }));
    map.extend(key_diff_fields(diff));
    Value::Object(map)
}

/// `show`: the revision's fields and its `diffs`.
pub fn detail(detail: &RevisionDetail) -> Value {
    let mut map = object(revision(&detail.entry));
    let diffs = detail
        .diffs
        .iter()
        .map(|d| Value::Object(key_diff_fields(d)))
        .collect();
    map.insert("diffs".to_owned(), Value::Array(diffs));
    Value::Object(map)
}

/// `get`.
pub fn key_version(kv: &KeyVersion) -> Value {
    let mut map = Map::new();
    insert_bytes(&mut map, "key", Some(&kv.key));
    insert_bytes(&mut map, "value", Some(&kv.value));
    map.insert("mod_revision".to_owned(), kv.mod_revision.into());
    map.insert("revision".to_owned(), kv.revision.into());
    Value::Object(map)
}

/// A `blame` line.
pub fn blame(line: &BlameLine) -> Value {
    let mut map = Map::new();
    insert_bytes(&mut map, "key", Some(&line.key));
    map.extend(object(json!({
        "revision": line.revision,
        "commit_id": line.commit_id,
        "time": rfc3339(line.time_unix_ms),
        "time_unix_ms": line.time_unix_ms,
        "origin": origin(&line.origin),
    })));
    Value::Object(map)
}

/// An `oplog` line; attributes as an object.
pub fn operation(op: &OperationEntry) -> Value {
    let attributes: Map<String, Value> = op
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    json!({
        "operation_id": op.operation_id,
        "time": rfc3339(op.time_unix_ms),
        "time_unix_ms": op.time_unix_ms,
        "description": op.description,
        "first_revision": op.first_revision,
        "last_revision": op.last_revision,
        "attributes": attributes,
    })
}

/// `status`.
pub fn status(status: &HistoryStatus) -> Value {
    json!({
        "head_revision": status.head_revision,
        "head_commit_id": status.head_commit_id,
        "applied_revision": status.applied_revision,
        "oldest_revision": status.oldest_revision,
        "lag": status.lag(),
        "db_size_bytes": status.db_size_bytes,
    })
}

/// `restore`: `revision` is 0 when nothing differed.
pub fn restore(key: &[u8], prefix: bool, to_revision: i64, outcome: &RestoreOutcome) -> Value {
    let mut map = Map::new();
    insert_bytes(&mut map, "key", Some(key));
    map.extend(object(json!({
        "prefix": prefix,
        "to_revision": to_revision,
        "revision": outcome.revision,
        "changes": outcome.changes.iter().map(change).collect::<Vec<_>>(),
    })));
    Value::Object(map)
}
