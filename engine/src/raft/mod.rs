//! Consensus: openraft's type configuration, the WAL-backed log store, the MVCC state machine and
//! the peer network. Nothing outside this module imports openraft.

pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;
