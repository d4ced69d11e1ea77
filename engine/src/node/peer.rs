//! The receiving half of the peer network: checks each message's envelope, decodes it and hands
//! it to raft (or to the leader-side node calls). Transports (kvapi's gRPC peer service, the
//! tests' simulated network) call this; it knows nothing about the wire.

use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncWriteExt;

use super::Node;
use super::leader::{LeaderRequest, LeaderResponse};
use crate::error::KvResult;
use crate::raft::transport::{Envelope, PeerRpc};
use crate::raft::types::{Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::raft::wire;

/// Why a peer message was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The sender belongs to another cluster, or meant another member.
    #[error("{0}")]
    Mismatch(String),
    #[error("malformed peer message: {0}")]
    BadMessage(String),
    #[error("member is stopping")]
    Stopping,
    /// The sender was removed from the cluster (it should stop).
    #[error("member {0:016x} has been removed from the cluster")]
    Removed(u64),
    #[error("snapshot: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves peer messages for one member. Cheap to clone.
#[derive(Clone)]
pub struct PeerService {
    node: Node,
}

impl Node {
    /// The handler the peer transport delivers messages to.
    pub fn peer_service(&self) -> PeerService {
        PeerService { node: self.clone() }
    }
}

fn bad(err: &wire::WireError) -> PeerError {
    PeerError::BadMessage(err.to_string())
}

/// Encodes a raft answer; a fatal raft error travels as its text.
fn answer<T: serde::Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Bytes, PeerError> {
    let result = result.map_err(|err| err.to_string());
    wire::encode(&result).map_err(|e| bad(&e))
}

impl PeerService {
    pub fn member_id(&self) -> u64 {
        self.node.member_id()
    }

    /// Refuses messages from another cluster or meant for another member.
    fn check(&self, envelope: &Envelope, probe: bool) -> Result<(), PeerError> {
        let ours = self.node.inner.cluster_id;
        if envelope.cluster_id != ours && !(probe && envelope.cluster_id == 0) {
            return Err(PeerError::Mismatch(format!(
                "cluster ID mismatch: member {:016x} belongs to cluster {ours:016x}, \
                 the sender {:016x} to cluster {:016x}",
                self.node.inner.member_id, envelope.from, envelope.cluster_id
            )));
        }
        let removed = self
            .node
            .inner
            .removed_peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&envelope.from);
        if removed {
            return Err(PeerError::Removed(envelope.from));
        }
        let me = self.node.inner.member_id;
        if envelope.to != me && !(probe && envelope.to == 0) {
            return Err(PeerError::Mismatch(format!(
                "member ID mismatch: this is member {me:016x}, the message is for {:016x}",
                envelope.to
            )));
        }
        Ok(())
    }

    /// One unary peer message.
    pub async fn unary(
        &self,
        rpc: PeerRpc,
        envelope: Envelope,
        payload: &[u8],
    ) -> Result<Bytes, PeerError> {
        let raft = &self.node.inner.raft;
        match rpc {
            PeerRpc::Leader => {
                let request: LeaderRequest = wire::decode(payload).map_err(|e| bad(&e))?;
                self.check(&envelope, matches!(request, LeaderRequest::ClusterInfo))?;
                let result: KvResult<LeaderResponse> = self.node.serve_as_leader(request).await;
                wire::encode(&result).map_err(|e| bad(&e))
            }
            PeerRpc::AppendEntries => {
                self.check(&envelope, false)?;
                let request = wire::decode(payload).map_err(|e| bad(&e))?;
                answer(raft.append_entries(request).await)
            }
            PeerRpc::Vote => {
                self.check(&envelope, false)?;
                let request = wire::decode(payload).map_err(|e| bad(&e))?;
                answer(raft.vote(request).await)
            }
            PeerRpc::PreVote => {
                self.check(&envelope, false)?;
                let request = wire::decode(payload).map_err(|e| bad(&e))?;
                answer(raft.pre_vote(request).await)
            }
            PeerRpc::TransferLeader => {
                self.check(&envelope, false)?;
                let request = wire::decode(payload).map_err(|e| bad(&e))?;
                answer(raft.handle_transfer_leader(request).await)
            }
        }
    }

    /// A pipelined append-entries stream: one encoded answer per request, in order. The answer
    /// stream ends at the first request that cannot be decoded or when raft stops.
    pub fn append_stream(
        &self,
        envelope: Envelope,
        requests: BoxStream<'static, Bytes>,
    ) -> Result<BoxStream<'static, Result<Bytes, PeerError>>, PeerError> {
        self.check(&envelope, false)?;
        let decoded = requests
            .map(|bytes| wire::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&bytes))
            .take_while(|decoded| {
                if let Err(err) = decoded {
                    tracing::warn!(%err, "dropping an append stream with a malformed request");
                }
                futures::future::ready(decoded.is_ok())
            })
            .filter_map(|decoded| futures::future::ready(decoded.ok()));
        let answers = self.node.inner.raft.stream_append(decoded).map(answer);
        Ok(answers.boxed())
    }

    /// Starts receiving a snapshot: `meta` is the sender's encoded (vote, snapshot meta).
    pub async fn receive_snapshot(
        &self,
        envelope: Envelope,
        meta: &[u8],
    ) -> Result<SnapshotReceiver, PeerError> {
        self.check(&envelope, false)?;
        let (vote, meta): (Vote, SnapshotMeta) = wire::decode(meta).map_err(|e| bad(&e))?;
        let dir = self.node.inner.config.data_dir.join("member").join("snap");
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!(
            "receiving-{:016x}-{}.tmp",
            envelope.from,
            rand::random::<u64>()
        ));
        // Read back by the install, so open for both.
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        tracing::info!(from = %format!("{:016x}", envelope.from),
            last_log_id = ?meta.last_log_id, "receiving a snapshot");
        Ok(SnapshotReceiver {
            node: self.node.clone(),
            vote,
            meta,
            file: Some(file),
            path,
            received: 0,
        })
    }
}

/// A snapshot being received chunk by chunk into a file beside the member's snapshots. Dropped
/// before [`SnapshotReceiver::finish`], it removes its file.
pub struct SnapshotReceiver {
    node: Node,
    vote: Vote,
    meta: SnapshotMeta,
    file: Option<tokio::fs::File>,
    path: PathBuf,
    received: u64,
}

impl SnapshotReceiver {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), PeerError> {
        let file = self.file.as_mut().ok_or(PeerError::Stopping)?;
        file.write_all(chunk).await?;
        self.received += chunk.len() as u64;
        Ok(())
    }

    /// Installs the received snapshot; returns raft's encoded answer for the sender.
    pub async fn finish(mut self) -> Result<Bytes, PeerError> {
        let mut file = self.file.take().ok_or(PeerError::Stopping)?;
        file.flush().await?;
        let mut file = file.into_std().await;
        let path = self.path.clone();
        let file = tokio::task::spawn_blocking(move || {
            file.sync_all()?;
            std::io::Seek::rewind(&mut file)?;
            // Unlinked now: the open handle keeps the data until the install has read it.
            std::fs::remove_file(&path)?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|_| PeerError::Stopping)??;
        tracing::info!(bytes = self.received, last_log_id = ?self.meta.last_log_id,
            "snapshot received; installing");
        let snapshot = Snapshot {
            meta: self.meta.clone(),
            snapshot: file,
        };
        let result = self
            .node
            .inner
            .raft
            .install_full_snapshot(self.vote, snapshot)
            .await;
        answer(result)
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
