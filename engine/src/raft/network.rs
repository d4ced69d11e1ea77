//! The sending half of the peer network: raft's messages to one member, encoded and handed to a
//! [`PeerTransport`].
//!
//! Append-entries go over one ordered stream per peer, so the leader keeps several batches in
//! flight (pipelining) instead of waiting for each acknowledgement. A batch larger than
//! [`APPEND_BUDGET_BYTES`] is cut short and answered as a partial success; raft sends the rest in
//! the next request, so no peer message grows with the size of the backlog.

use std::fs::File;
use std::future::Future;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tokio::sync::watch;

use crate::raft::transport::{Envelope, PeerRpc, PeerTarget, PeerTransport, TransportError};
use crate::raft::types::{MemberNode, Snapshot, TypeConfig, Vote};
use crate::raft::wire;

/// Entries in one append message are cut at this many encoded bytes (at least one entry is
/// always sent; one entry is bounded by the request size limit).
pub const APPEND_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Creates peer clients over a transport.
#[derive(Clone)]
pub struct PeerNetwork {
    transport: Arc<dyn PeerTransport>,
    cluster_id: u64,
    member_id: u64,
    removed: Arc<watch::Sender<bool>>,
}

impl PeerNetwork {
    /// `removed` is set when a peer answers that this member was removed from the cluster.
    pub fn new(
        transport: Arc<dyn PeerTransport>,
        cluster_id: u64,
        member_id: u64,
        removed: Arc<watch::Sender<bool>>,
    ) -> Self {
        Self {
            transport,
            cluster_id,
            member_id,
            removed,
        }
    }
}

/// A client for one peer.
#[derive(Clone)]
pub struct PeerClient {
    transport: Arc<dyn PeerTransport>,
    target: PeerTarget,
    envelope: Envelope,
    removed: Arc<watch::Sender<bool>>,
    /// Consecutive failures to open the append stream: raft reopens it at once after a failure,
    /// so the client waits out a growing pause first (a down peer is not dialled in a loop).
    open_failures: u32,
}

/// The pause before reporting the `failures`-th consecutive failure to open an append stream.
fn reopen_backoff(failures: u32) -> std::time::Duration {
    std::time::Duration::from_millis(25u64 << failures.min(5))
}

/// Records a peer's "you were removed" answer; passes every error on.
fn note_removal(removed: &watch::Sender<bool>, err: TransportError) -> TransportError {
    if let TransportError::Removed { member } = &err {
        if !*removed.borrow() {
            tracing::warn!(peer = %format!("{member:016x}"), "a peer says this member was removed");
        }
        removed.send_replace(true);
    }
    err
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> Self::Network {
        PeerClient {
            transport: Arc::clone(&self.transport),
            target: PeerTarget {
                member_id: target,
                peer_urls: node.peer_urls.clone(),
            },
            envelope: Envelope {
                cluster_id: self.cluster_id,
                from: self.member_id,
                to: target,
            },
            removed: Arc::clone(&self.removed),
            open_failures: 0,
        }
    }
}

/// A transport failure as raft's RPC error: unreachable peers are backed off, the rest retried.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(rpc_error)`
fn rpc_error(err: TransportError) -> RPCError<TypeConfig> {
    match err {
        TransportError::Unreachable { .. }
        | TransportError::Rejected { .. }
        | TransportError::Removed { .. } => RPCError::Unreachable(Unreachable::new(&err)),
        TransportError::Failed { .. } | TransportError::Timeout { .. } => {
            RPCError::Network(NetworkError::new(&err))
        }
    }
}

fn streaming_error(err: TransportError) -> StreamingError<TypeConfig> {
    match rpc_error(err) {
        RPCError::Unreachable(e) => StreamingError::Unreachable(e),
        RPCError::Network(e) => StreamingError::Network(e),
        RPCError::Timeout(e) => StreamingError::Timeout(e),
        RPCError::RemoteError(e) => StreamingError::Network(NetworkError::new(&e)),
    }
}

fn decode_error(err: &wire::WireError) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(err))
}

/// Cuts `req` to the entries that fit in [`APPEND_BUDGET_BYTES`]; returns whether it was cut.
fn trim_to_budget(req: &mut AppendEntriesRequest<TypeConfig>) -> bool {
    let mut total = 0usize;
    let mut keep = 0usize;
    for entry in &req.entries {
        total += wire::encoded_len(entry);
        if keep > 0 && total > APPEND_BUDGET_BYTES {
            break;
        }
        keep += 1;
    }
    if keep < req.entries.len() {
        req.entries.truncate(keep);
        true
    } else {
        false
    }
}

impl PeerClient {
    async fn call<Req, Resp>(
        &self,
        rpc: PeerRpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let payload = wire::encode(request).map_err(|e| decode_error(&e))?;
        let answer = self
            .transport
            .unary(&self.target, rpc, self.envelope, payload, option.soft_ttl())
            .await
            .map_err(|e| rpc_error(note_removal(&self.removed, e)))?;
        let answer: Result<Resp, String> = wire::decode(&answer).map_err(|e| decode_error(&e))?;
        // The peer's raft stopped (a fatal error there): nothing to retry soon.
        answer.map_err(|reason| {
            rpc_error(TransportError::Unreachable {
                member: self.target.member_id,
                reason,
            })
        })
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = File;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let cut = trim_to_budget(&mut rpc);
        let last = rpc.entries.last().map(|entry| entry.log_id);
        let response: AppendEntriesResponse<TypeConfig> =
            self.call(PeerRpc::AppendEntries, &rpc, &option).await?;
        Ok(match response {
            AppendEntriesResponse::Success if cut => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    fn stream_append<S>(
        &mut self,
        input: S,
        // The stream lives as long as replication does; the transport's keep-alives (not a
        // per-call deadline) detect a dead peer.
        _option: RPCOption,
    ) -> BoxFuture<
        '_,
        Result<
            BoxStream<'_, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        async move {
            // A cut request ends the pipeline after its answer (raft resumes from the answer).
            let requests = input
                .map(|mut req| {
                    let cut = trim_to_budget(&mut req);
                    (wire::encode(&req), cut)
                })
                .scan(false, |ended, (encoded, cut)| {
                    let item = if *ended { None } else { Some(encoded) };
                    *ended |= cut;
                    futures::future::ready(item)
                })
                .filter_map(|encoded| {
                    futures::future::ready(match encoded {
                        Ok(bytes) => Some(bytes),
                        Err(err) => {
                            tracing::error!(%err, "encoding an append-entries request");
                            None
                        }
                    })
                })
                .boxed();
            let opened = self
                .transport
                .append_stream(&self.target, self.envelope, requests)
                .await;
            let answers = match opened {
                Ok(answers) => {
                    self.open_failures = 0;
                    answers
                }
                Err(err) => {
                    self.open_failures = self.open_failures.saturating_add(1);
                    tokio::time::sleep(reopen_backoff(self.open_failures)).await;
                    return Err(rpc_error(note_removal(&self.removed, err)));
                }
            };
            let removed = Arc::clone(&self.removed);
            let answers = answers
                .map(move |answer| {
                    let bytes = answer.map_err(|e| rpc_error(note_removal(&removed, e)))?;
                    let decoded: Result<StreamAppendResult<TypeConfig>, String> =
                        wire::decode(&bytes).map_err(|e| decode_error(&e))?;
                    decoded
                        .map_err(|reason| RPCError::Unreachable(Unreachable::from_string(reason)))
                })
                .boxed();
            Ok(answers)
        }
        .boxed()
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(PeerRpc::TransferLeader, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = wire::encode(&(vote, snapshot.meta.clone()))
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let mut data = snapshot.snapshot;
        let data = tokio::task::spawn_blocking(move || {
            std::io::Seek::rewind(&mut data)?;
            Ok::<_, std::io::Error>(data)
        })
        .await
        .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?
        .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let timeout = option.hard_ttl();
        let send = self
            .transport
            .snapshot(&self.target, self.envelope, meta, data, timeout);
        tracing::info!(
            peer = %format!("{:016x}", self.target.member_id),
            last_log_id = ?snapshot.meta.last_log_id,
            "sending a snapshot"
        );
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = send => answer.map_err(|e| streaming_error(note_removal(&self.removed, e)))?,
        };
        let answer: Result<SnapshotResponse<TypeConfig>, String> =
            wire::decode(&answer).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        answer.map_err(|reason| StreamingError::Unreachable(Unreachable::from_string(reason)))
    }
}
