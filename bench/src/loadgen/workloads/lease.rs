//! `lease-keepalive`: each client grants a lease, then sends keep-alives for it on its own
//! `LeaseKeepAlive` stream, one at a time, each request answered before the next.

use std::time::Duration;

use anyhow::Context;
use cairn_kvapi::pb::etcdserverpb::lease_client::LeaseClient;
use cairn_kvapi::pb::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::loadgen::cli::LeaseArgs;
use crate::loadgen::connect;
use crate::loadgen::report::Report;
use crate::loadgen::runner::{CallFuture, Client};

const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

struct KeepAliveClient {
    id: i64,
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
}

impl KeepAliveClient {
    async fn keep_alive(&mut self) -> Result<(), tonic::Status> {
        let request = LeaseKeepAliveRequest { id: self.id };
        if self.requests.send(request).await.is_err() {
            return Err(tonic::Status::unavailable("keep-alive stream closed"));
        }
        match self.responses.message().await? {
            Some(response) if response.ttl > 0 => Ok(()),
            Some(_) => Err(tonic::Status::not_found("lease expired or revoked")),
            None => Err(tonic::Status::unavailable("keep-alive stream ended")),
        }
    }
}

impl Client for KeepAliveClient {
    fn call(&mut self, _seq: u64) -> (&'static str, CallFuture<'_>) {
        ("keepalive", Box::pin(self.keep_alive()))
    }
}

pub async fn run(args: &LeaseArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let channels = connect::connect(&common.endpoints, common.conns).await?;
    let mut clients: Vec<Box<dyn super::Client>> = Vec::new();
    let mut leases = Vec::new();
    for i in 0..common.clients.max(1) {
        let channel = channels[i % channels.len()].clone();
        let mut lease = LeaseClient::new(channel);
        let granted = lease
            .lease_grant(LeaseGrantRequest {
                ttl: args.ttl,
                id: 0,
            })
            .await
            .context("granting a lease failed")?
            .into_inner();
        // The first keep-alive is queued before the call starts: a grpc-go server (etcd) sends
        // the response headers, which `lease_keep_alive()` waits for, only with its first
        // message. Its answer is part of the setup, not measured.
        let (requests, rx) = mpsc::channel(1);
        requests
            .send(LeaseKeepAliveRequest { id: granted.id })
            .await
            .context("the keep-alive channel closed")?;
        let open = async {
            let mut responses = lease
                .lease_keep_alive(ReceiverStream::new(rx))
                .await
                .context("opening a keep-alive stream failed")?
                .into_inner();
            responses
                .message()
                .await?
                .context("the keep-alive stream ended at once")?;
            anyhow::Ok(responses)
        };
        let responses = tokio::time::timeout(SETUP_TIMEOUT, open)
            .await
            .context("opening a keep-alive stream timed out")??;
        leases.push((lease, granted.id));
        clients.push(Box::new(KeepAliveClient {
            id: granted.id,
            requests,
            responses,
        }));
    }
    let (report, _) = super::run_clients("lease-keepalive", common, clients).await?;
    for (mut lease, id) in leases {
        // Cleanup only: a lease left behind expires after its TTL anyway.
        let _ = lease.lease_revoke(LeaseRevokeRequest { id }).await;
    }
    Ok(report)
}
