//! The node's background tasks: leader tracking and lease expiry.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Node;
use crate::error::KvError;
use crate::kv::Event;
use crate::mvcc::{ApplyInput, ApplyOutput, MvccStore};
use crate::raft::state_machine::ApplyObserver;

/// Handles of the tasks a node started, aborted on shutdown.
#[derive(Default)]
pub(super) struct TaskSet {
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl TaskSet {
    pub(super) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.push(tokio::spawn(task));
    }

    pub(super) fn push(&self, handle: JoinHandle<()>) {
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    pub(super) fn abort_all(&self) {
        for handle in self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            handle.abort();
        }
    }
}

/// An observer set after the state machine is built (the hub needs the state machine's store).
/// Nothing is applied before raft starts, which happens after `set`.
#[derive(Default)]
pub(super) struct LateObserver {
    target: OnceLock<Arc<dyn ApplyObserver>>,
}

impl LateObserver {
    pub(super) fn set(&self, observer: Arc<dyn ApplyObserver>) {
        if self.target.set(observer).is_err() {
            tracing::error!("apply observer set twice");
        }
    }
}

impl ApplyObserver for LateObserver {
    fn applied(&self, input: &ApplyInput<'_>, output: &ApplyOutput, events: Vec<Event>) {
        if let Some(target) = self.target.get() {
            target.applied(input, output, events);
        }
    }

    fn restored(&self, store: &MvccStore) {
        if let Some(target) = self.target.get() {
            target.restored(store);
        }
    }

    fn batch_applied(&self, revision: i64) {
        if let Some(target) = self.target.get() {
            target.batch_applied(revision);
        }
    }
}

/// Follows raft's metrics: publishes the leader, counts changes, and promotes or demotes the
/// lessor when this member gains or loses leadership.
///
/// Also notices when a committed membership no longer lists this member (it was removed) and
/// says so through `removed_tx`.
pub(super) async fn track_leader(node: Node, leader_tx: watch::Sender<Option<u64>>) {
    let inner = &node.inner;
    let mut metrics = inner.raft.metrics();
    let mut last_leader: Option<u64> = None;
    // A joining member replays memberships from before it was added: only a member that has
    // been in a committed membership can be removed from one. The same holds for peers.
    let mut seen_members: BTreeSet<u64> = BTreeSet::new();
    loop {
        let (leader, term, members) = {
            let m = metrics.borrow_and_update();
            let committed = &m.committed_membership_config;
            let members: BTreeSet<u64> = if committed.log_id().is_some() {
                committed.membership().nodes().map(|(id, _)| *id).collect()
            } else {
                BTreeSet::new()
            };
            (m.current_leader, m.current_term, members)
        };
        seen_members.extend(members.iter().copied());
        {
            let mut removed_peers = inner
                .removed_peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *removed_peers = seen_members.difference(&members).copied().collect();
        }
        let was_member = seen_members.contains(&inner.member_id);
        if was_member && !members.contains(&inner.member_id) && !*inner.removed_tx.borrow() {
            tracing::warn!("this member has been removed from the cluster");
            inner.removed_tx.send_replace(true);
        }
        inner.raft_term.store(term, Ordering::Relaxed);
        if leader != last_leader {
            if leader.is_some() {
                inner.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            let was_leader = last_leader == Some(inner.member_id);
            let is_leader = leader == Some(inner.member_id);
            if is_leader && !was_leader {
                inner.lessor.promote(inner.config.election_timeout);
            } else if was_leader && !is_leader {
                inner.lessor.demote();
            }
            tracing::info!(leader = ?leader.map(|id| format!("{id:016x}")), term, "leader changed");
            last_leader = leader;
            leader_tx.send_replace(leader);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// On the leader, proposes a revoke for every expired lease (at most 1000 per tick, each revoke
/// deleting all of its keys at one revision).
pub(super) async fn expire_leases(node: Node) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for id in node.inner.lessor.expired(1000) {
            let node = node.clone();
            tokio::spawn(async move {
                match node.lease_revoke(id).await {
                    Ok(_) | Err(KvError::LeaseNotFound) => {
                        tracing::debug!(lease = %format!("{id:016x}"), "expired lease revoked");
                    }
                    Err(err) => {
                        tracing::warn!(lease = %format!("{id:016x}"), %err, "revoking an expired lease");
                    }
                }
            });
        }
    }
}

/// Changes removed per compaction step: each step is one small write transaction, so an apply
/// waits at most one step.
const COMPACTION_STEP: usize = 1000;

/// Runs the physical removal of compactions in bounded steps on the blocking pool (at start,
/// to finish one interrupted by a crash, and whenever a Compact is applied), and publishes the
/// compact revision it has finished.
pub(super) async fn compact_in_background(node: Node, wakeup: Arc<tokio::sync::Notify>) {
    loop {
        let store = node.inner.store.get();
        let target = store.compact_revision();
        // History must have durably recorded every revision the removal drops: it reads them
        // from the store (history outlives compaction; see history/mod.rs).
        if let Some(history) = &node.inner.history {
            let mut waited = Duration::ZERO;
            while history.durable_head() < target {
                if waited >= Duration::from_secs(30) {
                    tracing::warn!(
                        history = history.head(),
                        target,
                        "compaction is waiting for history to record the revisions it removes"
                    );
                    waited = Duration::ZERO;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
            keep_history_anchor(history, &store, target).await;
        }
        loop {
            let step_store = Arc::clone(&store);
            match tokio::task::spawn_blocking(move || step_store.compact_step(COMPACTION_STEP))
                .await
            {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    node.inner.compacted.send_replace(target);
                    break;
                }
                Ok(Err(err)) => {
                    tracing::error!(%err, "compaction step failed; retrying later");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => {
                    tracing::error!(%err, "compaction step panicked");
                    return;
                }
            }
        }
        wakeup.notified().await;
    }
}

/// Stores history's commit at the compact revision in the store before the removal begins, so
/// that a member whose history has to start there (it installs a snapshot of this store, or
/// rebuilds its history) records the same commit as its peers.
async fn keep_history_anchor(
    history: &Arc<crate::history::Recording>,
    store: &Arc<MvccStore>,
    target: i64,
) {
    if target <= 0 {
        return;
    }
    let history = Arc::clone(history);
    let store = Arc::clone(store);
    let result = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let current = store.history_anchor().map_err(|err| err.to_string())?;
        if current.is_some_and(|anchor| anchor.revision == target) {
            return Ok(());
        }
        match history.anchor(target).map_err(|err| err.to_string())? {
            Some(anchor) => store
                .set_history_anchor(&anchor)
                .map_err(|err| err.to_string()),
            None => Ok(()),
        }
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(%err, target, "keeping the history anchor"),
        Err(err) => tracing::error!(%err, "keeping the history anchor panicked"),
    }
}

/// Publishes this member's name and client URLs into the membership, retrying until it is done
/// (a member of a new cluster starts before its peers, so there may be no leader for a while).
pub(super) async fn publish_attributes(node: Node) {
    let mut delay = Duration::from_millis(200);
    loop {
        match node.publish_attributes().await {
            Ok(()) => return,
            Err(err) => {
                tracing::debug!(%err, "publishing member attributes; will retry");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
