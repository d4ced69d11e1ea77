//! The node: one member of a Cairn cluster, the engine API that kvapi calls.
//!
//! STATUS: API skeleton while the engine modules land; the lead swaps in the implementation
//! (engine/src/node_wip/, not compiled yet). Signatures here are the contract.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::KvResult;
use crate::request::{
    AlarmAction, AlarmMember, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};


/// etcd's `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    #[default]
    New,
    Existing,
}

/// Everything a node needs to start; the binary fills it from etcd-named flags.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_peer_urls: Vec<String>,
    pub advertise_peer_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    /// `name=peer_url` pairs; empty = this member alone.
    pub initial_cluster: Vec<(String, String)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    /// `--quota-backend-bytes`; 0 = etcd's default of 2 GiB.
    pub quota_backend_bytes: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// Applied entries between raft snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
}

/// etcd's `ResponseHeader`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseHeader {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

/// A cluster member as the Cluster API describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// What Maintenance.Status reports (the version string is kvapi's business).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub header: ResponseHeader,
    pub db_size: i64,
    pub db_size_in_use: i64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub errors: Vec<String>,
    pub is_learner: bool,
}

/// LeaseTimeToLive's answer. `ttl` is the remaining time in seconds, -1 if expired or missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTtl {
    pub id: i64,
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Bytes>,
}

/// HashKV's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HashKvResult {
    pub hash: u32,
    pub compact_revision: i64,
    pub hash_revision: i64,
}

/// Counters and gauges the metrics endpoint exports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeMetrics {
    pub has_leader: bool,
    pub is_leader: bool,
    pub leader_changes_seen: u64,
    pub proposals_committed: u64,
    pub proposals_applied: u64,
    pub proposals_pending: i64,
    pub proposals_failed: u64,
    pub wal_fsync_count: u64,
    pub wal_fsync_seconds_sum: f64,
    pub db_total_size_bytes: i64,
    pub db_total_size_in_use_bytes: i64,
    pub current_revision: i64,
    pub compact_revision: i64,
    pub watchers: u64,
    pub slow_watchers: u64,
    pub leases: u64,
}

/// A running member. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    _inner: Arc<()>,
}

#[allow(clippy::unused_async)]
impl Node {
    pub async fn start(config: NodeConfig) -> Result<Node, crate::error::KvError> { let _ = config; todo!() }
    pub async fn shutdown(&self) { todo!() }
    pub fn member_id(&self) -> u64 { todo!() }
    pub fn cluster_id(&self) -> u64 { todo!() }
    /// A header carrying the current revision and term.
    pub fn header(&self) -> ResponseHeader { todo!() }
    /// Linearizable unless `req.serializable`.
    pub async fn range(&self, req: RangeRequest) -> KvResult<(RangeResponse, ResponseHeader)> { let _ = req; todo!() }
    pub async fn put(&self, req: PutRequest) -> KvResult<(PutResponse, ResponseHeader)> { let _ = req; todo!() }
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> KvResult<(DeleteRangeResponse, ResponseHeader)> { let _ = req; todo!() }
    pub async fn txn(&self, req: TxnRequest) -> KvResult<(TxnResponse, ResponseHeader)> { let _ = req; todo!() }
    /// Compacts history before `revision`; returns once compaction is applied (always physical).
    pub async fn compact(&self, revision: i64) -> KvResult<ResponseHeader> { let _ = revision; todo!() }
    /// `id == 0` lets the server choose. Returns (id, ttl actually granted).
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> KvResult<(i64, i64, ResponseHeader)> { let _ = (id, ttl); todo!() }
    pub async fn lease_revoke(&self, id: i64) -> KvResult<ResponseHeader> { let _ = id; todo!() }
    /// Renews a lease; returns the new TTL (LeaseNotFound if it does not exist).
    pub async fn lease_keep_alive(&self, id: i64) -> KvResult<(i64, ResponseHeader)> { let _ = id; todo!() }
    pub async fn lease_time_to_live(&self, id: i64, keys: bool) -> KvResult<(LeaseTtl, ResponseHeader)> { let _ = (id, keys); todo!() }
    pub async fn lease_leases(&self) -> KvResult<(Vec<i64>, ResponseHeader)> { todo!() }
    pub async fn alarm(&self, action: AlarmAction, alarm: Option<AlarmMember>) -> KvResult<(Vec<AlarmMember>, ResponseHeader)> { let _ = (action, alarm); todo!() }
    pub async fn status(&self) -> KvResult<NodeStatus> { todo!() }
    pub async fn hash(&self) -> KvResult<(u32, ResponseHeader)> { todo!() }
    pub async fn hash_kv(&self, revision: i64) -> KvResult<(HashKvResult, ResponseHeader)> { let _ = revision; todo!() }
    pub async fn defragment(&self) -> KvResult<ResponseHeader> { todo!() }
    /// A consistent snapshot of the whole store as a stream of chunks, plus its total size.
    pub async fn snapshot(&self) -> KvResult<(u64, tokio::sync::mpsc::Receiver<KvResult<Bytes>>, ResponseHeader)> { todo!() }
    pub fn members(&self) -> Vec<Member> { todo!() }
    pub async fn move_leader(&self, target: u64) -> KvResult<ResponseHeader> { let _ = target; todo!() }
    pub fn watch_hub(&self) -> &Arc<crate::watch::WatchHub> { todo!() }
    /// Current leader id (None while there is none); `changed()` wakes on leader changes.
    pub fn leader_watch(&self) -> tokio::sync::watch::Receiver<Option<u64>> { todo!() }
    pub fn metrics(&self) -> NodeMetrics { todo!() }
}
