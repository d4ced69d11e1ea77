//! The peer port: Cairn's member-to-member gRPC service on `--listen-peer-urls`, and the client
//! half that the engine's raft uses to reach other members.
//!
//! ```text
//!  engine raft ─► GrpcTransport (client.rs) ══ cairnpeer.v1.Peer ══► server.rs ─► PeerService
//! ```
//!
//! Messages are opaque bytes encoded by the engine; this module bounds their size, applies
//! timeouts, streams snapshots in chunks and maps gRPC failures to the engine's
//! [`TransportError`](cairn_engine::raft::transport::TransportError).

mod client;
mod server;

pub use client::GrpcTransport;
pub use server::serve_peers;

use cairn_engine::raft::transport::{Envelope, PeerRpc};

use crate::pb::cairnpeer as pb;

fn envelope_to_pb(envelope: Envelope) -> pb::Envelope {
    pb::Envelope {
        cluster_id: envelope.cluster_id,
        from: envelope.from,
        to: envelope.to,
    }
}

fn envelope_from_pb(envelope: Option<&pb::Envelope>) -> Envelope {
    envelope.map_or_else(Envelope::default, |e| Envelope {
        cluster_id: e.cluster_id,
        from: e.from,
        to: e.to,
    })
}

fn rpc_to_pb(rpc: PeerRpc) -> pb::Rpc {
    match rpc {
        PeerRpc::AppendEntries => pb::Rpc::AppendEntries,
        PeerRpc::Vote => pb::Rpc::Vote,
        PeerRpc::PreVote => pb::Rpc::PreVote,
        PeerRpc::TransferLeader => pb::Rpc::TransferLeader,
        PeerRpc::Leader => pb::Rpc::Leader,
    }
}

fn rpc_from_pb(rpc: pb::Rpc) -> PeerRpc {
    match rpc {
        pb::Rpc::AppendEntries => PeerRpc::AppendEntries,
        pb::Rpc::Vote => PeerRpc::Vote,
        pb::Rpc::PreVote => PeerRpc::PreVote,
        pb::Rpc::TransferLeader => PeerRpc::TransferLeader,
        pb::Rpc::Leader => PeerRpc::Leader,
    }
}
