//! Request errors: deterministic outcomes of a request that the API maps to etcd's gRPC errors.
//!
//! These are answers, not failures of the node. Storage and consensus failures have their own
//! error types in their modules.

use serde::{Deserialize, Serialize};

/// An error answer to a key-value, lease or maintenance request, one variant per etcd rpctype.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    #[error("required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("required revision is a future revision")]
    FutureRevision,
    #[error("requested lease not found")]
    LeaseNotFound,
    #[error("lease already exists")]
    LeaseExists,
    #[error("too large lease TTL")]
    LeaseTtlTooLarge,
    /// `ignore_value` or `ignore_lease` on a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    #[error("database space exceeded")]
    NoSpace,
    #[error("no leader")]
    NoLeader,
    #[error("not leader")]
    NotLeader,
    #[error("leader changed")]
    LeaderChanged,
    #[error("request timed out")]
    Timeout,
    #[error("server is stopping")]
    Stopping,
    /// `MoveLeader` to a member that cannot become leader.
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    #[error("member not found")]
    MemberNotFound,
    #[error("peer URLs already exist")]
    PeerUrlExists,
    /// etcd's strict reconfiguration check: the change would leave the cluster without a quorum
    /// of started members (or another change is still in progress).
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("can only promote a learner member")]
    MemberNotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("too many learner members in cluster")]
    TooManyLearners,
    #[error("not supported by a single member: {0}")]
    Unsupported(String),
    /// The node hit a storage or consensus failure while serving the request.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type KvResult<T> = Result<T, KvError>;
