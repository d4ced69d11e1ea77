//! Alarms and the space quota (etcd's quota checker and capped applier).
//!
//! Two halves, as in etcd:
//! - Before proposing, the node asks [`super::MvccStore::exceeds_quota`]: when the database
//!   file size plus the request's cost reaches `quota_bytes`, it proposes a NOSPACE alarm and
//!   refuses the request (etcd's `quotaKVServer`). That check reads the local file size, so it
//!   must never run inside apply: replicas and replays have to decide identically.
//! - In apply, a write that adds data (a put, a txn with a put on either branch, nested txns
//!   included, or a lease grant) is refused with `NoSpace` while a NOSPACE alarm is active
//!   (etcd's capped applier). The alarm is replicated state, so every replica agrees.
//!
//! Deletes, ranges, compaction and revokes always run, so an operator can free space,
//! defragment and then deactivate the alarm. The cost of a request is etcd's estimate (key +
//! value + 256 bytes per put, 64 bytes per lease grant).

use super::txn;
use super::write::Writer;
use crate::error::KvError;
use crate::request::{AlarmAction, AlarmMember, AlarmType, Command};

/// etcd's per-key overhead estimate (`kvOverhead`).
const KV_OVERHEAD: u64 = 256;
/// etcd's per-lease overhead estimate (`leaseOverhead`).
const LEASE_OVERHEAD: u64 = 64;

/// The estimated number of bytes `command` adds, 0 for commands that add nothing.
pub(crate) fn cost(command: &Command) -> u64 {
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

/// Refuses `command` while a NOSPACE alarm is active, if it adds data.
pub(crate) fn admit(writer: &Writer<'_>, command: &Command) -> Result<(), KvError> {
    if cost(command) == 0 {
        return Ok(());
    }
    if writer
        .alarms()
        .iter()
        .any(|alarm| alarm.alarm == AlarmType::NoSpace)
    {
        return Err(KvError::NoSpace);
    }
    Ok(())
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
