//! Alarms and the space quota (etcd's quota applier and capped applier).
//!
//! A write that adds data (a put, a txn with a put on either branch, nested txns included, or a
//! lease grant) is refused with `NoSpace` when a NOSPACE alarm is active, or when the database
//! file size plus the request's cost reaches `quota_bytes`; the latter also raises the NOSPACE
//! alarm for this member in the same transaction. Deletes, ranges, compaction and revokes always
//! run, so an operator can free space, defragment and then deactivate the alarm.
//!
//! The size measured is the database file size ([`super::MvccStore::db_size`]), as etcd measures
//! `backend.Size()`; the cost of a request is etcd's estimate (key + value + 256 bytes per put,
//! 64 bytes per lease grant).

use std::path::Path;

use super::txn;
use super::write::Writer;
use crate::error::KvError;
use crate::request::{AlarmAction, AlarmMember, AlarmType, Command};

/// etcd's per-key overhead estimate (`kvOverhead`).
const KV_OVERHEAD: u64 = 256;
/// etcd's per-lease overhead estimate (`leaseOverhead`).
const LEASE_OVERHEAD: u64 = 64;

/// What the quota check needs to know about the store.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quota<'a> {
    pub limit_bytes: u64,
    pub member_id: u64,
    pub path: &'a Path,
}

/// The estimated number of bytes `command` adds, 0 for commands that add nothing.
fn cost(command: &Command) -> u64 {
    match command {
        Command::Put(put) => KV_OVERHEAD + put.key.len() as u64 + put.value.len() as u64,
        Command::Txn(req) => txn::put_cost(req, KV_OVERHEAD),
        Command::LeaseGrant { .. } => LEASE_OVERHEAD,
        Command::DeleteRange(_)
        | Command::Compact { .. }
        | Command::LeaseRevoke { .. }
        | Command::Alarm { .. } => 0,
    }
}

/// Admits or refuses `command` under the quota; may raise the NOSPACE alarm.
pub(crate) fn admit(
    writer: &mut Writer<'_>,
    command: &Command,
    quota: Quota<'_>,
) -> Result<(), KvError> {
    let cost = cost(command);
    if cost == 0 {
        return Ok(());
    }
    if writer
        .alarms()
        .iter()
        .any(|alarm| alarm.alarm == AlarmType::NoSpace)
    {
        return Err(KvError::NoSpace);
    }
    if quota.limit_bytes > 0 && file_size(quota.path).saturating_add(cost) >= quota.limit_bytes {
        let alarm = AlarmMember {
            member_id: quota.member_id,
            alarm: AlarmType::NoSpace,
        };
        apply_alarm(writer, AlarmAction::Activate, alarm);
        return Err(KvError::NoSpace);
    }
    Ok(())
}

/// The size of the file at `path`; 0 if it cannot be read (the check then admits the write,
/// and the next apply's storage error, if any, stops the node).
pub(crate) fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

/// Applies an alarm request (etcd `Alarm`): Get lists every alarm; Activate answers with the
/// alarm (new or already raised); Deactivate answers with the alarm if it was raised, else
/// nothing.
pub(crate) fn apply_alarm(
    writer: &mut Writer<'_>,
    action: AlarmAction,
    alarm: AlarmMember,
) -> Vec<AlarmMember> {
    match action {
        AlarmAction::Get => writer.alarms().to_vec(),
        AlarmAction::Activate => {
            if !writer.alarms().contains(&alarm) {
                let alarms = writer.alarms_mut();
                alarms.push(alarm);
                alarms.sort();
            }
            vec![alarm]
        }
        AlarmAction::Deactivate => {
            if writer.alarms().contains(&alarm) {
                writer.alarms_mut().retain(|raised| *raised != alarm);
                vec![alarm]
            } else {
                Vec::new()
            }
        }
    }
}
