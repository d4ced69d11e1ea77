//! Compiles etcd's v3 protos, Cairn's peer protocol and Cairn's history service (proto/) with
//! protox (no system protoc) into tonic services.
//!
//! Every `bytes` field becomes `bytes::Bytes`, so keys and values move between the wire and the
//! engine by reference count, not by copy.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 5] = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/cairnpeer/peer.proto",
        "proto/cairnhistory/v1/history.proto",
    ];
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
