//! The byte-level seam between raft and the wire.
//!
//! The engine encodes every peer message itself (postcard over openraft's serde types) and hands
//! the bytes to a [`PeerTransport`]; the transport only moves bytes between members. The `cairn`
//! binary plugs in a gRPC transport (kvapi's peer service on `--listen-peer-urls`); tests plug in
//! an in-process network that can partition, drop and delay messages. Both drive the same
//! encoding and the same receiving code ([`crate::PeerService`]).
//!
//! ```text
//!  raft ─► PeerClient (encode) ─► PeerTransport ══ wire ══► PeerService (check envelope, decode)
//!                                                             └─► raft / leader-side node calls
//! ```

use std::fmt;
use std::fs::File;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

/// Who a message is for: the member id and the peer URLs it was last known at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerTarget {
    pub member_id: u64,
    pub peer_urls: Vec<String>,
}

/// Carried with every peer message. A member refuses messages for another cluster or for another
/// member (a reused peer URL), so a misconfigured member can never corrupt a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender's cluster id; 0 only on a [`PeerRpc::Leader`] `ClusterInfo` probe from a member
    /// that is joining and does not know it yet.
    pub cluster_id: u64,
    pub from: u64,
    /// The member the sender means to reach; 0 when it does not know the id (probes).
    pub to: u64,
}

/// The unary peer calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRpc {
    AppendEntries,
    Vote,
    PreVote,
    TransferLeader,
    /// A client request forwarded to the leader, a read-index request, or a membership probe.
    Leader,
}

impl fmt::Display for PeerRpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PeerRpc::AppendEntries => "append-entries",
            PeerRpc::Vote => "vote",
            PeerRpc::PreVote => "pre-vote",
            PeerRpc::TransferLeader => "transfer-leader",
            PeerRpc::Leader => "leader",
        };
        f.write_str(name)
    }
}

/// Why a message did not get an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made; nothing was delivered.
    #[error("peer {member:016x} unreachable: {reason}")]
    Unreachable { member: u64, reason: String },
    /// The message may or may not have been delivered.
    #[error("peer {member:016x}: {reason}")]
    Failed { member: u64, reason: String },
    #[error("peer {member:016x} did not answer within {timeout:?}")]
    Timeout { member: u64, timeout: Duration },
    /// The peer answered with a refusal (another cluster, another member, a bad message).
    #[error("peer {member:016x} refused the message: {reason}")]
    Rejected { member: u64, reason: String },
    /// The peer knows the sender was removed from the cluster.
    #[error("peer {member:016x}: this member has been removed from the cluster")]
    Removed { member: u64 },
}

/// A stream of encoded messages.
pub type ByteStream = BoxStream<'static, Bytes>;
/// A stream of encoded answers, ending at the first failure.
pub type AnswerStream = BoxStream<'static, Result<Bytes, TransportError>>;

/// Moves encoded peer messages between members. Implementations bound every message size and
/// apply the given timeouts.
pub trait PeerTransport: Send + Sync + 'static {
    /// One request, one answer.
    fn unary(
        &self,
        target: &PeerTarget,
        rpc: PeerRpc,
        envelope: Envelope,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>>;

    /// A stream of append-entries requests answered in order, one answer per request, so the
    /// leader can send the next batch before the previous one is acknowledged (pipelining).
    fn append_stream(
        &self,
        target: &PeerTarget,
        envelope: Envelope,
        requests: ByteStream,
    ) -> BoxFuture<'static, Result<AnswerStream, TransportError>>;

    /// Streams a snapshot: `meta` first, then the file's contents in bounded chunks (the file is
    /// positioned at its start). Never reads the whole file into memory.
    fn snapshot(
        &self,
        target: &PeerTarget,
        envelope: Envelope,
        meta: Bytes,
        data: File,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>>;
}

/// The largest encoded peer message a transport must accept (a full append-entries batch of
/// maximum-size requests, with room to spare). Snapshots are chunked and not bound by it.
pub const MAX_PEER_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The chunk size transports use to stream snapshots.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
