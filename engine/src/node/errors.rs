//! openraft errors as request answers.

use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};

use crate::error::KvError;
use crate::raft::types::TypeConfig;

pub(crate) fn from_write_error(
    err: &RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
) -> KvError {
    match err {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            if forward.leader_id.is_some() {
                KvError::NotLeader
            } else {
                KvError::NoLeader
            }
        }
        RaftError::APIError(other) => KvError::Internal(other.to_string()),
        RaftError::Fatal(fatal) => {
            tracing::error!(%fatal, "raft stopped");
            KvError::Stopping
        }
    }
}

pub(crate) fn from_read_error(
    err: &RaftError<TypeConfig, LinearizableReadError<TypeConfig>>,
) -> KvError {
    match err {
        RaftError::APIError(LinearizableReadError::ForwardToLeader(forward)) => {
            if forward.leader_id.is_some() {
                KvError::NotLeader
            } else {
                KvError::NoLeader
            }
        }
        RaftError::APIError(other) => KvError::Internal(other.to_string()),
        RaftError::Fatal(fatal) => {
            tracing::error!(%fatal, "raft stopped");
            KvError::Stopping
        }
    }
}
