//! The Maintenance service (etcd `v3rpc/maintenance.go`): status, alarms, hashes,
//! defragmentation, snapshots, leader transfer and (refused) downgrades.

use std::pin::Pin;

use cairn_engine::KvError;
use cairn_engine::request::{AlarmAction, AlarmMember, AlarmType};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::snapshot::SnapshotFrames;
use crate::context::Ctx;
use crate::convert;
use crate::pb::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use crate::status::{EtcdError, kv_error};

pub struct MaintenanceService {
    ctx: Ctx,
}

impl MaintenanceService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        let r = request.into_inner();
        let wanted = alarm_type_from_pb(r.alarm);
        let (action, member) = match pb::alarm_request::AlarmAction::try_from(r.action) {
            Ok(pb::alarm_request::AlarmAction::Get) => (AlarmAction::Get, None),
            Ok(pb::alarm_request::AlarmAction::Activate) => (
                AlarmAction::Activate,
                wanted.map(|alarm| AlarmMember {
                    member_id: r.member_id,
                    alarm,
                }),
            ),
            Ok(pb::alarm_request::AlarmAction::Deactivate) => (
                AlarmAction::Deactivate,
                wanted.map(|alarm| AlarmMember {
                    member_id: r.member_id,
                    alarm,
                }),
            ),
            // etcd's applier ignores actions it does not know.
            Err(_) => {
                return Ok(Response::new(pb::AlarmResponse {
                    header: Some(self.ctx.header()),
                    alarms: Vec::new(),
                }));
            }
        };
        if action != AlarmAction::Get && member.is_none() {
            // Activating or deactivating NONE (or an unknown type) changes nothing.
            return Ok(Response::new(pb::AlarmResponse {
                header: Some(self.ctx.header()),
                alarms: Vec::new(),
            }));
        }
        let (alarms, header) = self
            .ctx
            .node
            .alarm(action, member)
            .await
            .map_err(kv_error)?;
        // GET with a type lists only that type; NONE lists all (etcd's alarm store).
        let alarms = alarms
            .into_iter()
            .filter(|a| action != AlarmAction::Get || r.alarm == 0 || Some(a.alarm) == wanted)
            .map(alarm_member_to_pb)
            .collect();
        Ok(Response::new(pb::AlarmResponse {
            header: Some(convert::header(header)),
            alarms,
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.ctx.node.status().await.map_err(kv_error)?;
        let config = &self.ctx.config;
        let mut errors = status.errors;
        let no_leader = EtcdError::NoLeader.to_string();
        if status.leader == 0 && !errors.contains(&no_leader) {
            errors.insert(0, no_leader);
        }
        Ok(Response::new(pb::StatusResponse {
            header: Some(convert::header(status.header)),
            version: config.version.clone(),
            db_size: status.db_size,
            leader: status.leader,
            raft_index: status.raft_index,
            raft_term: status.raft_term,
            raft_applied_index: status.raft_applied_index,
            errors,
            db_size_in_use: status.db_size_in_use,
            is_learner: status.is_learner,
            storage_version: config.storage_version.clone(),
            db_size_quota: i64::try_from(config.quota_backend_bytes).unwrap_or(i64::MAX),
            downgrade_info: Some(pb::DowngradeInfo {
                enabled: false,
                target_version: String::new(),
            }),
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        let header = self.ctx.node.defragment().await.map_err(kv_error)?;
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(convert::header(header)),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (hash, header) = self.ctx.node.hash().await.map_err(kv_error)?;
        Ok(Response::new(pb::HashResponse {
            header: Some(convert::header(header)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let (hash, header) = self
            .ctx
            .node
            .hash_kv(request.into_inner().revision)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(convert::header(header)),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
            hash_revision: hash.hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    /// Streams the store framed as etcd frames it (`snapshot.rs`): the engine's chunks with
    /// `remaining_bytes` counting down, zero padding, then the SHA-256 of all of it.
    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (total, mut chunks, header) = self.ctx.node.snapshot().await.map_err(kv_error)?;
        let mut frames = SnapshotFrames::new(
            total,
            convert::header(header),
            self.ctx.config.storage_version.clone(),
        );
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let chunk = tokio::select! {
                    chunk = chunks.recv() => chunk,
                    () = ctx.stopping() => Some(Err(KvError::Stopping)),
                    () = tx.closed() => return,
                };
                let message = match chunk {
                    None => break,
                    Some(Ok(blob)) => frames.chunk(blob),
                    Some(Err(err)) => Err(kv_error(err)),
                };
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
            match frames.finish() {
                Ok(tail) => {
                    for message in tail {
                        if tx.send(Ok(message)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let header = self
            .ctx
            .node
            .move_leader(request.into_inner().target_id)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(convert::header(header)),
        }))
    }

    /// Cairn cannot downgrade its storage: there is never a downgrade job to cancel, and no
    /// target version is valid.
    async fn downgrade(
        &self,
        request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        let r = request.into_inner();
        Err(downgrade_error(r.action, &r.version).into())
    }
}

fn downgrade_error(action: i32, version: &str) -> EtcdError {
    use pb::downgrade_request::DowngradeAction;
    match DowngradeAction::try_from(action) {
        Ok(DowngradeAction::Cancel) => EtcdError::NoInflightDowngrade,
        _ if !is_semver(version) => EtcdError::WrongDowngradeVersionFormat,
        _ => EtcdError::InvalidDowngradeTargetVersion,
    }
}

/// `MAJOR.MINOR[.PATCH][-pre]` with numeric parts, the formats etcd's downgrade accepts.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn alarm_type_from_pb(alarm: i32) -> Option<AlarmType> {
    match pb::AlarmType::try_from(alarm) {
        Ok(pb::AlarmType::Nospace) => Some(AlarmType::NoSpace),
        Ok(pb::AlarmType::Corrupt) => Some(AlarmType::Corrupt),
        Ok(pb::AlarmType::None) | Err(_) => None,
    }
}

pub fn alarm_member_to_pb(a: AlarmMember) -> pb::AlarmMember {
    let alarm = match a.alarm {
        AlarmType::NoSpace => pb::AlarmType::Nospace,
        AlarmType::Corrupt => pb::AlarmType::Corrupt,
    };
    pb::AlarmMember {
        member_id: a.member_id,
        alarm: alarm.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_answers() {
        assert_eq!(downgrade_error(2, ""), EtcdError::NoInflightDowngrade);
        assert_eq!(
            downgrade_error(0, "three"),
            EtcdError::WrongDowngradeVersionFormat
        );
        assert_eq!(
            downgrade_error(1, "3.5"),
            EtcdError::InvalidDowngradeTargetVersion
        );
        assert_eq!(
            downgrade_error(0, "3.5.0"),
            EtcdError::InvalidDowngradeTargetVersion
        );
        assert_eq!(
            downgrade_error(1, "3..5"),
            EtcdError::WrongDowngradeVersionFormat
        );
    }

    #[test]
    fn alarm_types_round_trip() {
        for alarm in [AlarmType::NoSpace, AlarmType::Corrupt] {
            let pb = alarm_member_to_pb(AlarmMember {
                member_id: 9,
                alarm,
            });
            assert_eq!(pb.member_id, 9);
            assert_eq!(alarm_type_from_pb(pb.alarm), Some(alarm));
        }
        assert_eq!(alarm_type_from_pb(0), None);
        assert_eq!(alarm_type_from_pb(77), None);
    }
}
