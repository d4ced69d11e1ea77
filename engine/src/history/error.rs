//! Errors of the history layer.

use thiserror::Error;

pub type HistoryResult<T> = Result<T, HistoryError>;

#[derive(Debug, Error)]
pub enum HistoryError {
    /// The revision is newer than the newest one recorded.
    #[error("history has not recorded revision {revision} yet (head is {head})")]
    FutureRevision { revision: i64, head: i64 },
    /// The revision was trimmed by `--history-retention`.
    #[error("revision {revision} was trimmed from history (oldest kept is {oldest})")]
    Trimmed { revision: i64, oldest: i64 },
    /// The revision never produced a commit (revision 1 is the empty store).
    #[error("revision {0} is not in history")]
    NoSuchRevision(i64),
    /// The question makes no sense (a bad revision, reversed bounds).
    #[error("{0}")]
    Invalid(String),
    /// History is switched off on this server.
    #[error("history is disabled on this server")]
    Disabled,
    /// The history database could not be opened, read or written.
    #[error("history storage: {0}")]
    Storage(String),
    /// The stored history contradicts itself; `cairn history rebuild` recreates it.
    #[error("history is corrupt: {0}")]
    Corrupt(String),
}

impl HistoryError {
    pub(crate) fn storage(err: impl std::fmt::Display) -> Self {
        Self::Storage(err.to_string())
    }
}

macro_rules! from_storage {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for HistoryError {
            fn from(err: $ty) -> Self {
                Self::storage(err)
            }
        })*
    };
}

from_storage!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    std::io::Error,
    jj_lib::backend::BackendError,
    jj_lib::op_store::OpStoreError,
);
