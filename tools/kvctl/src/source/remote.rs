//! History read from a running server through its history gRPC service.
//!
//! `--endpoints` is a comma-separated list; they are tried in order and the first that accepts a
//! connection serves every call of the command. Requests carry the user agent `kvctl/<version>`,
//! which the server records as the origin of a restore.

use std::time::Duration;

use bytes::Bytes;
use cairn_engine::history::{
    At, BlameLine, HistoryStatus, KeyDiff, KeyVersion, LogQuery, OperationEntry, RestoreOutcome,
    RevisionDetail,
};
use cairn_kvapi::convert::history as conv;
use cairn_kvapi::pb::history::{self as pb, history_client::HistoryClient};
use tonic::transport::{Channel, Endpoint};

use super::{LogPage, MAX_LOG_PAGE, Source, SourceError, SourceResult};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Diffs and shows of large values can be big; the server does not limit its answers either.
const MAX_MESSAGE_BYTES: usize = 1 << 30;

/// A connection to one server's history service.
#[derive(Clone, Debug)]
pub struct RemoteSource {
    client: HistoryClient<Channel>,
}

/// `host:port` gets `http://` in front; URLs are kept as they are.
fn endpoint_url(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

impl RemoteSource {
    /// Connects to the first of `endpoints` (comma-separated) that answers.
    pub async fn connect(endpoints: &str) -> SourceResult<Self> {
        let mut last_error = None;
        for endpoint in endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let url = endpoint_url(endpoint);
            let channel = Endpoint::from_shared(url)
                .and_then(|e| e.user_agent(concat!("kvctl/", env!("CARGO_PKG_VERSION"))))
                .map_err(|source| SourceError::Endpoint {
                    endpoint: endpoint.to_owned(),
                    source,
                })?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT);
            match channel.connect().await {
                Ok(channel) => {
                    let client = HistoryClient::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES);
                    return Ok(Self { client });
                }
                Err(source) => last_error = Some(source),
            }
        }
        match last_error {
            Some(source) => Err(SourceError::Connect {
                endpoints: endpoints.to_owned(),
                source,
            }),
            None => Err(SourceError::NoEndpoint),
        }
    }

    fn client(&self) -> HistoryClient<Channel> {
        self.client.clone()
    }
}

impl Source for RemoteSource {
    async fn status(&self) -> SourceResult<HistoryStatus> {
        let response = self
            .client()
            .status(pb::StatusRequest {})
            .await
            .map_err(SourceError::Server)?;
        Ok(conv::status_from_pb(response.get_ref()))
    }

    async fn log(&self, query: LogQuery) -> SourceResult<LogPage> {
        let request = pb::LogRequest {
            key: query.key.unwrap_or_default(),
            prefix: query.prefix,
            min_revision: query.min_revision,
            max_revision: query.max_revision,
            since_unix_ms: query.since_unix_ms,
            until_unix_ms: query.until_unix_ms,
            limit: query.limit.min(MAX_LOG_PAGE) as u32,
            changes_limit: u32::try_from(query.changes_limit).unwrap_or(u32::MAX),
        };
        let response = self
            .client()
            .log(request)
            .await
            .map_err(SourceError::Server)?
            .into_inner();
        Ok(LogPage {
            entries: response
                .revisions
                .into_iter()
                .map(conv::revision_from_pb)
                .collect(),
            next_max_revision: response.next_max_revision,
        })
    }

    async fn show(&self, revision: i64) -> SourceResult<RevisionDetail> {
        let response = self
            .client()
            .show(pb::ShowRequest { revision })
            .await
            .map_err(SourceError::Server)?;
        Ok(conv::detail_from_pb(response.into_inner()))
    }

    async fn diff(&self, from: i64, to: i64, prefix: Bytes) -> SourceResult<Vec<KeyDiff>> {
        let request = pb::DiffRequest {
            from_revision: from,
            to_revision: to,
            prefix,
        };
        let response = self
            .client()
            .diff(request)
            .await
            .map_err(SourceError::Server)?;
        Ok(response
            .into_inner()
            .diffs
            .into_iter()
            .map(conv::diff_from_pb)
            .collect())
    }

    async fn get(&self, key: Bytes, at: At) -> SourceResult<Option<KeyVersion>> {
        let at = match at {
            At::Revision(revision) => pb::get_request::At::Revision(revision),
            At::Time(ms) => pb::get_request::At::TimeUnixMs(ms),
        };
        let response = self
            .client()
            .get(pb::GetRequest { key, at: Some(at) })
            .await
            .map_err(SourceError::Server)?;
        Ok(response.into_inner().kv.map(conv::key_version_from_pb))
    }

    async fn blame(
        &self,
        prefix: Bytes,
        at: Option<i64>,
        limit: usize,
    ) -> SourceResult<Vec<BlameLine>> {
        let request = pb::BlameRequest {
            prefix,
            revision: at.unwrap_or(0),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let response = self
            .client()
            .blame(request)
            .await
            .map_err(SourceError::Server)?;
        Ok(response
            .into_inner()
            .lines
            .into_iter()
            .map(conv::blame_from_pb)
            .collect())
    }

    async fn oplog(&self, limit: usize) -> SourceResult<Vec<OperationEntry>> {
        let request = pb::OpLogRequest {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let response = self
            .client()
            .op_log(request)
            .await
            .map_err(SourceError::Server)?;
        Ok(response
            .into_inner()
            .operations
            .into_iter()
            .map(conv::operation_from_pb)
            .collect())
    }

    async fn restore(
        &self,
        key: Bytes,
        prefix: bool,
        to_revision: i64,
    ) -> SourceResult<RestoreOutcome> {
        let request = pb::RestoreRequest {
            key,
            prefix,
            to_revision,
        };
        let response = self
            .client()
            .restore(request)
            .await
            .map_err(SourceError::Server)?;
        Ok(conv::restore_from_pb(response.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_endpoints_get_a_scheme() {
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(endpoint_url("http://h:1"), "http://h:1");
        assert_eq!(endpoint_url("https://h:1"), "https://h:1");
    }

    #[tokio::test]
    async fn unreachable_endpoints_are_reported_together() {
        // Port 1 on loopback refuses connections.
        let err = RemoteSource::connect("127.0.0.1:1, 127.0.0.1:1")
            .await
            .expect_err("nothing listens on port 1");
        assert!(matches!(err, SourceError::Connect { .. }), "{err}");
        assert!(matches!(
            RemoteSource::connect(" , ").await,
            Err(SourceError::NoEndpoint)
        ));
        assert!(matches!(
            RemoteSource::connect("http://bad host:1").await,
            Err(SourceError::Endpoint { .. })
        ));
    }
}
