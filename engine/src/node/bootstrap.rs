//! Joining a cluster and checking that the peers named on the command line belong to this
//! member's cluster, before raft exchanges a single message.
//!
//! - `--initial-cluster-state existing` with an empty data dir: ask the listed peers for the
//!   cluster's id and membership, and take the member id the cluster gave these peer URLs when
//!   `member add` ran (etcd does the same). Not listed: refuse to start.
//! - Any start: a reachable peer that reports another cluster id means the flags or the data dir
//!   belong to another cluster; refuse to start rather than exchange raft messages with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;

use super::leader::{LeaderRequest, LeaderResponse};
use super::{NodeConfig, NodeError, identity};
use crate::error::KvResult;
use crate::raft::transport::{Envelope, PeerRpc, PeerTarget, PeerTransport};
use crate::raft::types::MemberNode;
use crate::raft::wire;

/// How long one cluster-info probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a joining member keeps trying to reach the cluster (and to find itself listed).
const JOIN_PATIENCE: Duration = Duration::from_secs(10);

/// Asks one peer for its cluster id and membership; `None` if it cannot answer.
async fn probe(
    transport: &dyn PeerTransport,
    from: u64,
    peer_urls: &[String],
) -> Option<(u64, Vec<super::leader::ClusterMember>)> {
    let target = PeerTarget {
        member_id: 0,
        peer_urls: peer_urls.to_vec(),
    };
    let envelope = Envelope {
        cluster_id: 0,
        from,
        to: 0,
    };
    let payload = wire::encode(&LeaderRequest::ClusterInfo).ok()?;
    let answer = transport
        .unary(&target, PeerRpc::Leader, envelope, payload, PROBE_TIMEOUT)
        .await
        .ok()?;
    match wire::decode::<KvResult<LeaderResponse>>(&answer).ok()? {
        Ok(LeaderResponse::ClusterInfo {
            cluster_id,
            members,
        }) => Some((cluster_id, members)),
        _ => None,
    }
}

fn same_urls(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// The identity of a member joining an existing cluster, learned from its peers.
pub(super) async fn join_existing(
    config: &NodeConfig,
    transport: &dyn PeerTransport,
    initial: &BTreeMap<u64, MemberNode>,
) -> Result<identity::Identity, NodeError> {
    let own_urls = &config.advertise_peer_urls;
    let peers: Vec<&MemberNode> = initial
        .values()
        .filter(|node| !same_urls(&node.peer_urls, own_urls))
        .collect();
    if peers.is_empty() {
        return Err(NodeError::Config(
            "--initial-cluster-state existing needs --initial-cluster to name at least one \
             running member besides this one"
                .into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + JOIN_PATIENCE;
    loop {
        let answers = join_all(peers.iter().map(|p| probe(transport, 0, &p.peer_urls))).await;
        let answers: Vec<_> = answers.into_iter().flatten().collect();
        // A peer that has not applied `member add` yet does not list this member: prefer one that
        // does, and give the others until the deadline to catch up.
        let listed = answers.iter().find_map(|(cluster_id, members)| {
            members
                .iter()
                .find(|m| same_urls(&m.node.peer_urls, own_urls))
                .map(|me| (*cluster_id, me.id))
        });
        let past_deadline = tokio::time::Instant::now() >= deadline;
        if listed.is_none()
            && past_deadline
            && let Some((cluster_id, _)) = answers.first()
        {
            return Err(NodeError::ClusterMismatch(format!(
                "cluster {cluster_id:016x} has no member with peer URLs {own_urls:?}; \
                 add this member first (etcdctl member add {} --peer-urls={})",
                config.name,
                own_urls.join(",")
            )));
        }
        if let Some((cluster_id, member_id)) = listed {
            tracing::info!(member = %format!("{member_id:016x}"),
                cluster = %format!("{cluster_id:016x}"), "joining an existing cluster");
            return Ok(identity::Identity {
                name: config.name.clone(),
                member_id,
                cluster_id,
                cluster_token: config.initial_cluster_token.clone(),
            });
        }
        if past_deadline {
            return Err(NodeError::ClusterMismatch(format!(
                "could not reach any member of the existing cluster at {:?}",
                peers
                    .iter()
                    .map(|p| p.peer_urls.join(","))
                    .collect::<Vec<_>>()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Refuses to start if a reachable peer from the flags belongs to another cluster.
pub(super) async fn verify_peers(
    transport: &dyn PeerTransport,
    identity: &identity::Identity,
    initial: &BTreeMap<u64, MemberNode>,
) -> Result<(), NodeError> {
    let peers: Vec<(&u64, &MemberNode)> = initial
        .iter()
        .filter(|(id, _)| **id != identity.member_id)
        .collect();
    let answers = join_all(
        peers
            .iter()
            .map(|(_, node)| probe(transport, identity.member_id, &node.peer_urls)),
    )
    .await;
    for ((_, node), answer) in peers.iter().zip(answers) {
        let Some((cluster_id, _)) = answer else {
            continue;
        };
        if cluster_id != identity.cluster_id {
            return Err(NodeError::ClusterMismatch(format!(
                "the member at {} belongs to cluster {cluster_id:016x}, this data dir to cluster \
                 {:016x}; check --initial-cluster and --initial-cluster-token, or start with an \
                 empty --data-dir",
                node.peer_urls.join(","),
                identity.cluster_id
            )));
        }
    }
    Ok(())
}
