//! The null server: etcd's KV service answering every call at once with an empty response.
//!
//! It does what every server must do for a request (accept the connection, HTTP/2 framing,
//! protobuf decoding and encoding, tonic's dispatch) and nothing else, so its throughput on a
//! machine is the ceiling any gRPC server built the same way can reach there.

use std::future::Future;

use anyhow::Context;
use cairn_kvapi::pb::etcdserverpb::kv_server::{Kv, KvServer};
use cairn_kvapi::pb::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The do-nothing KV service.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullKv;

/// An empty header: clients (etcd's included) expect one in every response.
fn header() -> ResponseHeader {
    ResponseHeader::default()
}

#[tonic::async_trait]
impl Kv for NullKv {
    async fn range(
        &self,
        _request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        Ok(Response::new(RangeResponse {
            header: Some(header()),
            ..RangeResponse::default()
        }))
    }

    async fn put(&self, _request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Ok(Response::new(PutResponse {
            header: Some(header()),
            ..PutResponse::default()
        }))
    }

    async fn delete_range(
        &self,
        _request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Ok(Response::new(DeleteRangeResponse {
            header: Some(header()),
            ..DeleteRangeResponse::default()
        }))
    }

    async fn txn(&self, _request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        Ok(Response::new(TxnResponse {
            header: Some(header()),
            succeeded: true,
            ..TxnResponse::default()
        }))
    }

    async fn compact(
        &self,
        _request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(CompactionResponse {
            header: Some(header()),
        }))
    }
}

/// Serves [`NullKv`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Small responses must not wait for Nagle, as on the real servers.
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        accepted.and_then(|stream| {
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    });
    tonic::transport::Server::builder()
        .add_service(KvServer::new(NullKv))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("the null server failed")
}
