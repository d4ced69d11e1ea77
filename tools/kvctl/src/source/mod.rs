//! Where history comes from: a running server ([`RemoteSource`], the history gRPC service) or a
//! stopped server's data dir ([`LocalSource`], read-only). Every command is written once against
//! [`Source`] and works both ways (restore only online: it writes).
//!
//! ```text
//!  command ─► Source ─┬─ RemoteSource ─► tonic HistoryClient ─► cairn: cairn.history.v1.History
//!                     └─ LocalSource ──► spawn_blocking(History::open_read_only(data dir).…)
//! ```

mod local;
mod remote;

use std::future::Future;

use bytes::Bytes;
use cairn_engine::history::{
    At, BlameLine, HistoryError, HistoryStatus, KeyDiff, KeyVersion, LogQuery, OperationEntry,
    RestoreOutcome, RevisionDetail, RevisionEntry,
};

pub use local::LocalSource;
pub use remote::RemoteSource;

/// The largest page the server serves; [`Source::log`] never asks for more at once.
pub const MAX_LOG_PAGE: usize = 1000;

/// One page of a log: revisions newest first, and where the next page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPage {
    pub entries: Vec<RevisionEntry>,
    /// The `max_revision` of the next page, 0 when no older revision matches.
    pub next_max_revision: i64,
}

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {endpoints}: {source}")]
    Connect {
        endpoints: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("no endpoint given")]
    NoEndpoint,
    /// The server answered with an error.
    #[error("{}", server_message(.0))]
    Server(tonic::Status),
    /// The data dir's history answered with an error.
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("restore needs a running server (--endpoints)")]
    OfflineRestore,
    #[error("reading history failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn server_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("server error: {}", status.code().description())
    } else {
        status.message().to_owned()
    }
}

pub type SourceResult<T> = Result<T, SourceError>;

/// Recorded history, wherever it is read from. Arguments are the engine's (see
/// `cairn_engine::history::History`); `log` pages as the history service does.
pub trait Source {
    fn status(&self) -> impl Future<Output = SourceResult<HistoryStatus>> + Send;

    /// One page of revisions matching `query`, newest first; `query.limit` is the page size
    /// (at most [`MAX_LOG_PAGE`]).
    fn log(&self, query: LogQuery) -> impl Future<Output = SourceResult<LogPage>> + Send;

    fn show(&self, revision: i64) -> impl Future<Output = SourceResult<RevisionDetail>> + Send;

    fn diff(
        &self,
        from: i64,
        to: i64,
        prefix: Bytes,
    ) -> impl Future<Output = SourceResult<Vec<KeyDiff>>> + Send;

    fn get(
        &self,
        key: Bytes,
        at: At,
    ) -> impl Future<Output = SourceResult<Option<KeyVersion>>> + Send;

    fn blame(
        &self,
        prefix: Bytes,
        at: Option<i64>,
        limit: usize,
    ) -> impl Future<Output = SourceResult<Vec<BlameLine>>> + Send;

    fn oplog(&self, limit: usize)
    -> impl Future<Output = SourceResult<Vec<OperationEntry>>> + Send;

    /// Puts `key` (or every key under it, with `prefix`) back as at `to_revision`.
    fn restore(
        &self,
        key: Bytes,
        prefix: bool,
        to_revision: i64,
    ) -> impl Future<Output = SourceResult<RestoreOutcome>> + Send;
}
