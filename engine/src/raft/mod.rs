//! Consensus: openraft's type configuration, the WAL-backed log store, the MVCC state machine and
//! the peer network. Nothing outside this module imports openraft.

pub mod network;
pub mod types;
