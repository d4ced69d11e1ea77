//! openraft errors as request answers.

use std::fmt::Display;

use openraft::errors::{
    ChangeMembershipError, ClientWriteError, ForwardToLeader, LinearizableReadError, RaftError,
};

use crate::error::KvError;
use crate::raft::types::TypeConfig;

/// A refused write (not leader: nothing was appended) can be retried; a discarded one (appended,
/// then overwritten by a new leader, outcome unknown) is etcd's "leader changed".
pub(crate) fn from_write_error(
    err: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> KvError {
    match err {
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => KvError::LeaderChanged,
        // The new leader has not committed its first entry yet: nothing was done, ask again.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::UncommittedLeaderLog(_),
        )) => KvError::NotLeader,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(change)) => {
            tracing::info!(%change, "membership change refused");
            KvError::NotEnoughStarted
        }
        _ => from_raft_error(err, |api| match api {
            ClientWriteError::ForwardToLeader(forward) => Some(forward),
            _ => None,
        }),
    }
}

/// A leader that cannot reach a quorum to confirm its leadership answers as etcd does when a
/// read index cannot be obtained: "request timed out".
pub(crate) fn from_read_error(
    err: &RaftError<TypeConfig, LinearizableReadError<TypeConfig>>,
) -> KvError {
    if let RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)) = err {
        return KvError::Timeout;
    }
    from_raft_error(err, |api| match api {
        LinearizableReadError::ForwardToLeader(forward) => Some(forward),
        LinearizableReadError::QuorumNotEnough(_) => None,
    })
}

/// "Not the leader" becomes etcd's not-leader / no-leader answer; a stopped raft, `Stopping`.
fn from_raft_error<E: Display>(
    err: &RaftError<TypeConfig, E>,
    forward: impl Fn(&E) -> Option<&ForwardToLeader<TypeConfig>>,
) -> KvError {
    match err {
        RaftError::APIError(api) => match forward(api) {
            Some(forward) if forward.leader_id.is_some() => KvError::NotLeader,
            Some(_) => KvError::NoLeader,
            None => KvError::Internal(api.to_string()),
        },
        RaftError::Fatal(fatal) => {
            tracing::error!(%fatal, "raft stopped");
            KvError::Stopping
        }
    }
}
