//! Consensus: openraft's type configuration, the WAL-backed log store, the MVCC state machine and
//! the peer network (the encoding of raft's messages and the transport seam they travel through).
//! Nothing outside this module and the node imports openraft.

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod transport;
pub mod types;
pub mod wire;
