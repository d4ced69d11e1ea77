//! Leases: grant, attach, move, detach, revoke.

use super::*;
use crate::kv::EventKind;

fn grant(f: &Fixture, id: i64) -> ApplyOutput {
    f.apply(Command::LeaseGrant { id, ttl: 10 })
}

#[test]
fn grant_does_not_bump_and_rejects_duplicates() {
    let f = open();
    let output = grant(&f, 7);
    assert_eq!(
        output.result,
        Ok(CommandResponse::LeaseGrant { id: 7, ttl: 10 })
    );
    assert_eq!(output.revision, 1);
    assert_eq!(grant(&f, 7).result, Err(KvError::LeaseExists));
    assert_eq!(
        f.apply(Command::LeaseGrant {
            id: 8,
            ttl: 9_000_000_001
        })
        .result,
        Err(KvError::LeaseTtlTooLarge)
    );
    assert_eq!(f.store.leases().expect("leases"), [(7, 10)]);
    assert!(f.store.lease_exists(7).expect("exists"));
    assert!(!f.store.lease_exists(8).expect("exists"));
}

#[test]
fn put_with_a_missing_lease_fails() {
    let f = open();
    let output = f.put_lease("a", "1", 5);
    assert_eq!(output.result, Err(KvError::LeaseNotFound));
    assert_eq!(output.revision, 1);
    assert_eq!(f.get("a"), None);
}

#[test]
fn attach_move_and_detach() {
    let f = open();
    grant(&f, 1);
    grant(&f, 2);
    f.put_lease("a", "1", 1);
    f.put_lease("b", "1", 1);
    assert_eq!(f.store.lease_keys(1).expect("keys"), [b("a"), b("b")]);
    f.put_lease("a", "2", 2);
    assert_eq!(f.store.lease_keys(1).expect("keys"), [b("b")]);
    assert_eq!(f.store.lease_keys(2).expect("keys"), [b("a")]);
    assert_eq!(f.get("a").map(|kv| kv.lease), Some(2));
    // ignore_lease keeps the attachment
    f.apply(Command::Put(PutRequest {
        ignore_lease: true,
        ..put_req("a", "3")
    }));
    assert_eq!(f.get("a").map(|kv| kv.lease), Some(2));
    // a put without lease detaches
    f.put("a", "4");
    assert!(f.store.lease_keys(2).expect("keys").is_empty());
    // a delete detaches
    f.delete("b", "");
    assert!(f.store.lease_keys(1).expect("keys").is_empty());
}

#[test]
fn revoke_deletes_keys_at_one_revision() {
    let f = open();
    grant(&f, 1);
    f.put_lease("b", "1", 1); // 2
    f.put_lease("a", "1", 1); // 3
    f.put("c", "1"); // 4
    let output = f.apply(Command::LeaseRevoke { id: 1 });
    assert_eq!(output.result, Ok(CommandResponse::LeaseRevoke));
    assert_eq!(output.revision, 5);
    assert_eq!(
        event_summary(&output.events),
        [
            (EventKind::Delete, "a".into(), 5),
            (EventKind::Delete, "b".into(), 5)
        ]
    );
    assert!(
        output
            .events
            .iter()
            .all(|event| event.prev_kv.as_ref().is_some_and(|kv| kv.lease == 1))
    );
    assert_eq!(f.keys_at("\0", "\0", 0), ["c"]);
    assert!(!f.store.lease_exists(1).expect("exists"));
    assert_eq!(
        f.apply(Command::LeaseRevoke { id: 1 }).result,
        Err(KvError::LeaseNotFound)
    );
    grant(&f, 2);
    let output = f.apply(Command::LeaseRevoke { id: 2 });
    assert_eq!(
        (output.result, output.revision),
        (Ok(CommandResponse::LeaseRevoke), 5)
    );
}
