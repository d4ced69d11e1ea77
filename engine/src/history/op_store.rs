//! `RedbOpStore`: jj-lib's operation store over the same redb tables as the commits.
//!
//! Operations and views are stored as jj's own `simple_op_store` protobuf messages, content
//! addressed by SHA-256 (kinds `o` and `v`, packed with their revision's objects). History's
//! views only ever hold head commits (one head: the newest revision), so bookmarks, tags,
//! remotes and working copies are refused rather than silently dropped.
//!
//! Operations are per member: they record how this member's applied batches arrived (raft log
//! ids, origins), which differs between members, unlike the commits they point at.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use jj_lib::backend::{CommitId, MillisSinceEpoch, Timestamp};
use jj_lib::object_id::{HexPrefix, ObjectId, PrefixResolution};
use jj_lib::op_store::{
    OpStore, OpStoreError, OpStoreResult, Operation, OperationId, OperationMetadata,
    TimestampRange, View, ViewId,
};
use jj_lib::protos::simple_op_store as proto;
use prost::Message;

use super::backend::{Kind, RedbBackend};
use super::index::Head;
use super::wire::encode_operation;
use super::writer::timestamp;

/// jj's operation store over redb; shares the commit backend's object table and buffer.
pub struct RedbOpStore {
    backend: Arc<RedbBackend>,
    root_operation_id: OperationId,
}

impl fmt::Debug for RedbOpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbOpStore").finish_non_exhaustive()
    }
}

impl RedbOpStore {
    pub const NAME: &'static str = "cairn-redb-op-store";

    pub(crate) fn new(backend: Arc<RedbBackend>) -> Self {
        Self {
            backend,
            root_operation_id: OperationId::new(vec![0; super::backend::ID_LEN]),
        }
    }

    fn read(&self, kind: Kind, id: &impl ObjectId) -> OpStoreResult<Vec<u8>> {
        self.backend
            .read_object(kind, id.as_bytes())
            .map_err(|err| OpStoreError::Other(Box::new(err)))?
            .ok_or_else(|| OpStoreError::ObjectNotFound {
                object_type: id.object_type(),
                hash: id.hex(),
                source: "not in the history database".into(),
            })
    }

    /// Writes an operation or a view, located at the revision being recorded.
    fn write(&self, kind: Kind, bytes: &[u8]) -> Vec<u8> {
        self.backend
            .write_object(kind, self.backend.writing_locator(), bytes)
    }

    /// Writes a view synchronously (the writer's path).
    pub(crate) fn put_view(&self, view: &View) -> OpStoreResult<ViewId> {
        Ok(ViewId::new(
            self.write(Kind::View, &view_to_proto(view)?.encode_to_vec()),
        ))
    }

    /// Writes an operation synchronously (the writer's path).
    pub(crate) fn put_operation(&self, operation: &Operation) -> OperationId {
        OperationId::new(self.write(Kind::Operation, &encode_operation(operation)))
    }

    /// Reads an operation (the root operation is virtual).
    pub(crate) fn operation(&self, id: &OperationId) -> OpStoreResult<Operation> {
        if id == &self.root_operation_id {
            return Ok(Operation::make_root(ViewId::new(
                vec![0; super::backend::ID_LEN],
            )));
        }
        let bytes = self.read(Kind::Operation, id)?;
        let decoded =
            proto::Operation::decode(bytes.as_slice()).map_err(|err| OpStoreError::ReadObject {
                object_type: id.object_type(),
                hash: id.hex(),
                source: Box::new(err),
            })?;
        Ok(operation_from_proto(decoded))
    }

    /// Writes the next operation of the log after `head`'s: its view's only head is `head`'s
    /// commit, `new_commits` are the commits it created. Advances `head`'s operation.
    pub(crate) fn append(
        &self,
        head: &mut Head,
        description: String,
        (start_unix_ms, end_unix_ms): (u64, u64),
        attributes: BTreeMap<String, String>,
        new_commits: impl IntoIterator<Item = CommitId>,
    ) -> OpStoreResult<OperationId> {
        let view_id = self.put_view(&view_with_head(head.commit(self.backend.root_commit())))?;
        let parent = if head.operation_id.is_empty() {
            self.root_operation_id.clone()
        } else {
            OperationId::new(head.operation_id.clone())
        };
        let operation = Operation {
            view_id,
            parents: vec![parent],
            metadata: OperationMetadata {
                time: TimestampRange {
                    start: timestamp(start_unix_ms),
                    end: timestamp(end_unix_ms),
                },
                description,
                hostname: "cairn".to_owned(),
                username: "cairn".to_owned(),
                is_snapshot: false,
                workspace_name: None,
                attributes,
            },
            commit_predecessors: Some(
                new_commits
                    .into_iter()
                    .map(|commit| (commit, Vec::new()))
                    .collect(),
            ),
        };
        let id = self.put_operation(&operation);
        head.operation_id = id.to_bytes();
        head.operation_seq += 1;
        Ok(id)
    }
}

#[async_trait]
impl OpStore for RedbOpStore {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn root_operation_id(&self) -> &OperationId {
        &self.root_operation_id
    }

    async fn read_view(&self, id: &ViewId) -> OpStoreResult<View> {
        if id.as_bytes().iter().all(|&b| b == 0) {
            return Ok(View::make_root(self.backend.root_commit().clone()));
        }
        let bytes = self.read(Kind::View, id)?;
        let decoded =
            proto::View::decode(bytes.as_slice()).map_err(|err| OpStoreError::ReadObject {
                object_type: id.object_type(),
                hash: id.hex(),
                source: Box::new(err),
            })?;
        let mut view = View::make_root(self.backend.root_commit().clone());
        view.head_ids = decoded.head_ids.into_iter().map(CommitId::new).collect();
        Ok(view)
    }

    async fn write_view(&self, contents: &View) -> OpStoreResult<ViewId> {
        self.put_view(contents)
    }

    async fn read_operation(&self, id: &OperationId) -> OpStoreResult<Operation> {
        self.operation(id)
    }

    async fn write_operation(&self, contents: &Operation) -> OpStoreResult<OperationId> {
        Ok(self.put_operation(contents))
    }

    async fn resolve_operation_id_prefix(
        &self,
        prefix: &HexPrefix,
    ) -> OpStoreResult<PrefixResolution<OperationId>> {
        // Only full ids: the operation log is browsed through `History::oplog`.
        match prefix.as_full_bytes() {
            Some(bytes) if bytes.len() == super::backend::ID_LEN => {
                let id = OperationId::from_bytes(bytes);
                match self.read(Kind::Operation, &id) {
                    Ok(_) => Ok(PrefixResolution::SingleMatch(id)),
                    Err(OpStoreError::ObjectNotFound { .. }) => Ok(PrefixResolution::NoMatch),
                    Err(err) => Err(err),
                }
            }
            _ => Ok(PrefixResolution::NoMatch),
        }
    }

    async fn gc(&self, _head_ids: &[OperationId], _keep_newer: SystemTime) -> OpStoreResult<()> {
        Ok(())
    }
}

fn view_to_proto(view: &View) -> OpStoreResult<proto::View> {
    let refs = !view.local_bookmarks.is_empty()
        || !view.local_tags.is_empty()
        || !view.remote_views.is_empty()
        || !view.git_refs.is_empty()
        || !view.git_heads.is_empty()
        || !view.wc_commit_ids.is_empty();
    if refs {
        return Err(OpStoreError::Other(
            "the history op store keeps only head commits (no bookmarks, tags or workspaces)"
                .into(),
        ));
    }
    let mut heads: Vec<Vec<u8>> = view.head_ids.iter().map(ObjectId::to_bytes).collect();
    heads.sort();
    Ok(proto::View {
        head_ids: heads,
        ..proto::View::default()
    })
}

#[cfg(test)]
fn timestamp_to_proto(timestamp: &Timestamp) -> proto::Timestamp {
    proto::Timestamp {
        millis_since_epoch: timestamp.timestamp.0,
        tz_offset: timestamp.tz_offset,
    }
}

fn timestamp_from_proto(timestamp: Option<proto::Timestamp>) -> Timestamp {
    let timestamp = timestamp.unwrap_or_default();
    Timestamp {
        timestamp: MillisSinceEpoch(timestamp.millis_since_epoch),
        tz_offset: timestamp.tz_offset,
    }
}

/// The prost message of `operation` (what [`encode_operation`] writes is held to it).
#[cfg(test)]
pub(crate) fn operation_to_proto(operation: &Operation) -> proto::Operation {
    let metadata = &operation.metadata;
    proto::Operation {
        view_id: operation.view_id.to_bytes(),
        parents: operation.parents.iter().map(ObjectId::to_bytes).collect(),
        metadata: Some(proto::OperationMetadata {
            start_time: Some(timestamp_to_proto(&metadata.time.start)),
            end_time: Some(timestamp_to_proto(&metadata.time.end)),
            description: metadata.description.clone(),
            hostname: metadata.hostname.clone(),
            username: metadata.username.clone(),
            is_snapshot: metadata.is_snapshot,
            workspace_name: None,
            attributes: metadata
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
        commit_predecessors: operation
            .commit_predecessors
            .iter()
            .flatten()
            .map(|(commit, predecessors)| proto::CommitPredecessors {
                commit_id: commit.to_bytes(),
                predecessor_ids: predecessors.iter().map(ObjectId::to_bytes).collect(),
            })
            .collect(),
        stores_commit_predecessors: operation.commit_predecessors.is_some(),
    }
}

fn operation_from_proto(operation: proto::Operation) -> Operation {
    let metadata = operation.metadata.unwrap_or_default();
    let commit_predecessors = operation.stores_commit_predecessors.then(|| {
        operation
            .commit_predecessors
            .into_iter()
            .map(|entry| {
                (
                    CommitId::new(entry.commit_id),
                    entry
                        .predecessor_ids
                        .into_iter()
                        .map(CommitId::new)
                        .collect(),
                )
            })
            .collect::<BTreeMap<_, _>>()
    });
    Operation {
        view_id: ViewId::new(operation.view_id),
        parents: operation
            .parents
            .into_iter()
            .map(OperationId::new)
            .collect(),
        metadata: OperationMetadata {
            time: TimestampRange {
                start: timestamp_from_proto(metadata.start_time),
                end: timestamp_from_proto(metadata.end_time),
            },
            description: metadata.description,
            hostname: metadata.hostname,
            username: metadata.username,
            is_snapshot: metadata.is_snapshot,
            workspace_name: None,
            attributes: metadata.attributes.into_iter().collect(),
        },
        commit_predecessors,
    }
}

/// A view whose only head is `head`.
pub(crate) fn view_with_head(head: CommitId) -> View {
    let mut view = View::make_root(head.clone());
    view.head_ids = HashSet::from([head]);
    view
}
