//! Requests only the leader can serve, and how any member gets them served.
//!
//! ```text
//!  member ─► route(req) ─┬─ I am leader ─► serve(req) ─► raft client_write / read index / …
//!                        └─ follower ────► PeerRpc::Leader to the leader ─► its serve(req)
//!  no leader yet: wait for one (bounded); "not leader" answers (nothing was done): try again
//! ```
//!
//! A request is retried only when the answer proves nothing happened (the leader refused it
//! before appending anything, or the leader could not be reached at all). Any other failure is
//! returned, because the outcome is unknown, as etcd does ("request timed out", "leader changed").

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver as _;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Node, errors, identity, now_unix_ms};
use crate::error::{KvError, KvResult};
use crate::raft::transport::{Envelope, PeerRpc, PeerTarget, TransportError};
use crate::raft::types::{Applied, MemberNode};
use crate::raft::wire;
use crate::request::{AlarmAction, AlarmMember, AlarmType, Command, Proposal};

/// A request served by the leader on behalf of any member.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderRequest {
    /// Any member answers: its cluster id and current membership (joining members use it).
    ClusterInfo,
    Propose(Command, crate::request::Origin),
    ReadIndex,
    LeaseKeepAlive(i64),
    LeaseTimeToLive(i64),
    MemberAdd {
        peer_urls: Vec<String>,
        learner: bool,
    },
    MemberRemove(u64),
    MemberPromote(u64),
    MemberUpdate {
        id: u64,
        peer_urls: Vec<String>,
    },
    /// A member publishes its name and client URLs (etcd's "publish attributes").
    MemberAttributes {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

impl LeaderRequest {
    /// Whether serving the request twice is the same as serving it once.
    fn is_read_only(&self) -> bool {
        matches!(
            self,
            LeaderRequest::ClusterInfo
                | LeaderRequest::ReadIndex
                | LeaderRequest::LeaseTimeToLive(_)
        )
    }
}

/// A member as the cluster-info answer lists it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ClusterMember {
    pub(crate) id: u64,
    pub(crate) node: MemberNode,
    pub(crate) is_learner: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderResponse {
    ClusterInfo {
        cluster_id: u64,
        members: Vec<ClusterMember>,
    },
    Applied {
        applied: Applied,
        log_index: u64,
    },
    ReadIndex(u64),
    LeaseTtl(i64),
    LeaseTimeToLive {
        granted_ttl: i64,
        ttl: i64,
    },
    /// A membership change was committed at `log_index`; `added` is a new member's id.
    Membership {
        log_index: u64,
        added: Option<u64>,
    },
}

/// How long a request waits for a leader, or retries one that refused it, before failing.
pub(crate) const REQUEST_TIMEOUT: Duration = super::REQUEST_TIMEOUT;

/// A learner may be promoted once it has this fraction of the leader's log (etcd: 90%).
const LEARNER_READY_PERCENT: u64 = 90;

/// etcd allows one learner at a time.
const MAX_LEARNERS: usize = 1;

impl Node {
    /// Serves `request` on the leader, wherever that is.
    pub(crate) async fn route(&self, request: LeaderRequest) -> KvResult<LeaderResponse> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let leader = self.wait_for_leader_until(deadline).await?;
            let answer = if leader == self.inner.member_id {
                self.serve_as_leader(request.clone()).await
            } else {
                self.forward(leader, &request, deadline).await
            };
            match answer {
                // Refused before anything was done: the leader moved. Ask again.
                Err(KvError::NotLeader | KvError::NoLeader) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(KvError::NotLeader | KvError::NoLeader) => return Err(KvError::Timeout),
                // A lost answer to a request that changes nothing: ask again.
                Err(KvError::Timeout)
                    if request.is_read_only()
                        && Instant::now() + Duration::from_millis(50) < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// The current leader, waiting for one until `deadline` (then etcd's "no leader").
    async fn wait_for_leader_until(&self, deadline: Instant) -> KvResult<u64> {
        let mut leader = self.inner.leader.clone();
        let found = tokio::time::timeout_at(deadline, leader.wait_for(Option::is_some)).await;
        match found {
            Ok(Ok(id)) => Ok(id.unwrap_or_default()),
            Ok(Err(_)) => Err(KvError::Stopping),
            Err(_) => Err(KvError::NoLeader),
        }
    }

    /// Sends `request` to `leader`. Unreachable counts as "not leader" (nothing was delivered);
    /// a lost answer is a timeout (the request may have been served).
    async fn forward(
        &self,
        leader: u64,
        request: &LeaderRequest,
        deadline: Instant,
    ) -> KvResult<LeaderResponse> {
        let Some(node) = self.member_node(leader) else {
            return Err(KvError::NoLeader);
        };
        let target = PeerTarget {
            member_id: leader,
            peer_urls: node.peer_urls,
        };
        let envelope = Envelope {
            cluster_id: self.inner.cluster_id,
            from: self.inner.member_id,
            to: leader,
        };
        let payload = wire::encode(request).map_err(|e| KvError::Internal(e.to_string()))?;
        let timeout = deadline.saturating_duration_since(Instant::now());
        let answer = self
            .inner
            .transport
            .unary(&target, PeerRpc::Leader, envelope, payload, timeout)
            .await;
        match answer {
            Ok(bytes) => wire::decode::<KvResult<LeaderResponse>>(&bytes)
                .map_err(|e| KvError::Internal(e.to_string()))?,
            Err(TransportError::Unreachable { .. }) => Err(KvError::NotLeader),
            Err(TransportError::Removed { .. }) => {
                tracing::warn!("the leader says this member was removed from the cluster");
                self.inner.removed_tx.send_replace(true);
                Err(KvError::Stopping)
            }
            Err(TransportError::Rejected { reason, .. }) => Err(KvError::Internal(reason)),
            Err(err) => {
                tracing::debug!(%err, "forwarding to the leader");
                Err(KvError::Timeout)
            }
        }
    }

    pub(crate) fn member_node(&self, id: u64) -> Option<MemberNode> {
        self.membership().membership().get_node(&id).cloned()
    }

    /// Serves a request as the leader; "not leader" if this member is not (any more).
    pub(crate) async fn serve_as_leader(&self, request: LeaderRequest) -> KvResult<LeaderResponse> {
        match request {
            LeaderRequest::ClusterInfo => Ok(self.cluster_info()),
            LeaderRequest::Propose(command, origin) => {
                self.propose_as_leader(command, origin).await
            }
            LeaderRequest::ReadIndex => {
                let linearizer = self
                    .inner
                    .raft
                    .get_read_linearizer(openraft::ReadPolicy::ReadIndex)
                    .await
                    .map_err(|err| errors::from_read_error(&err))?;
                Ok(LeaderResponse::ReadIndex(linearizer.read_log_id().index()))
            }
            LeaderRequest::LeaseKeepAlive(id) => {
                self.ensure_primary()?;
                let ttl = self.inner.lessor.renew(id).ok_or(KvError::LeaseNotFound)?;
                Ok(LeaderResponse::LeaseTtl(ttl))
            }
            LeaderRequest::LeaseTimeToLive(id) => {
                self.ensure_primary()?;
                let (granted_ttl, ttl) = self
                    .inner
                    .lessor
                    .remaining(id)
                    .ok_or(KvError::LeaseNotFound)?;
                Ok(LeaderResponse::LeaseTimeToLive { granted_ttl, ttl })
            }
            LeaderRequest::MemberAdd { peer_urls, learner } => {
                self.add_member(peer_urls, learner).await
            }
            LeaderRequest::MemberRemove(id) => self.remove_member(id).await,
            LeaderRequest::MemberPromote(id) => self.promote_member(id).await,
            LeaderRequest::MemberUpdate { id, peer_urls } => {
                self.update_member(id, |node| node.peer_urls = peer_urls)
                    .await
            }
            LeaderRequest::MemberAttributes {
                id,
                name,
                client_urls,
            } => {
                self.update_member(id, |node| {
                    node.name = name;
                    node.client_urls = client_urls;
                })
                .await
            }
        }
    }

    pub(crate) fn cluster_info(&self) -> LeaderResponse {
        let stored = self.membership();
        let membership = stored.membership();
        let learners: BTreeSet<u64> = membership.learner_ids().collect();
        LeaderResponse::ClusterInfo {
            cluster_id: self.inner.cluster_id,
            members: membership
                .nodes()
                .map(|(id, node)| ClusterMember {
                    id: *id,
                    node: node.clone(),
                    is_learner: learners.contains(id),
                })
                .collect(),
        }
    }

    /// The lessor serves renewals only while this member is the leader and has promoted it.
    fn ensure_primary(&self) -> KvResult<()> {
        if self.inner.lessor.is_primary() {
            Ok(())
        } else {
            Err(KvError::NotLeader)
        }
    }

    /// Proposes a command on the leader: the space quota first (etcd's `quotaKVServer`: over
    /// quota, raise NOSPACE and refuse), then raft.
    async fn propose_as_leader(
        &self,
        command: Command,
        origin: crate::request::Origin,
    ) -> KvResult<LeaderResponse> {
        if !self.inner.raft.is_leader() {
            return Err(KvError::NotLeader);
        }
        if self.inner.store.get().exceeds_quota(&command) {
            tracing::warn!("database space exceeds --quota-backend-bytes; raising NOSPACE");
            let raise = Command::Alarm {
                action: AlarmAction::Activate,
                alarm: AlarmMember {
                    member_id: self.inner.member_id,
                    alarm: AlarmType::NoSpace,
                },
            };
            if let Err(err) = self
                .client_write(raise, crate::request::Origin::default())
                .await
            {
                tracing::warn!(%err, "raising the NOSPACE alarm");
            }
            return Err(KvError::NoSpace);
        }
        let (applied, log_index) = self.client_write(command, origin).await?;
        Ok(LeaderResponse::Applied { applied, log_index })
    }

    /// One raft write on this member (the leader), bounded by the request timeout.
    async fn client_write(
        &self,
        command: Command,
        origin: crate::request::Origin,
    ) -> KvResult<(Applied, u64)> {
        let proposal = Proposal {
            command,
            time_unix_ms: now_unix_ms(),
            origin,
        };
        let write = self.inner.raft.client_write(proposal);
        match tokio::time::timeout(REQUEST_TIMEOUT, write).await {
            Err(_) => Err(KvError::Timeout),
            Ok(Err(err)) => Err(errors::from_write_error(&err)),
            Ok(Ok(response)) => Ok((response.response().clone(), response.log_id().index())),
        }
    }

    /// etcd's strict reconfiguration check: the voters this member has heard from recently.
    fn started_voters(&self) -> BTreeSet<u64> {
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let recent = self.inner.config.election_timeout * 3;
        let mut started: BTreeSet<u64> = BTreeSet::from([self.inner.member_id]);
        if let Some(heartbeats) = &metrics.heartbeat {
            for (id, acked) in heartbeats {
                if acked.as_ref().is_some_and(|at| at.elapsed() <= recent) {
                    started.insert(*id);
                }
            }
        }
        let voters: BTreeSet<u64> = metrics.membership_config.membership().voter_ids().collect();
        started.intersection(&voters).copied().collect()
    }

    fn voters_and_learners(&self) -> (BTreeSet<u64>, BTreeMap<u64, MemberNode>) {
        let stored = self.membership();
        let membership = stored.membership();
        let voters = membership.voter_ids().collect();
        let learners = membership
            .learner_ids()
            .filter_map(|id| membership.get_node(&id).map(|node| (id, node.clone())))
            .collect();
        (voters, learners)
    }

    async fn change_membership(
        &self,
        change: openraft::ChangeMembers<u64, MemberNode>,
        added: Option<u64>,
    ) -> KvResult<LeaderResponse> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let attempt = self.inner.raft.change_membership(change.clone(), false);
            let result = tokio::time::timeout_at(deadline, attempt)
                .await
                .map_err(|_| KvError::Timeout)?;
            match result {
                Ok(response) => {
                    return Ok(LeaderResponse::Membership {
                        log_index: response.log_id().index(),
                        added,
                    });
                }
                // Another change (a joint configuration) is still being committed: wait for it.
                Err(openraft::errors::RaftError::APIError(
                    openraft::errors::ClientWriteError::ChangeMembershipError(
                        openraft::errors::ChangeMembershipError::InProgress(_),
                    ),
                )) if Instant::now() + Duration::from_millis(50) < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(errors::from_write_error(&err)),
            }
        }
    }

    async fn add_member(&self, peer_urls: Vec<String>, learner: bool) -> KvResult<LeaderResponse> {
        if !self.inner.raft.is_leader() {
            return Err(KvError::NotLeader);
        }
        let taken = self
            .members()
            .iter()
            .any(|m| m.peer_urls.iter().any(|url| peer_urls.contains(url)));
        if taken {
            return Err(KvError::PeerUrlExists);
        }
        let (voters, learners) = self.voters_and_learners();
        if learner && learners.len() >= MAX_LEARNERS {
            return Err(KvError::TooManyLearners);
        }
        if !learner && self.started_voters().len() < quorum(voters.len() + 1) {
            return Err(KvError::NotEnoughStarted);
        }
        // etcd: a fresh id from the URLs, the cluster and the time, so a re-added member is new.
        let seed = format!("{}/{}", self.inner.cluster_id, now_unix_ms());
        let id = identity::member_id(&peer_urls, &seed);
        let node = MemberNode {
            name: String::new(),
            peer_urls,
            client_urls: Vec::new(),
        };
        let change = if learner {
            openraft::ChangeMembers::AddNodes(BTreeMap::from([(id, node)]))
        } else {
            openraft::ChangeMembers::AddVoters(BTreeMap::from([(id, node)]))
        };
        self.change_membership(change, Some(id)).await
    }

    async fn remove_member(&self, id: u64) -> KvResult<LeaderResponse> {
        if !self.inner.raft.is_leader() {
            return Err(KvError::NotLeader);
        }
        let (voters, learners) = self.voters_and_learners();
        if learners.contains_key(&id) {
            let change = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            return self.change_membership(change, None).await;
        }
        if !voters.contains(&id) {
            return Err(KvError::MemberNotFound);
        }
        let mut started = self.started_voters();
        started.remove(&id);
        if started.len() < quorum(voters.len() - 1) || voters.len() == 1 {
            return Err(KvError::NotEnoughStarted);
        }
        let change = openraft::ChangeMembers::RemoveVoters(BTreeSet::from([id]));
        self.change_membership(change, None).await
    }

    async fn promote_member(&self, id: u64) -> KvResult<LeaderResponse> {
        if !self.inner.raft.is_leader() {
            return Err(KvError::NotLeader);
        }
        let (voters, learners) = self.voters_and_learners();
        if voters.contains(&id) {
            return Err(KvError::MemberNotLearner);
        }
        if !learners.contains_key(&id) {
            return Err(KvError::MemberNotFound);
        }
        let metrics = self.inner.raft.metrics().borrow_watched().clone();
        let leader_index = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).copied().flatten())
            .map_or(0, |log_id| log_id.index());
        if matched * 100 < leader_index * LEARNER_READY_PERCENT {
            return Err(KvError::LearnerNotReady);
        }
        if self.started_voters().len() + 1 < quorum(voters.len() + 1) {
            return Err(KvError::NotEnoughStarted);
        }
        let change = openraft::ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        self.change_membership(change, None).await
    }

    async fn update_member(
        &self,
        id: u64,
        update: impl FnOnce(&mut MemberNode),
    ) -> KvResult<LeaderResponse> {
        if !self.inner.raft.is_leader() {
            return Err(KvError::NotLeader);
        }
        let Some(mut node) = self.member_node(id) else {
            return Err(KvError::MemberNotFound);
        };
        let before = node.clone();
        update(&mut node);
        if node == before {
            return Ok(LeaderResponse::Membership {
                log_index: 0,
                added: None,
            });
        }
        let change = openraft::ChangeMembers::SetNodes(BTreeMap::from([(id, node)]));
        self.change_membership(change, None).await
    }
}

/// A majority of `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn requests_survive_the_wire() {
        let request = LeaderRequest::MemberAdd {
            peer_urls: vec!["http://127.0.0.1:2380".into()],
            learner: true,
        };
        let bytes = wire::encode(&request).unwrap();
        assert!(matches!(
            wire::decode::<LeaderRequest>(&bytes).unwrap(),
            LeaderRequest::MemberAdd { learner: true, .. }
        ));
        let answer: KvResult<LeaderResponse> = Err(KvError::LearnerNotReady);
        let bytes = wire::encode(&answer).unwrap();
        assert!(matches!(
            wire::decode::<KvResult<LeaderResponse>>(&bytes).unwrap(),
            Err(KvError::LearnerNotReady)
        ));
    }
}
