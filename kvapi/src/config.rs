//! What the API layer is configured with; the binary fills it from etcd-named flags.

use std::time::Duration;

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// gRPC framing allowance etcd adds on top of `--max-request-bytes` (`grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's default `--quota-backend-bytes` (2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest proposal accepted (`--max-request-bytes`); gRPC messages may be 512 KiB larger.
    pub max_request_bytes: usize,
    /// Most ops in one list of a txn (`--max-txn-ops`).
    pub max_txn_ops: usize,
    /// Period of watch progress notifications (`--experimental-watch-progress-notify-interval`).
    /// The watch hub's background task sends them; whoever spawns that task (the node) should
    /// be given this value. `serve` does not spawn it.
    pub progress_notify_interval: Duration,
    /// The server version reported by Status and `/version` (an etcd 3.6-class version).
    pub version: String,
    /// The cluster version reported by `/version`.
    pub cluster_version: String,
    /// The storage version reported by Status and in snapshot responses.
    pub storage_version: String,
    /// `--quota-backend-bytes`, reported as Status.dbSizeQuota.
    pub quota_backend_bytes: u64,
    /// How long a stream opened with `hasleader=true` survives without a leader before it is
    /// cancelled with "etcdserver: no leader" (etcd: three election timeouts).
    pub no_leader_stream_timeout: Duration,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            progress_notify_interval: Duration::from_secs(10 * 60),
            version: "3.6.5".to_owned(),
            cluster_version: "3.6.0".to_owned(),
            storage_version: "3.6.0".to_owned(),
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            no_leader_stream_timeout: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ApiConfig {
    /// The largest gRPC message the server decodes, as etcd sizes it.
    pub fn max_recv_message_bytes(&self) -> usize {
        self.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES)
    }
}
