//! Storage failures of the MVCC store.
//!
//! These are failures of the node, not answers to a request: request outcomes are
//! [`crate::error::KvError`]. An `MvccError` while applying aborts the whole batch (its redb write
//! transaction is dropped), so the raft layer can stop the node cleanly.

use std::path::PathBuf;

use crate::error::KvError;

/// A failure of the MVCC store's storage.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("redb storage error")]
    Storage {
        #[source]
        source: redb::Error,
    },
    #[error("I/O error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot stream I/O error")]
    SnapshotIo {
        #[source]
        source: std::io::Error,
    },
    /// A stored row does not decode: the file is damaged or was written by another format.
    #[error("corrupt row in table {table}: {what}")]
    Corrupt {
        table: &'static str,
        what: &'static str,
    },
    #[error("invalid snapshot: {what}")]
    InvalidSnapshot { what: &'static str },
    #[error("unsupported snapshot format version {found} (expected {expected})")]
    SnapshotVersion { found: u32, expected: u32 },
    #[error("a database already exists at {}", path.display())]
    AlreadyExists { path: PathBuf },
    /// A command returned a request error after it had changed the store; the batch is aborted
    /// rather than committed half-applied. This is a bug in the applier.
    #[error("command failed with {error} after writing; batch aborted")]
    PartialCommand { error: KvError },
}

/// Result of a storage operation of the MVCC store.
pub type MvccResult<T> = Result<T, MvccError>;

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for MvccError {
            fn from(err: $ty) -> Self {
                MvccError::Storage { source: err.into() }
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError,
    redb::CompactionError
);

impl MvccError {
    pub(crate) fn corrupt(table: &'static str, what: &'static str) -> Self {
        MvccError::Corrupt { table, what }
    }
}

impl From<MvccError> for KvError {
    /// A storage failure met while serving a request (reads, hashes): the request fails with
    /// an internal error; the node's health is the raft layer's concern.
    fn from(err: MvccError) -> Self {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        KvError::Internal(message)
    }
}

/// The outcome of one operation while serving or applying a request: either an answer to the
/// request or a storage failure.
#[derive(Debug)]
pub(crate) enum OpError {
    Request(KvError),
    Storage(MvccError),
}

pub(crate) type OpResult<T> = Result<T, OpError>;

impl From<KvError> for OpError {
    fn from(err: KvError) -> Self {
        OpError::Request(err)
    }
}

impl<E: Into<MvccError>> From<E> for OpError {
    fn from(err: E) -> Self {
        OpError::Storage(err.into())
    }
}

impl From<OpError> for KvError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::Request(err) => err,
            OpError::Storage(err) => err.into(),
        }
    }
}
