//! Transactions: compares, branches, one revision per txn, nested txns, pre-checks.

use super::*;
use crate::request::{ResponseOp, SortOrder};

fn mod_equals(key: &str, revision: i64) -> Compare {
    compare(key, CompareResult::Equal, CompareTarget::Mod(revision))
}

#[test]
fn kube_create_update_delete_shapes() {
    let f = open();
    // create: if mod(k) == 0 then put
    let create = TxnRequest {
        compare: vec![mod_equals("k", 0)],
        success: vec![put_op("k", "v1")],
        failure: vec![],
    };
    let output = f.txn(create.clone());
    assert!(txn_response(&output).succeeded);
    assert_eq!(output.revision, 2);
    // a second create fails and changes nothing
    let output = f.txn(create);
    assert!(!txn_response(&output).succeeded);
    assert_eq!(output.revision, 2);
    // update: if mod(k) == 2 then put else range
    let update = |rev| TxnRequest {
        compare: vec![mod_equals("k", rev)],
        success: vec![put_op("k", "v2")],
        failure: vec![RequestOp::Range(range_req("k", ""))],
    };
    let output = f.txn(update(5));
    let response = txn_response(&output);
    assert!(!response.succeeded);
    let ResponseOp::Range(range) = &response.responses[0] else {
        panic!()
    };
    assert_eq!(range.kvs[0].value, b("v1"));
    let output = f.txn(update(2));
    assert!(txn_response(&output).succeeded);
    assert_eq!(output.revision, 3);
    // delete: if mod(k) == 3 then delete
    let output = f.txn(TxnRequest {
        compare: vec![mod_equals("k", 3)],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: b("k"),
            ..DeleteRangeRequest::default()
        })],
        failure: vec![],
    });
    assert!(txn_response(&output).succeeded);
    assert_eq!(output.revision, 4);
    assert_eq!(f.get("k"), None);
}

#[test]
fn compares_on_missing_keys() {
    let f = open();
    let holds = |c: Compare| {
        let output = f.txn(TxnRequest {
            compare: vec![c],
            success: vec![],
            failure: vec![],
        });
        txn_response(&output).succeeded
    };
    assert!(holds(compare(
        "x",
        CompareResult::Equal,
        CompareTarget::Version(0)
    )));
    assert!(holds(compare(
        "x",
        CompareResult::Equal,
        CompareTarget::Create(0)
    )));
    assert!(holds(compare(
        "x",
        CompareResult::Equal,
        CompareTarget::Lease(0)
    )));
    assert!(holds(compare(
        "x",
        CompareResult::Less,
        CompareTarget::Mod(1)
    )));
    assert!(!holds(compare(
        "x",
        CompareResult::Equal,
        CompareTarget::Value(b(""))
    )));
    assert!(!holds(compare(
        "x",
        CompareResult::NotEqual,
        CompareTarget::Value(b("a"))
    )));
}

#[test]
fn compare_results_and_targets() {
    let f = open();
    f.put("a", "m"); // 2
    f.put("a", "m"); // 3, version 2
    let holds = |c: Compare| {
        let output = f.txn(TxnRequest {
            compare: vec![c],
            success: vec![],
            failure: vec![],
        });
        txn_response(&output).succeeded
    };
    assert!(holds(compare(
        "a",
        CompareResult::Equal,
        CompareTarget::Version(2)
    )));
    assert!(holds(compare(
        "a",
        CompareResult::Greater,
        CompareTarget::Version(1)
    )));
    assert!(holds(compare(
        "a",
        CompareResult::Less,
        CompareTarget::Create(3)
    )));
    assert!(holds(compare(
        "a",
        CompareResult::NotEqual,
        CompareTarget::Mod(2)
    )));
    assert!(holds(compare(
        "a",
        CompareResult::Greater,
        CompareTarget::Value(b("l"))
    )));
    assert!(holds(compare(
        "a",
        CompareResult::Less,
        CompareTarget::Value(b("ma"))
    )));
    assert!(!holds(compare(
        "a",
        CompareResult::Greater,
        CompareTarget::Value(b("m"))
    )));
    // every compare must hold
    let output = f.txn(TxnRequest {
        compare: vec![
            compare("a", CompareResult::Equal, CompareTarget::Version(2)),
            compare("a", CompareResult::Equal, CompareTarget::Version(3)),
        ],
        success: vec![],
        failure: vec![],
    });
    assert!(!txn_response(&output).succeeded);
}

#[test]
fn compares_over_a_range() {
    let f = open();
    f.put("p/a", "1");
    f.put("p/b", "1");
    f.put("q", "1");
    let ranged = |result, target| Compare {
        result,
        target,
        key: b("p/"),
        range_end: b("p0"),
    };
    let holds = |c: Compare| {
        let output = f.txn(TxnRequest {
            compare: vec![c],
            success: vec![],
            failure: vec![],
        });
        txn_response(&output).succeeded
    };
    assert!(holds(ranged(
        CompareResult::Equal,
        CompareTarget::Value(b("1"))
    )));
    assert!(holds(ranged(CompareResult::Less, CompareTarget::Mod(4))));
    assert!(!holds(ranged(CompareResult::Less, CompareTarget::Mod(3))));
    f.put("p/b", "2");
    assert!(!holds(ranged(
        CompareResult::Equal,
        CompareTarget::Value(b("1"))
    )));
    // an empty range compares against zero (VALUE fails)
    let empty = |result, target| Compare {
        result,
        target,
        key: b("r/"),
        range_end: b("r0"),
    };
    assert!(holds(empty(
        CompareResult::Equal,
        CompareTarget::Version(0)
    )));
    assert!(!holds(empty(
        CompareResult::Equal,
        CompareTarget::Value(b(""))
    )));
}

#[test]
fn one_revision_per_txn_with_sub_revision_events() {
    let f = open();
    f.put("b", "0"); // 2
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "1"),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("b"),
                ..Default::default()
            }),
            put_op("c", "1"),
        ],
        failure: vec![],
    });
    assert_eq!(output.revision, 3);
    assert_eq!(
        event_summary(&output.events),
        [
            (crate::kv::EventKind::Put, "a".into(), 3),
            (crate::kv::EventKind::Delete, "b".into(), 3),
            (crate::kv::EventKind::Put, "c".into(), 3)
        ]
    );
    assert_eq!(
        output.events[1].prev_kv.as_ref().map(|kv| kv.mod_revision),
        Some(2)
    );
    assert_eq!(f.store.events(3, 3, 100).expect("events"), output.events);
}

#[test]
fn read_only_txns_keep_the_revision() {
    let f = open();
    f.put("a", "1");
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Range(range_req("a", "")),
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("zz"),
                ..Default::default()
            }),
        ],
        failure: vec![],
    });
    assert_eq!(output.revision, 2);
    assert!(output.events.is_empty());
}

#[test]
fn operations_see_earlier_writes_of_the_txn() {
    let f = open();
    f.put("a", "0"); // 2
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "1"),
            put_op("n", "1"),
            RequestOp::Range(RangeRequest {
                sort_order: SortOrder::Ascend,
                ..range_req("a", "\0")
            }),
            RequestOp::Range(RangeRequest {
                revision: 2,
                ..range_req("a", "\0")
            }),
            put_op("a", "2"),
        ],
        failure: vec![],
    });
    let response = txn_response(&output);
    let ResponseOp::Range(now) = &response.responses[2] else {
        panic!()
    };
    assert_eq!(now.count, 2);
    assert_eq!(now.kvs[0].value, b("1"));
    assert_eq!((now.kvs[0].mod_revision, now.kvs[0].version), (3, 2));
    let ResponseOp::Range(before) = &response.responses[3] else {
        panic!()
    };
    assert_eq!(before.kvs.len(), 1);
    assert_eq!(before.kvs[0].value, b("0"));
    let a = f.get("a").expect("a");
    assert_eq!((a.value, a.version, a.mod_revision), (b("2"), 3, 3));
    assert_eq!(output.events.len(), 3);
    assert_eq!(
        output.events[2].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b("1"))
    );
}

#[test]
fn nested_txns_compare_against_the_start_state() {
    let f = open();
    let nested = TxnRequest {
        // "n" does not exist when the outer txn starts, although the outer txn creates it first.
        compare: vec![mod_equals("n", 0)],
        success: vec![put_op("inner", "start-state")],
        failure: vec![put_op("inner", "own-writes")],
    };
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![put_op("n", "1"), RequestOp::Txn(nested)],
        failure: vec![],
    });
    let response = txn_response(&output);
    let ResponseOp::Txn(inner) = &response.responses[1] else {
        panic!()
    };
    assert!(inner.succeeded);
    assert_eq!(f.get("inner").map(|kv| kv.value), Some(b("start-state")));
    assert_eq!(output.revision, 2);
}

#[test]
fn missing_lease_fails_the_whole_txn_before_writing() {
    let f = open();
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "1"),
            RequestOp::Put(PutRequest {
                lease: 42,
                ..put_req("b", "1")
            }),
        ],
        failure: vec![],
    });
    assert_eq!(output.result, Err(KvError::LeaseNotFound));
    assert_eq!(output.revision, 1);
    assert!(output.events.is_empty());
    assert_eq!(f.get("a"), None);
}

#[test]
fn txn_range_at_a_future_revision_fails_the_txn() {
    let f = open();
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "1"),
            RequestOp::Range(RangeRequest {
                revision: 2,
                ..range_req("a", "")
            }),
        ],
        failure: vec![],
    });
    assert_eq!(output.result, Err(KvError::FutureRevision));
    assert_eq!(f.get("a"), None);
}

#[test]
fn ignore_value_and_missing_keys() {
    let f = open();
    let ignore = |key: &str| PutRequest {
        ignore_value: true,
        ..put_req(key, "")
    };
    assert_eq!(
        f.apply(Command::Put(ignore("a"))).result,
        Err(KvError::KeyNotFound)
    );
    f.put("a", "kept");
    let output = f.apply(Command::Put(ignore("a")));
    assert!(output.result.is_ok());
    let a = f.get("a").expect("a");
    assert_eq!((a.value, a.version), (b("kept"), 2));
    // inside a txn, a key created earlier in the same txn counts as existing
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![put_op("n", "v"), RequestOp::Put(ignore("n"))],
        failure: vec![],
    });
    assert!(output.result.is_ok(), "{output:?}");
    // and a key deleted earlier in the txn does not
    let output = f.txn(TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("a"),
                ..Default::default()
            }),
            RequestOp::Put(ignore("a")),
        ],
        failure: vec![],
    });
    assert_eq!(output.result, Err(KvError::KeyNotFound));
    assert!(f.get("a").is_some());
}
