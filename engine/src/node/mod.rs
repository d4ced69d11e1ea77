//! The node: one member of a Cairn cluster, the engine API that kvapi calls.
//!
//! ```text
//!  kvapi ──► Node::put/txn/… ──► raft client_write ──► WAL ──► commit ──► MvccStateMachine
//!                                                                         └─► Applied ──► answer
//!        ──► Node::range ──► ReadIndex round (unless serializable) ──► MvccStore::range
//!        ──► Node::watch_hub() ──► WatchHub streams
//!  tasks: leader tracking (lessor promote/demote, leader watch), lease expiry (propose revokes)
//! ```
//!
//! A single member is a one-member raft cluster; every write takes the same path it will take in
//! a multi-member cluster. Storage (redb) calls run on the blocking pool, never on async workers.

mod api_types;
mod bootstrap;
mod errors;
mod identity;
mod leader;
mod observer;
mod peer;
mod read_index;
mod recovery;
mod restore;

pub use restore::RestoreError;
mod tasks;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver as _;
use tokio::sync::{mpsc, watch};

pub use api_types::{
    ClusterState, HashKvResult, LeaseTtl, Member, NodeConfig, NodeMetrics, NodeStatus,
    ResponseHeader,
};
pub use identity::IdentityError;
pub use peer::{PeerError, PeerService, SnapshotReceiver};

use crate::error::{KvError, KvResult};
use crate::lease::{Lessor, MAX_LEASE_TTL, SystemClock};
use crate::mvcc::{MvccOptions, MvccStore};
use crate::raft::log_store::WalLogStore;
use crate::raft::network::PeerNetwork;
use crate::raft::state_machine::{MvccStateMachine, StoreCell};
use crate::raft::transport::PeerTransport;
use crate::raft::types::{LogId, MemberNode, Raft};
use crate::request::{
    AlarmAction, AlarmMember, Command, CommandResponse, DeleteRangeRequest, DeleteRangeResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::wal::WalOptions;
use crate::watch::{EventSource, WatchHub, WatchOptions};
use leader::{LeaderRequest, LeaderResponse};

/// etcd's default backend quota: 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How long a proposal may wait for commit and apply (etcd: 5 s + 2 election timeouts).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path} is in use by another process (lock held on {path}/cairn.lock)")]
    DataDirInUse { path: String },
    #[error("data dir {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("write-ahead log: {0}")]
    Wal(#[from] crate::wal::WalError),
    #[error("state machine: {0}")]
    StateMachine(std::io::Error),
    #[error("raft: {0}")]
    Raft(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The flags or the data dir belong to another cluster than the peers'.
    #[error("cluster mismatch: {0}")]
    ClusterMismatch(String),
}

/// Why a member stopped serving on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A committed membership no longer lists this member.
    Removed,
    /// Raft hit a fatal error (storage failure, corrupt input) and stopped.
    RaftStopped,
}

/// A running member. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: NodeConfig,
    member_id: u64,
    cluster_id: u64,
    /// This member's name as stored in its data dir.
    name: String,
    raft: Raft,
    transport: Arc<dyn PeerTransport>,
    store: StoreCell,
    hub: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    read_index: read_index::ReadIndex,
    leader: watch::Receiver<Option<u64>>,
    /// Becomes true once a committed membership no longer lists this member.
    removed: watch::Receiver<bool>,
    /// Set when this member learns it was removed (a committed membership without it, or a peer
    /// refusing its messages); kept by the peer network and the leader tracker.
    removed_tx: Arc<watch::Sender<bool>>,
    /// Members this one has seen in a committed membership and then seen removed: their
    /// messages are refused with "removed" so they learn it and stop.
    removed_peers: std::sync::Mutex<std::collections::BTreeSet<u64>>,
    raft_term: AtomicU64,
    leader_changes: AtomicU64,
    proposals_pending: AtomicI64,
    proposals_failed: AtomicU64,
    counters: Arc<observer::ApplyCounters>,
    /// The compact revision whose physical removal is finished.
    compacted: watch::Sender<i64>,
    wal_stats: Arc<crate::wal::WalStats>,
    history: Option<Arc<crate::history::Recording>>,
    tasks: tasks::TaskSet,
    _lock: File,
}

/// The watch hub reads history from whatever store is current.
struct StoreEvents(StoreCell);

impl EventSource for StoreEvents {
    fn current_revision(&self) -> i64 {
        self.0.get().current_revision()
    }
    fn compact_revision(&self) -> i64 {
        self.0.get().compact_revision()
    }
    fn events(&self, from: i64, to: i64, limit: usize) -> KvResult<Vec<crate::kv::Event>> {
        self.0.get().events(from, to, limit)
    }
}

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The local clock in milliseconds since the Unix epoch (0 before it).
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Opens (or creates) the data dir, recovers state and starts raft, talking to peers through
    /// `transport`. A single member returns once it has elected itself; a member of a larger
    /// cluster returns at once (its peers may not be up yet) and serves what it can meanwhile.
    pub async fn start(
        config: NodeConfig,
        transport: Arc<dyn PeerTransport>,
    ) -> Result<Node, NodeError> {
        let (own_id, initial) = initial_membership(&config)?;
        let identity_path = config.data_dir.join("member").join("identity");
        let fresh = !tokio::fs::try_exists(&identity_path)
            .await
            .map_err(io_error(&identity_path))?;
        let fresh_identity = if fresh && config.initial_cluster_state == ClusterState::Existing {
            bootstrap::join_existing(&config, transport.as_ref(), &initial).await?
        } else {
            let ids: Vec<u64> = initial.keys().copied().collect();
            identity::Identity {
                name: config.name.clone(),
                member_id: own_id,
                cluster_id: identity::cluster_id(&ids),
                cluster_token: config.initial_cluster_token.clone(),
            }
        };
        let election_ms = config.election_timeout.as_millis().max(1) as u64;
        // etcd: the minimum lease TTL is 1.5 election timeouts, rounded up to whole seconds.
        let min_ttl = (election_ms * 3 / 2).div_ceil(1000).max(1) as i64;
        let lessor = Arc::new(Lessor::new(Box::new(SystemClock), min_ttl));
        let counters = Arc::new(observer::ApplyCounters::default());

        // The hub needs the store and the state machine needs the hub: open the store through
        // the state machine first, with an observer that forwards to the hub once it exists.
        let forward = Arc::new(tasks::LateObserver::default());
        let storage = {
            let config = config.clone();
            let observer =
                Arc::clone(&forward) as Arc<dyn crate::raft::state_machine::ApplyObserver>;
            tokio::task::spawn_blocking(move || open_storage(&config, fresh_identity, observer))
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))??
        };
        let Storage {
            lock,
            identity,
            sm,
            mut log_store,
            leases,
        } = storage;
        let member_id = identity.member_id;
        if config.force_new_cluster {
            let me = MemberNode {
                name: identity.name.clone(),
                peer_urls: config.advertise_peer_urls.clone(),
                client_urls: config.advertise_client_urls.clone(),
            };
            recovery::force_new_cluster(&mut log_store, member_id, me).await?;
        } else {
            bootstrap::verify_peers(transport.as_ref(), &identity, &initial).await?;
        }
        let store = sm.store();
        let hub = WatchHub::new(
            Arc::new(StoreEvents(store.clone())),
            WatchOptions::default(),
        );
        let history = if config.history {
            let data_dir = config.data_dir.clone();
            let cell = store.clone();
            let retention = config.history_retention;
            let recording = tokio::task::spawn_blocking(move || {
                crate::history::Recording::start(&data_dir, cell, retention)
            })
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?
            .map_err(|e| NodeError::Config(format!("opening history: {e}")))?;
            Some(Arc::new(recording))
        } else {
            None
        };
        let compaction_wakeup = Arc::new(tokio::sync::Notify::new());
        let node_observer = observer::NodeObserver {
            compactions: Arc::clone(&compaction_wakeup),
            hub: Arc::clone(&hub),
            lessor: Arc::clone(&lessor),
            counters: Arc::clone(&counters),
            history: history.clone(),
        };
        // Leases survive restart; their TTLs restart when this member becomes leader.
        for (id, ttl) in leases {
            lessor.grant(id, ttl);
        }
        forward.set(Arc::new(node_observer));
        let wal_stats = log_store.wal_stats();

        let raft_config = openraft::Config {
            cluster_name: "cairn".to_string(),
            heartbeat_interval: config.heartbeat_interval.as_millis().max(1) as u64,
            election_timeout_min: election_ms,
            // Narrower than etcd's [1x, 2x): openraft's leader lease is the maximum, and a
            // shorter lease means a quicker election after a leader dies.
            election_timeout_max: election_ms * 3 / 2,
            // A snapshot transfer may take a while on small hardware; raft waits this long.
            install_snapshot_timeout: (election_ms * 20).max(60_000),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count.max(1)),
            max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
            max_payload_entries: 256,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))?;
        let removed_tx = Arc::new(watch::Sender::new(false));
        let network = PeerNetwork::new(
            Arc::clone(&transport),
            identity.cluster_id,
            member_id,
            Arc::clone(&removed_tx),
        );
        let raft = Raft::new(member_id, Arc::new(raft_config), network, log_store, sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let bootstrapping = !initialized && config.initial_cluster_state == ClusterState::New;
        if bootstrapping {
            raft.initialize(initial.clone())
                .await
                .map_err(|e| NodeError::Raft(e.to_string()))?;
        }

        let (leader_tx, leader) = watch::channel(None);
        let removed = removed_tx.subscribe();
        let (read_index, read_waiters) = read_index::ReadIndex::new();
        let inner = Arc::new(NodeInner {
            config: config.clone(),
            member_id,
            cluster_id: identity.cluster_id,
            name: identity.name.clone(),
            raft: raft.clone(),
            transport,
            store,
            hub: Arc::clone(&hub),
            lessor,
            read_index,
            leader,
            removed,
            removed_tx: Arc::clone(&removed_tx),
            removed_peers: std::sync::Mutex::default(),
            raft_term: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            proposals_pending: AtomicI64::new(0),
            proposals_failed: AtomicU64::new(0),
            counters,
            compacted: watch::Sender::new(0),
            wal_stats,
            history,
            tasks: tasks::TaskSet::default(),
            _lock: lock,
        });
        let node = Node { inner };
        node.inner
            .tasks
            .spawn(tasks::track_leader(node.clone(), leader_tx));
        node.inner.tasks.spawn(tasks::expire_leases(node.clone()));
        node.inner
            .tasks
            .spawn(read_index::serve_rounds(node.clone(), read_waiters));
        node.inner.tasks.spawn(tasks::compact_in_background(
            node.clone(),
            compaction_wakeup,
        ));
        node.inner.tasks.push(crate::watch::spawn_background(
            hub,
            config.watch_progress_notify_interval,
        ));
        // Raft publishes the recovered membership asynchronously; wait (briefly) for it. A
        // joining member has none until the leader reaches it.
        let membership_known = (initialized || bootstrapping)
            && node
                .inner
                .raft
                .wait(Some(Duration::from_secs(2)))
                .metrics(
                    |m| {
                        m.membership_config
                            .membership()
                            .voter_ids()
                            .next()
                            .is_some()
                    },
                    "membership loaded",
                )
                .await
                .is_ok();
        let alone = membership_known && node.voters().len() == 1;
        if alone {
            node.wait_for_leader(Duration::from_secs(10)).await;
            if let Err(err) = node.publish_attributes().await {
                tracing::warn!(%err, "publishing this member's name and client URLs");
            }
        }
        node.inner
            .tasks
            .spawn(tasks::publish_attributes(node.clone()));
        tracing::info!(member = %format!("{member_id:016x}"), name = %identity.name,
            cluster = %format!("{:016x}", identity.cluster_id), "member started");
        Ok(node)
    }

    /// The membership raft currently works with (the latest, possibly not yet committed),
    /// without copying the rest of raft's metrics.
    pub(crate) fn membership(&self) -> Arc<crate::raft::types::StoredMembership> {
        Arc::clone(&self.inner.raft.metrics().borrow_watched().membership_config)
    }

    /// The voting members' ids.
    pub(crate) fn voters(&self) -> Vec<u64> {
        self.membership().membership().voter_ids().collect()
    }

    /// Records this member's name and client URLs in the membership (etcd publishes them the same
    /// way once a member starts), unless they are there already.
    pub(crate) async fn publish_attributes(&self) -> KvResult<()> {
        let me = self.inner.member_id;
        let current = self.member_node(me);
        let wanted_urls = &self.inner.config.advertise_client_urls;
        if current
            .as_ref()
            .is_some_and(|n| n.name == self.inner.name && &n.client_urls == wanted_urls)
        {
            return Ok(());
        }
        let answer = self
            .route(LeaderRequest::MemberAttributes {
                id: me,
                name: self.inner.name.clone(),
                client_urls: wanted_urls.clone(),
            })
            .await?;
        if let LeaderResponse::Membership { log_index, .. } = answer {
            self.wait_applied_membership(log_index).await;
        }
        Ok(())
    }

    async fn wait_for_leader(&self, limit: Duration) {
        let mut leader = self.inner.leader.clone();
        let wait = leader.wait_for(Option::is_some);
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::warn!("no leader elected yet; serving requests that do not need one");
        }
    }

    /// Stops raft and the background tasks.
    pub async fn shutdown(&self) {
        self.inner.tasks.abort_all();
        if let Err(err) = self.inner.raft.shutdown().await {
            tracing::warn!(%err, "raft shutdown");
        }
        if let Some(history) = self.inner.history.clone() {
            let _ = tokio::task::spawn_blocking(move || history.stop()).await;
        }
    }

    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// A header carrying the current revision and term.
    pub fn header(&self) -> ResponseHeader {
        self.header_at(self.inner.store.get().current_revision())
    }

    fn header_at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.member_id,
            revision,
            raft_term: self.inner.raft_term.load(Ordering::Relaxed),
        }
    }

    async fn blocking<T, F>(&self, work: F) -> KvResult<T>
    where
        F: FnOnce(Arc<MvccStore>) -> KvResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.inner.store.get();
        tokio::task::spawn_blocking(move || work(store))
            .await
            .map_err(|err| KvError::Internal(err.to_string()))?
    }

    /// Proposes a command through the leader and waits until this member has applied it too, so
    /// a serializable read here afterwards sees the write (etcd answers after its own apply).
    async fn propose(&self, command: Command) -> KvResult<(CommandResponse, ResponseHeader)> {
        self.inner.proposals_pending.fetch_add(1, Ordering::Relaxed);
        let result = self
            .route(LeaderRequest::Propose(
                command,
                crate::history::current_origin(),
            ))
            .await;
        self.inner.proposals_pending.fetch_sub(1, Ordering::Relaxed);
        let (applied, log_index) = match result {
            Ok(LeaderResponse::Applied { applied, log_index }) => (applied, log_index),
            Ok(other) => return Err(unexpected_answer(&other)),
            Err(err) => {
                self.inner.proposals_failed.fetch_add(1, Ordering::Relaxed);
                return Err(err);
            }
        };
        if let Err(err) = self.wait_applied(log_index).await {
            tracing::debug!(%err, log_index, "answering a committed write before applying it here");
        }
        let header = self.header_at(applied.revision);
        applied.result.map(|response| (response, header))
    }

    /// Waits until this member has applied the log up to `index` (bounded by the request timeout).
    async fn wait_applied(&self, index: u64) -> KvResult<()> {
        let applied = self
            .inner
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map_or(0, LogId::index);
        if applied >= index {
            return Ok(());
        }
        self.inner
            .raft
            .wait(Some(REQUEST_TIMEOUT))
            .applied_index_at_least(Some(index), "wait for apply")
            .await
            .map(|_| ())
            .map_err(|_| KvError::Timeout)
    }

    /// Returns once this member has applied everything the cluster had committed when it was
    /// called: a read index from the leader (this member or another), then a local wait.
    pub(crate) async fn read_barrier(&self) -> KvResult<()> {
        match self.route(LeaderRequest::ReadIndex).await? {
            LeaderResponse::ReadIndex(index) => self.wait_applied(index).await,
            other => Err(unexpected_answer(&other)),
        }
    }

    /// Linearizable unless `req.serializable`.
    pub async fn range(&self, req: RangeRequest) -> KvResult<(RangeResponse, ResponseHeader)> {
        if !req.serializable {
            self.inner.read_index.wait().await?;
        }
        let (response, revision) = self.blocking(move |store| store.range(&req)).await?;
        Ok((response, self.header_at(revision)))
    }

    pub async fn put(&self, req: PutRequest) -> KvResult<(PutResponse, ResponseHeader)> {
        match self.propose(Command::Put(req)).await? {
            (CommandResponse::Put(response), header) => Ok((response, header)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> KvResult<(DeleteRangeResponse, ResponseHeader)> {
        match self.propose(Command::DeleteRange(req)).await? {
            (CommandResponse::DeleteRange(response), header) => Ok((response, header)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    pub async fn txn(&self, req: TxnRequest) -> KvResult<(TxnResponse, ResponseHeader)> {
        match self.propose(Command::Txn(req)).await? {
            (CommandResponse::Txn(response), header) => Ok((response, header)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Compacts history before `revision`. Returns once the compaction is applied; with
    /// `physical`, once the old versions are also removed from the store (etcd's
    /// `CompactionRequest.physical`). The removal itself runs in the background either way.
    pub async fn compact(&self, revision: i64, physical: bool) -> KvResult<ResponseHeader> {
        let (_, header) = self.propose(Command::Compact { revision }).await?;
        if physical {
            let mut done = self.inner.compacted.subscribe();
            done.wait_for(|through| *through >= revision)
                .await
                .map_err(|_| KvError::Stopping)?;
        }
        Ok(header)
    }

    /// `id == 0` lets the server choose. Returns (id, ttl actually granted).
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> KvResult<(i64, i64, ResponseHeader)> {
        if ttl > MAX_LEASE_TTL {
            return Err(KvError::LeaseTtlTooLarge);
        }
        let ttl = self.inner.lessor.effective_ttl(ttl);
        let mut attempts = 0;
        loop {
            let chosen = if id == 0 { self.new_lease_id() } else { id };
            match self.propose(Command::LeaseGrant { id: chosen, ttl }).await {
                Ok((CommandResponse::LeaseGrant { id, ttl }, header)) => {
                    return Ok((id, ttl, header));
                }
                Ok((other, _)) => return Err(unexpected(&other)),
                // A server-chosen id that collides is retried with another one.
                Err(KvError::LeaseExists) if id == 0 && attempts < 3 => attempts += 1,
                Err(err) => return Err(err),
            }
        }
    }

    /// A fresh positive lease id: the member id's low bits and the clock, like etcd's generator,
    /// mixed with randomness so restarts never reuse one.
    fn new_lease_id(&self) -> i64 {
        let prefix = (self.inner.member_id & 0xffff) << 47;
        let suffix = rand::random::<u64>() & ((1 << 47) - 1);
        ((prefix | suffix) & (i64::MAX as u64)).max(1) as i64
    }

    pub async fn lease_revoke(&self, id: i64) -> KvResult<ResponseHeader> {
        let (_, header) = self.propose(Command::LeaseRevoke { id }).await?;
        Ok(header)
    }

    /// Renews a lease on the leader; returns the new TTL (`LeaseNotFound` if it does not exist).
    pub async fn lease_keep_alive(&self, id: i64) -> KvResult<(i64, ResponseHeader)> {
        match self.route(LeaderRequest::LeaseKeepAlive(id)).await? {
            LeaderResponse::LeaseTtl(ttl) => Ok((ttl, self.header())),
            other => Err(unexpected_answer(&other)),
        }
    }

    /// A lease's remaining time as the leader's lessor knows it, and its keys if asked.
    pub async fn lease_time_to_live(
        &self,
        id: i64,
        keys: bool,
    ) -> KvResult<(LeaseTtl, ResponseHeader)> {
        let (granted_ttl, ttl) = match self.route(LeaderRequest::LeaseTimeToLive(id)).await? {
            LeaderResponse::LeaseTimeToLive { granted_ttl, ttl } => (granted_ttl, ttl),
            other => return Err(unexpected_answer(&other)),
        };
        let keys = if keys {
            self.blocking(move |store| {
                store
                    .lease_keys(id)
                    .map_err(|e| KvError::Internal(e.to_string()))
            })
            .await?
        } else {
            Vec::new()
        };
        Ok((
            LeaseTtl {
                id,
                ttl,
                granted_ttl,
                keys,
            },
            self.header(),
        ))
    }

    /// The leases this member knows (every member applies grants and revokes).
    #[allow(clippy::unused_async)]
    pub async fn lease_leases(&self) -> KvResult<(Vec<i64>, ResponseHeader)> {
        Ok((self.inner.lessor.ids(), self.header()))
    }

    pub async fn alarm(
        &self,
        action: AlarmAction,
        alarm: Option<AlarmMember>,
    ) -> KvResult<(Vec<AlarmMember>, ResponseHeader)> {
        match (action, alarm) {
            (AlarmAction::Get, _) => {
                let alarms = self
                    .blocking(|store| store.alarms().map_err(|e| KvError::Internal(e.to_string())))
                    .await?;
                Ok((alarms, self.header()))
            }
            (action, Some(alarm)) => match self.propose(Command::Alarm { action, alarm }).await? {
                (CommandResponse::Alarm(alarms), header) => Ok((alarms, header)),
                (other, _) => Err(unexpected(&other)),
            },
            (_, None) => Ok((Vec::new(), self.header())),
        }
    }

    pub async fn status(&self) -> KvResult<NodeStatus> {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let (db_size, in_use, alarms) = self
            .blocking(|store| {
                let alarms = store
                    .alarms()
                    .map_err(|e| KvError::Internal(e.to_string()))?;
                Ok((store.db_size(), store.db_size_in_use(), alarms))
            })
            .await?;
        let errors = alarms
            .iter()
            .map(|alarm| {
                // etcd reports each alarm as its AlarmMember text form.
                let name = match alarm.alarm {
                    crate::request::AlarmType::NoSpace => "NOSPACE",
                    crate::request::AlarmType::Corrupt => "CORRUPT",
                };
                format!("memberID:{} alarm:{name} ", alarm.member_id)
            })
            .collect();
        Ok(NodeStatus {
            header: self.header(),
            db_size: db_size as i64,
            db_size_in_use: in_use as i64,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics
                .last_applied
                .as_ref()
                .map_or(0, openraft::LogId::index),
            errors,
            is_learner: metrics
                .membership_config
                .membership()
                .learner_ids()
                .any(|id| id == self.inner.member_id),
        })
    }

    pub async fn hash(&self) -> KvResult<(u32, ResponseHeader)> {
        let hash = self
            .blocking(|store| store.hash().map_err(|e| KvError::Internal(e.to_string())))
            .await?;
        Ok((hash, self.header()))
    }

    pub async fn hash_kv(&self, revision: i64) -> KvResult<(HashKvResult, ResponseHeader)> {
        let hash = self.blocking(move |store| store.hash_kv(revision)).await?;
        Ok((
            HashKvResult {
                hash: hash.hash,
                compact_revision: hash.compact_revision,
                hash_revision: hash.hash_revision,
            },
            self.header(),
        ))
    }

    pub async fn defragment(&self) -> KvResult<ResponseHeader> {
        self.blocking(|store| {
            store
                .defragment()
                .map_err(|e| KvError::Internal(e.to_string()))
        })
        .await?;
        Ok(self.header())
    }

    /// A consistent snapshot of the whole store as a stream of chunks, plus its total size.
    pub async fn snapshot(
        &self,
    ) -> KvResult<(u64, mpsc::Receiver<KvResult<Bytes>>, ResponseHeader)> {
        let dir = self.inner.config.data_dir.join("member");
        let header = self.header();
        let (size, file) = self
            .blocking(move |store| {
                let internal = |e: std::io::Error| KvError::Internal(e.to_string());
                let mut file = tempfile::tempfile_in(&dir).map_err(internal)?;
                {
                    let mut out = std::io::BufWriter::new(&mut file);
                    store
                        .write_snapshot(&mut out)
                        .map_err(|e| KvError::Internal(e.to_string()))?;
                    std::io::Write::flush(&mut out).map_err(internal)?;
                }
                let size = file.metadata().map_err(internal)?.len();
                std::io::Seek::rewind(&mut file).map_err(internal)?;
                Ok((size, file))
            })
            .await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(err) => {
                        let _ = tx.blocking_send(Err(KvError::Internal(err.to_string())));
                        break;
                    }
                }
            }
        });
        Ok((size, rx, header))
    }

    pub fn members(&self) -> Vec<Member> {
        let stored = self.membership();
        let membership = stored.membership();
        let learners: Vec<u64> = membership.learner_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                name: node.name.clone(),
                peer_urls: node.peer_urls.clone(),
                client_urls: node.client_urls.clone(),
                is_learner: learners.contains(id),
            })
            .collect()
    }

    /// Adds a member (etcd `MemberAdd`), as a learner or a voter; returns its id and the new
    /// member list. A voter is refused unless the members already started keep a quorum.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> KvResult<(u64, Vec<Member>, ResponseHeader)> {
        let answer = self
            .route(LeaderRequest::MemberAdd { peer_urls, learner })
            .await?;
        let (log_index, id) = match answer {
            LeaderResponse::Membership {
                log_index,
                added: Some(id),
            } => (log_index, id),
            other => return Err(unexpected_answer(&other)),
        };
        self.wait_applied_membership(log_index).await;
        Ok((id, self.members(), self.header()))
    }

    /// Removes a member (etcd `MemberRemove`), the leader included.
    pub async fn member_remove(&self, id: u64) -> KvResult<(Vec<Member>, ResponseHeader)> {
        self.membership_call(LeaderRequest::MemberRemove(id)).await
    }

    /// Makes a learner a voter (etcd `MemberPromote`), once it has caught up with the leader.
    pub async fn member_promote(&self, id: u64) -> KvResult<(Vec<Member>, ResponseHeader)> {
        self.membership_call(LeaderRequest::MemberPromote(id)).await
    }

    /// Changes a member's peer URLs (etcd `MemberUpdate`) through a raft membership entry, so every
    /// member records the change at the same log position. Returns the new member list.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> KvResult<(Vec<Member>, ResponseHeader)> {
        self.membership_call(LeaderRequest::MemberUpdate { id, peer_urls })
            .await
    }

    async fn membership_call(
        &self,
        request: LeaderRequest,
    ) -> KvResult<(Vec<Member>, ResponseHeader)> {
        match self.route(request).await? {
            LeaderResponse::Membership { log_index, .. } => {
                self.wait_applied_membership(log_index).await;
                Ok((self.members(), self.header()))
            }
            other => Err(unexpected_answer(&other)),
        }
    }

    /// Waits (bounded) until this member's raft has seen the membership change at `log_index`,
    /// so the member list it answers with includes it.
    async fn wait_applied_membership(&self, log_index: u64) {
        let seen = self
            .inner
            .raft
            .wait(Some(REQUEST_TIMEOUT))
            .metrics(
                |m| {
                    m.membership_config
                        .log_id()
                        .as_ref()
                        .is_some_and(|id| id.index() >= log_index)
                },
                "membership change",
            )
            .await;
        if seen.is_err() {
            tracing::debug!(log_index, "membership change not seen locally in time");
        }
    }

    /// Hands leadership to `target` (etcd `MoveLeader`; only the leader accepts it).
    pub async fn move_leader(&self, target: u64) -> KvResult<ResponseHeader> {
        let leader = *self.inner.leader.borrow();
        if leader == Some(target) {
            return Ok(self.header());
        }
        if leader != Some(self.inner.member_id) {
            return Err(KvError::NotLeader);
        }
        if !self.voters().contains(&target) {
            return Err(KvError::BadLeaderTransferee);
        }
        self.inner
            .raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|_| KvError::Stopping)?;
        let mut leader = self.inner.leader.clone();
        let moved = tokio::time::timeout(
            REQUEST_TIMEOUT,
            leader.wait_for(|leader| *leader == Some(target)),
        )
        .await;
        match moved {
            Ok(Ok(_)) => Ok(self.header()),
            Ok(Err(_)) => Err(KvError::Stopping),
            Err(_) => Err(KvError::Timeout),
        }
    }

    pub fn watch_hub(&self) -> &Arc<WatchHub> {
        &self.inner.hub
    }

    /// Completes when this member can no longer serve: it was removed from the cluster (etcd
    /// then stops it), or raft stopped on a fatal error (logged where it happened).
    pub async fn stopped(&self) -> StopReason {
        let mut removed = self.inner.removed.clone();
        let mut metrics = self.inner.raft.metrics();
        tokio::select! {
            _ = removed.wait_for(|removed| *removed) => StopReason::Removed,
            // The metrics channel closes when raft's core stops.
            () = async { while metrics.changed().await.is_ok() {} } => StopReason::RaftStopped,
        }
    }

    /// Current leader id (None while there is none); `changed()` wakes on leader changes.
    pub fn leader_watch(&self) -> watch::Receiver<Option<u64>> {
        self.inner.leader.clone()
    }

    pub fn metrics(&self) -> NodeMetrics {
        let store = self.inner.store.get();
        let leader = *self.inner.leader.borrow();
        let wal = &self.inner.wal_stats;
        let raft_metrics = self.inner.raft.metrics().borrow_watched().clone();
        NodeMetrics {
            has_leader: leader.is_some(),
            is_leader: leader == Some(self.inner.member_id),
            leader_changes_seen: self.inner.leader_changes.load(Ordering::Relaxed),
            proposals_committed: raft_metrics
                .cluster_committed
                .as_ref()
                .map_or(0, LogId::index),
            proposals_applied: self.inner.counters.applied.load(Ordering::Relaxed),
            proposals_pending: self.inner.proposals_pending.load(Ordering::Relaxed),
            proposals_failed: self.inner.proposals_failed.load(Ordering::Relaxed),
            wal_fsync_count: wal.fsync_count(),
            wal_fsync_seconds_sum: wal.fsync_seconds(),
            db_total_size_bytes: store.db_size() as i64,
            db_total_size_in_use_bytes: store.db_size_in_use() as i64,
            current_revision: store.current_revision(),
            compact_revision: store.compact_revision(),
            watchers: self.inner.hub.watcher_count() as u64,
            slow_watchers: self.inner.hub.unsynced_count() as u64,
            leases: self.inner.lessor.len() as u64,
            history_head_revision: self.inner.history.as_ref().map_or(0, |h| h.head()),
            history_lag_revisions: self
                .inner
                .history
                .as_ref()
                .map_or(0, |h| (store.current_revision() - h.head()).max(0)),
        }
    }

    /// Recorded history (None when history is switched off). Its queries block: call them from
    /// `spawn_blocking`.
    pub fn history(&self) -> Option<crate::history::History> {
        self.inner
            .history
            .as_ref()
            .map(|recording| recording.history().clone())
    }

    /// The data dir this member was started with.
    pub fn data_dir(&self) -> PathBuf {
        self.inner.config.data_dir.clone()
    }
}

/// The initial members named by the configuration (`--initial-cluster`, or this member alone)
/// and this member's id among them.
fn initial_membership(config: &NodeConfig) -> Result<(u64, BTreeMap<u64, MemberNode>), NodeError> {
    let token = &config.initial_cluster_token;
    let peer_urls = if config.advertise_peer_urls.is_empty() {
        vec!["http://localhost:2380".to_string()]
    } else {
        config.advertise_peer_urls.clone()
    };
    let own_id = identity::member_id(&peer_urls, token);
    let mut initial: BTreeMap<u64, MemberNode> = BTreeMap::new();
    for (name, url) in &config.initial_cluster {
        let urls: Vec<String> = url.split(',').map(str::to_string).collect();
        let id = identity::member_id(&urls, token);
        initial.insert(
            id,
            MemberNode {
                name: name.clone(),
                peer_urls: urls,
                client_urls: vec![],
            },
        );
    }
    if !initial.is_empty() && !initial.contains_key(&own_id) {
        return Err(NodeError::Config(format!(
            "--initial-cluster has no entry for this member's peer URLs {peer_urls:?}"
        )));
    }
    // Every member must bootstrap the same membership, so it holds only what all of them know
    // from the flags; each member publishes its client URLs once it runs.
    if initial.is_empty() {
        initial.insert(
            own_id,
            MemberNode {
                name: config.name.clone(),
                peer_urls,
                client_urls: vec![],
            },
        );
    }
    Ok((own_id, initial))
}

/// What [`open_storage`] opened.
struct Storage {
    lock: File,
    identity: identity::Identity,
    sm: MvccStateMachine,
    log_store: WalLogStore,
    leases: Vec<(i64, i64)>,
}

/// Locks the data dir and opens everything on disk: identity, state machine, WAL. Blocking.
fn open_storage(
    config: &NodeConfig,
    fresh_identity: identity::Identity,
    observer: Arc<dyn crate::raft::state_machine::ApplyObserver>,
) -> Result<Storage, NodeError> {
    let member_dir = config.data_dir.join("member");
    std::fs::create_dir_all(&member_dir).map_err(io_error(&member_dir))?;
    let lock = lock_data_dir(&config.data_dir)?;
    let identity = identity::load_or_create(&member_dir.join("identity"), fresh_identity)?;
    let quota_bytes = if config.quota_backend_bytes == 0 {
        DEFAULT_QUOTA_BYTES
    } else {
        config.quota_backend_bytes
    };
    let options = MvccOptions {
        quota_bytes,
        member_id: identity.member_id,
    };
    let sm = MvccStateMachine::open(
        &member_dir.join("mvcc.redb"),
        options,
        &member_dir.join("snap"),
        observer,
    )
    .map_err(NodeError::StateMachine)?;
    let leases = sm
        .store()
        .get()
        .leases()
        .map_err(|e| NodeError::StateMachine(std::io::Error::other(e)))?;
    let log_store = WalLogStore::open(&member_dir.join("wal"), WalOptions::default())?;
    Ok(Storage {
        lock,
        identity,
        sm,
        log_store,
        leases,
    })
}

/// Creates `data_dir` from a snapshot file (as streamed by Maintenance.Snapshot): the key-value
/// state, leases and alarms at the snapshot's revision, with no raft history, so the member
/// started on it bootstraps a new cluster that continues from that revision. Returns the revision.
pub fn restore_data_dir(
    snapshot: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<i64, NodeError> {
    let occupied = std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(NodeError::Config(format!(
            "data dir {} already exists and is not empty",
            data_dir.display()
        )));
    }
    let member_dir = data_dir.join("member");
    std::fs::create_dir_all(&member_dir).map_err(io_error(&member_dir))?;
    let file = File::open(snapshot).map_err(io_error(snapshot))?;
    let body_len = etcd_framed_body_len(&file).map_err(io_error(snapshot))?;
    let mut input = std::io::BufReader::new(file).take(body_len);
    let db = member_dir.join("mvcc.redb");
    let options = MvccOptions {
        quota_bytes: 0,
        member_id: 0,
    };
    let store = MvccStore::restore_snapshot(&db, &mut input, options)
        .map_err(|e| NodeError::StateMachine(std::io::Error::other(e)))?;
    // Forget the old cluster's raft position: the restored member starts a new log.
    store
        .apply(&[], &[], true)
        .map_err(|e| NodeError::StateMachine(std::io::Error::other(e)))?;
    Ok(store.current_revision())
}

/// The length of the snapshot body inside a file saved from the Snapshot RPC.
///
/// Like etcd's, the stream ends with the SHA-256 of everything before it, after zero padding to a
/// multiple of 512 bytes; `etcdctl snapshot save` checks that shape. A file of that shape has its
/// trailing digest verified and excluded; any other file is taken whole (a bare store snapshot).
fn etcd_framed_body_len(mut file: &File) -> std::io::Result<u64> {
    use sha2::{Digest, Sha256};
    use std::io::{Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len < 32 + 512 || len % 512 != 32 {
        return Ok(len);
    }
    let body = len - 32;
    let mut hasher = Sha256::new();
    std::io::copy(&mut (&mut file).take(body), &mut hasher)?;
    let mut digest = [0u8; 32];
    file.read_exact(&mut digest)?;
    file.seek(SeekFrom::Start(0))?;
    if hasher.finalize().as_slice() != digest {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "snapshot file digest does not match its contents",
        ));
    }
    Ok(body)
}

fn unexpected(response: &CommandResponse) -> KvError {
    KvError::Internal(format!("unexpected apply response {response:?}"))
}

fn unexpected_answer(response: &LeaderResponse) -> KvError {
    KvError::Internal(format!("unexpected answer from the leader {response:?}"))
}

/// Takes an exclusive lock on `<data_dir>/cairn.lock` for the life of the process.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<File, NodeError> {
    let path = data_dir.join("cairn.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::DataDirInUse {
            path: data_dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(NodeError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}
