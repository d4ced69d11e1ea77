//! cairn-bench: criterion benches for the engine internals (`benches/engine`) and `loadgen`, a
//! load generator speaking the etcd v3 gRPC protocol ([`loadgen`]).

pub mod loadgen;
