//! The Watch service (etcd `v3rpc/watch.go`): one bidirectional gRPC stream carries many watchers.
//!
//! ```text
//!  client ──WatchRequest──► session task ── create/cancel/progress ──► engine WatchStream
//!         ◄─WatchResponse── (one per gRPC stream) ◄── WatchMessage (bounded channel) ── WatchHub
//! ```
//!
//! One task per gRPC stream both handles the client's requests and forwards the hub's messages,
//! in one sequence. That ordering is the protocol's guarantee: a create request's "created"
//! response is queued before the task looks at the hub's channel again, so it always precedes
//! the watcher's first event, however fast the hub queues them. When the client reads slowly the
//! task waits on the output, stops draining the hub's channel, and the hub moves the stream's
//! watchers to its unsynced group: a slow client never slows the applier or other streams.

mod fragment;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use cairn_engine::watch::{WatchMessage, WatchSpec, WatchStream};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub use fragment::fragments;

use crate::context::Ctx;
use crate::convert;
use crate::leader;
use crate::pb::etcdserverpb::{self as pb, watch_server::Watch};
use crate::status::EtcdError;

/// Responses queued for one gRPC stream before its task waits for the client.
const OUTPUT_BUFFER: usize = 64;
/// etcd's `clientv3.InvalidWatchID`: the id of a watcher that could not be created.
const INVALID_WATCH_ID: i64 = -1;

pub struct WatchService {
    ctx: Ctx,
}

impl WatchService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;
type Output = mpsc::Sender<Result<pb::WatchResponse, Status>>;
/// The node's current response header (revision and term change between calls).
type HeaderFn = Arc<dyn Fn() -> pb::ResponseHeader + Send + Sync>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchResponseStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let wants_leader = leader::requires_leader(request.metadata().as_ref());
        let requests = request.into_inner();
        let (stream, messages) = self.ctx.node.watch_hub().open_stream();
        let (output, rx) = mpsc::channel(OUTPUT_BUFFER);
        let ctx = self.ctx.clone();
        let header: HeaderFn = {
            let ctx = ctx.clone();
            Arc::new(move || ctx.header())
        };
        let session = Session::new(header, stream, output, ctx.config.max_recv_message_bytes());
        let leader_lost = leader::stream_leader_lost(
            wants_leader,
            ctx.node.leader_watch(),
            ctx.config.no_leader_stream_timeout,
        );
        let stopping = async move { ctx.stopping().await };
        tokio::spawn(session.run(requests, messages, leader_lost, stopping));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Per-watcher options that shape responses on the wire.
struct WatcherOptions {
    fragment: bool,
}

/// The client hung up: the session ends.
struct Closed;

/// What woke the session up.
enum Wake {
    Request(Option<Result<pb::WatchRequest, Status>>),
    Message(Option<WatchMessage>),
    Fail(EtcdError),
    ClientGone,
}

struct Session {
    header: HeaderFn,
    /// Dropping it removes every watcher of this gRPC stream from the hub.
    stream: WatchStream,
    output: Output,
    watchers: HashMap<i64, WatcherOptions>,
    fragment_limit: usize,
}

impl Session {
    fn new(header: HeaderFn, stream: WatchStream, output: Output, fragment_limit: usize) -> Self {
        Self {
            header,
            stream,
            output,
            watchers: HashMap::new(),
            fragment_limit,
        }
    }

    /// Serves the stream until the client goes away, the leader is lost (`leader_lost`) or the
    /// server stops (`stopping`); the last two end the call with an error status.
    async fn run(
        mut self,
        mut requests: impl Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
        mut messages: mpsc::Receiver<WatchMessage>,
        leader_lost: impl Future<Output = ()>,
        stopping: impl Future<Output = ()>,
    ) {
        tokio::pin!(leader_lost);
        tokio::pin!(stopping);
        // After the client half-closes, etcd keeps sending events until the call ends.
        let mut requests_open = true;
        loop {
            let wake = tokio::select! {
                request = requests.next(), if requests_open => Wake::Request(request),
                message = messages.recv() => Wake::Message(message),
                () = &mut leader_lost => Wake::Fail(EtcdError::NoLeader),
                () = &mut stopping => Wake::Fail(EtcdError::Stopped),
                () = self.output.closed() => Wake::ClientGone,
            };
            let step = match wake {
                Wake::Request(Some(Ok(request))) => self.handle_request(request).await,
                Wake::Request(Some(Err(status))) => {
                    tracing::debug!(%status, "watch stream receive failed");
                    Err(Closed)
                }
                Wake::Request(None) => {
                    requests_open = false;
                    Ok(())
                }
                Wake::Message(Some(message)) => self.forward(message).await,
                // The hub shut down.
                Wake::Message(None) => self.fail(EtcdError::Stopped).await,
                Wake::Fail(err) => self.fail(err).await,
                Wake::ClientGone => Err(Closed),
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), Closed> {
        self.output.send(Ok(response)).await.map_err(|_| Closed)
    }

    /// Ends the call with an error status.
    async fn fail(&self, err: EtcdError) -> Result<(), Closed> {
        let _ = self.output.send(Err(err.into())).await;
        Err(Closed)
    }

    fn header_at(&self, revision: i64) -> pb::ResponseHeader {
        pb::ResponseHeader {
            revision,
            ..(self.header)()
        }
    }

    async fn handle_request(&mut self, request: pb::WatchRequest) -> Result<(), Closed> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                if self.stream.cancel(cancel.watch_id) {
                    self.watchers.remove(&cancel.watch_id);
                    self.send(pb::WatchResponse {
                        header: Some((self.header)()),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                self.stream.request_progress();
                Ok(())
            }
            // etcd ignores requests it does not understand rather than ending the stream.
            None => Ok(()),
        }
    }

    async fn create(&mut self, create: pb::WatchCreateRequest) -> Result<(), Closed> {
        let mut header = (self.header)();
        let fragment = create.fragment;
        let watch_id = (create.watch_id != 0).then_some(create.watch_id);
        let response = match self.stream.create_at(watch_id, watch_spec(create)) {
            Ok((id, published)) => {
                // The header revision is the last revision published to watchers when this one
                // was registered: every event it gets is newer (etcd's `wsrev`). The store may
                // already be a revision ahead, not yet handed to the hub.
                header.revision = published;
                self.watchers.insert(id, WatcherOptions { fragment });
                pb::WatchResponse {
                    header: Some(header),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                }
            }
            Err(err) => pb::WatchResponse {
                header: Some(header),
                watch_id: INVALID_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: err.to_string(),
                ..Default::default()
            },
        };
        self.send(response).await
    }

    async fn forward(&mut self, message: WatchMessage) -> Result<(), Closed> {
        match message {
            WatchMessage::Events {
                watch_id,
                revision,
                events,
            } => {
                // Messages queued before a cancel are dropped, as etcd does.
                let Some(options) = self.watchers.get(&watch_id) else {
                    return Ok(());
                };
                let response = pb::WatchResponse {
                    header: Some(self.header_at(revision)),
                    watch_id,
                    events: events.into_iter().map(convert::event).collect(),
                    ..Default::default()
                };
                if options.fragment {
                    for part in fragments(response, self.fragment_limit) {
                        self.send(part).await?;
                    }
                    Ok(())
                } else {
                    self.send(response).await
                }
            }
            WatchMessage::Compacted {
                watch_id,
                compact_revision,
            } => {
                if self.watchers.remove(&watch_id).is_none() {
                    return Ok(());
                }
                self.send(pb::WatchResponse {
                    header: Some((self.header)()),
                    watch_id,
                    canceled: true,
                    compact_revision,
                    ..Default::default()
                })
                .await
            }
            WatchMessage::Progress { watch_id, revision } => {
                if watch_id != INVALID_WATCH_ID && !self.watchers.contains_key(&watch_id) {
                    return Ok(());
                }
                self.send(pb::WatchResponse {
                    header: Some(self.header_at(revision)),
                    watch_id,
                    ..Default::default()
                })
                .await
            }
        }
    }
}

/// The engine's view of a create request. An empty key means `"\0"`, the smallest key, as etcd
/// rewrites it; unknown filter values are ignored.
fn watch_spec(create: pb::WatchCreateRequest) -> WatchSpec {
    use pb::watch_create_request::FilterType;
    let mut spec = WatchSpec {
        key: if create.key.is_empty() {
            Bytes::from_static(b"\0")
        } else {
            create.key
        },
        range_end: create.range_end,
        start_revision: create.start_revision,
        prev_kv: create.prev_kv,
        filter_put: false,
        filter_delete: false,
        progress_notify: create.progress_notify,
    };
    for filter in create.filters {
        match FilterType::try_from(filter) {
            Ok(FilterType::Noput) => spec.filter_put = true,
            Ok(FilterType::Nodelete) => spec.filter_delete = true,
            Err(_) => {}
        }
    }
    spec
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn create_requests_map_to_specs() {
        let spec = watch_spec(pb::WatchCreateRequest {
            key: Bytes::from_static(b"/registry/"),
            range_end: Bytes::from_static(b"/registry0"),
            start_revision: 42,
            progress_notify: true,
            filters: vec![1, 0, 9],
            prev_kv: true,
            watch_id: 3,
            fragment: true,
        });
        assert_eq!(
            spec,
            WatchSpec {
                key: Bytes::from_static(b"/registry/"),
                range_end: Bytes::from_static(b"/registry0"),
                start_revision: 42,
                prev_kv: true,
                filter_put: true,
                filter_delete: true,
                progress_notify: true,
            }
        );
    }

    #[test]
    fn empty_key_is_the_smallest_key() {
        let spec = watch_spec(pb::WatchCreateRequest {
            range_end: Bytes::from_static(b"\0"),
            ..Default::default()
        });
        assert_eq!(spec.key, Bytes::from_static(b"\0"));
        assert_eq!(spec.range_end, Bytes::from_static(b"\0"));
        assert!(!spec.filter_put && !spec.filter_delete);
    }
}
