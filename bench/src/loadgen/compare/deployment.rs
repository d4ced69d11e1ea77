//! What a round runs the workload against: one server process, or a cluster of N members
//! started together on loopback ports, each with its own fresh data dir.
//!
//! A cluster is ready when every member reports the same leader (Maintenance `Status`) and a
//! Put through every member succeeds, within [`CLUSTER_READY_TIMEOUT`]. Its client endpoints
//! are then ordered as `--first-endpoint` says (the workload opens connection `i` to endpoint
//! `i mod N`).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use cairn_kvapi::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_kvapi::pb::etcdserverpb::{PutRequest, StatusRequest, StatusResponse};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::server::{Binaries, Member, ServerKind, ServerProcess, free_ports, fresh_dir};
use crate::loadgen::cli::FirstEndpoint;
use crate::loadgen::connect::endpoint_url;

/// How long a cluster may take to elect a leader and accept a write through every member.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The key the readiness write puts (outside every workload's key space).
const READY_KEY: &[u8] = b"loadgen-ready";

/// Peak resident set sizes over the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeakRss {
    /// The largest member's peak.
    pub max_bytes: u64,
    /// The members' peaks added up.
    pub sum_bytes: u64,
}

/// Who leads a cluster, and its raft term (the highest any member reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub leader: u64,
    pub term: u64,
}

/// A running single server or cluster. Dropping it kills every process.
pub struct Deployment {
    pub kind: ServerKind,
    members: Vec<ServerProcess>,
    /// The members' client endpoints, in the order the workload gets them.
    endpoints: Vec<String>,
}

impl Deployment {
    /// Starts `kind` with `size` members (1 = a single server, readied as
    /// [`ServerProcess::start`] does) with fresh data dirs under `data_root`.
    pub async fn start(
        kind: ServerKind,
        binaries: &Binaries,
        data_root: Option<&Path>,
        size: usize,
        first: FirstEndpoint,
    ) -> anyhow::Result<Self> {
        if size <= 1 {
            let server = ServerProcess::start(kind, binaries, data_root).await?;
            return Ok(Self {
                kind,
                endpoints: vec![server.endpoint.clone()],
                members: vec![server],
            });
        }
        let ports = free_ports(2 * size)?;
        let cluster: Vec<Member> = ports
            .chunks_exact(2)
            .enumerate()
            .map(|(i, pair)| Member {
                name: format!("m{i}"),
                client_port: pair[0],
                peer_port: pair[1],
            })
            .collect();
        let mut members = Vec::with_capacity(size);
        for me in &cluster {
            let dir = fresh_dir(data_root)?;
            members.push(ServerProcess::spawn(kind, binaries, dir, me, &cluster)?);
        }
        let mut deployment = Self {
            kind,
            members,
            endpoints: Vec::new(),
        };
        let leader = deployment.wait_cluster_ready().await?;
        deployment.endpoints = endpoint_order(
            &deployment
                .members
                .iter()
                .map(|m| m.endpoint.clone())
                .collect::<Vec<_>>(),
            leader,
            first,
        );
        Ok(deployment)
    }

    /// The client endpoints, in the order the workload should get them.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Waits until all members agree on a leader and a write through each succeeds; returns
    /// the leader's index in `members`.
    async fn wait_cluster_ready(&mut self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
        let mut last_error = String::from("never asked");
        loop {
            for member in &mut self.members {
                member
                    .check_running()
                    .with_context(|| format!("the {} cluster was not ready yet", self.kind))?;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the {} cluster was not ready after {CLUSTER_READY_TIMEOUT:?}: {last_error}\n{}",
                    self.kind,
                    self.log_tail()
                );
            }
            match self.try_ready().await {
                Ok(leader) => return Ok(leader),
                Err(err) => last_error = format!("{err:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_ready(&self) -> anyhow::Result<usize> {
        let statuses = self.statuses().await?;
        let leader = statuses[0].leader;
        ensure!(leader != 0, "no leader yet");
        ensure!(
            statuses.iter().all(|s| s.leader == leader),
            "the members do not agree on the leader yet"
        );
        let index = statuses
            .iter()
            .position(|s| s.header.as_ref().is_some_and(|h| h.member_id == leader))
            .with_context(|| format!("the leader {leader:x} is not one of the members"))?;
        for member in &self.members {
            put(&member.endpoint)
                .await
                .with_context(|| format!("a write through {} failed", member.name))?;
        }
        Ok(index)
    }

    /// Every member's `Status`, in member order.
    async fn statuses(&self) -> anyhow::Result<Vec<StatusResponse>> {
        let mut statuses = Vec::with_capacity(self.members.len());
        for member in &self.members {
            statuses.push(
                status(&member.endpoint)
                    .await
                    .with_context(|| format!("no status from {}", member.name))?,
            );
        }
        Ok(statuses)
    }

    /// The leader and the highest raft term over the members; `None` for a single server.
    pub async fn leadership(&self) -> Option<anyhow::Result<Leadership>> {
        if self.members.len() <= 1 {
            return None;
        }
        Some(self.statuses().await.map(|statuses| Leadership {
            leader: statuses[0].leader,
            term: statuses.iter().map(|s| s.raft_term).max().unwrap_or(0),
        }))
    }

    /// Peak RSS over the members.
    pub fn peak_rss(&self) -> anyhow::Result<PeakRss> {
        let mut rss = PeakRss {
            max_bytes: 0,
            sum_bytes: 0,
        };
        for member in &self.members {
            let bytes = member
                .peak_rss_bytes()
                .with_context(|| format!("no peak RSS of {}", member.name))?;
            rss.max_bytes = rss.max_bytes.max(bytes);
            rss.sum_bytes += bytes;
        }
        Ok(rss)
    }

    /// The last lines of every member's output.
    pub fn log_tail(&self) -> String {
        if let [single] = self.members.as_slice() {
            return single.log_tail();
        }
        self.members
            .iter()
            .map(|m| format!("--- {} ({}) ---\n{}", m.name, m.endpoint, m.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asks every member to exit at once, then waits for each (killing it after 10 s).
    pub async fn stop(self) -> anyhow::Result<()> {
        for member in &self.members {
            member.terminate().await;
        }
        let mut result = Ok(());
        for member in self.members {
            let stopped = member.wait_or_kill().await;
            if result.is_ok() {
                result = stopped;
            }
        }
        result
    }
}

/// `endpoints` (in member order) reordered so the leader's (`leader` indexes it) or a
/// follower's comes first; the rest keep member order.
fn endpoint_order(endpoints: &[String], leader: usize, first: FirstEndpoint) -> Vec<String> {
    let head = match first {
        FirstEndpoint::Leader => leader,
        FirstEndpoint::Follower => usize::from(leader == 0),
    };
    let mut ordered = vec![endpoints[head].clone()];
    if head != leader {
        ordered.push(endpoints[leader].clone());
    }
    ordered.extend(
        endpoints
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != head && i != leader)
            .map(|(_, e)| e.clone()),
    );
    ordered
}

async fn channel(endpoint: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(endpoint_url(endpoint))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await?)
}

async fn status(endpoint: &str) -> anyhow::Result<StatusResponse> {
    let channel = channel(endpoint, STATUS_TIMEOUT).await?;
    Ok(MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await?
        .into_inner())
}

async fn put(endpoint: &str) -> anyhow::Result<()> {
    let channel = channel(endpoint, WRITE_TIMEOUT).await?;
    let request = PutRequest {
        key: Bytes::from_static(READY_KEY),
        value: Bytes::from_static(b"1"),
        ..PutRequest::default()
    };
    KvClient::new(channel).put(request).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    #[test]
    fn leader_first() {
        assert_eq!(
            endpoint_order(&endpoints(), 1, FirstEndpoint::Leader),
            ["b", "a", "c"]
        );
        assert_eq!(
            endpoint_order(&endpoints(), 0, FirstEndpoint::Leader),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn follower_first_then_the_leader() {
        assert_eq!(
            endpoint_order(&endpoints(), 0, FirstEndpoint::Follower),
            ["b", "a", "c"]
        );
        assert_eq!(
            endpoint_order(&endpoints(), 2, FirstEndpoint::Follower),
            ["a", "c", "b"]
        );
    }
}
