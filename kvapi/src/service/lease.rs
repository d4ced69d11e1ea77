//! The Lease service (etcd `v3rpc/lease.go`): grant, revoke, keep-alive streams, time-to-live
//! and listing.

use std::pin::Pin;

use cairn_engine::KvError;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::context::Ctx;
use crate::convert;
use crate::leader;
use crate::pb::etcdserverpb::{self as pb, lease_server::Lease};
use crate::status::{EtcdError, kv_error};

/// Responses in flight per keep-alive stream before the stream stops reading requests.
const KEEP_ALIVE_BUFFER: usize = 16;

pub struct LeaseService {
    ctx: Ctx,
}

impl LeaseService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = request.into_inner();
        let (id, ttl, header) = self
            .ctx
            .node
            .lease_grant(r.id, r.ttl)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(convert::header(header)),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let header = self
            .ctx
            .node
            .lease_revoke(request.into_inner().id)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(convert::header(header)),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    /// Each request is answered with its lease id and the renewed TTL; a lease that does not
    /// exist answers TTL 0 (as etcd), any other error ends the stream.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let wants_leader = leader::requires_leader(request.metadata().as_ref());
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let leader_lost = leader::stream_leader_lost(
                wants_leader,
                ctx.node.leader_watch(),
                ctx.config.no_leader_stream_timeout,
            );
            tokio::pin!(leader_lost);
            loop {
                let next = tokio::select! {
                    next = requests.next() => next,
                    () = &mut leader_lost => {
                        let _ = tx.send(Err(EtcdError::NoLeader.into())).await;
                        return;
                    }
                    () = ctx.stopping() => {
                        let _ = tx.send(Err(EtcdError::Stopped.into())).await;
                        return;
                    }
                    () = tx.closed() => return,
                };
                let id = match next {
                    Some(Ok(r)) => r.id,
                    // The client finished or the transport failed: nothing to answer.
                    Some(Err(_)) | None => return,
                };
                // The header is taken before the renewal, as etcd does, so its revision is never
                // newer than the moment the lease was known alive.
                let header = ctx.header();
                let reply = match ctx.node.lease_keep_alive(id).await {
                    Ok((ttl, _)) => Ok(keep_alive_response(header, id, ttl)),
                    Err(KvError::LeaseNotFound) => Ok(keep_alive_response(header, id, 0)),
                    Err(err) => Err(kv_error(err)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// A lease that does not exist answers TTL -1 (as etcd), not an error.
    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        match self.ctx.node.lease_time_to_live(r.id, r.keys).await {
            Ok((ttl, header)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(convert::header(header)),
                id: ttl.id,
                ttl: ttl.ttl,
                granted_ttl: ttl.granted_ttl,
                keys: ttl.keys,
            })),
            Err(KvError::LeaseNotFound) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(self.ctx.header()),
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            })),
            Err(err) => Err(kv_error(err)),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let (ids, header) = self.ctx.node.lease_leases().await.map_err(kv_error)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(convert::header(header)),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}

fn keep_alive_response(
    header: pb::ResponseHeader,
    id: i64,
    ttl: i64,
) -> pb::LeaseKeepAliveResponse {
    pb::LeaseKeepAliveResponse {
        header: Some(header),
        id,
        ttl,
    }
}
