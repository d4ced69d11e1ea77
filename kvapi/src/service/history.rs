//! The History service (`cairn.history.v1.History`): browse recorded revisions and put keys
//! back as they were.
//!
//! ```text
//!  request ─► check_* (arguments; INVALID_ARGUMENT) ─► Node::history() (None: FAILED_PRECONDITION)
//!          ─► spawn_blocking(History::…)  (redb + jj-lib block)  ─► convert::history ─► answer
//!                   └─ HistoryError ─► status::history_error
//!  Restore ─► Node::history_restore (an ordinary replicated txn) ─► RestoreError ─► restore_error
//! ```
//!
//! The `check_*` functions are pure: they turn a request into the engine's arguments or say
//! which argument is wrong, so that no input reaches the engine unchecked.

use bytes::Bytes;
use cairn_engine::history::{At, History, HistoryError, HistoryResult, LogQuery, RevisionEntry};
use tonic::{Request, Response, Status};

use crate::context::Ctx;
use crate::convert::{self, history as hconv};
use crate::pb::history::{self as pb, history_server::History as HistoryApi};
use crate::status::{history_error, kv_error};

/// Revisions per Log page when the request does not say.
pub const DEFAULT_LOG_PAGE: usize = 100;
/// The largest Log page served; larger requests get this many and page on.
pub const MAX_LOG_PAGE: usize = 1000;

pub struct HistoryService {
    ctx: Ctx,
}

impl HistoryService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn history(&self) -> Result<History, Status> {
        self.ctx
            .node
            .history()
            .ok_or_else(|| history_error(&HistoryError::Disabled))
    }

    /// Runs a history query on the blocking pool (redb and jj-lib block).
    async fn query<T, F>(&self, query: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&History) -> HistoryResult<T> + Send + 'static,
    {
        let history = self.history()?;
        tokio::task::spawn_blocking(move || query(&history))
            .await
            .map_err(|err| {
                tracing::warn!(%err, "history query task failed");
                Status::internal("history query failed")
            })?
            .map_err(|err| history_error(&err))
    }
}

#[tonic::async_trait]
impl HistoryApi for HistoryService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.query(History::status).await?;
        Ok(Response::new(hconv::status_to_pb(&status)))
    }

    async fn log(
        &self,
        request: Request<pb::LogRequest>,
    ) -> Result<Response<pb::LogResponse>, Status> {
        let (query, page) = check_log(request.into_inner())?;
        let mut entries = self.query(move |h| h.log(&query)).await?;
        let next_max_revision = next_page(&mut entries, page);
        Ok(Response::new(pb::LogResponse {
            revisions: entries.into_iter().map(hconv::revision_to_pb).collect(),
            next_max_revision,
        }))
    }

    async fn show(
        &self,
        request: Request<pb::ShowRequest>,
    ) -> Result<Response<pb::ShowResponse>, Status> {
        let revision = check_revision("revision", request.into_inner().revision)?;
        let detail = self.query(move |h| h.show(revision)).await?;
        Ok(Response::new(hconv::detail_to_pb(detail)))
    }

    async fn diff(
        &self,
        request: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        let (from, to, prefix) = check_diff(request.into_inner())?;
        let diffs = self.query(move |h| h.diff(from, to, &prefix)).await?;
        Ok(Response::new(pb::DiffResponse {
            diffs: diffs.into_iter().map(hconv::diff_to_pb).collect(),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let (key, at) = check_get(request.into_inner())?;
        let kv = self.query(move |h| h.get(&key, at)).await?;
        Ok(Response::new(pb::GetResponse {
            kv: kv.map(hconv::key_version_to_pb),
        }))
    }

    async fn blame(
        &self,
        request: Request<pb::BlameRequest>,
    ) -> Result<Response<pb::BlameResponse>, Status> {
        let r = request.into_inner();
        let at = check_optional_revision("revision", r.revision)?;
        let (prefix, limit) = (r.prefix, r.limit as usize);
        let lines = self.query(move |h| h.blame(&prefix, at, limit)).await?;
        Ok(Response::new(pb::BlameResponse {
            lines: lines.into_iter().map(hconv::blame_to_pb).collect(),
        }))
    }

    async fn op_log(
        &self,
        request: Request<pb::OpLogRequest>,
    ) -> Result<Response<pb::OpLogResponse>, Status> {
        let limit = request.into_inner().limit as usize;
        let operations = self.query(move |h| h.oplog(limit)).await?;
        Ok(Response::new(pb::OpLogResponse {
            operations: operations.into_iter().map(hconv::operation_to_pb).collect(),
        }))
    }

    async fn restore(
        &self,
        request: Request<pb::RestoreRequest>,
    ) -> Result<Response<pb::RestoreResponse>, Status> {
        let (key, prefix, to_revision) = check_restore(request.into_inner())?;
        // A clear answer when history is off, before anything is proposed.
        self.history()?;
        let (outcome, header) = self
            .ctx
            .node
            .history_restore(key, prefix, to_revision, self.ctx.config.max_txn_ops)
            .await
            .map_err(restore_error)?;
        Ok(Response::new(pb::RestoreResponse {
            header: Some(convert::header(header)),
            revision: outcome.revision,
            changes: outcome
                .changes
                .into_iter()
                .map(hconv::change_to_pb)
                .collect(),
        }))
    }
}

/// A failed restore in the protocol's terms: write errors as the KV service reports them,
/// history errors as the other history calls do, a too-large restore as a bad argument.
fn restore_error(err: cairn_engine::node::RestoreError) -> Status {
    use cairn_engine::node::RestoreError;
    match err {
        RestoreError::Kv(err) => kv_error(err),
        RestoreError::History(err) => history_error(&err),
        err @ RestoreError::TooLarge { .. } => Status::invalid_argument(err.to_string()),
        err @ RestoreError::Contended(_) => Status::aborted(err.to_string()),
    }
}

// ---- argument checks ----

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

/// A revision that must name one (`>= 1`).
pub fn check_revision(field: &str, revision: i64) -> Result<i64, Status> {
    if revision < 1 {
        return Err(invalid(format!(
            "{field} must be a revision (1 or more), got {revision}"
        )));
    }
    Ok(revision)
}

/// A revision where 0 means "the newest recorded".
pub fn check_optional_revision(field: &str, revision: i64) -> Result<Option<i64>, Status> {
    match revision {
        0 => Ok(None),
        r => check_revision(field, r).map(Some),
    }
}

/// A revision bound where 0 means unbounded.
fn check_bound(field: &str, revision: i64) -> Result<i64, Status> {
    if revision < 0 {
        return Err(invalid(format!(
            "{field} must not be negative (0 = unbounded), got {revision}"
        )));
    }
    Ok(revision)
}

/// The engine query of a Log request and the page size asked for (the query asks for one
/// more, to learn whether another page follows).
pub fn check_log(r: pb::LogRequest) -> Result<(LogQuery, usize), Status> {
    let min_revision = check_bound("min_revision", r.min_revision)?;
    let max_revision = check_bound("max_revision", r.max_revision)?;
    if min_revision != 0 && max_revision != 0 && min_revision > max_revision {
        return Err(invalid(format!(
            "min_revision {min_revision} is greater than max_revision {max_revision}"
        )));
    }
    if r.since_unix_ms != 0 && r.until_unix_ms != 0 && r.since_unix_ms > r.until_unix_ms {
        return Err(invalid(format!(
            "since_unix_ms {} is later than until_unix_ms {}",
            r.since_unix_ms, r.until_unix_ms
        )));
    }
    let page = match r.limit as usize {
        0 => DEFAULT_LOG_PAGE,
        n => n.min(MAX_LOG_PAGE),
    };
    // An empty key without `prefix` would match nothing; both spellings mean "every revision".
    let key = (!r.key.is_empty()).then_some(r.key);
    let query = LogQuery {
        prefix: r.prefix && key.is_some(),
        key,
        min_revision,
        max_revision,
        since_unix_ms: r.since_unix_ms,
        until_unix_ms: r.until_unix_ms,
        limit: page + 1,
        changes_limit: r.changes_limit as usize,
    };
    Ok((query, page))
}

/// Cuts `entries` (newest first, asked for `page + 1`) to `page` and says where the next page
/// starts: the revision below the last one kept, or 0 when nothing older matched.
pub fn next_page(entries: &mut Vec<RevisionEntry>, page: usize) -> i64 {
    if entries.len() <= page {
        return 0;
    }
    entries.truncate(page);
    entries.last().map_or(0, |last| (last.revision - 1).max(0))
}

/// `(from, to, prefix)` of a Diff request.
pub fn check_diff(r: pb::DiffRequest) -> Result<(i64, i64, Bytes), Status> {
    let from = check_revision("from_revision", r.from_revision)?;
    let to = check_revision("to_revision", r.to_revision)?;
    if from > to {
        return Err(invalid(format!(
            "from_revision {from} is after to_revision {to}"
        )));
    }
    Ok((from, to, r.prefix))
}

/// `(key, at)` of a Get request.
pub fn check_get(r: pb::GetRequest) -> Result<(Bytes, At), Status> {
    if r.key.is_empty() {
        return Err(invalid("key is required"));
    }
    let at = match r.at {
        Some(pb::get_request::At::Revision(revision)) => {
            At::Revision(check_revision("revision", revision)?)
        }
        Some(pb::get_request::At::TimeUnixMs(ms)) => At::Time(ms),
        None => return Err(invalid("one of revision or time_unix_ms is required")),
    };
    Ok((r.key, at))
}

/// `(key, prefix, to_revision)` of a Restore request.
pub fn check_restore(r: pb::RestoreRequest) -> Result<(Bytes, bool, i64), Status> {
    if r.key.is_empty() {
        return Err(invalid("key (or key prefix) is required"));
    }
    let to = check_revision("to_revision", r.to_revision)?;
    Ok((r.key, r.prefix, to))
}

#[cfg(test)]
mod tests {
    use cairn_engine::history::Origin;
    use tonic::Code;

    use super::*;

    fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, message: &str) {
        let status = result.expect_err("an invalid argument");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), message);
    }

    #[test]
    fn revisions_must_name_one() {
        assert_eq!(check_revision("revision", 1).unwrap(), 1);
        assert_invalid(
            check_revision("revision", 0),
            "revision must be a revision (1 or more), got 0",
        );
        assert_invalid(
            check_revision("to_revision", -3),
            "to_revision must be a revision (1 or more), got -3",
        );
        assert_eq!(check_optional_revision("revision", 0).unwrap(), None);
        assert_eq!(check_optional_revision("revision", 4).unwrap(), Some(4));
        assert_invalid(
            check_optional_revision("revision", -1),
            "revision must be a revision (1 or more), got -1",
        );
    }

    #[test]
    fn log_requests_become_queries() {
        let (query, page) = check_log(pb::LogRequest {
            key: Bytes::from_static(b"/a"),
            prefix: true,
            min_revision: 2,
            max_revision: 9,
            since_unix_ms: 10,
            until_unix_ms: 20,
            limit: 5,
            changes_limit: 3,
        })
        .unwrap();
        assert_eq!(page, 5);
        assert_eq!(
            query,
            LogQuery {
                key: Some(Bytes::from_static(b"/a")),
                prefix: true,
                min_revision: 2,
                max_revision: 9,
                since_unix_ms: 10,
                until_unix_ms: 20,
                limit: 6,
                changes_limit: 3,
            }
        );

        let (query, page) = check_log(pb::LogRequest {
            prefix: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(page, DEFAULT_LOG_PAGE);
        assert_eq!(query.key, None);
        assert!(!query.prefix);

        let (_, page) = check_log(pb::LogRequest {
            limit: u32::MAX,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(page, MAX_LOG_PAGE);
    }

    #[test]
    fn log_requests_with_bad_bounds_are_refused() {
        assert_invalid(
            check_log(pb::LogRequest {
                min_revision: -1,
                ..Default::default()
            }),
            "min_revision must not be negative (0 = unbounded), got -1",
        );
        assert_invalid(
            check_log(pb::LogRequest {
                max_revision: -2,
                ..Default::default()
            }),
            "max_revision must not be negative (0 = unbounded), got -2",
        );
        assert_invalid(
            check_log(pb::LogRequest {
                min_revision: 8,
                max_revision: 3,
                ..Default::default()
            }),
            "min_revision 8 is greater than max_revision 3",
        );
        assert_invalid(
            check_log(pb::LogRequest {
                since_unix_ms: 8,
                until_unix_ms: 3,
                ..Default::default()
            }),
            "since_unix_ms 8 is later than until_unix_ms 3",
        );
        // One-sided bounds are fine.
        check_log(pb::LogRequest {
            min_revision: 8,
            until_unix_ms: 3,
            ..Default::default()
        })
        .unwrap();
    }

    fn entry(revision: i64) -> RevisionEntry {
        RevisionEntry {
            revision,
            commit_id: String::new(),
            parent_commit_id: String::new(),
            time_unix_ms: 0,
            log_term: 0,
            log_index: 0,
            origin: Origin::default(),
            changes: Vec::new(),
            changes_total: 0,
        }
    }

    #[test]
    fn pages_continue_below_the_last_revision_kept() {
        let mut full: Vec<_> = [9, 7, 4].into_iter().map(entry).collect();
        assert_eq!(next_page(&mut full, 2), 6);
        assert_eq!(full.len(), 2);

        let mut last: Vec<_> = [9, 7].into_iter().map(entry).collect();
        assert_eq!(next_page(&mut last, 2), 0);
        assert_eq!(last.len(), 2);

        let mut empty: Vec<RevisionEntry> = Vec::new();
        assert_eq!(next_page(&mut empty, 2), 0);
    }

    #[test]
    fn diff_requests_are_ordered() {
        let (from, to, prefix) = check_diff(pb::DiffRequest {
            from_revision: 2,
            to_revision: 2,
            prefix: Bytes::from_static(b"/p"),
        })
        .unwrap();
        assert_eq!((from, to, &prefix[..]), (2, 2, &b"/p"[..]));
        assert_invalid(
            check_diff(pb::DiffRequest {
                from_revision: 5,
                to_revision: 3,
                prefix: Bytes::new(),
            }),
            "from_revision 5 is after to_revision 3",
        );
        assert_invalid(
            check_diff(pb::DiffRequest {
                from_revision: -5,
                to_revision: 3,
                prefix: Bytes::new(),
            }),
            "from_revision must be a revision (1 or more), got -5",
        );
    }

    #[test]
    fn get_requests_need_a_key_and_a_point() {
        use pb::get_request::At as PbAt;
        let get = |key: &'static [u8], at| pb::GetRequest {
            key: Bytes::from_static(key),
            at,
        };
        assert_eq!(
            check_get(get(b"k", Some(PbAt::Revision(3)))).unwrap(),
            (Bytes::from_static(b"k"), At::Revision(3))
        );
        assert_eq!(
            check_get(get(b"k", Some(PbAt::TimeUnixMs(1_000)))).unwrap(),
            (Bytes::from_static(b"k"), At::Time(1_000))
        );
        assert_invalid(
            check_get(get(b"", Some(PbAt::Revision(3)))),
            "key is required",
        );
        assert_invalid(
            check_get(get(b"k", None)),
            "one of revision or time_unix_ms is required",
        );
        assert_invalid(
            check_get(get(b"k", Some(PbAt::Revision(-1)))),
            "revision must be a revision (1 or more), got -1",
        );
    }

    #[test]
    fn restore_requests_need_a_key_and_a_revision() {
        let restore = |key: &'static [u8], to_revision| pb::RestoreRequest {
            key: Bytes::from_static(key),
            prefix: true,
            to_revision,
        };
        assert_eq!(
            check_restore(restore(b"/p/", 4)).unwrap(),
            (Bytes::from_static(b"/p/"), true, 4)
        );
        assert_invalid(
            check_restore(restore(b"", 4)),
            "key (or key prefix) is required",
        );
        assert_invalid(
            check_restore(restore(b"/p/", 0)),
            "to_revision must be a revision (1 or more), got 0",
        );
    }
}
