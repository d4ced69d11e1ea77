//! The client half of the peer protocol: the engine's [`PeerTransport`] over gRPC.
//!
//! One HTTP/2 connection per peer, opened on first use and dropped after a failure, so the next
//! message opens a fresh one: a failure to connect then proves nothing was delivered
//! ([`TransportError::Unreachable`]), which lets the engine retry forwarded requests safely.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cairn_engine::raft::transport::{
    AnswerStream, ByteStream, Envelope, MAX_PEER_MESSAGE_BYTES, PeerRpc, PeerTarget, PeerTransport,
    SNAPSHOT_CHUNK_BYTES, TransportError,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{envelope_to_pb, pb, rpc_to_pb};
use crate::pb::cairnpeer::peer_client::PeerClient;

/// The longest a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Open connections: member id → (the peer URLs connected to, the connection).
type Channels = HashMap<u64, (Vec<String>, Channel)>;

/// gRPC connections to peers, by member id.
#[derive(Clone, Default)]
pub struct GrpcTransport {
    channels: Arc<Mutex<Channels>>,
}

impl GrpcTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn cached(&self, target: &PeerTarget) -> Option<Channel> {
        let channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        channels
            .get(&target.member_id)
            .filter(|(urls, _)| *urls == target.peer_urls)
            .map(|(_, channel)| channel.clone())
    }

    fn forget(&self, target: &PeerTarget) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target.member_id);
    }

    /// A connected channel to `target`, trying its peer URLs in order. (Boxed: a `Send` future
    /// the stream-returning calls below can hold.)
    fn channel(&self, target: &PeerTarget) -> BoxFuture<'static, Result<Channel, TransportError>> {
        let this = self.clone();
        let target = target.clone();
        async move { this.connect(&target).await }.boxed()
    }

    async fn connect(&self, target: &PeerTarget) -> Result<Channel, TransportError> {
        if let Some(channel) = self.cached(target) {
            return Ok(channel);
        }
        let mut last_error = String::from("no peer URLs");
        for url in target.peer_urls.clone() {
            let endpoint = match Endpoint::from_shared(url.clone()) {
                Ok(endpoint) => endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5)),
                Err(err) => {
                    last_error = format!("bad peer URL {url:?}: {err}");
                    continue;
                }
            };
            match endpoint.connect().await {
                Ok(channel) => {
                    // Probes (member id 0) are one-off: do not keep their connection.
                    if target.member_id != 0 {
                        self.channels
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(
                                target.member_id,
                                (target.peer_urls.clone(), channel.clone()),
                            );
                    }
                    return Ok(channel);
                }
                Err(err) => last_error = format!("{url}: {err}"),
            }
        }
        Err(TransportError::Unreachable {
            member: target.member_id,
            reason: last_error,
        })
    }

    /// A call's answer if it comes within `timeout`; failures as transport errors.
    async fn answer_within(
        &self,
        target: &PeerTarget,
        timeout: Duration,
        call: impl Future<Output = Result<tonic::Response<pb::PeerAnswer>, Status>>,
    ) -> Result<Bytes, TransportError> {
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => Ok(answer.into_inner().payload),
            Ok(Err(status)) => Err(self.failure(target, &status)),
            Err(_) => {
                self.forget(target);
                Err(TransportError::Timeout {
                    member: target.member_id,
                    timeout,
                })
            }
        }
    }

    fn client(channel: Channel) -> PeerClient<Channel> {
        PeerClient::new(channel)
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES)
    }

    /// A gRPC failure as a transport error; the connection is dropped unless the peer answered.
    fn failure(&self, target: &PeerTarget, status: &Status) -> TransportError {
        let member = target.member_id;
        match status.code() {
            Code::FailedPrecondition | Code::InvalidArgument => TransportError::Rejected {
                member,
                reason: status.message().to_string(),
            },
            Code::PermissionDenied => TransportError::Removed { member },
            // A cached connection that had to reconnect and could not: nothing was sent.
            Code::Unavailable if never_connected(status) => {
                self.forget(target);
                TransportError::Unreachable {
                    member,
                    reason: status.message().to_string(),
                }
            }
            Code::DeadlineExceeded => {
                self.forget(target);
                TransportError::Timeout {
                    member,
                    timeout: Duration::ZERO,
                }
            }
            _ => {
                self.forget(target);
                TransportError::Failed {
                    member,
                    reason: format!("{:?}: {}", status.code(), status.message()),
                }
            }
        }
    }
}

/// Whether a failed call never reached the peer: connecting failed (connection refused, host
/// unreachable, connect timeout), as opposed to a connection lost while a call was in flight.
fn never_connected(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            );
        }
        source = err.source();
    }
    // tonic reports a failed (re)connect of a cached channel this way.
    status.message().contains("tcp connect error")
}

/// Reads `data` in chunks on a blocking thread; the first chunk also carries envelope and meta.
fn snapshot_chunks(
    envelope: Envelope,
    meta: Bytes,
    mut data: File,
) -> ReceiverStream<pb::SnapshotChunk> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut first = Some((envelope_to_pb(envelope), meta));
        let mut buf = vec![0u8; SNAPSHOT_CHUNK_BYTES];
        loop {
            let read = match data.read(&mut buf) {
                Ok(read) => read,
                Err(err) => {
                    // Ending the stream early fails the transfer on the receiving side.
                    tracing::warn!(%err, "reading a snapshot to send");
                    return;
                }
            };
            let (envelope, meta) = match first.take() {
                Some((envelope, meta)) => (Some(envelope), meta),
                None if read == 0 => return,
                None => (None, Bytes::new()),
            };
            let chunk = pb::SnapshotChunk {
                envelope,
                meta,
                data: Bytes::copy_from_slice(&buf[..read]),
            };
            if tx.blocking_send(chunk).is_err() || read == 0 {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Pumps `messages` into a channel: tonic's request body must be `Sync`, the engine's stream
/// need not be. The pump ends with the stream or when the call is dropped.
fn sync_stream(
    mut messages: futures::stream::BoxStream<'static, pb::PeerMessage>,
) -> ReceiverStream<pb::PeerMessage> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}

impl PeerTransport for GrpcTransport {
    fn unary(
        &self,
        target: &PeerTarget,
        rpc: PeerRpc,
        envelope: Envelope,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let this = self.clone();
        let target = target.clone();
        async move {
            let channel = this.channel(&target).await?;
            let mut request = tonic::Request::new(pb::PeerMessage {
                envelope: Some(envelope_to_pb(envelope)),
                rpc: rpc_to_pb(rpc).into(),
                payload,
            });
            request.set_timeout(timeout);
            let call = async move { Self::client(channel).unary(request).await };
            this.answer_within(&target, timeout, call).await
        }
        .boxed()
    }

    fn append_stream(
        &self,
        target: &PeerTarget,
        envelope: Envelope,
        requests: ByteStream,
    ) -> BoxFuture<'static, Result<AnswerStream, TransportError>> {
        let this = self.clone();
        let target = target.clone();
        async move {
            let channel = this.channel(&target).await?;
            let envelope = envelope_to_pb(envelope);
            let messages: futures::stream::BoxStream<'static, pb::PeerMessage> = requests
                .map(move |payload| pb::PeerMessage {
                    envelope: Some(envelope),
                    rpc: pb::Rpc::AppendEntries.into(),
                    payload,
                })
                .boxed();
            let mut client = Self::client(channel);
            let answers = match client.append_stream(sync_stream(messages)).await {
                Ok(answers) => answers.into_inner(),
                Err(status) => return Err(this.failure(&target, &status)),
            };
            let answers = answers.map(move |answer| {
                answer
                    .map(|answer| answer.payload)
                    .map_err(|status| this.failure(&target, &status))
            });
            Ok(answers.boxed())
        }
        .boxed()
    }

    fn snapshot(
        &self,
        target: &PeerTarget,
        envelope: Envelope,
        meta: Bytes,
        data: File,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let this = self.clone();
        let target = target.clone();
        async move {
            let channel = this.channel(&target).await?;
            let chunks = snapshot_chunks(envelope, meta, data);
            let call = async move { Self::client(channel).snapshot(chunks).await };
            this.answer_within(&target, timeout, call).await
        }
        .boxed()
    }
}
