//! An in-process cluster of real [`Node`]s over the simulated network: starting, stopping and
//! restarting members, waiting for a leader and for convergence, and comparing members.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cairn_engine::KvError;
use cairn_engine::node::{ClusterState, Node, NodeConfig, NodeError};
use cairn_engine::wal::WalError;
use tempfile::TempDir;

use super::ledger::{self, Ledger};
use super::network::SimNet;

pub const HEARTBEAT: Duration = Duration::from_millis(50);
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// One member slot: its configuration and, while it runs, its node.
pub struct Member {
    pub name: String,
    pub url: String,
    pub config: NodeConfig,
    /// Known once it has started.
    pub id: u64,
    node: Option<Node>,
    /// Removed from the cluster (and stopped) for good.
    pub removed: bool,
}

pub struct Cluster {
    pub scenario: String,
    pub seed: u64,
    pub net: Arc<SimNet>,
    members: Mutex<Vec<Member>>,
    token: String,
    tuning: Tuning,
    root: TempDir,
}

/// Log compaction settings of every member.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Applied entries between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind a snapshot for lagging followers.
    pub snapshot_catchup_entries: u64,
}

impl Default for Tuning {
    /// etcd's catch-up entries; snapshots rare enough not to matter.
    fn default() -> Self {
        Tuning {
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5000,
        }
    }
}

fn url_of(scenario: &str, index: usize) -> String {
    format!("http://{scenario}-{index}:2380")
}

impl Cluster {
    /// Starts `size` members of a new cluster and waits for a leader.
    pub async fn start(scenario: &str, seed: u64, size: usize, tuning: Tuning) -> Arc<Self> {
        let root = tempfile::tempdir().expect("temp dir");
        let token = format!("{scenario}-{seed}");
        let initial: Vec<(String, String)> = (0..size)
            .map(|i| (format!("m{i}"), url_of(scenario, i)))
            .collect();
        let cluster = Arc::new(Cluster {
            scenario: scenario.to_string(),
            seed,
            net: SimNet::new(seed),
            members: Mutex::new(Vec::new()),
            token,
            tuning,
            root,
        });
        for (name, url) in &initial {
            let config = cluster.config(name, url, initial.clone(), ClusterState::New);
            cluster.lock().push(Member {
                name: name.clone(),
                url: url.clone(),
                config,
                id: 0,
                node: None,
                removed: false,
            });
        }
        let starts: Vec<_> = (0..size).map(|i| cluster.start_member(i)).collect();
        futures::future::join_all(starts).await;
        cluster
            .wait_leader(&cluster.up(), Duration::from_secs(10))
            .await;
        cluster
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config(
        &self,
        name: &str,
        url: &str,
        initial_cluster: Vec<(String, String)>,
        state: ClusterState,
    ) -> NodeConfig {
        NodeConfig {
            name: name.to_string(),
            data_dir: self.root.path().join(name),
            listen_peer_urls: vec![url.to_string()],
            advertise_peer_urls: vec![url.to_string()],
            advertise_client_urls: vec![format!("http://{}-{name}:2379", self.scenario)],
            initial_cluster,
            initial_cluster_state: state,
            initial_cluster_token: self.token.clone(),
            quota_backend_bytes: 0,
            heartbeat_interval: HEARTBEAT,
            election_timeout: ELECTION_TIMEOUT,
            snapshot_count: self.tuning.snapshot_count,
            snapshot_catchup_entries: self.tuning.snapshot_catchup_entries,
            watch_progress_notify_interval: Duration::from_secs(600),
            force_new_cluster: false,
            history: true,
            history_retention: cairn_engine::history::Retention::default(),
        }
    }

    /// Starts member `index` from its configuration (retrying while its previous incarnation
    /// still holds the data dir) and connects it to the network.
    async fn start_member(&self, index: usize) {
        if let Err(err) = self.try_start(index).await {
            panic!(
                "{}: member {index} ({}) did not start: {err}",
                self.scenario,
                self.url(index)
            );
        }
    }

    /// Starts member `index` (see [`Cluster::restart`]); the error if it refuses to start.
    pub async fn try_start(&self, index: usize) -> Result<(), NodeError> {
        let (config, url) = {
            let members = self.lock();
            let member = &members[index];
            assert!(member.node.is_none(), "member {index} is already running");
            (member.config.clone(), member.url.clone())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let node = loop {
            match Node::start(config.clone(), self.net.transport(&url)).await {
                Ok(node) => break node,
                // The previous incarnation's raft may still be dropping its log store (and the
                // WAL's own lock) after its shutdown returned.
                Err(NodeError::DataDirInUse { .. } | NodeError::Wal(WalError::Locked { .. }))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(err),
            }
        };
        self.net.register(&url, node.peer_service());
        let mut members = self.lock();
        members[index].id = node.member_id();
        members[index].node = Some(node);
        Ok(())
    }

    /// Stops member `index`: disconnects it, shuts it down and drops the cluster's handle.
    pub async fn stop(&self, index: usize) {
        let (node, url) = {
            let mut members = self.lock();
            (members[index].node.take(), members[index].url.clone())
        };
        self.net.deregister(&url);
        if let Some(node) = node {
            node.shutdown().await;
        }
    }

    /// Starts a stopped member again with the same configuration and data dir.
    pub async fn restart(&self, index: usize) {
        self.start_member(index).await;
    }

    /// Adds a slot for a member joining the running cluster; returns its index. The caller adds
    /// it to the membership first, then calls [`Cluster::restart`] to start it.
    pub fn add_slot(&self) -> usize {
        let (index, name, url, mut initial) = {
            let members = self.lock();
            let index = members.len();
            let initial: Vec<(String, String)> = members
                .iter()
                .filter(|m| !m.removed)
                .map(|m| (m.name.clone(), m.url.clone()))
                .collect();
            (
                index,
                format!("m{index}"),
                url_of(&self.scenario, index),
                initial,
            )
        };
        initial.push((name.clone(), url.clone()));
        let config = self.config(&name, &url, initial, ClusterState::Existing);
        self.lock().push(Member {
            name,
            url,
            config,
            id: 0,
            node: None,
            removed: false,
        });
        index
    }

    /// Marks member `index` as removed from the cluster (it should be stopped as well).
    pub fn mark_removed(&self, index: usize) {
        self.lock()[index].removed = true;
    }

    /// The running node of member `index` (None while it is down or after its removal).
    pub fn node(&self, index: usize) -> Option<Node> {
        let members = self.lock();
        let member = &members[index];
        if member.removed {
            None
        } else {
            member.node.clone()
        }
    }

    /// Member `index`'s node, which must be running.
    pub fn running(&self, index: usize) -> Node {
        self.node(index)
            .unwrap_or_else(|| panic!("member {index} is not running"))
    }

    pub fn url(&self, index: usize) -> String {
        self.lock()[index].url.clone()
    }

    pub fn urls(&self, indices: &[usize]) -> Vec<String> {
        indices.iter().map(|i| self.url(*i)).collect()
    }

    pub fn id(&self, index: usize) -> u64 {
        self.lock()[index].id
    }

    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.lock().iter().position(|m| m.id == id && id != 0)
    }

    /// Members that are running and not removed.
    pub fn up(&self) -> Vec<usize> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, m)| m.node.is_some() && !m.removed)
            .map(|(i, _)| i)
            .collect()
    }

    /// Members not removed (running or not).
    pub fn active(&self) -> Vec<usize> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.removed)
            .map(|(i, _)| i)
            .collect()
    }

    /// The leader every member of `among` agrees on (a member of `among`); None if they do not.
    pub fn agreed_leader(&self, among: &[usize]) -> Option<usize> {
        let mut agreed = None;
        for &i in among {
            let node = self.node(i)?;
            let leader = (*node.leader_watch().borrow())?;
            match agreed {
                None => agreed = Some(leader),
                Some(l) if l == leader => {}
                Some(_) => return None,
            }
        }
        let index = self.index_of(agreed?)?;
        among.contains(&index).then_some(index)
    }

    /// Waits until every member of `among` agrees on a leader among them; returns its index.
    pub async fn wait_leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.agreed_leader(among) {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "{}: members {among:?} agreed on no leader within {within:?}; they see {:?}",
                self.scenario,
                self.leaders_seen(among)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every member of `among` agrees on a leader among them other than `old`.
    pub async fn wait_new_leader(&self, among: &[usize], old: u64, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.agreed_leader(among)
                && self.id(leader) != old
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "{}: members {among:?} agreed on no new leader within {within:?}; they see {:?}",
                self.scenario,
                self.leaders_seen(among)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn leaders_seen(&self, among: &[usize]) -> Vec<(usize, Option<usize>)> {
        among
            .iter()
            .map(|&i| {
                let leader = self
                    .node(i)
                    .and_then(|n| *n.leader_watch().borrow())
                    .and_then(|id| self.index_of(id));
                (i, leader)
            })
            .collect()
    }

    /// Waits until every running member has applied the same log (same applied index and store
    /// revision, twice in a row 100 ms apart) and agrees on the leader; returns the revision.
    pub async fn converge(&self, within: Duration) -> i64 {
        let deadline = Instant::now() + within;
        let mut previous = None;
        loop {
            let up = self.up();
            let mut seen = Vec::new();
            for &i in &up {
                let node = self.running(i);
                let status = node.status().await.ok();
                seen.push((
                    i,
                    node.metrics().current_revision,
                    status.map(|s| s.raft_applied_index),
                    *node.leader_watch().borrow(),
                ));
            }
            let first = seen.first().map(|s| (s.1, s.2, s.3));
            let same = first.is_some_and(|(rev, applied, leader)| {
                applied.is_some()
                    && leader.is_some()
                    && seen
                        .iter()
                        .all(|s| (s.1, s.2, s.3) == (rev, applied, leader))
            });
            if same {
                if previous == first {
                    return first.map_or(0, |f| f.0);
                }
                previous = first;
            } else {
                previous = None;
            }
            assert!(
                Instant::now() < deadline,
                "{}: members did not converge within {within:?}: (member, revision, applied, \
                 leader) = {seen:?}",
                self.scenario
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every running member has the same `hash_kv` at `revision`.
    pub async fn check_hash(&self, revision: i64) {
        let mut hashes = Vec::new();
        for i in self.up() {
            let (hash, _) = self
                .running(i)
                .hash_kv(revision)
                .await
                .unwrap_or_else(|e| panic!("member {i}: hash_kv({revision}): {e}"));
            assert_eq!(hash.hash_revision, revision, "member {i}: hash revision");
            hashes.push((i, hash.hash));
        }
        assert!(
            hashes.windows(2).all(|w| w[0].1 == w[1].1),
            "{}: hash_kv({revision}) differs between members: {hashes:?}",
            self.scenario
        );
    }

    /// Every running member has the same jj commit id for `revision`: commit ids depend only on
    /// the log, and a member whose history starts from a snapshot's state records its peers'
    /// commit there (the store's history anchor). Waits (bounded) for each member's history to
    /// reach `revision`.
    pub async fn check_commit_ids(&self, revision: i64) {
        let mut ids = Vec::new();
        for i in self.up() {
            let node = self.running(i);
            let history = node.history().expect("history is on in the simulation");
            let deadline = Instant::now() + Duration::from_secs(20);
            while node.metrics().history_head_revision < revision {
                assert!(
                    Instant::now() < deadline,
                    "{}: member {i}'s history stuck at {} below {revision}",
                    self.scenario,
                    node.metrics().history_head_revision
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let log = tokio::task::spawn_blocking(move || {
                history.log(&cairn_engine::history::LogQuery {
                    max_revision: revision,
                    limit: 1_000_000,
                    changes_limit: 1,
                    ..Default::default()
                })
            })
            .await
            .expect("log task")
            .unwrap_or_else(|e| panic!("member {i}: history log: {e}"));
            let at = log.first().filter(|entry| entry.revision == revision);
            ids.push((i, at.map(|entry| entry.commit_id.clone())));
        }
        assert!(
            ids.windows(2).all(|w| w[0].1 == w[1].1),
            "{}: commit ids for revision {revision} differ between members: {ids:?}",
            self.scenario
        );
        println!(
            "{}: {} members agree on the commit id of revision {revision}",
            self.scenario,
            ids.len()
        );
    }

    /// The full set of end-of-scenario checks over the running members: convergence, equal
    /// `hash_kv`, equal histories that match the ledger, and the ledger's own checks. Returns the
    /// final revision and the (common) history.
    pub async fn check_all(&self, ledger: &Ledger, first: i64) -> (i64, Vec<ledger::Change>) {
        let last = self.converge(Duration::from_secs(20)).await;
        assert!(
            last >= ledger.max_acked_revision(),
            "{}: converged at revision {last}, below acknowledged revision {}",
            self.scenario,
            ledger.max_acked_revision()
        );
        self.check_hash(last).await;
        self.check_commit_ids(last).await;
        let mut histories = Vec::new();
        for i in self.up() {
            let history = ledger::history(&self.running(i), first, last)
                .await
                .unwrap_or_else(|e| panic!("member {i}: reading its history: {e}"));
            ledger.check_history(&format!("m{i}"), &history, first, last);
            histories.push((i, history));
        }
        for pair in histories.windows(2) {
            let ((a, ha), (b, hb)) = (&pair[0], &pair[1]);
            if let Some(pos) = ha.iter().zip(hb.iter()).position(|(x, y)| x != y) {
                panic!(
                    "{}: members {a} and {b} differ at change {pos}: {:?} vs {:?}",
                    self.scenario, ha[pos], hb[pos]
                );
            }
            assert_eq!(ha.len(), hb.len(), "members {a} and {b}: history lengths");
        }
        if let Some((_, history)) = histories.first() {
            ledger.check_reads(history);
        }
        ledger.check_client_order();
        ledger.check_real_time();
        (last, histories.pop().map(|(_, h)| h).unwrap_or_default())
    }

    /// Every running member gets a write acknowledged within `within` of the call, retrying
    /// while the answer says the cluster is unavailable (each member's probe writes as client
    /// `client + index`). Returns how long each took.
    pub async fn check_serves_writes(
        &self,
        ledger: &Ledger,
        client: usize,
        within: Duration,
    ) -> Vec<(usize, Duration)> {
        let started = Instant::now();
        let probes = self.up().into_iter().map(|i| async move {
            let node = self.running(i);
            let client = client + i;
            for attempt in 1.. {
                let value = format!("c{client}-{attempt}");
                let write = ledger.put(&node, client, i, "k/000", &value).await;
                match write.outcome {
                    Ok(_) => break,
                    Err(err) if unavailable(&err) && started.elapsed() < within => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(err) => panic!(
                        "{}: member {i} did not get a write acknowledged within {within:?}: \
                         {err:?} (attempt {attempt}, {:?} after the first); {}",
                        self.scenario,
                        started.elapsed(),
                        ledger.summary()
                    ),
                }
            }
            (i, started.elapsed())
        });
        futures::future::join_all(probes).await
    }

    /// The store revision member `index` holds now.
    pub fn revision(&self, index: usize) -> i64 {
        self.running(index).metrics().current_revision
    }

    /// Stops every running member (the end of a scenario).
    pub async fn shutdown(&self) {
        for i in self.up() {
            self.stop(i).await;
        }
    }
}

/// Whether `err` is one of the answers a member gives when it cannot get a request served.
pub fn unavailable(err: &KvError) -> bool {
    matches!(
        err,
        KvError::NoLeader | KvError::NotLeader | KvError::LeaderChanged | KvError::Timeout
    )
}
