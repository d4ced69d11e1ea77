//! Errors of the write-ahead log.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A failure of the write-ahead log.
///
/// Cloneable so that one failed `fdatasync` can be reported to every waiter of its batch; the
/// I/O cause is shared behind an `Arc`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// A bad record inside a sealed segment: acknowledged data is damaged, so opening fails
    /// instead of silently dropping it.
    #[error("corrupt wal record in sealed segment {segment} at offset {offset}")]
    Corrupt { segment: PathBuf, offset: u64 },
    /// An auxiliary file (purge marker, raft metadata) failed its checksum.
    #[error("corrupt wal auxiliary file {path}")]
    CorruptAux { path: PathBuf },
    #[error("unexpected file name {name:?} in the wal directory")]
    BadFileName { name: String },
    /// The segments on disk do not form a consecutive log.
    #[error("wal segment {segment} starts at index {found}, expected {expected}")]
    Gap {
        segment: PathBuf,
        expected: u64,
        found: u64,
    },
    /// An append that would leave a hole in (or overwrite) the log.
    #[error("wal append of index {found} does not follow the log, expected {expected}")]
    NonContiguous { expected: u64, found: u64 },
    /// The index lost track of a record it should hold (a bug, or reads after a failure).
    #[error("wal record {index} is missing")]
    MissingRecord { index: u64 },
    #[error("wal records must not be empty")]
    EmptyRecord,
    #[error("wal record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("invalid wal auxiliary file name {name:?}")]
    BadAuxName { name: String },
    /// Another process (or another `Wal` in this process) holds the directory.
    #[error("wal directory {dir} is locked by another user")]
    Locked { dir: PathBuf },
    /// An earlier write or fsync failed; the log refuses further writes because the state of
    /// unsynced data is unknown (retrying an fsync can report success for lost pages).
    #[error("wal stopped after an earlier failure: {cause}")]
    Failed { cause: Box<WalError> },
    #[error("wal writer thread is gone")]
    Closed,
}

pub type WalResult<T> = Result<T, WalError>;

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> WalResult<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> WalResult<T> {
        self.map_err(|e| WalError::io(path, e))
    }
}
