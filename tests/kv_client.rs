//! Black-box tests of Cairn through the `etcd-client` crate, as a Rust application would use it:
//! key-value operations with their options, transactions, watches, leases, maintenance and the
//! member list. Expected values are etcd's (checked against a real etcd; differences between
//! etcd 3.4 and 3.6 are noted where they matter — Cairn targets 3.6).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::Cairn;
use common::client::{Kv, expect, kv, next};
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KeyValue, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchFilterType, WatchOptions, WatchStream,
};

/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(15);

async fn connect(server: &Cairn) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(WAIT);
    Client::connect([server.endpoint()], Some(options))
        .await
        .expect("connect to cairn")
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

fn status_of(err: &etcd_client::Error) -> (String, String) {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            (format!("{:?}", status.code()), status.message().to_owned())
        }
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// Opens a watch on a new stream and returns it with its watch id, after checking the created response.
async fn open_watch(client: &Client, key: &str, options: WatchOptions) -> (WatchStream, i64) {
    let mut stream = client
        .watch_client()
        .watch(key, Some(options))
        .await
        .expect("create watch");
    let created = next(&mut stream).await;
    assert!(
        created.created(),
        "first response must be the created response: {created:?}"
    );
    assert!(!created.canceled());
    assert!(created.events().is_empty());
    (stream, created.watch_id())
}

/// (type, key, value, `mod_revision`, prev value) of an event.
type Ev = (EventType, String, String, i64, Option<String>);

fn ev(event: &etcd_client::Event) -> Ev {
    let kv = event.kv().expect("every event carries a kv");
    (
        event.event_type(),
        String::from_utf8_lossy(kv.key()).into_owned(),
        String::from_utf8_lossy(kv.value()).into_owned(),
        kv.mod_revision(),
        event
            .prev_kv()
            .map(|p| String::from_utf8_lossy(p.value()).into_owned()),
    )
}

fn put_ev(key: &str, value: &str, revision: i64, prev: Option<&str>) -> Ev {
    (
        EventType::Put,
        key.to_owned(),
        value.to_owned(),
        revision,
        prev.map(str::to_owned),
    )
}

fn del_ev(key: &str, revision: i64, prev: Option<&str>) -> Ev {
    (
        EventType::Delete,
        key.to_owned(),
        String::new(),
        revision,
        prev.map(str::to_owned),
    )
}

/// Reads events of watch `id` until `count` have arrived; a response for any other watch, a
/// cancellation or a surplus event fails the test.
async fn events_of(stream: &mut WatchStream, id: i64, count: usize) -> Vec<Ev> {
    let mut events = Vec::new();
    while events.len() < count {
        let response = next(stream).await;
        assert_eq!(
            response.watch_id(),
            id,
            "unexpected response for another watch: {response:?}"
        );
        assert!(
            !response.canceled(),
            "watch canceled unexpectedly: {response:?}"
        );
        events.extend(response.events().iter().map(ev));
    }
    assert_eq!(events.len(), count, "more events than expected: {events:?}");
    events
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("every response carries a header").revision()
}

fn txn_revision(response: &TxnResponse) -> i64 {
    revision(response.header())
}

#[tokio::test]
async fn put_get_delete_with_options() {
    let server = Cairn::start();
    let mut client = connect(&server).await;

    // A fresh store is at revision 1 and reports it even when nothing is found.
    let empty = client.get("a", None).await.unwrap();
    assert!(empty.kvs().is_empty());
    assert_eq!((empty.count(), empty.more()), (0, false));
    assert_eq!(revision(empty.header()), 1);

    let put = client.put("a", "1", None).await.unwrap();
    assert_eq!(revision(put.header()), 2);
    assert!(put.prev_key().is_none());
    assert_eq!(
        revision(client.put("b", "2", None).await.unwrap().header()),
        3
    );

    let put = client
        .put("a", "11", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(revision(put.header()), 4);
    assert_eq!(
        kv(put.prev_key().expect("prev_kv requested")),
        expect("a", "1", 2, 2, 1, 0)
    );
    client.put("c", "3", None).await.unwrap();
    client.put("d", "4", None).await.unwrap();

    let got = client.get("a", None).await.unwrap();
    assert_eq!(
        got.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("a", "11", 2, 4, 2, 0)]
    );
    assert_eq!(
        (got.count(), got.more(), revision(got.header())),
        (1, false, 6)
    );

    // Historical reads; the header still carries the current revision.
    let old = client
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
        .unwrap();
    assert_eq!(
        old.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("a", "1", 2, 2, 1, 0)]
    );
    assert_eq!(revision(old.header()), 6);
    let old = client
        .get("a", Some(GetOptions::new().with_revision(3)))
        .await
        .unwrap();
    assert_eq!(kv(&old.kvs()[0]).1, "1");
    let before = client
        .get("d", Some(GetOptions::new().with_revision(5)))
        .await
        .unwrap();
    assert!(before.kvs().is_empty());
    assert_eq!(before.count(), 0);

    // Ranges.
    let range = client
        .get("a", Some(GetOptions::new().with_range("c")))
        .await
        .unwrap();
    assert_eq!(keys(range.kvs()), ["a", "b"]);
    assert_eq!(range.count(), 2);
    let from = client
        .get("b", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(keys(from.kvs()), ["b", "c", "d"]);
    let limited = client
        .get("", Some(GetOptions::new().with_all_keys().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(keys(limited.kvs()), ["a", "b"]);
    assert_eq!((limited.count(), limited.more()), (4, true));
    let exact = client
        .get("", Some(GetOptions::new().with_all_keys().with_limit(4)))
        .await
        .unwrap();
    assert_eq!(
        (exact.kvs().len(), exact.count(), exact.more()),
        (4, 4, false)
    );

    // Sorting.
    let sorted = |target, order| GetOptions::new().with_all_keys().with_sort(target, order);
    let by_key_desc = client
        .get("", Some(sorted(SortTarget::Key, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(by_key_desc.kvs()), ["d", "c", "b", "a"]);
    let by_mod = client
        .get("", Some(sorted(SortTarget::Mod, SortOrder::Ascend)))
        .await
        .unwrap();
    assert_eq!(keys(by_mod.kvs()), ["b", "a", "c", "d"]);
    let by_create = client
        .get("", Some(sorted(SortTarget::Create, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(by_create.kvs()), ["d", "c", "b", "a"]);
    let by_value = client
        .get("", Some(sorted(SortTarget::Value, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(by_value.kvs()), ["d", "c", "b", "a"]);
    let by_version = client
        .get("", Some(sorted(SortTarget::Version, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(keys(by_version.kvs())[0], "a");
    let sorted_limited = client
        .get(
            "",
            Some(sorted(SortTarget::Mod, SortOrder::Descend).with_limit(2)),
        )
        .await
        .unwrap();
    assert_eq!(keys(sorted_limited.kvs()), ["d", "c"]);
    assert_eq!((sorted_limited.count(), sorted_limited.more()), (4, true));

    // keys_only keeps the metadata and drops the values; count_only returns no kvs.
    let keys_only = client
        .get("", Some(GetOptions::new().with_all_keys().with_keys_only()))
        .await
        .unwrap();
    assert_eq!(
        keys_only.kvs().iter().map(kv).collect::<Vec<_>>(),
        [
            expect("a", "", 2, 4, 2, 0),
            expect("b", "", 3, 3, 1, 0),
            expect("c", "", 5, 5, 1, 0),
            expect("d", "", 6, 6, 1, 0)
        ]
    );
    let count_only = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap();
    assert!(count_only.kvs().is_empty());
    assert_eq!((count_only.count(), count_only.more()), (4, false));

    // Revision filters prune kvs; etcd's `count` stays the number of keys in the range.
    let min_mod = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_min_mod_revision(5)),
        )
        .await
        .unwrap();
    assert_eq!(keys(min_mod.kvs()), ["c", "d"]);
    assert_eq!(min_mod.count(), 4);
    let max_mod = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_max_mod_revision(4)),
        )
        .await
        .unwrap();
    assert_eq!(keys(max_mod.kvs()), ["a", "b"]);
    let max_create = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_max_create_revision(3),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(max_create.kvs()), ["a", "b"]);
    let min_create = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_min_create_revision(5),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(min_create.kvs()), ["c", "d"]);
    let serializable = client
        .get("b", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(
        serializable.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("b", "2", 3, 3, 1, 0)]
    );

    // ignore_value keeps the value and still makes a new version.
    let put = client
        .put("a", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap();
    assert_eq!(revision(put.header()), 7);
    let got = client.get("a", None).await.unwrap();
    assert_eq!(kv(&got.kvs()[0]), expect("a", "11", 2, 7, 3, 0));
    let err = client
        .put("zz", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(&err),
        (
            "InvalidArgument".to_owned(),
            "etcdserver: key not found".to_owned()
        )
    );
    let err = client
        .put("zz", "v", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(&err),
        (
            "InvalidArgument".to_owned(),
            "etcdserver: key not found".to_owned()
        )
    );

    // Deletes.
    let deleted = client
        .delete("b", Some(DeleteOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), 1);
    assert_eq!(
        deleted.prev_kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("b", "2", 3, 3, 1, 0)]
    );
    assert_eq!(revision(deleted.header()), 8);
    // Deleting nothing makes no revision.
    let nothing = client.delete("b", None).await.unwrap();
    assert_eq!((nothing.deleted(), revision(nothing.header())), (0, 8));
    assert!(nothing.prev_kvs().is_empty());
    // Deleting a range is one revision; without prev_kv no kvs come back.
    let range = client
        .delete("c", Some(DeleteOptions::new().with_range("e")))
        .await
        .unwrap();
    assert_eq!((range.deleted(), revision(range.header())), (2, 9));
    assert!(range.prev_kvs().is_empty());
    let all = client
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys(all.kvs()), ["a"]);
    assert_eq!((all.count(), revision(all.header())), (1, 9));
    // History survives deletion.
    let old_c = client
        .get("c", Some(GetOptions::new().with_revision(8)))
        .await
        .unwrap();
    assert_eq!(
        old_c.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("c", "3", 5, 5, 1, 0)]
    );
    // A re-created key starts a new generation.
    client.put("b", "again", None).await.unwrap();
    let again = client.get("b", None).await.unwrap();
    assert_eq!(kv(&again.kvs()[0]), expect("b", "again", 10, 10, 1, 0));
    // A prefix delete.
    client.put("p/1", "x", None).await.unwrap();
    client.put("p/2", "y", None).await.unwrap();
    client.put("q", "z", None).await.unwrap();
    let prefix = client
        .delete(
            "p/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(prefix.deleted(), 2);
    assert_eq!(keys(prefix.prev_kvs()), ["p/1", "p/2"]);
    assert_eq!(revision(prefix.header()), 14);
    assert_eq!(client.get("q", None).await.unwrap().count(), 1);
}

/// A read-only transaction `if cmp then get(k1) else get(k2)`; returns whether it succeeded.
async fn check(client: &mut Client, compare: Compare) -> bool {
    let before = client
        .get("k", Some(GetOptions::new().with_count_only()))
        .await
        .unwrap();
    let txn = Txn::new()
        .when([compare.clone()])
        .and_then([TxnOp::get("k1", None)])
        .or_else([TxnOp::get("k2", None)]);
    let response = client.txn(txn).await.unwrap();
    assert_eq!(
        txn_revision(&response),
        revision(before.header()),
        "a read-only txn makes no revision"
    );
    let ops = response.op_responses();
    assert_eq!(ops.len(), 1);
    let TxnOpResponse::Get(get) = &ops[0] else {
        panic!("expected a range response, got {ops:?}")
    };
    let expected_key = if response.succeeded() { "k1" } else { "k2" };
    assert_eq!(
        keys(get.kvs()),
        [expected_key],
        "the branch taken must answer for {compare:?}"
    );
    response.succeeded()
}

#[tokio::test]
async fn txn_every_compare_target() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let lease = client.lease_grant(600, None).await.unwrap().id();
    client.put("k1", "v1", None).await.unwrap(); // 2
    client.put("k2", "v2", None).await.unwrap(); // 3
    client.put("k1", "v1b", None).await.unwrap(); // 4
    client
        .put("k3", "v3", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap(); // 5

    let cases: Vec<(Compare, bool)> = vec![
        (Compare::value("k1", CompareOp::Equal, "v1b"), true),
        (Compare::value("k1", CompareOp::NotEqual, "v1b"), false),
        (Compare::value("k1", CompareOp::Greater, "v1a"), true),
        (Compare::value("k1", CompareOp::Less, "v1a"), false),
        (Compare::value("k1", CompareOp::Less, "v1c"), true),
        (Compare::version("k1", CompareOp::Equal, 2), true),
        (Compare::version("k1", CompareOp::Greater, 1), true),
        (Compare::version("k1", CompareOp::Less, 2), false),
        (Compare::version("k1", CompareOp::NotEqual, 2), false),
        (Compare::create_revision("k1", CompareOp::Equal, 2), true),
        (Compare::create_revision("k2", CompareOp::Greater, 2), true),
        (Compare::create_revision("k2", CompareOp::Less, 3), false),
        (Compare::mod_revision("k1", CompareOp::Equal, 4), true),
        (Compare::mod_revision("k1", CompareOp::Less, 4), false),
        (Compare::mod_revision("k1", CompareOp::NotEqual, 2), true),
        (Compare::lease("k3", CompareOp::Equal, lease), true),
        (Compare::lease("k3", CompareOp::NotEqual, lease), false),
        (Compare::lease("k1", CompareOp::Equal, 0), true),
        (Compare::lease("k3", CompareOp::Greater, 0), true),
        // A missing key compares as zero for version, revisions and lease; a value compare fails.
        (Compare::version("missing", CompareOp::Equal, 0), true),
        (
            Compare::create_revision("missing", CompareOp::Equal, 0),
            true,
        ),
        (Compare::mod_revision("missing", CompareOp::Equal, 0), true),
        (
            Compare::mod_revision("missing", CompareOp::Greater, 0),
            false,
        ),
        (Compare::lease("missing", CompareOp::Equal, 0), true),
        (Compare::value("missing", CompareOp::Equal, ""), false),
        (Compare::value("missing", CompareOp::NotEqual, "x"), false),
        // Range compares hold only if every key in the range satisfies them.
        (
            Compare::version("k", CompareOp::Greater, 0).with_prefix(),
            true,
        ),
        (
            Compare::version("k", CompareOp::Equal, 1).with_prefix(),
            false,
        ),
        (
            Compare::mod_revision("k1", CompareOp::Less, 5).with_range("k3"),
            true,
        ),
        (
            Compare::mod_revision("k1", CompareOp::Less, 5).with_range("k4"),
            false,
        ),
        (
            Compare::value("k", CompareOp::Greater, "v").with_prefix(),
            true,
        ),
        (
            Compare::value("k", CompareOp::Equal, "v2").with_prefix(),
            false,
        ),
        (
            Compare::create_revision("k2", CompareOp::Greater, 2).with_range("k4"),
            true,
        ),
        (
            Compare::lease("k1", CompareOp::Equal, 0).with_range("k3"),
            true,
        ),
        (
            Compare::lease("k1", CompareOp::Equal, 0).with_range("k4"),
            false,
        ),
        // An empty range behaves like a missing key.
        (
            Compare::mod_revision("x", CompareOp::Equal, 0).with_range("y"),
            true,
        ),
        (
            Compare::value("x", CompareOp::Equal, "").with_range("y"),
            false,
        ),
    ];
    for (compare, expected) in cases {
        assert_eq!(
            check(&mut client, compare.clone()).await,
            expected,
            "compare {compare:?}"
        );
    }

    // Every compare must hold.
    let both = Txn::new()
        .when([
            Compare::version("k1", CompareOp::Equal, 2),
            Compare::value("k2", CompareOp::Equal, "wrong"),
        ])
        .and_then([TxnOp::put("k5", "no", None)]);
    let response = client.txn(both).await.unwrap();
    assert!(!response.succeeded());
    assert!(response.op_responses().is_empty());
    assert_eq!(txn_revision(&response), 5);
    assert_eq!(client.get("k5", None).await.unwrap().count(), 0);
}

#[tokio::test]
async fn txn_results_and_nesting() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    client.put("k1", "v1", None).await.unwrap(); // 2
    client.put("k2", "v2", None).await.unwrap(); // 3

    // Success branch: all writes share one revision; a read sees the txn's own earlier writes.
    let txn = Txn::new()
        .when([Compare::mod_revision("k1", CompareOp::Equal, 2)])
        .and_then([
            TxnOp::put("k1", "new", Some(PutOptions::new().with_prev_key())),
            TxnOp::put("k4", "x", None),
            TxnOp::get("k1", None),
            TxnOp::delete("k2", Some(DeleteOptions::new().with_prev_key())),
        ]);
    let response = client.txn(txn).await.unwrap();
    assert!(response.succeeded());
    assert_eq!(txn_revision(&response), 4);
    let ops = response.op_responses();
    assert_eq!(ops.len(), 4);
    let TxnOpResponse::Put(put) = &ops[0] else {
        panic!("expected put, got {ops:?}")
    };
    assert_eq!(
        kv(put.prev_key().expect("prev_kv requested")),
        expect("k1", "v1", 2, 2, 1, 0)
    );
    assert!(matches!(&ops[1], TxnOpResponse::Put(p) if p.prev_key().is_none()));
    let TxnOpResponse::Get(get) = &ops[2] else {
        panic!("expected range, got {ops:?}")
    };
    assert_eq!(
        get.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("k1", "new", 2, 4, 2, 0)]
    );
    assert_eq!(get.count(), 1);
    let TxnOpResponse::Delete(delete) = &ops[3] else {
        panic!("expected delete, got {ops:?}")
    };
    assert_eq!(delete.deleted(), 1);
    assert_eq!(
        delete.prev_kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("k2", "v2", 3, 3, 1, 0)]
    );
    let k4 = client.get("k4", None).await.unwrap();
    assert_eq!(kv(&k4.kvs()[0]), expect("k4", "x", 4, 4, 1, 0));
    assert_eq!(client.get("k2", None).await.unwrap().count(), 0);

    // Failure branch.
    let txn = Txn::new()
        .when([Compare::value("k1", CompareOp::Equal, "nope")])
        .and_then([TxnOp::put("k5", "then", None)])
        .or_else([TxnOp::put("k6", "else", None), TxnOp::get("k6", None)]);
    let response = client.txn(txn).await.unwrap();
    assert!(!response.succeeded());
    assert_eq!(txn_revision(&response), 5);
    let ops = response.op_responses();
    assert_eq!(ops.len(), 2);
    let TxnOpResponse::Get(get) = &ops[1] else {
        panic!("expected range, got {ops:?}")
    };
    assert_eq!(
        get.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("k6", "else", 5, 5, 1, 0)]
    );
    assert_eq!(client.get("k5", None).await.unwrap().count(), 0);

    // An empty txn succeeds and makes no revision; so does a txn whose only write deletes nothing.
    let response = client.txn(Txn::new()).await.unwrap();
    assert!(response.succeeded());
    assert!(response.op_responses().is_empty());
    assert_eq!(txn_revision(&response), 5);
    let response = client
        .txn(Txn::new().and_then([TxnOp::delete("absent", None)]))
        .await
        .unwrap();
    assert_eq!(txn_revision(&response), 5);

    // Nested txns: responses nest the same way; the outer revision covers inner writes.
    let inner = Txn::new()
        .when([Compare::version("k4", CompareOp::Equal, 1)])
        .and_then([TxnOp::put("n1", "a", None)])
        .or_else([TxnOp::put("n2", "b", None)]);
    let outer = Txn::new().and_then([
        TxnOp::txn(inner),
        TxnOp::get("n", Some(GetOptions::new().with_prefix())),
    ]);
    let response = client.txn(outer).await.unwrap();
    assert!(response.succeeded());
    assert_eq!(txn_revision(&response), 6);
    let ops = response.op_responses();
    let TxnOpResponse::Txn(nested) = &ops[0] else {
        panic!("expected a nested txn response, got {ops:?}")
    };
    assert!(nested.succeeded());
    assert!(matches!(
        nested.op_responses().as_slice(),
        [TxnOpResponse::Put(_)]
    ));
    let TxnOpResponse::Get(get) = &ops[1] else {
        panic!("expected range, got {ops:?}")
    };
    assert_eq!(
        get.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("n1", "a", 6, 6, 1, 0)]
    );

    // A failing nested txn inside a failing outer txn's else branch.
    let inner = Txn::new()
        .when([Compare::value("n1", CompareOp::Equal, "zzz")])
        .and_then([TxnOp::put("n3", "then", None)])
        .or_else([TxnOp::put("n4", "else", None), TxnOp::delete("n1", None)]);
    let outer = Txn::new()
        .when([Compare::create_revision("n1", CompareOp::Less, 6)])
        .and_then([TxnOp::put("n5", "no", None)])
        .or_else([TxnOp::txn(inner)]);
    let response = client.txn(outer).await.unwrap();
    assert!(!response.succeeded());
    assert_eq!(txn_revision(&response), 7);
    let ops = response.op_responses();
    let TxnOpResponse::Txn(nested) = &ops[0] else {
        panic!("expected a nested txn response, got {ops:?}")
    };
    assert!(!nested.succeeded());
    let nested_ops = nested.op_responses();
    assert!(matches!(&nested_ops[1], TxnOpResponse::Delete(d) if d.deleted() == 1));
    let all = client
        .get("n", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(
        all.kvs().iter().map(kv).collect::<Vec<_>>(),
        [expect("n4", "else", 7, 7, 1, 0)]
    );
}

/// etcd evaluates every compare of a txn, nested ones included, against the state before any of
/// its operations run (etcd `compareToPath`), so a nested compare does not see the outer txn's writes.
#[tokio::test]
async fn nested_txn_compares_see_the_state_before_the_txn() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let inner = Txn::new()
        .when([Compare::value("q", CompareOp::Equal, "1")])
        .and_then([TxnOp::put("r", "then", None)])
        .or_else([TxnOp::put("r", "else", None)]);
    let outer = Txn::new().and_then([TxnOp::put("q", "1", None), TxnOp::txn(inner)]);
    let response = client.txn(outer).await.unwrap();
    assert!(response.succeeded());
    let ops = response.op_responses();
    let TxnOpResponse::Txn(nested) = &ops[1] else {
        panic!("expected a nested txn response, got {ops:?}")
    };
    assert!(!nested.succeeded());
    let r = client.get("r", None).await.unwrap();
    assert_eq!(kv(&r.kvs()[0]), expect("r", "else", 2, 2, 1, 0));
}

#[tokio::test]
async fn watch_many_on_one_stream() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let (mut stream, id_a) = open_watch(&client, "a", WatchOptions::new()).await;
    stream
        .watch("b", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(created.created());
    let id_b = created.watch_id();
    assert!(
        id_a >= 0 && id_b >= 0 && id_a != id_b,
        "distinct server-assigned watch ids: {id_a} {id_b}"
    );

    client.put("a", "1", None).await.unwrap(); // 2
    client.put("b1", "x", None).await.unwrap(); // 3
    client.put("c", "y", None).await.unwrap(); // 4: nobody watches it
    client.put("a", "2", None).await.unwrap(); // 5
    client.delete("b1", None).await.unwrap(); // 6
    client.put("b2", "z", None).await.unwrap(); // 7

    let mut seen: BTreeMap<i64, Vec<etcd_client::Event>> = BTreeMap::new();
    let mut last_revision = 0;
    while seen.values().map(Vec::len).sum::<usize>() < 5 {
        let response = next(&mut stream).await;
        assert!(!response.created() && !response.canceled(), "{response:?}");
        for event in response.events() {
            let revision = event.kv().unwrap().mod_revision();
            assert!(
                revision > last_revision,
                "events arrive in revision order across watches"
            );
            last_revision = revision;
        }
        seen.entry(response.watch_id())
            .or_default()
            .extend(response.events().iter().cloned());
    }
    let a: Vec<Kv> = seen[&id_a].iter().map(|e| kv(e.kv().unwrap())).collect();
    assert_eq!(
        a,
        [expect("a", "1", 2, 2, 1, 0), expect("a", "2", 2, 5, 2, 0)]
    );
    assert!(
        seen[&id_a]
            .iter()
            .all(|e| e.event_type() == EventType::Put && e.prev_kv().is_none())
    );
    let b = &seen[&id_b];
    assert_eq!(
        b.iter()
            .map(etcd_client::Event::event_type)
            .collect::<Vec<_>>(),
        [EventType::Put, EventType::Delete, EventType::Put]
    );
    assert_eq!(kv(b[0].kv().unwrap()), expect("b1", "x", 3, 3, 1, 0));
    // A delete event carries the key, the deletion revision and nothing else.
    assert_eq!(kv(b[1].kv().unwrap()), expect("b1", "", 0, 6, 0, 0));
    assert!(b[1].prev_kv().is_none(), "prev_kv was not requested");
    assert_eq!(kv(b[2].kv().unwrap()), expect("b2", "z", 7, 7, 1, 0));
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn watch_replays_from_start_revision_with_prev_kv() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    client.put("k", "1", None).await.unwrap(); // 2
    client.put("k", "2", None).await.unwrap(); // 3
    client.delete("k", None).await.unwrap(); // 4
    client.put("k", "3", None).await.unwrap(); // 5
    client.put("other", "x", None).await.unwrap(); // 6

    let options = WatchOptions::new().with_start_revision(2).with_prev_key();
    let (mut stream, id) = open_watch(&client, "k", options).await;
    let replay = events_of(&mut stream, id, 4).await;
    assert_eq!(
        replay,
        [
            put_ev("k", "1", 2, None),
            put_ev("k", "2", 3, Some("1")),
            del_ev("k", 4, Some("2")),
            put_ev("k", "3", 5, None)
        ]
    );
    // Then live events follow on the same watch.
    client.put("k", "4", None).await.unwrap(); // 7
    assert_eq!(
        events_of(&mut stream, id, 1).await,
        [put_ev("k", "4", 7, Some("3"))]
    );

    // A watch from the middle of history, without prev_kv, on a prefix.
    let (mut stream, id) = open_watch(
        &client,
        "",
        WatchOptions::new().with_all_keys().with_start_revision(4),
    )
    .await;
    let replay = events_of(&mut stream, id, 4).await;
    assert_eq!(
        replay,
        [
            del_ev("k", 4, None),
            put_ev("k", "3", 5, None),
            put_ev("other", "x", 6, None),
            put_ev("k", "4", 7, None)
        ]
    );
    // The delete event of the replay carries the full prev_kv when asked, from history.
    let options = WatchOptions::new().with_start_revision(4).with_prev_key();
    let (mut stream, id) = open_watch(&client, "k", options).await;
    let replay = events_of(&mut stream, id, 3).await;
    assert_eq!(
        replay,
        [
            del_ev("k", 4, Some("2")),
            put_ev("k", "3", 5, None),
            put_ev("k", "4", 7, Some("3"))
        ]
    );
}

#[tokio::test]
async fn watch_filters() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let (mut stream, no_put) = open_watch(
        &client,
        "f",
        WatchOptions::new()
            .with_prefix()
            .with_filters([WatchFilterType::NoPut]),
    )
    .await;
    stream
        .watch(
            "f",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_prev_key()
                    .with_filters([WatchFilterType::NoDelete]),
            ),
        )
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(created.created());
    let no_delete = created.watch_id();

    client.put("f1", "a", None).await.unwrap(); // 2
    client.delete("f1", None).await.unwrap(); // 3
    client.put("f2", "b", None).await.unwrap(); // 4
    client.delete("f2", None).await.unwrap(); // 5: the last event the NoPut watch can see
    client.put("f3", "c", None).await.unwrap(); // 6: the last event the NoDelete watch can see

    let mut deletes = Vec::new();
    let mut puts = Vec::new();
    while deletes.last().is_none_or(|e: &Ev| e.3 != 5) || puts.last().is_none_or(|e: &Ev| e.3 != 6)
    {
        let response = next(&mut stream).await;
        let events = response.events().iter().map(ev);
        match response.watch_id() {
            id if id == no_put => deletes.extend(events),
            id if id == no_delete => puts.extend(events),
            other => panic!("response for unknown watch {other}: {response:?}"),
        }
    }
    assert_eq!(deletes, [del_ev("f1", 3, None), del_ev("f2", 5, None)]);
    assert_eq!(
        puts,
        [
            put_ev("f1", "a", 2, None),
            put_ev("f2", "b", 4, None),
            put_ev("f3", "c", 6, None)
        ]
    );
}

#[tokio::test]
async fn watch_cancel() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let (mut stream, id_a) = open_watch(&client, "a", WatchOptions::new()).await;
    stream
        .watch("", Some(WatchOptions::new().with_all_keys()))
        .await
        .unwrap();
    let id_all = next(&mut stream).await.watch_id();

    stream.cancel(id_a).await.unwrap();
    let canceled = next(&mut stream).await;
    assert!(canceled.canceled(), "cancel is acknowledged: {canceled:?}");
    assert_eq!(canceled.watch_id(), id_a);
    assert!(canceled.events().is_empty());

    client.put("a", "1", None).await.unwrap(); // 2
    client.put("z", "2", None).await.unwrap(); // 3
    // Only the remaining watch reports, in order; nothing arrives for the canceled one.
    let events = events_of(&mut stream, id_all, 2).await;
    assert_eq!(
        events,
        [put_ev("a", "1", 2, None), put_ev("z", "2", 3, None)]
    );
}

#[tokio::test]
async fn watch_progress_request() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let (mut stream, id) = open_watch(&client, "p", WatchOptions::new().with_prefix()).await;
    client.put("x", "unwatched", None).await.unwrap(); // 2
    client.put("p1", "watched", None).await.unwrap(); // 3
    client.put("y", "unwatched", None).await.unwrap(); // 4
    assert_eq!(
        events_of(&mut stream, id, 1).await,
        [put_ev("p1", "watched", 3, None)]
    );

    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert_eq!(
        progress.watch_id(),
        -1,
        "a progress response belongs to no watch: {progress:?}"
    );
    assert!(progress.events().is_empty());
    assert!(!progress.created() && !progress.canceled());
    assert_eq!(
        revision(progress.header()),
        4,
        "progress carries the current revision"
    );

    // The stream keeps working after a progress response.
    client.put("p2", "more", None).await.unwrap(); // 5
    assert_eq!(
        events_of(&mut stream, id, 1).await,
        [put_ev("p2", "more", 5, None)]
    );
    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert_eq!((progress.watch_id(), revision(progress.header())), (-1, 5));
}

#[tokio::test]
async fn leases_grant_keepalive_ttl_list_revoke() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let id = 0x1234;
    let granted = client
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
        .await
        .unwrap();
    assert_eq!((granted.id(), granted.ttl(), granted.error()), (id, 60, ""));
    let err = client
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(id)))
        .await
        .unwrap_err();
    assert_eq!(
        status_of(&err),
        (
            "FailedPrecondition".to_owned(),
            "etcdserver: lease already exists".to_owned()
        )
    );
    let other = client.lease_grant(120, None).await.unwrap();
    assert!(
        other.id() > 0 && other.id() != id,
        "server-assigned lease id: {}",
        other.id()
    );
    assert_eq!(other.ttl(), 120);

    client
        .put("k1", "v1", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap(); // 2
    client
        .put("k2", "v2", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap(); // 3
    client
        .put("k3", "v3", Some(PutOptions::new().with_lease(other.id())))
        .await
        .unwrap(); // 4
    let k1 = client.get("k1", None).await.unwrap();
    assert_eq!(kv(&k1.kvs()[0]), expect("k1", "v1", 2, 2, 1, id));

    let ttl = client
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!((ttl.id(), ttl.granted_ttl()), (id, 60));
    assert!(
        ttl.ttl() > 0 && ttl.ttl() <= 60,
        "remaining ttl {}",
        ttl.ttl()
    );
    let attached: BTreeSet<String> = ttl
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(attached, BTreeSet::from(["k1".to_owned(), "k2".to_owned()]));
    let without_keys = client.lease_time_to_live(id, None).await.unwrap();
    assert!(without_keys.keys().is_empty(), "keys only when asked");

    let leases: BTreeSet<i64> = client
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(etcd_client::LeaseStatus::id)
        .collect();
    assert_eq!(leases, BTreeSet::from([id, other.id()]));

    let (mut keeper, mut responses) = client.lease_keep_alive(id).await.unwrap();
    assert_eq!(keeper.id(), id);
    for _ in 0..3 {
        keeper.keep_alive().await.unwrap();
        let response = tokio::time::timeout(WAIT, responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((response.id(), response.ttl()), (id, 60));
    }

    // Revoke: the lease's keys go at one revision, as DELETE events carrying prev_kv.
    let (mut stream, watch) = open_watch(
        &client,
        "k",
        WatchOptions::new().with_prefix().with_prev_key(),
    )
    .await;
    let revoked = client.lease_revoke(id).await.unwrap();
    let revoke_revision = revision(revoked.header());
    assert_eq!(revoke_revision, 5);
    let mut events = events_of(&mut stream, watch, 2).await;
    events.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        events,
        [del_ev("k1", 5, Some("v1")), del_ev("k2", 5, Some("v2"))]
    );
    let left = client
        .get("k", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys(left.kvs()), ["k3"]);

    let gone = client.lease_time_to_live(id, None).await.unwrap();
    assert_eq!(
        (gone.id(), gone.ttl()),
        (id, -1),
        "a missing lease reports ttl -1"
    );
    let leases: Vec<i64> = client
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(etcd_client::LeaseStatus::id)
        .collect();
    assert_eq!(leases, [other.id()]);
    // Keep-alive of a revoked lease answers ttl 0, which the client reports as "lease not found".
    keeper.keep_alive().await.unwrap();
    let response = tokio::time::timeout(WAIT, responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((response.id(), response.ttl()), (id, 0));
    assert!(client.lease_keep_alive(id).await.is_err());
    let err = client.lease_revoke(id).await.unwrap_err();
    assert_eq!(
        status_of(&err),
        (
            "NotFound".to_owned(),
            "etcdserver: requested lease not found".to_owned()
        )
    );
}

#[tokio::test]
async fn maintenance_and_members() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    client.put("a", "1", None).await.unwrap(); // 2
    client.put("b", "2", None).await.unwrap(); // 3

    let status = client.status().await.unwrap();
    let member_id = status.header().unwrap().member_id();
    assert_ne!(member_id, 0);
    assert_eq!(status.leader(), member_id, "a single member leads itself");
    assert!(!status.version().is_empty());
    assert!(status.db_size() > 0);
    assert!(status.raft_used_db_size() > 0 && status.raft_used_db_size() <= status.db_size());
    assert!(status.raft_term() >= 1);
    assert!(status.raft_index() >= 1 && status.raft_applied_index() >= 1);
    assert!(status.errors().is_empty());
    assert!(!status.is_learner());
    assert_eq!(revision(status.header()), 3);

    // HashKV is a pure function of the history up to a revision.
    let first = client.hash_kv(2).await.unwrap();
    let again = client.hash_kv(2).await.unwrap();
    assert_eq!(first.hash(), again.hash());
    assert_eq!(
        first.hash_revision(),
        2,
        "etcd 3.6 reports the hashed revision (3.4 leaves it 0)"
    );
    let at_three = client.hash_kv(3).await.unwrap();
    assert_ne!(
        at_three.hash(),
        first.hash(),
        "different contents hash differently"
    );
    client.put("c", "3", None).await.unwrap(); // 4
    assert_eq!(
        client.hash_kv(3).await.unwrap().hash(),
        at_three.hash(),
        "later writes do not change an old hash"
    );
    let latest = client.hash_kv(0).await.unwrap();
    assert_eq!(latest.hash(), client.hash_kv(4).await.unwrap().hash());
    assert_eq!(revision(latest.header()), 4);

    client.defragment().await.unwrap();
    let after = client
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys(after.kvs()), ["a", "b", "c"]);
    assert_eq!(
        client.hash_kv(3).await.unwrap().hash(),
        at_three.hash(),
        "defragment keeps history"
    );

    let alarms = client
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert!(alarms.alarms().is_empty());

    let members = client.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    let member = &members.members()[0];
    assert_eq!(member.id(), member_id);
    assert_eq!(member.name(), "default");
    assert_eq!(member.client_urls(), [server.url()]);
    assert_eq!(
        member.peer_urls(),
        [format!("http://127.0.0.1:{}", server.peer_port)]
    );
    assert!(!member.is_learner());
    assert_eq!(members.header().unwrap().member_id(), member_id);
}
