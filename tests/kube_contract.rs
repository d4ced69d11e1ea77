//! The contract kube-apiserver relies on, replayed request for request as its storage layer
//! (k8s.io/apiserver `pkg/storage/etcd3` over etcd's `client/v3/kubernetes`) sends it: the four txn
//! shapes, the health check, paged lists pinned to a revision, counts, watches with `prev_kv` and
//! progress, compaction, leased keys expiring, and the Status version gate.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::Cairn;
use common::client::{Kv, expect, kv, next};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, GetResponse, PutOptions,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions, WatchStream,
};

/// Every wait in this file is bounded by this.
const WAIT: Duration = Duration::from_secs(15);

async fn connect(server: &Cairn) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(WAIT)
        .with_require_leader(true);
    Client::connect([server.endpoint()], Some(options))
        .await
        .expect("connect to cairn")
}

fn kvs(response: &GetResponse) -> Vec<Kv> {
    response.kvs().iter().map(kv).collect()
}

fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("every response carries a header").revision()
}

fn status_of(err: &etcd_client::Error) -> (String, String) {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            (format!("{:?}", status.code()), status.message().to_owned())
        }
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn compacted() -> (String, String) {
    (
        "OutOfRange".to_owned(),
        "etcdserver: mvcc: required revision has been compacted".to_owned(),
    )
}

fn future() -> (String, String) {
    (
        "OutOfRange".to_owned(),
        "etcdserver: mvcc: required revision is a future revision".to_owned(),
    )
}

/// etcd's `GetPrefixRangeEnd`: the prefix with its last byte incremented.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// kube-apiserver's create: `if mod_revision(k) == 0 then put(k, v [, lease])`, no else branch.
async fn create(client: &mut Client, key: &str, value: &str, lease: i64) -> TxnResponse {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    client.txn(txn).await.expect("create txn")
}

/// kube-apiserver's update: `if mod_revision(k) == rev then put(k, v [, lease]) else range(k)`.
async fn update(client: &mut Client, key: &str, value: &str, rev: i64, lease: i64) -> TxnResponse {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    client.txn(txn).await.expect("update txn")
}

/// kube-apiserver's delete: `if mod_revision(k) == rev then delete(k) else range(k)`.
async fn delete(client: &mut Client, key: &str, rev: i64) -> TxnResponse {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
        .and_then([TxnOp::delete(key, None)])
        .or_else([TxnOp::get(key, None)]);
    client.txn(txn).await.expect("delete txn")
}

/// kube-apiserver's compaction clock:
/// `if version("compact_rev_key") == n then put("compact_rev_key", rev) else range("compact_rev_key")`.
async fn compaction_clock(client: &mut Client, version: i64, rev: i64) -> TxnResponse {
    let txn = Txn::new()
        .when([Compare::version(
            "compact_rev_key",
            CompareOp::Equal,
            version,
        )])
        .and_then([TxnOp::put("compact_rev_key", rev.to_string(), None)])
        .or_else([TxnOp::get("compact_rev_key", None)]);
    client.txn(txn).await.expect("compaction clock txn")
}

/// The else-branch range of a failed optimistic txn.
fn else_range(response: &TxnResponse) -> Vec<Kv> {
    assert!(!response.succeeded());
    let ops = response.op_responses();
    assert_eq!(ops.len(), 1, "exactly the else-branch range: {ops:?}");
    let TxnOpResponse::Get(get) = &ops[0] else {
        panic!("expected a range response, got {ops:?}")
    };
    assert_eq!(get.count(), get.kvs().len() as i64);
    assert!(!get.more());
    kvs(get)
}

/// kube-apiserver's single-object get: `limit=1` and an optional revision.
async fn get_one(
    client: &mut Client,
    key: &str,
    rev: i64,
) -> Result<GetResponse, etcd_client::Error> {
    client
        .get(
            key,
            Some(GetOptions::new().with_limit(1).with_revision(rev)),
        )
        .await
}

/// One page of kube-apiserver's list: `[start, prefix_end)` with a limit and a pinned revision.
async fn list_page(
    client: &mut Client,
    prefix: &str,
    start: &[u8],
    limit: i64,
    rev: i64,
) -> GetResponse {
    let options = GetOptions::new()
        .with_range(prefix_end(prefix))
        .with_limit(limit)
        .with_revision(rev);
    client.get(start, Some(options)).await.expect("list page")
}

/// kube-apiserver's watch: a prefix from a start revision with `prev_kv` and progress notifications.
async fn kube_watch(client: &Client, prefix: &str, start_revision: i64) -> (WatchStream, i64) {
    let options = WatchOptions::new()
        .with_range(prefix_end(prefix))
        .with_start_revision(start_revision)
        .with_prev_key()
        .with_progress_notify();
    let mut stream = client
        .watch_client()
        .watch(prefix, Some(options))
        .await
        .expect("create watch");
    let created = next(&mut stream).await;
    assert!(
        created.created() && !created.canceled(),
        "created response first: {created:?}"
    );
    (stream, created.watch_id())
}

#[tokio::test]
async fn the_four_txn_shapes() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let key = "/registry/pods/default/web-0";

    // create
    let created = create(&mut client, key, "v1", 0).await;
    assert!(created.succeeded());
    assert_eq!(revision(created.header()), 2);
    assert!(
        matches!(created.op_responses().as_slice(), [TxnOpResponse::Put(p)] if p.prev_key().is_none())
    );
    // create of an existing object fails with no responses and no new revision
    let again = create(&mut client, key, "other", 0).await;
    assert!(!again.succeeded());
    assert!(again.op_responses().is_empty());
    assert_eq!(revision(again.header()), 2);

    // update guarded by the object's mod_revision
    let updated = update(&mut client, key, "v2", 2, 0).await;
    assert!(updated.succeeded());
    assert_eq!(revision(updated.header()), 3);
    assert_eq!(updated.op_responses().len(), 1);
    let got = get_one(&mut client, key, 0).await.unwrap();
    assert_eq!(kvs(&got), [expect(key, "v2", 2, 3, 2, 0)]);
    assert_eq!(
        (got.count(), got.more(), revision(got.header())),
        (1, false, 3)
    );

    // a stale update gets the current object from the else branch, at the current revision
    let stale = update(&mut client, key, "lost", 2, 0).await;
    assert_eq!(else_range(&stale), [expect(key, "v2", 2, 3, 2, 0)]);
    assert_eq!(revision(stale.header()), 3);

    // update attaching a lease (kube does this for events)
    let lease = client.lease_grant(3600, None).await.unwrap().id();
    let leased = update(&mut client, key, "v3", 3, lease).await;
    assert!(leased.succeeded());
    assert_eq!(revision(leased.header()), 4);
    assert_eq!(
        kvs(&get_one(&mut client, key, 0).await.unwrap()),
        [expect(key, "v3", 2, 4, 3, lease)]
    );
    // and an update without a lease detaches it
    assert!(update(&mut client, key, "v4", 4, 0).await.succeeded());
    assert_eq!(
        kvs(&get_one(&mut client, key, 0).await.unwrap()),
        [expect(key, "v4", 2, 5, 4, 0)]
    );

    // a stale delete gets the current object
    let stale = delete(&mut client, key, 4).await;
    assert_eq!(else_range(&stale), [expect(key, "v4", 2, 5, 4, 0)]);
    assert_eq!(revision(stale.header()), 5);
    // the guarded delete
    let deleted = delete(&mut client, key, 5).await;
    assert!(deleted.succeeded());
    assert_eq!(revision(deleted.header()), 6);
    assert!(
        matches!(deleted.op_responses().as_slice(), [TxnOpResponse::Delete(d)] if d.deleted() == 1)
    );
    // updating or deleting the deleted object: the else range is empty
    let gone = update(&mut client, key, "v5", 5, 0).await;
    assert_eq!(else_range(&gone), []);
    assert_eq!(revision(gone.header()), 6);
    let gone = delete(&mut client, key, 5).await;
    assert_eq!(else_range(&gone), []);
    // re-creating after a delete starts a new generation
    let recreated = create(&mut client, key, "new", 0).await;
    assert!(recreated.succeeded());
    assert_eq!(
        kvs(&get_one(&mut client, key, 0).await.unwrap()),
        [expect(key, "new", 7, 7, 1, 0)]
    );
    // a get at an older revision with limit=1 sees the old object
    assert_eq!(
        kvs(&get_one(&mut client, key, 4).await.unwrap()),
        [expect(key, "v3", 2, 4, 3, lease)]
    );

    // the compaction clock: version 0 → the first apiserver wins and bumps the version
    let first = compaction_clock(&mut client, 0, 7).await;
    assert!(first.succeeded());
    assert_eq!(revision(first.header()), 8);
    let loser = compaction_clock(&mut client, 0, 8).await;
    assert_eq!(
        else_range(&loser),
        [expect("compact_rev_key", "7", 8, 8, 1, 0)]
    );
    assert_eq!(revision(loser.header()), 8);
    let second = compaction_clock(&mut client, 1, 8).await;
    assert!(second.succeeded());
    assert_eq!(revision(second.header()), 9);
    let third = compaction_clock(&mut client, 1, 9).await;
    assert_eq!(
        else_range(&third),
        [expect("compact_rev_key", "8", 8, 9, 2, 0)]
    );
    let compaction = client.compact(7, None).await.unwrap();
    assert_eq!(revision(compaction.header()), 9);
}

#[tokio::test]
async fn health_check_and_missing_objects() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    client
        .put("/registry/namespaces/default", "ns", None)
        .await
        .unwrap();
    let health = client.get("/registry/health", None).await.unwrap();
    assert!(health.kvs().is_empty());
    assert_eq!(
        (health.count(), health.more(), revision(health.header())),
        (0, false, 2)
    );
    let missing = get_one(&mut client, "/registry/pods/default/nothing", 0)
        .await
        .unwrap();
    assert!(missing.kvs().is_empty());
    assert_eq!(
        revision(missing.header()),
        2,
        "the revision is read even when nothing is found"
    );
    let header = missing.header().unwrap();
    assert_ne!(header.member_id(), 0);
    assert_ne!(header.cluster_id(), 0);
    assert!(header.raft_term() >= 1);
}

#[tokio::test]
async fn paged_list_pinned_to_a_revision() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let prefix = "/registry/pods/";
    // Neighbours outside the prefix must never show up.
    client
        .put("/registry/pods", "not in the prefix", None)
        .await
        .unwrap(); // 2
    client
        .put("/registry/pods0", "not in the prefix", None)
        .await
        .unwrap(); // 3
    for i in 0..10 {
        client
            .put(format!("{prefix}ns/pod-{i:02}"), format!("v{i}"), None)
            .await
            .unwrap(); // 4..=13
    }
    let name = |i: usize| format!("{prefix}ns/pod-{i:02}");

    // Page 1 at the current revision.
    let page1 = list_page(&mut client, prefix, prefix.as_bytes(), 4, 0).await;
    let list_rev = revision(page1.header());
    assert_eq!(list_rev, 13);
    assert_eq!(
        kvs(&page1),
        (0..4)
            .map(|i| expect(&name(i), &format!("v{i}"), i as i64 + 4, i as i64 + 4, 1, 0))
            .collect::<Vec<_>>()
    );
    assert_eq!((page1.count(), page1.more()), (10, true));

    // The world moves on between pages.
    client.put(name(2), "changed", None).await.unwrap(); // 14
    client.delete(name(5), None).await.unwrap(); // 15
    client.put(name(10), "late", None).await.unwrap(); // 16

    // Page 2 starts at last_key + "\0", pinned to page 1's revision.
    let mut start = page1.kvs().last().unwrap().key().to_vec();
    start.push(0);
    let page2 = list_page(&mut client, prefix, &start, 4, list_rev).await;
    assert_eq!(
        kvs(&page2),
        (4..8)
            .map(|i| expect(&name(i), &format!("v{i}"), i as i64 + 4, i as i64 + 4, 1, 0))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        (page2.count(), page2.more()),
        (6, true),
        "count is every key left in the requested range"
    );
    assert_eq!(
        revision(page2.header()),
        16,
        "the header carries the current revision"
    );

    let mut start = page2.kvs().last().unwrap().key().to_vec();
    start.push(0);
    let page3 = list_page(&mut client, prefix, &start, 4, list_rev).await;
    assert_eq!(
        kvs(&page3),
        (8..10)
            .map(|i| expect(&name(i), &format!("v{i}"), i as i64 + 4, i as i64 + 4, 1, 0))
            .collect::<Vec<_>>()
    );
    assert_eq!((page3.count(), page3.more()), (2, false));

    // A page that ends exactly at the last key is not "more".
    let exact = list_page(&mut client, prefix, prefix.as_bytes(), 10, list_rev).await;
    assert_eq!(
        (exact.kvs().len(), exact.count(), exact.more()),
        (10, 10, false)
    );
    // The same list now sees the changes.
    let now = list_page(&mut client, prefix, prefix.as_bytes(), 0, 0).await;
    assert_eq!(now.count(), 10);
    assert_eq!(kvs(&now)[2], expect(&name(2), "changed", 6, 14, 2, 0));
    assert!(!now.kvs().iter().any(|kv| kv.key() == name(5).as_bytes()));
    assert_eq!(
        kv(now.kvs().last().unwrap()),
        expect(&name(10), "late", 16, 16, 1, 0)
    );
}

#[tokio::test]
async fn count_only_and_keys_only_on_a_prefix() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    for i in 0..7 {
        client
            .put(
                format!("/registry/configmaps/ns/cm-{i}"),
                "x".repeat(100 + i),
                None,
            )
            .await
            .unwrap(); // 2..=8
    }
    client
        .put("/registry/configmaps0", "outside", None)
        .await
        .unwrap(); // 9
    client
        .put("/registry/configmaps/ns/cm-0", "y", None)
        .await
        .unwrap(); // 10

    let counted = client
        .get(
            "/registry/configmaps/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert!(counted.kvs().is_empty());
    assert_eq!(
        (counted.count(), counted.more(), revision(counted.header())),
        (7, false, 10)
    );

    let listed = client
        .get(
            "/registry/configmaps/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    assert_eq!(listed.count(), 7);
    let mut expected = vec![expect("/registry/configmaps/ns/cm-0", "", 2, 10, 2, 0)];
    expected.extend((1..7).map(|i| {
        expect(
            &format!("/registry/configmaps/ns/cm-{i}"),
            "",
            i + 2,
            i + 2,
            1,
            0,
        )
    }));
    assert_eq!(kvs(&listed), expected);

    // Counting an empty prefix.
    let none = client
        .get(
            "/registry/secrets/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((none.count(), none.kvs().len()), (0, 0));
    // count_only at a past revision.
    let past = client
        .get(
            "/registry/configmaps/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_revision(4),
            ),
        )
        .await
        .unwrap();
    assert_eq!(past.count(), 3);
}

/// (type, key, value, `mod_revision`, prev (value, `mod_revision`)).
type Ev = (EventType, String, String, i64, Option<(String, i64)>);

#[tokio::test]
async fn watch_from_list_revision_sees_every_change_with_prev_kv() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let prefix = "/registry/pods/";
    let p = |name: &str| format!("{prefix}ns/{name}");
    assert!(create(&mut client, &p("p1"), "p1.0", 0).await.succeeded()); // 2
    assert!(create(&mut client, &p("p2"), "p2.0", 0).await.succeeded()); // 3
    let lease = client.lease_grant(3600, None).await.unwrap().id();

    let list = list_page(&mut client, prefix, prefix.as_bytes(), 500, 0).await;
    let list_rev = revision(list.header());
    assert_eq!((list_rev, list.count()), (3, 2));

    // Changes between the list and the watch.
    assert!(create(&mut client, &p("p3"), "p3.0", 0).await.succeeded()); // 4
    assert!(
        update(&mut client, &p("p1"), "p1.1", 2, 0)
            .await
            .succeeded()
    ); // 5
    assert!(delete(&mut client, &p("p2"), 3).await.succeeded()); // 6
    assert!(
        create(&mut client, &p("p4"), "p4.0", lease)
            .await
            .succeeded()
    ); // 7
    client
        .put("/registry/services/specs/ns/svc", "not watched", None)
        .await
        .unwrap(); // 8

    let (mut stream, watch_id) = kube_watch(&client, prefix, list_rev + 1).await;

    // Changes after the watch started, including two objects changed at one revision.
    assert!(
        update(&mut client, &p("p3"), "p3.1", 4, 0)
            .await
            .succeeded()
    ); // 9
    assert!(delete(&mut client, &p("p1"), 5).await.succeeded()); // 10
    let both = Txn::new().and_then([
        TxnOp::put(p("p5"), "p5.0", None),
        TxnOp::put(p("p4"), "p4.1", None),
    ]);
    assert_eq!(revision(client.txn(both).await.unwrap().header()), 11);

    let mut events: Vec<Ev> = Vec::new();
    while events.len() < 8 {
        let response = next(&mut stream).await;
        assert_eq!(response.watch_id(), watch_id, "{response:?}");
        assert!(!response.canceled(), "{response:?}");
        assert_eq!(response.compact_revision(), 0);
        for event in response.events() {
            let kv = event.kv().unwrap();
            if event.event_type() == EventType::Put && kv.version() == 1 {
                assert!(
                    event.prev_kv().is_none(),
                    "a create has no prev_kv: {event:?}"
                );
            } else {
                let prev = event
                    .prev_kv()
                    .unwrap_or_else(|| panic!("every non-create event carries prev_kv: {event:?}"));
                assert_eq!(prev.key(), kv.key());
            }
            assert!(revision(response.header()) >= kv.mod_revision());
            events.push((
                event.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.mod_revision(),
                event.prev_kv().map(|p| {
                    (
                        String::from_utf8_lossy(p.value()).into_owned(),
                        p.mod_revision(),
                    )
                }),
            ));
        }
    }
    let put = |name: &str, value: &str, rev: i64, prev: Option<(&str, i64)>| -> Ev {
        (
            EventType::Put,
            p(name),
            value.to_owned(),
            rev,
            prev.map(|(v, r)| (v.to_owned(), r)),
        )
    };
    let del = |name: &str, rev: i64, prev: (&str, i64)| -> Ev {
        (
            EventType::Delete,
            p(name),
            String::new(),
            rev,
            Some((prev.0.to_owned(), prev.1)),
        )
    };
    assert_eq!(
        events,
        [
            put("p3", "p3.0", 4, None),
            put("p1", "p1.1", 5, Some(("p1.0", 2))),
            del("p2", 6, ("p2.0", 3)),
            put("p4", "p4.0", 7, None),
            put("p3", "p3.1", 9, Some(("p3.0", 4))),
            del("p1", 10, ("p1.1", 5)),
            put("p5", "p5.0", 11, None),
            put("p4", "p4.1", 11, Some(("p4.0", 7))),
        ]
    );

    // RequestProgress once every event has been delivered: watch_id -1, the current revision.
    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert_eq!(progress.watch_id(), -1, "{progress:?}");
    assert!(progress.events().is_empty() && !progress.canceled() && !progress.created());
    assert_eq!(revision(progress.header()), 11);
    // An unrelated write moves the revision a progress response reports.
    client
        .put("/registry/services/specs/ns/svc2", "x", None)
        .await
        .unwrap(); // 12
    stream.request_progress().await.unwrap();
    let progress = next(&mut stream).await;
    assert_eq!((progress.watch_id(), revision(progress.header())), (-1, 12));
}

#[tokio::test]
async fn periodic_progress_notifications() {
    let server = Cairn::start_with(&["--experimental-watch-progress-notify-interval", "1s"]);
    let mut client = connect(&server).await;
    client.put("/registry/pods/ns/a", "x", None).await.unwrap(); // 2
    client.put("/registry/other", "y", None).await.unwrap(); // 3
    let (mut stream, watch_id) = kube_watch(&client, "/registry/pods/", 3).await;
    // The watch is idle; a notification carrying its id and the current revision must come.
    let notification = next(&mut stream).await;
    assert_eq!(notification.watch_id(), watch_id, "{notification:?}");
    assert!(notification.events().is_empty());
    assert!(!notification.canceled() && !notification.created());
    assert_eq!(revision(notification.header()), 3);
    client.put("/registry/other", "z", None).await.unwrap(); // 4
    // Later notifications report the revision moving on although no watched key changed.
    let mut reported = Vec::new();
    while reported.last() != Some(&4) {
        assert!(
            reported.len() < 10,
            "no notification at revision 4 among {reported:?}"
        );
        let response = next(&mut stream).await;
        assert!(
            response.events().is_empty(),
            "no watched key changed: {response:?}"
        );
        assert_eq!(response.watch_id(), watch_id);
        reported.push(revision(response.header()));
    }
}

#[tokio::test]
async fn compaction_cancels_old_watches_and_fails_old_reads() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let key = "/registry/pods/ns/a";
    client.put(key, "v1", None).await.unwrap(); // 2
    client.put(key, "v2", None).await.unwrap(); // 3
    client.put(key, "v3", None).await.unwrap(); // 4
    client.put("/registry/pods/ns/b", "b1", None).await.unwrap(); // 5

    let compaction = client.compact(4, None).await.unwrap();
    assert_eq!(revision(compaction.header()), 5);

    // Reads below the compacted revision: OutOfRange (kube-apiserver turns it into 410 Gone).
    let err = get_one(&mut client, key, 3).await.unwrap_err();
    assert_eq!(status_of(&err), compacted());
    let err = client
        .get(
            "/registry/pods/",
            Some(GetOptions::new().with_prefix().with_revision(2)),
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), compacted());
    // At the compacted revision itself the latest state is kept.
    assert_eq!(
        kvs(&get_one(&mut client, key, 4).await.unwrap()),
        [expect(key, "v3", 2, 4, 3, 0)]
    );
    let err = get_one(&mut client, key, 6).await.unwrap_err();
    assert_eq!(status_of(&err), future());

    // A watch from a compacted revision: created, then canceled with compact_revision set.
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(3)
        .with_prev_key();
    let mut stream = client
        .watch_client()
        .watch("/registry/pods/", Some(options))
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(
        created.created() && !created.canceled(),
        "etcd first acknowledges the watch: {created:?}"
    );
    assert_eq!(created.compact_revision(), 0);
    let response = next(&mut stream).await;
    assert_eq!(response.watch_id(), created.watch_id());
    assert_eq!(response.compact_revision(), 4, "{response:?}");
    assert!(response.canceled(), "{response:?}");
    assert!(response.events().is_empty());

    // A watch from the compacted revision itself still works.
    let options = WatchOptions::new().with_prefix().with_start_revision(4);
    let mut stream = client
        .watch_client()
        .watch("/registry/pods/", Some(options))
        .await
        .unwrap();
    let created = next(&mut stream).await;
    assert!(created.created() && !created.canceled());
    let mut events = Vec::new();
    while events.len() < 2 {
        let response = next(&mut stream).await;
        assert!(!response.canceled(), "{response:?}");
        events.extend(response.events().iter().map(|e| kv(e.kv().unwrap())));
    }
    assert_eq!(
        events,
        [
            expect(key, "v3", 2, 4, 3, 0),
            expect("/registry/pods/ns/b", "b1", 5, 5, 1, 0)
        ]
    );

    // Compacting again at or below the compacted revision, or past the head.
    assert_eq!(
        status_of(&client.compact(4, None).await.unwrap_err()),
        compacted()
    );
    assert_eq!(
        status_of(&client.compact(3, None).await.unwrap_err()),
        compacted()
    );
    assert_eq!(
        status_of(&client.compact(6, None).await.unwrap_err()),
        future()
    );
    // Compacting to the head is allowed; the store keeps serving.
    client.compact(5, None).await.unwrap();
    let listed = client
        .get("/registry/pods/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(listed.count(), 2);
    let written = client.put(key, "v4", None).await.unwrap();
    assert_eq!(revision(written.header()), 6);
}

#[tokio::test]
async fn a_lease_with_1000_keys_expires_at_one_revision() {
    const KEYS: usize = 1000;
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let lease = client.lease_grant(3, None).await.unwrap().id();
    let (mut keeper, mut acks) = client.lease_keep_alive(lease).await.unwrap();
    let key = |i: usize| format!("/registry/events/ns/event-{i:04}");

    // Attach the keys in batches, keeping the lease alive until all are written.
    let mut last_put = 0;
    for batch in 0..KEYS / 100 {
        keeper.keep_alive().await.unwrap();
        tokio::time::timeout(WAIT, acks.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let puts: Vec<TxnOp> = (batch * 100..(batch + 1) * 100)
            .map(|i| {
                TxnOp::put(
                    key(i),
                    format!("value-{i}"),
                    Some(PutOptions::new().with_lease(lease)),
                )
            })
            .collect();
        let response = client.txn(Txn::new().and_then(puts)).await.unwrap();
        last_put = revision(response.header());
    }
    assert_eq!(last_put, 1 + (KEYS / 100) as i64);
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(last_put + 1);
    let mut stream = client
        .watch_client()
        .watch("/registry/events/", Some(options))
        .await
        .unwrap();
    assert!(next(&mut stream).await.created());
    let attached = client
        .get(
            "/registry/events/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(attached.count(), KEYS as i64);
    drop(keeper);

    // Nobody keeps the lease alive now: it expires and every key goes at one revision.
    let mut deleted = BTreeSet::new();
    let mut revisions = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while deleted.len() < KEYS {
        let response = tokio::time::timeout_at(deadline, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {KEYS} deletes within 30s", deleted.len()))
            .unwrap()
            .unwrap();
        assert!(!response.canceled(), "{response:?}");
        for event in response.events() {
            assert_eq!(event.event_type(), EventType::Delete, "{event:?}");
            let kv = event.kv().unwrap();
            revisions.insert(kv.mod_revision());
            let prev = event
                .prev_kv()
                .unwrap_or_else(|| panic!("DELETE events carry prev_kv: {event:?}"));
            let name = String::from_utf8_lossy(kv.key()).into_owned();
            let i: usize = name.rsplit('-').next().unwrap().parse().unwrap();
            assert_eq!(kv.key(), prev.key());
            assert_eq!(prev.value(), format!("value-{i}").as_bytes());
            assert_eq!(prev.lease(), lease);
            assert_eq!(prev.mod_revision(), 2 + (i / 100) as i64);
            assert!(deleted.insert(name), "each key is deleted once");
        }
    }
    assert_eq!(
        revisions,
        BTreeSet::from([last_put + 1]),
        "all deletes at one revision"
    );
    let left = client
        .get(
            "/registry/events/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!((left.count(), revision(left.header())), (0, last_put + 1));
    assert_eq!(
        client.lease_time_to_live(lease, None).await.unwrap().ttl(),
        -1
    );
    assert!(client.leases().await.unwrap().leases().is_empty());
}

/// `major.minor.patch` of a version string, ignoring any pre-release or build suffix.
fn semver(version: &str) -> (u64, u64, u64) {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<u64> = core
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("{version:?} is not semver"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "{version:?} is not major.minor.patch");
    (parts[0], parts[1], parts[2])
}

#[tokio::test]
async fn status_version_passes_the_kube_apiserver_gate() {
    let server = Cairn::start();
    let mut client = connect(&server).await;
    let status = client.status().await.unwrap();
    let version = semver(status.version());
    assert!(
        version >= (3, 5, 13),
        "kube-apiserver needs etcd >= 3.5.13 for progress requests, got {}",
        status.version()
    );
    assert!(status.db_size() > 0);
    assert_eq!(status.leader(), status.header().unwrap().member_id());

    // kubeadm reads HTTP /version.
    let (code, body) = common::http_get(server.port, "/version").expect("GET /version");
    assert_eq!(code, 200);
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(json["etcdserver"], status.version());
    let cluster = json["etcdcluster"]
        .as_str()
        .unwrap_or_else(|| panic!("etcdcluster missing: {body}"));
    assert_eq!(cluster, format!("{}.{}.0", version.0, version.1));
}
