//! Disaster recovery after losing quorum: `--force-new-cluster`, as etcd offers it.
//!
//! The surviving member appends, to its own log, a membership entry that names only itself. On
//! start raft takes the last membership in the log as the effective one, so this member is the
//! sole voter: it elects itself, commits everything its log holds (as etcd's force-new-cluster
//! does) and serves as a one-member cluster with its member and cluster ids unchanged. The other
//! members must be wiped and added back with `member add`.

use std::collections::{BTreeMap, BTreeSet};

use openraft::entry::RaftEntry as _;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt as _;

use super::NodeError;
use crate::raft::log_store::WalLogStore;
use crate::raft::types::{Entry, LogId, MemberNode, Membership, TypeConfig};

/// Appends the one-member membership entry; returns its log id (`None` on an empty log, where
/// there is nothing to recover and the member simply starts).
pub(super) async fn force_new_cluster(
    log_store: &mut WalLogStore,
    member_id: u64,
    node: MemberNode,
) -> Result<Option<LogId>, NodeError> {
    let raft_error = |e: &dyn std::fmt::Display| NodeError::Raft(e.to_string());
    let state = log_store
        .get_log_state()
        .await
        .map_err(|e| raft_error(&e))?;
    let Some(last) = state.last_log_id else {
        return Ok(None);
    };
    let membership = Membership::new(
        vec![BTreeSet::from([member_id])],
        BTreeMap::from([(member_id, node)]),
    )
    .map_err(|e| raft_error(&e))?;
    let log_id = LogId::new(*last.committed_leader_id(), last.index() + 1);
    let entry = Entry::new_membership(log_id, membership);
    let (tx, rx) = TypeConfig::oneshot();
    log_store
        .append([entry], IOFlushed::signal(tx))
        .await
        .map_err(|e| raft_error(&e))?;
    rx.await
        .map_err(|e| raft_error(&e))?
        .map_err(|e| raft_error(&e))?;
    tracing::warn!(%log_id, "--force-new-cluster: this member is now the only member of its cluster");
    Ok(Some(log_id))
}
