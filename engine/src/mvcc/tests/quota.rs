//! The space quota and alarms.

use super::*;
use crate::request::{AlarmAction, AlarmMember, AlarmType};

const NOSPACE: AlarmMember = AlarmMember {
    member_id: 9,
    alarm: AlarmType::NoSpace,
};

fn alarm(f: &Fixture, action: AlarmAction, alarm: AlarmMember) -> ApplyOutput {
    f.apply(Command::Alarm { action, alarm })
}

#[test]
fn alarm_get_activate_deactivate() {
    let f = open();
    let corrupt = AlarmMember {
        member_id: 1,
        alarm: AlarmType::Corrupt,
    };
    assert_eq!(
        alarm(&f, AlarmAction::Get, corrupt).result,
        Ok(CommandResponse::Alarm(vec![]))
    );
    assert_eq!(
        alarm(&f, AlarmAction::Activate, corrupt).result,
        Ok(CommandResponse::Alarm(vec![corrupt]))
    );
    assert_eq!(
        alarm(&f, AlarmAction::Activate, corrupt).result,
        Ok(CommandResponse::Alarm(vec![corrupt]))
    );
    assert_eq!(f.store.alarms().expect("alarms"), [corrupt]);
    assert_eq!(
        alarm(&f, AlarmAction::Deactivate, NOSPACE).result,
        Ok(CommandResponse::Alarm(vec![]))
    );
    assert_eq!(
        alarm(&f, AlarmAction::Deactivate, corrupt).result,
        Ok(CommandResponse::Alarm(vec![corrupt]))
    );
    assert!(f.store.alarms().expect("alarms").is_empty());
    assert_eq!(f.store.current_revision(), 1);
}

#[test]
fn exceeding_the_quota_is_the_proposers_check_and_the_alarm_caps_apply() {
    let f = open_with(MvccOptions {
        quota_bytes: 1,
        member_id: 9,
    });
    let put = Command::Put(PutRequest {
        key: b("a"),
        value: b("1"),
        ..PutRequest::default()
    });
    assert!(f.store.exceeds_quota(&put));
    assert!(!f.store.exceeds_quota(&Command::Compact { revision: 1 }));
    // Apply never reads the file size: replays and replicas must decide alike.
    assert!(f.put("a", "1").result.is_ok());
    assert!(f.store.alarms().expect("alarms").is_empty());
    alarm(&f, AlarmAction::Activate, NOSPACE);
    assert_eq!(f.store.alarms().expect("alarms"), [NOSPACE]);
    // Without a quota, the raised alarm alone still refuses adding writes.
    let f = f.reopen(MvccOptions::default());
    assert_eq!(f.put("a", "1").result, Err(KvError::NoSpace));
    assert_eq!(
        f.apply(Command::LeaseGrant { id: 1, ttl: 5 }).result,
        Err(KvError::NoSpace)
    );
    let with_put = TxnRequest {
        compare: vec![],
        success: vec![],
        failure: vec![put_op("a", "1")],
    };
    assert_eq!(f.txn(with_put).result, Err(KvError::NoSpace));
    // Deletes, reads-only txns and compaction still work.
    assert!(f.delete("a", "").result.is_ok());
    assert_eq!(f.get("a"), None);
    let read_only = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Range(range_req("a", ""))],
        failure: vec![],
    };
    assert!(f.txn(read_only).result.is_ok());
    assert!(f.apply(Command::Compact { revision: 1 }).result.is_ok());
    alarm(&f, AlarmAction::Deactivate, NOSPACE);
    assert_eq!(f.put("a", "1").result.map(|_| ()), Ok(()));
}

#[test]
fn a_large_quota_admits_writes() {
    let f = open_with(MvccOptions {
        quota_bytes: 1 << 40,
        member_id: 9,
    });
    assert!(f.put("a", "1").result.is_ok());
    assert!(
        !f.store
            .exceeds_quota(&Command::LeaseGrant { id: 1, ttl: 5 })
    );
    assert!(f.store.alarms().expect("alarms").is_empty());
}
