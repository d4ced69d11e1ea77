//! History read straight from a stopped server's data dir.
//!
//! `History` blocks (redb, jj-lib), so every call runs on tokio's blocking pool. Log pages are
//! cut exactly as the server cuts them: one revision more is asked for, to learn whether another
//! page follows.

use std::path::Path;

use bytes::Bytes;
use cairn_engine::history::{
    At, BlameLine, History, HistoryResult, HistoryStatus, KeyDiff, KeyVersion, LogQuery,
    OperationEntry, RestoreOutcome, RevisionDetail,
};

use super::{LogPage, MAX_LOG_PAGE, Source, SourceError, SourceResult};

/// A data dir's history, opened read-only.
#[derive(Clone, Debug)]
pub struct LocalSource {
    history: History,
}

impl LocalSource {
    pub async fn open(data_dir: &Path) -> SourceResult<Self> {
        let data_dir = data_dir.to_path_buf();
        let history =
            tokio::task::spawn_blocking(move || History::open_read_only(&data_dir)).await??;
        Ok(Self { history })
    }

    async fn call<T, F>(&self, query: F) -> SourceResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&History) -> HistoryResult<T> + Send + 'static,
    {
        let history = self.history.clone();
        Ok(tokio::task::spawn_blocking(move || query(&history)).await??)
    }
}

impl Source for LocalSource {
    async fn status(&self) -> SourceResult<HistoryStatus> {
        self.call(History::status).await
    }

    async fn log(&self, mut query: LogQuery) -> SourceResult<LogPage> {
        let page = match query.limit {
            0 => 100,
            n => n.min(MAX_LOG_PAGE),
        };
        query.limit = page + 1;
        let mut entries = self.call(move |h| h.log(&query)).await?;
        let mut next_max_revision = 0;
        if entries.len() > page {
            entries.truncate(page);
            next_max_revision = entries.last().map_or(0, |e| (e.revision - 1).max(0));
        }
        Ok(LogPage {
            entries,
            next_max_revision,
        })
    }

    async fn show(&self, revision: i64) -> SourceResult<RevisionDetail> {
        self.call(move |h| h.show(revision)).await
    }

    async fn diff(&self, from: i64, to: i64, prefix: Bytes) -> SourceResult<Vec<KeyDiff>> {
        self.call(move |h| h.diff(from, to, &prefix)).await
    }

    async fn get(&self, key: Bytes, at: At) -> SourceResult<Option<KeyVersion>> {
        self.call(move |h| h.get(&key, at)).await
    }

    async fn blame(
        &self,
        prefix: Bytes,
        at: Option<i64>,
        limit: usize,
    ) -> SourceResult<Vec<BlameLine>> {
        self.call(move |h| h.blame(&prefix, at, limit)).await
    }

    async fn oplog(&self, limit: usize) -> SourceResult<Vec<OperationEntry>> {
        self.call(move |h| h.oplog(limit)).await
    }

    async fn restore(
        &self,
        _key: Bytes,
        _prefix: bool,
        _to_revision: i64,
    ) -> SourceResult<RestoreOutcome> {
        Err(SourceError::OfflineRestore)
    }
}
