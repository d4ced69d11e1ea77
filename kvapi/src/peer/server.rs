//! The peer gRPC service: hands each message to the engine's [`PeerService`].

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use cairn_engine::node::{PeerError, PeerService};
use cairn_engine::raft::transport::MAX_PEER_MESSAGE_BYTES;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use super::{envelope_from_pb, pb, rpc_from_pb};
use crate::pb::cairnpeer::peer_server::{Peer, PeerServer};

struct PeerGrpc {
    service: PeerService,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(status)`
fn status(err: PeerError) -> Status {
    match &err {
        PeerError::Mismatch(reason) => Status::failed_precondition(reason),
        PeerError::BadMessage(reason) => Status::invalid_argument(reason),
        PeerError::Stopping => Status::unavailable("member is stopping"),
        PeerError::Removed(_) => Status::permission_denied(err.to_string()),
        PeerError::Io(err) => Status::internal(err.to_string()),
    }
}

type AnswerStream = Pin<Box<dyn Stream<Item = Result<pb::PeerAnswer, Status>> + Send>>;

#[tonic::async_trait]
impl Peer for PeerGrpc {
    async fn unary(
        &self,
        request: Request<pb::PeerMessage>,
    ) -> Result<Response<pb::PeerAnswer>, Status> {
        let message = request.into_inner();
        let rpc = pb::Rpc::try_from(message.rpc)
            .map_err(|_| Status::invalid_argument(format!("unknown peer rpc {}", message.rpc)))?;
        let envelope = envelope_from_pb(message.envelope.as_ref());
        let payload = self
            .service
            .unary(rpc_from_pb(rpc), envelope, &message.payload)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::PeerAnswer { payload }))
    }

    type AppendStreamStream = AnswerStream;

    async fn append_stream(
        &self,
        request: Request<Streaming<pb::PeerMessage>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let mut incoming = request.into_inner();
        let Some(first) = incoming.message().await? else {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        };
        let envelope = envelope_from_pb(first.envelope.as_ref());
        let rest = incoming
            .take_while(|message| {
                if let Err(err) = message {
                    tracing::debug!(%err, "append stream from a peer ended");
                }
                futures::future::ready(message.is_ok())
            })
            .filter_map(|message| futures::future::ready(message.ok().map(|m| m.payload)));
        let requests = futures::stream::once(futures::future::ready(first.payload))
            .chain(rest)
            .boxed();
        let answers = self
            .service
            .append_stream(envelope, requests)
            .map_err(status)?
            .map(|answer| {
                answer
                    .map(|payload| pb::PeerAnswer { payload })
                    .map_err(status)
            });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::PeerAnswer>, Status> {
        let mut chunks = request.into_inner();
        let Some(first) = chunks.message().await? else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        let envelope = envelope_from_pb(first.envelope.as_ref());
        let mut receiver = self
            .service
            .receive_snapshot(envelope, &first.meta)
            .await
            .map_err(status)?;
        receiver.write(&first.data).await.map_err(status)?;
        while let Some(chunk) = chunks.message().await? {
            receiver.write(&chunk.data).await.map_err(status)?;
        }
        let payload: Bytes = receiver.finish().await.map_err(status)?;
        Ok(Response::new(pb::PeerAnswer { payload }))
    }
}

/// Serves the peer protocol on `listener` until `shutdown` completes.
pub async fn serve_peers(
    service: PeerService,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let server = PeerServer::new(PeerGrpc { service })
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    // tonic's `tcp_nodelay` does not apply to an incoming stream: set it on each accepted
    // socket, or small raft answers wait for the peer's delayed ACK (~40 ms).
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(socket) = &accepted
            && let Err(err) = socket.set_nodelay(true)
        {
            tracing::warn!(%err, "cannot set TCP_NODELAY on a peer connection");
        }
        accepted
    });
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
