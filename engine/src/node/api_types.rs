//! The plain data types of the node API: configuration, headers, members, status answers.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

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
    /// Entries kept in the log behind a snapshot for slow followers to catch up from, before
    /// they need the snapshot itself (etcd's `--experimental-snapshot-catchup-entries`: 5000).
    pub snapshot_catchup_entries: u64,
    /// Period of watch progress notifications (etcd: 10 minutes).
    pub watch_progress_notify_interval: Duration,
    /// Make this member the only member of its cluster, keeping its data (`--force-new-cluster`).
    pub force_new_cluster: bool,
    /// Record every revision in the jj history (`--history`, on by default).
    pub history: bool,
    /// How much history to keep (`--history-retention`; default: everything).
    pub history_retention: crate::history::Retention,
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

/// `LeaseTimeToLive`'s answer. `ttl` is the remaining time in seconds, -1 if expired or missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTtl {
    pub id: i64,
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Bytes>,
}

/// `HashKV`'s answer.
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
    /// Newest revision recorded in history (0 when history is off).
    pub history_head_revision: i64,
    /// Revisions applied but not yet recorded in history.
    pub history_lag_revisions: i64,
}
