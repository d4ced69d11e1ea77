//! The openraft type configuration: what a Cairn raft log entry carries and how members are named.

use serde::{Deserialize, Serialize};

use crate::error::KvError;
use crate::request::{CommandResponse, Proposal};

/// What the raft layer knows about a member: its name and URLs, as etcd's `Member`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// The result of applying one log entry, handed back to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The store revision after the entry was applied.
    pub revision: i64,
    pub result: Result<CommandResponse, KvError>,
}

openraft::declare_raft_types!(
    /// Cairn's raft types: log entries carry a [`Proposal`]; node ids are etcd member ids.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = u64,
        Node = MemberNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>,
        Vote = openraft::impls::Vote<openraft::impls::leader_id_adv::LeaderId<u64, u64>>,
        Entry = openraft::Entry<openraft::impls::leader_id_adv::LeaderId<u64, u64>, openraft::EntryPayload<Proposal, u64, MemberNode>>,
        AsyncRuntime = openraft::impls::TokioRuntime,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, std::fs::File>;
pub type Membership = openraft::Membership<u64, MemberNode>;
pub type Raft = openraft::Raft<TypeConfig, crate::raft::state_machine::MvccStateMachine>;
