//! Key-value records and change events, as etcd's `mvccpb` defines them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One version of a key.
///
/// For a key deleted at revision `r`, the tombstone seen in a DELETE event has `key`,
/// `mod_revision = r` and every other field zero or empty, as in etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Bytes,
    /// Revision of the last creation of this key (reset by a delete).
    pub create_revision: i64,
    /// Revision of the last change of this key.
    pub mod_revision: i64,
    /// Number of changes since creation; 1 after the first put, 0 for a tombstone.
    pub version: i64,
    pub value: Bytes,
    /// Lease attached to the key, 0 if none.
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// A change to one key, as delivered to watchers.
///
/// `prev_kv` is always filled by the applier when the key existed before the change; the watch
/// layer strips it for watchers that did not ask for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision this event happened at.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}
