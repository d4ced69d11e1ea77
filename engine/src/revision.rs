//! Wire integers as newtypes: revisions, lease ids and member ids.
//!
//! etcd's revision is a signed 64-bit counter that starts at 1 for an empty store and grows by one
//! per write transaction. Inside a transaction each change gets a sub-revision (0, 1, 2, …); the
//! pair `(main, sub)` orders every change ever applied.

use serde::{Deserialize, Serialize};

/// A store-wide revision (etcd's `main` revision).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Revision(pub i64);

/// The position of one change: the revision of its transaction and its index inside it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RevisionId {
    pub main: i64,
    pub sub: i64,
}

/// A lease id; 0 means "no lease".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LeaseId(pub i64);

/// A cluster member id (etcd's 64-bit member id, also the raft node id).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct MemberId(pub u64);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
