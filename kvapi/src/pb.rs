//! etcd's wire messages, Cairn's peer and history protocols and their service stubs, generated
//! from `proto/` by `build.rs`.
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

/// Cairn's history service (`proto/cairnhistory/v1/history.proto`), nested as its package
/// `cairn.history.v1` so that its references to `etcdserverpb` resolve.
pub mod cairn {
    pub mod history {
        #[allow(clippy::all, clippy::pedantic, missing_docs)]
        pub mod v1 {
            tonic::include_proto!("cairn.history.v1");
        }
    }
}

pub use cairn::history::v1 as history;
