//! etcd's wire messages and service stubs, generated from `proto/` by `build.rs`.
//!
//! `bytes` fields are `bytes::Bytes`; field names are prost's snake case of etcd's names
//! (`peerURLs` becomes `peer_ur_ls`, `ID` becomes `id`, as in every Rust etcd client).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Cairn's member-to-member protocol (`proto/cairnpeer/peer.proto`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod cairnpeer {
    tonic::include_proto!("cairnpeer.v1");
}
