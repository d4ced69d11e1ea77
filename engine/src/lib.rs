//! cairn-engine: the product core of Cairn.
//!
//! ```text
//!  Node::propose ─► raft (openraft) ─► WalLogStore (wal/) ─► commit
//!                                                             │
//!        MvccStateMachine (raft/state_machine) ◄──────────────┘
//!          │ one redb write txn per applied batch (mvcc/)
//!          ├─► WatchHub::publish (watch/)     events to watchers
//!          └─► Lessor (lease/)                grants / revokes
//!  Node::range ─► read index (linearizable) or local (serializable) ─► mvcc read txn
//! ```
//!
//! The engine knows nothing about gRPC or HTTP: `cairn-kvapi` converts etcd's wire messages into
//! the requests of [`request`] and calls [`node::Node`].

pub mod error;
pub mod history;
pub mod kv;
pub mod lease;
pub mod mvcc;
pub mod node;
pub mod raft;
pub mod request;
pub mod revision;
pub mod wal;
pub mod watch;

pub use error::{KvError, KvResult};
pub use kv::{Event, EventKind, KeyValue};
pub use revision::{LeaseId, MemberId, Revision};
