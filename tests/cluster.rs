//! Multi-process cluster tests: three or more real `cairn` processes on loopback ports, started
//! as users start etcd members, driven by real clients (the `etcd-client` crate and `etcdctl`)
//! while members are killed (SIGKILL), restarted, added and removed.
//!
//! ```text
//!   test ──► Cluster (tests/common/cluster.rs) ──► m0  m1  m2 [m3]   one process each,
//!        │                                          │   │   │        own ports and data dir
//!        ├─► etcd-client writers / readers / watchers ─┘   │
//!        └─► etcdctl --endpoints=m0,m1,m2 ──────────────────┘
//! ```
//!
//! What is asserted, per test:
//! - `leader_kill_under_load`: every acknowledged put is on every member with its acknowledged
//!   revision after the leader is killed (SIGKILL) and restarted; a new leader is elected within a
//!   bound; members converge to the same revision and `HashKV`.
//! - `learner_joins_from_snapshot_is_promoted_and_removed`: `member add --learner`, start with
//!   `--initial-cluster-state existing`, catch up, `member promote` (retried while "not in
//!   sync"), `member remove`; the remaining members keep serving with equal hashes.
//! - `etcdctl_survives_leader_kill`: etcdctl with `--endpoints a,b,c` keeps working through a
//!   leader kill; `endpoint status/health/hashkv` describe the cluster sensibly.
//! - `linearizable_under_leader_kills`: random put/get/delete/CAS from 5 clients on random
//!   members while the leader is killed twice; the history is checked for linearizability.
//! - `watch_resumes_across_leader_kill_and_member_kill`: a prefix watch resumed from its last
//!   revision on another member sees every write exactly once, in order, with correct `prev_kv`.
//! - `start_up_and_reconfiguration_refusals`: wrong token, joining without `member add`, adding a
//!   voter to a one-member cluster, promoting a voter.
//!
//! - `removed_member_stops_and_cannot_write`: a promoted then removed member learns it was removed
//!   (its peers refuse it), stops, and nothing it forwards is committed.
//! - `learner_can_be_added_as_soon_as_the_cluster_serves`: `member add --learner` right after the
//!   first election waits for the initial membership changes instead of failing.
//!
//! The tests run one at a time (each starts a cluster; the machine may have two cores). Seeds of
//! the randomized test are printed; `CAIRN_CLUSTER_SEEDS=1,2,3` replays others.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, ELECTION_MS, Member};
use common::linearizability::{self, History, Op, Outcome};
use common::{etcdctl, require_tool};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, MemberAddOptions,
    StatusResponse, Txn, TxnOp, WatchOptions,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Bound on one client request (the server itself gives up after 7 s without a leader).
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on electing a new leader after the old one was killed.
const ELECTION_BOUND: Duration = Duration::from_secs(10);
/// Bound on members converging to the same state once writes stopped.
const CONVERGE_BOUND: Duration = Duration::from_secs(30);
/// Bound on background tasks stopping once told to.
const STOP_BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// The tests of this file run one at a time: each starts several processes.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A client for `endpoints` (the connection is made lazily, on the first request).
async fn connect(endpoints: &[String], timeout: Duration) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(timeout);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(endpoints, Some(options.clone())).await {
            Ok(client) => return client,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {endpoints:?}: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One client per endpoint, in the same order.
async fn clients_for(endpoints: &[String]) -> Vec<Client> {
    let mut clients = Vec::new();
    for endpoint in endpoints {
        clients.push(connect(std::slice::from_ref(endpoint), OP_TIMEOUT).await);
    }
    clients
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("every response carries a header").revision()
}

/// Status of one member, or `None` if it does not answer within a few seconds.
async fn status_of(endpoint: &str) -> Option<StatusResponse> {
    let mut client = connect(&[endpoint.to_string()], Duration::from_secs(3)).await;
    tokio::time::timeout(Duration::from_secs(4), client.status())
        .await
        .ok()?
        .ok()
}

/// Waits (bounded) until every member at `endpoints` reports the same revision and the same
/// raft applied index, the revision at least `min_revision`. Returns that revision.
async fn converge(endpoints: &[String], min_revision: i64) -> i64 {
    let deadline = Instant::now() + CONVERGE_BOUND;
    loop {
        let mut seen = Vec::new();
        for endpoint in endpoints {
            let status = status_of(endpoint).await;
            seen.push(status.map(|s| (header_revision(s.header()), s.raft_applied_index())));
        }
        let first = seen[0];
        if let Some((revision, _)) = first
            && revision >= min_revision
            && seen.iter().all(|s| *s == first)
        {
            return revision;
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge within {CONVERGE_BOUND:?} (want revision >= \
             {min_revision}); (revision, applied index) per member: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `HashKV` at `revision` from every member (asserting each hashed that revision).
async fn hash_kvs(endpoints: &[String], revision: i64) -> Vec<u32> {
    let mut hashes = Vec::new();
    for endpoint in endpoints {
        let mut client = connect(std::slice::from_ref(endpoint), OP_TIMEOUT).await;
        let response = client
            .hash_kv(revision)
            .await
            .unwrap_or_else(|err| panic!("HashKV({revision}) on {endpoint}: {err}"));
        hashes.push(response.hash());
    }
    hashes
}

/// Every key under `prefix` on one member, read serializably (that member's own state):
/// key → (value, `mod_revision`). Also returns the header revision.
async fn dump(endpoint: &str, prefix: &str) -> (BTreeMap<String, (String, i64)>, i64) {
    let mut client = connect(&[endpoint.to_string()], OP_TIMEOUT).await;
    let response = client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await
        .unwrap_or_else(|err| panic!("serializable get {prefix:?} on {endpoint}: {err}"));
    let kvs = response
        .kvs()
        .iter()
        .map(|kv| (text(kv.key()), (text(kv.value()), kv.mod_revision())))
        .collect();
    (kvs, header_revision(response.header()))
}

/// Joins background tasks, bounded.
fn join_all(rt: &Runtime, tasks: Vec<JoinHandle<()>>, what: &str) {
    rt.block_on(async {
        for task in tasks {
            tokio::time::timeout(STOP_BOUND, task)
                .await
                .unwrap_or_else(|_| panic!("a {what} task did not stop within {STOP_BOUND:?}"))
                .unwrap_or_else(|err| panic!("a {what} task panicked: {err}"));
        }
    });
}

/// Runs etcdctl against `endpoints`; the command must succeed. Returns stdout.
fn ctl_ok(cluster: &Cluster, endpoints: &str, args: &[&str]) -> String {
    let (ok, out, err) = etcdctl(endpoints, args);
    if !ok {
        cluster.print_logs();
    }
    assert!(
        ok,
        "etcdctl --endpoints={endpoints} {args:?} failed\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// etcdctl's `Error: …` line from stderr (the last one).
fn error_line(stderr: &str) -> String {
    stderr
        .lines()
        .rfind(|l| l.starts_with("Error:"))
        .unwrap_or(stderr)
        .to_string()
}

/// The member id in `etcdctl member add`'s first line: "Member <hex> added to cluster <hex>".
fn added_member_id(output: &str) -> u64 {
    let hex = output
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected member add output: {output}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad member id in: {output}"))
}

fn json(output: &str) -> Value {
    serde_json::from_str(output).unwrap_or_else(|err| panic!("not JSON ({err}): {output}"))
}

fn u64_field(value: &Value, path: &[&str]) -> u64 {
    let mut v = value;
    for field in path {
        v = &v[*field];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not an unsigned integer in {value}"))
}

/// `member list -w json` → (id, name, is learner, client URLs).
fn member_list(cluster: &Cluster, endpoints: &str) -> Vec<(u64, String, bool, Vec<String>)> {
    let list = json(&ctl_ok(
        cluster,
        endpoints,
        &["member", "list", "-w", "json"],
    ));
    list["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members in {list}"))
        .iter()
        .map(|m| {
            (
                u64_field(m, &["ID"]),
                m["name"].as_str().unwrap_or_default().to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
                m["clientURLs"]
                    .as_array()
                    .map(|urls| {
                        urls.iter()
                            .filter_map(|u| u.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Leader kill under load
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PutAck {
    key: String,
    value: String,
    revision: i64,
    at: Instant,
}

#[derive(Default)]
struct PutLedger {
    acked: Vec<PutAck>,
    /// Puts whose outcome is unknown (error or timeout): key → value.
    unknown: BTreeMap<String, String>,
}

/// Writes unique keys until `stop`, starting on member `first` and moving to the next member
/// after any failure.
async fn load_writer(
    id: usize,
    clients: Vec<Client>,
    first: usize,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<PutLedger>>,
) {
    let mut member = first % clients.len();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("load/{id}/{seq:06}");
        let value = format!("w{id}-{seq}");
        seq += 1;
        let mut client = clients[member].clone();
        let answer =
            tokio::time::timeout(OP_TIMEOUT, client.put(key.as_str(), value.as_str(), None)).await;
        let acked = {
            let mut ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
            if let Ok(Ok(response)) = answer {
                ledger.acked.push(PutAck {
                    key,
                    value,
                    revision: header_revision(response.header()),
                    at: Instant::now(),
                });
                true
            } else {
                ledger.unknown.insert(key, value);
                false
            }
        };
        if !acked {
            member = (member + 1) % clients.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[test]
fn leader_kill_under_load() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(3, &[]);
    let rt = runtime();
    let endpoints = cluster.endpoints();
    let clients = rt.block_on(clients_for(&endpoints));
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(PutLedger::default()));
    let writers: Vec<JoinHandle<()>> = (0..4)
        .map(|id| {
            rt.spawn(load_writer(
                id,
                clients.clone(),
                id,
                Arc::clone(&stop),
                Arc::clone(&ledger),
            ))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    let (old_leader, _) = cluster.wait_leader(ELECTION_BOUND);
    let acked_before = ledger.lock().unwrap().acked.len();
    assert!(
        acked_before > 0,
        "no write was acknowledged before the kill"
    );
    let killed_at = Instant::now();
    cluster[old_leader].kill9();
    let (new_leader, _) = cluster.wait_leader(ELECTION_BOUND);
    let election = killed_at.elapsed();
    println!(
        "SIGKILLed leader m{old_leader}; m{new_leader} leads {election:?} later \
         (election timeout {ELECTION_MS} ms)"
    );
    assert_ne!(new_leader, old_leader);
    assert!(election <= ELECTION_BOUND);

    // Writes go on: wait (bounded) for a good number of acknowledgements after the kill.
    let deadline = Instant::now() + Duration::from_secs(20);
    let acked_after_kill = loop {
        let acked = {
            let ledger = ledger.lock().unwrap();
            ledger.acked.iter().filter(|a| a.at > killed_at).count()
        };
        if acked >= 50 {
            break acked;
        }
        assert!(
            Instant::now() < deadline,
            "only {acked} writes were acknowledged in the 20 s after the leader was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let resumed = killed_at.elapsed();
    cluster[old_leader].restart();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    join_all(&rt, writers, "writer");

    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("writers stopped")
        .into_inner()
        .unwrap();
    let max_acked = ledger.acked.iter().map(|a| a.revision).max().unwrap_or(0);
    rt.block_on(async {
        let revision = converge(&endpoints, max_acked).await;
        let mut dumps = Vec::new();
        for (i, endpoint) in endpoints.iter().enumerate() {
            let (kvs, at) = dump(endpoint, "load/").await;
            assert_eq!(at, revision, "m{i} moved on after converging");
            for ack in &ledger.acked {
                assert_eq!(
                    kvs.get(&ack.key),
                    Some(&(ack.value.clone(), ack.revision)),
                    "m{i} lost or changed acknowledged put {ack:?}"
                );
            }
            for (key, (value, _)) in &kvs {
                let acked = ledger.acked.iter().any(|a| &a.key == key);
                assert!(
                    acked || ledger.unknown.get(key) == Some(value),
                    "m{i} holds {key}={value}, which nobody wrote"
                );
            }
            dumps.push(kvs);
        }
        for (i, kvs) in dumps.iter().enumerate().skip(1) {
            assert!(*kvs == dumps[0], "m{i} and m0 hold different keys");
        }
        let hashes = hash_kvs(&endpoints, revision).await;
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "HashKV({revision}) differs between members: {hashes:?}"
        );
        let restarted = status_of(&endpoints[old_leader])
            .await
            .expect("the restarted member answers Status");
        assert_eq!(header_revision(restarted.header()), revision);
        assert_ne!(
            restarted.leader(),
            0,
            "the restarted member knows the leader"
        );
        println!(
            "{} puts acknowledged ({acked_before} before the kill, {acked_after_kill} within \
             {resumed:?} after it), {} unknown; converged at revision {revision}, HashKV {:#x}; \
             {:?} in all",
            ledger.acked.len(),
            ledger.unknown.len(),
            hashes[0],
            started.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Learner lifecycle with snapshots
// ---------------------------------------------------------------------------------------------

/// Keys written before the learner joins: with `--snapshot-count 100` and
/// `--experimental-snapshot-catchup-entries 100` the leader's log no longer starts at the
/// beginning, so the new member can only catch up from a snapshot.
const LEARNER_KEYS: usize = 1000;

/// Puts `count` keys `{prefix}{i:05}` through 16 concurrent tasks spread over `clients`.
async fn put_many(clients: &[Client], prefix: &str, count: usize) {
    let next = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for task in 0..16 {
        let mut client = clients[task % clients.len()].clone();
        let next = Arc::clone(&next);
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    return;
                }
                let key = format!("{prefix}{i:05}");
                client
                    .put(key.as_str(), format!("value-{i}"), None)
                    .await
                    .unwrap_or_else(|err| panic!("put {key}: {err}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("put task");
    }
}

/// `etcdctl member add NAME --peer-urls=… --learner` against `voters`, then starts the new
/// member with `--initial-cluster-state existing` and waits until it is healthy. Returns its
/// index in the cluster and its member id.
fn add_learner(cluster: &mut Cluster, voters: &str, name: &str) -> (usize, u64) {
    let existing: Vec<usize> = (0..cluster.len()).collect();
    let learner = cluster.prepare_joiner(name, &existing);
    let peer_url = cluster[learner].peer_url();
    let added = ctl_ok(
        cluster,
        voters,
        &[
            "member",
            "add",
            name,
            &format!("--peer-urls={peer_url}"),
            "--learner",
        ],
    );
    let id = added_member_id(&added);
    assert!(
        added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\"")
            && added.contains(&format!("{name}={peer_url}")),
        "member add output: {added}"
    );
    let listed = member_list(cluster, voters);
    assert_eq!(listed.len(), existing.len() + 1, "{listed:?}");
    assert!(
        listed.iter().any(|m| m.0 == id && m.2),
        "the new member is listed as a learner: {listed:?}"
    );
    cluster[learner].spawn();
    cluster[learner].wait_ready();
    (learner, id)
}

/// `etcdctl member promote ID`, retried (bounded) while it answers "not in sync". Returns how
/// many times it was refused.
fn promote(voters: &str, id: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let hex_id = format!("{id:x}");
    let mut refusals = 0;
    loop {
        let (ok, out, err) = etcdctl(voters, &["member", "promote", &hex_id]);
        if ok {
            assert!(out.contains("promoted"), "member promote output: {out}");
            return refusals;
        }
        let line = error_line(&err);
        assert!(
            line.contains(
                "etcdserver: can only promote a learner member which is in sync with leader"
            ),
            "member promote failed with something else than 'not in sync': {err}"
        );
        refusals += 1;
        assert!(
            Instant::now() < deadline,
            "the learner was never in sync enough to promote: {line}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn learner_joins_from_snapshot_is_promoted_and_removed() {
    if !require_tool("etcdctl") {
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "100",
            "--experimental-snapshot-catchup-entries",
            "100",
        ],
    );
    let rt = runtime();
    let voters = cluster.endpoints();
    let voters_csv = voters.join(",");
    let clients = rt.block_on(clients_for(&voters));

    let writing = Instant::now();
    rt.block_on(put_many(&clients, "snap/", LEARNER_KEYS));
    println!("{LEARNER_KEYS} puts took {:?}", writing.elapsed());
    let (leader, _) = cluster.wait_leader(ELECTION_BOUND);
    let leader_status = rt
        .block_on(status_of(&voters[leader]))
        .expect("leader status");
    let leader_index = leader_status.raft_index();
    let leader_revision = header_revision(leader_status.header());

    // member add --learner, then start the new member as etcdctl told us to.
    let (learner, learner_id) = add_learner(&mut cluster, &voters_csv, "m3");
    let learner_endpoint = cluster[learner].endpoint();

    // It catches up: its log and revision reach what the leader had before it joined.
    let deadline = Instant::now() + CONVERGE_BOUND;
    loop {
        let status = rt.block_on(status_of(&learner_endpoint));
        if let Some(status) = &status
            && status.raft_applied_index() >= leader_index
            && header_revision(status.header()) >= leader_revision
        {
            assert!(status.is_learner(), "Status.isLearner before promotion");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the learner did not catch up to index {leader_index} / revision {leader_revision} \
             within {CONVERGE_BOUND:?}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let learner_log = cluster[learner].log();
    let from_snapshot = learner_log.contains("snapshot received; installing");
    println!(
        "the learner caught up to index {leader_index} (revision {leader_revision}) {} {:?} after \
         the puts",
        if from_snapshot {
            "from a snapshot"
        } else {
            "by log replication only"
        },
        writing.elapsed()
    );
    assert!(
        from_snapshot,
        "with --snapshot-count 100, --experimental-snapshot-catchup-entries 100 and \
         {LEARNER_KEYS} entries the leader's log is purged, so the learner must have been sent a \
         snapshot; its log:\n{}",
        cluster[learner].log_tail(4000)
    );
    let (kvs, _) = rt.block_on(dump(&learner_endpoint, "snap/"));
    assert_eq!(kvs.len(), LEARNER_KEYS, "the learner has every key");

    // Promote, retrying while the learner is not in sync (bounded).
    let hex_id = format!("{learner_id:x}");
    let refusals = promote(&voters_csv, learner_id);
    println!("promoted after {refusals} 'not in sync' refusals");
    let listed = member_list(&cluster, &voters_csv);
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed.iter().all(|m| !m.2), "4 voters: {listed:?}");
    let m3 = listed
        .iter()
        .find(|m| m.0 == learner_id)
        .expect("m3 is listed");
    assert_eq!(m3.1, "m3", "m3 published its name");
    assert_eq!(m3.3, [cluster[learner].client_url()], "m3's client URLs");
    assert!(
        !rt.block_on(status_of(&learner_endpoint))
            .expect("m3 status")
            .is_learner()
    );

    // Write more through every member, m3 included; all four agree.
    let all = cluster.endpoints();
    let all_clients = rt.block_on(clients_for(&all));
    rt.block_on(put_many(&all_clients, "more/", 200));
    rt.block_on(async {
        let revision = converge(&all, 0).await;
        let hashes = hash_kvs(&all, revision).await;
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "HashKV({revision}) differs with 4 members: {hashes:?}"
        );
    });

    // Remove m3.
    let removed = ctl_ok(&cluster, &voters_csv, &["member", "remove", &hex_id]);
    assert!(
        removed.contains("removed"),
        "member remove output: {removed}"
    );
    let listed = member_list(&cluster, &voters_csv);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|m| m.0 != learner_id));

    // What m3 does now: etcd stops a removed member. Watch it for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster[learner].is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = cluster[learner].exit_status();
    let still_running = cluster[learner].is_running();
    println!(
        "after member remove, m3 {}",
        match (&exit, still_running) {
            (Some(status), _) => format!("exited on its own with {status}"),
            (None, true) => "is still running 10 s later".to_string(),
            (None, false) => "is gone".to_string(),
        }
    );
    if still_running {
        // A running removed member must not acknowledge writes any more.
        let answer = rt.block_on(async {
            let mut client = connect(
                std::slice::from_ref(&learner_endpoint),
                Duration::from_secs(3),
            )
            .await;
            tokio::time::timeout(
                Duration::from_secs(5),
                client.put("after-remove", "x", None),
            )
            .await
        });
        assert!(
            !matches!(answer, Ok(Ok(_))),
            "a removed member still acknowledges writes: {answer:?}"
        );
    }
    assert!(
        !cluster[learner].log().contains("panicked"),
        "m3 panicked:\n{}",
        cluster[learner].log_tail(4000)
    );

    // The remaining three keep serving and agree.
    rt.block_on(async {
        put_many(&clients, "final/", 50).await;
        let revision = converge(&voters, 0).await;
        let hashes = hash_kvs(&voters, revision).await;
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "HashKV({revision}) differs after the removal: {hashes:?}"
        );
        for endpoint in &voters {
            let status = status_of(endpoint).await.expect("status");
            assert_ne!(
                status.leader(),
                learner_id,
                "the removed member does not lead"
            );
            assert_ne!(status.leader(), 0);
        }
    });
    println!("learner lifecycle: {:?} in all", started.elapsed());
}

/// etcd stops a removed member (its peers answer its messages with "the member has been
/// permanently removed from the cluster", and it applies its own removal), and never lets it
/// propose again.
#[test]
fn removed_member_stops_and_cannot_write() {
    if !require_tool("etcdctl") {
        return;
    }
    let _serial = serial();
    let mut cluster = Cluster::start(3, &[]);
    let rt = runtime();
    let voters = cluster.endpoints();
    let voters_csv = voters.join(",");
    // (Right after start-up `member add` may be refused: see
    // `learner_can_be_added_as_soon_as_the_cluster_serves`.)
    let clients = rt.block_on(clients_for(&voters));
    rt.block_on(put_many(&clients, "k/", 20));
    std::thread::sleep(Duration::from_secs(1));
    let (removed, id) = add_learner(&mut cluster, &voters_csv, "m3");
    promote(&voters_csv, id);
    ctl_ok(
        &cluster,
        &voters_csv,
        &["member", "remove", &format!("{id:x}")],
    );
    let removed_endpoint = cluster[removed].endpoint();
    let answer = rt.block_on(async {
        let mut client = connect(&[removed_endpoint], Duration::from_secs(3)).await;
        tokio::time::timeout(Duration::from_secs(5), client.put("ghost", "x", None)).await
    });
    let ghosts = rt.block_on(async {
        let mut client = connect(&voters[..1], OP_TIMEOUT).await;
        let response = client.get("ghost", None).await.expect("linearizable get");
        response.kvs().len()
    });
    assert_eq!(
        ghosts, 0,
        "the cluster committed a write forwarded by a removed member (its client saw {answer:?})"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster[removed].is_running() {
        assert!(
            Instant::now() < deadline,
            "the removed member is still running 10 s after its removal"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cluster[removed]
            .log()
            .contains("the member has been permanently removed from the cluster"),
        "the removed member says why it stopped"
    );
}

/// etcd accepts `member add` as soon as the cluster has a leader.
#[test]
fn learner_can_be_added_as_soon_as_the_cluster_serves() {
    let _serial = serial();
    let mut cluster = Cluster::spawn(3, &[]);
    let (leader, _) = cluster.wait_leader(ELECTION_BOUND);
    let rt = runtime();
    let answer = rt.block_on(async {
        let mut client = connect(&[cluster[leader].endpoint()], OP_TIMEOUT).await;
        client
            .member_add(
                ["http://127.0.0.1:1"],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await
    });
    if let Err(err) = &answer {
        panic!(
            "member add --learner as soon as m{leader} leads: {}",
            grpc_message(err)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. etcdctl with several endpoints
// ---------------------------------------------------------------------------------------------

/// etcd's answers to a request that met no leader, or a leader that died under it: the outcome
/// is unknown and the client may try again.
const RETRYABLE: [&str; 5] = [
    "etcdserver: request timed out",
    "etcdserver: no leader",
    "etcdserver: leader changed",
    "context deadline exceeded",
    "etcdserver: server stopped",
];

#[test]
fn etcdctl_survives_leader_kill() {
    if !require_tool("etcdctl") {
        return;
    }
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(3, &[]);
    let endpoints = cluster.endpoints().join(",");
    ctl_ok(&cluster, &endpoints, &["put", "before", "1"]);

    let (leader, _) = cluster.wait_leader(ELECTION_BOUND);
    cluster[leader].kill9();
    let killed_at = Instant::now();

    // While the followers still follow the dead leader, a command may fail with one of etcd's
    // "try again" errors (etcd itself times out such a write); retried, each one gets through.
    let mut refusals = Vec::new();
    for i in 0..3 {
        let key = format!("during/{i}");
        let value = format!("v{i}");
        let deadline = Instant::now() + Duration::from_secs(30);
        for args in [
            vec!["put", key.as_str(), value.as_str()],
            vec!["get", key.as_str(), "--print-value-only"],
        ] {
            loop {
                let (ok, out, err) = etcdctl(&endpoints, &args);
                if ok {
                    let want = if args[0] == "put" {
                        "OK"
                    } else {
                        value.as_str()
                    };
                    assert_eq!(out.trim(), want, "etcdctl {args:?}");
                    break;
                }
                let line = error_line(&err);
                assert!(
                    RETRYABLE.iter().any(|e| line.contains(e)),
                    "etcdctl {args:?} during the election failed with {line:?}\n{err}"
                );
                refusals.push(format!("{:?} {}: {line}", killed_at.elapsed(), args[0]));
                assert!(
                    Instant::now() < deadline,
                    "etcdctl {args:?} never got through: {refusals:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    println!(
        "after SIGKILL of leader m{leader}: {} refused attempts while electing: {refusals:#?}",
        refusals.len()
    );

    // Once a new leader is elected, every command works the first time, with the dead member
    // still in --endpoints.
    let (next, _) = cluster.wait_leader(ELECTION_BOUND);
    println!("m{next} leads {:?} after the kill", killed_at.elapsed());
    for i in 0..5 {
        let key = format!("after/{i}");
        let value = format!("v{i}");
        let begun = Instant::now();
        let out = ctl_ok(&cluster, &endpoints, &["put", &key, &value]);
        assert_eq!(out.trim(), "OK");
        let out = ctl_ok(&cluster, &endpoints, &["get", &key, "--print-value-only"]);
        assert_eq!(out.trim(), value);
        println!(
            "put+get {key} with m{leader} dead took {:?}",
            begun.elapsed()
        );
    }
    let out = ctl_ok(
        &cluster,
        &endpoints,
        &["get", "before", "--print-value-only"],
    );
    assert_eq!(out.trim(), "1");
    cluster[leader].restart();

    // endpoint status --cluster: every member (found through the member list, dialed at its
    // advertised http:// client URL), exactly one leader, one term, one revision (once
    // converged).
    let mut urls: Vec<String> = cluster.members.iter().map(Member::client_url).collect();
    urls.sort();
    let deadline = Instant::now() + CONVERGE_BOUND;
    let statuses = loop {
        let statuses = json(&ctl_ok(
            &cluster,
            &endpoints,
            &["endpoint", "status", "--cluster", "-w", "json"],
        ));
        let list = statuses.as_array().expect("a JSON array").clone();
        let mut listed: Vec<String> = list
            .iter()
            .map(|s| s["Endpoint"].as_str().unwrap_or_default().to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, urls, "endpoint status --cluster: {statuses}");
        let revisions: Vec<u64> = list
            .iter()
            .map(|s| u64_field(s, &["Status", "header", "revision"]))
            .collect();
        if revisions.iter().all(|r| *r == revisions[0]) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "revisions never converged: {statuses}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let ids: Vec<u64> = statuses
        .iter()
        .map(|s| u64_field(s, &["Status", "header", "member_id"]))
        .collect();
    let leaders: Vec<u64> = statuses
        .iter()
        .map(|s| u64_field(s, &["Status", "leader"]))
        .collect();
    assert!(
        leaders.iter().all(|l| *l == leaders[0]),
        "members disagree on the leader: {statuses:?}"
    );
    assert_eq!(
        ids.iter().filter(|id| **id == leaders[0]).count(),
        1,
        "exactly one listed member is the leader: {statuses:?}"
    );
    for status in &statuses {
        let s = &status["Status"];
        assert_eq!(
            u64_field(s, &["header", "cluster_id"]),
            u64_field(&statuses[0], &["Status", "header", "cluster_id"])
        );
        assert_eq!(
            u64_field(s, &["raftTerm"]),
            u64_field(&statuses[0], &["Status", "raftTerm"])
        );
        assert!(u64_field(s, &["dbSize"]) > 0);
        assert!(u64_field(s, &["raftIndex"]) >= u64_field(s, &["raftAppliedIndex"]));
        assert!(s["version"].as_str().is_some_and(|v| !v.is_empty()));
    }

    // endpoint health --cluster: every member (found through the member list) is healthy.
    let health = json(&ctl_ok(
        &cluster,
        &endpoints,
        &["endpoint", "health", "--cluster", "-w", "json"],
    ));
    let mut healthy: Vec<String> = health
        .as_array()
        .expect("a JSON array")
        .iter()
        .filter(|h| h["health"].as_bool() == Some(true))
        .map(|h| h["endpoint"].as_str().unwrap_or_default().to_string())
        .collect();
    healthy.sort();
    assert_eq!(healthy, urls, "endpoint health --cluster: {health}");

    // endpoint hashkv --cluster: every member, one hash.
    let hashes = json(&ctl_ok(
        &cluster,
        &endpoints,
        &["endpoint", "hashkv", "--cluster", "-w", "json"],
    ));
    let list = hashes.as_array().expect("a JSON array");
    let mut listed: Vec<String> = list
        .iter()
        .map(|h| h["Endpoint"].as_str().unwrap_or_default().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, urls, "endpoint hashkv --cluster: {hashes}");
    // (etcdctl's JSON leaves out a zero hash.)
    let values: Vec<u64> = list
        .iter()
        .map(|h| h["HashKV"]["hash"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        values.iter().all(|h| *h == values[0]),
        "members hash differently: {hashes}"
    );
    println!(
        "etcdctl through a leader kill: {:?} in all",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Linearizability under leader kills
// ---------------------------------------------------------------------------------------------

const DEFAULT_SEEDS: [u64; 2] = [0x5eed_0001, 0x5eed_0002];
/// How long the clients run per seed.
const LIN_RUN: Duration = Duration::from_secs(15);
/// When the leader is killed, from the start of a run.
const LIN_KILLS: [Duration; 2] = [Duration::from_secs(3), Duration::from_millis(8500)];
/// Bound on one operation of the linearizability clients; longer is recorded as unknown.
const LIN_OP_TIMEOUT: Duration = Duration::from_secs(4);

fn seeds() -> Vec<u64> {
    std::env::var("CAIRN_CLUSTER_SEEDS")
        .ok()
        .map(|list| {
            list.split(',')
                .filter_map(|s| {
                    let s = s.trim();
                    s.strip_prefix("0x")
                        .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
                })
                .collect::<Vec<u64>>()
        })
        .filter(|seeds| !seeds.is_empty())
        .unwrap_or_else(|| DEFAULT_SEEDS.to_vec())
}

/// One client of the linearizability test: random operations on random keys against random
/// members until `stop`, every one recorded in `history`.
async fn lin_client(
    id: usize,
    clients: Vec<Client>,
    keys: Vec<String>,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // What this client last saw in each key, for plausible CAS expectations.
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut client = clients[rng.random_range(0..clients.len())].clone();
        let key = keys[rng.random_range(0..keys.len())].clone();
        let value = format!("c{id}-{n}");
        let roll = rng.random_range(0..100);
        let ok = if roll < 40 {
            let op = history.begin(id, Op::Get { key: key.clone() });
            let answer = tokio::time::timeout(LIN_OP_TIMEOUT, client.get(key.as_str(), None)).await;
            if let Ok(Ok(response)) = answer {
                let got = response.kvs().first().map(|kv| text(kv.value()));
                history.end(op, Outcome::Get(got.clone()));
                seen.insert(key, got);
                true
            } else {
                history.end(op, Outcome::Unknown);
                false
            }
        } else if roll < 65 {
            let op = history.begin(
                id,
                Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
            );
            let answer = tokio::time::timeout(
                LIN_OP_TIMEOUT,
                client.put(key.as_str(), value.as_str(), None),
            )
            .await;
            if let Ok(Ok(_)) = answer {
                history.end(op, Outcome::Put);
                seen.insert(key, Some(value));
                true
            } else {
                history.end(op, Outcome::Unknown);
                false
            }
        } else if roll < 75 {
            let op = history.begin(id, Op::Delete { key: key.clone() });
            let answer =
                tokio::time::timeout(LIN_OP_TIMEOUT, client.delete(key.as_str(), None)).await;
            if let Ok(Ok(response)) = answer {
                history.end(
                    op,
                    Outcome::Delete {
                        deleted: response.deleted() > 0,
                    },
                );
                seen.insert(key, None);
                true
            } else {
                history.end(op, Outcome::Unknown);
                false
            }
        } else {
            let expected = if rng.random_range(0..4) == 0 {
                None
            } else {
                seen.get(&key).cloned().flatten()
            };
            let compare = match &expected {
                Some(v) => Compare::value(key.as_str(), CompareOp::Equal, v.as_str()),
                None => Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            };
            let txn = Txn::new().when([compare]).and_then([TxnOp::put(
                key.as_str(),
                value.as_str(),
                None,
            )]);
            let op = history.begin(
                id,
                Op::Cas {
                    key: key.clone(),
                    expected,
                    new: value.clone(),
                },
            );
            let answer = tokio::time::timeout(LIN_OP_TIMEOUT, client.txn(txn)).await;
            if let Ok(Ok(response)) = answer {
                let succeeded = response.succeeded();
                history.end(op, Outcome::Cas { succeeded });
                if succeeded {
                    seen.insert(key, Some(value));
                }
                true
            } else {
                history.end(op, Outcome::Unknown);
                false
            }
        };
        if !ok {
            tokio::time::sleep(Duration::from_millis(rng.random_range(10..50))).await;
        }
    }
}

#[test]
fn linearizable_under_leader_kills() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(3, &[]);
    let rt = runtime();
    let endpoints = cluster.endpoints();
    for seed in seeds() {
        println!("linearizability seed {seed:#x} (replay: CAIRN_CLUSTER_SEEDS={seed:#x})");
        let keys: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|k| format!("lin/{seed:x}/{k}"))
            .collect();
        let history = Arc::new(History::new());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<JoinHandle<()>> = (0..5)
            .map(|id| {
                let endpoints = endpoints.clone();
                let keys = keys.clone();
                let history = Arc::clone(&history);
                let stop = Arc::clone(&stop);
                rt.spawn(async move {
                    let clients = clients_for(&endpoints).await;
                    lin_client(id, clients, keys, history, stop, seed).await;
                })
            })
            .collect();
        let run_start = Instant::now();
        for at in LIN_KILLS {
            std::thread::sleep(at.saturating_sub(run_start.elapsed()));
            let (leader, _) = cluster.wait_leader(ELECTION_BOUND);
            let killed_at = Instant::now();
            cluster[leader].kill9();
            let (next, _) = cluster.wait_leader(ELECTION_BOUND);
            println!(
                "  {:?}: killed leader m{leader}; m{next} leads {:?} later",
                run_start.elapsed(),
                killed_at.elapsed()
            );
            std::thread::sleep(Duration::from_secs(1));
            cluster[leader].restart();
        }
        std::thread::sleep(LIN_RUN.saturating_sub(run_start.elapsed()));
        stop.store(true, Ordering::Relaxed);
        join_all(&rt, clients, "linearizability client");

        let events = history.events();
        let unknown = events
            .iter()
            .filter(|e| e.outcome == Outcome::Unknown)
            .count();
        let checking = Instant::now();
        let verdict = linearizability::check(&events, Duration::from_secs(30));
        println!(
            "  {} operations ({unknown} with unknown outcome): {verdict} (checked in {:?})",
            events.len(),
            checking.elapsed()
        );
        if !verdict.is_linearizable() {
            cluster.print_logs();
        }
        assert!(
            verdict.is_linearizable(),
            "seed {seed:#x}: {verdict}\n(replay: CAIRN_CLUSTER_SEEDS={seed:#x})"
        );
        assert!(
            events.len() - unknown > 100,
            "too few operations completed to mean anything: {}",
            events.len() - unknown
        );
    }
    println!("linearizability: {:?} in all", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 5. Watch across leader changes and restarts
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Write {
    Put(String),
    Delete,
}

#[derive(Clone, Debug)]
struct WriteAck {
    key: String,
    write: Write,
    /// For a delete: whether anything was deleted.
    deleted: bool,
    revision: i64,
}

#[derive(Default)]
struct WriteLedger {
    acked: Vec<WriteAck>,
    unknown: Vec<(String, Write)>,
}

/// (type, key, value, `mod_revision`, prev value) of a watch event.
type Ev = (EventType, String, String, i64, Option<String>);

fn ev(event: &etcd_client::Event) -> Ev {
    let kv = event.kv().expect("every event carries a kv");
    (
        event.event_type(),
        text(kv.key()),
        text(kv.value()),
        kv.mod_revision(),
        event.prev_kv().map(|p| text(p.value())),
    )
}

/// Puts (mostly) and deletes on 4 keys of its own until `stop`, moving to the next member after
/// any failure.
async fn watch_writer(
    id: usize,
    clients: Vec<Client>,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<WriteLedger>>,
) {
    let mut rng = StdRng::seed_from_u64(0x0057_a7c4 + id as u64);
    let mut member = id % clients.len();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let key = format!("w/{id}/{}", rng.random_range(0..4));
        let write = if rng.random_range(0..100) < 85 {
            Write::Put(format!("w{id}-{seq}"))
        } else {
            Write::Delete
        };
        let mut client = clients[member].clone();
        let answer = match &write {
            Write::Put(value) => {
                tokio::time::timeout(OP_TIMEOUT, client.put(key.as_str(), value.as_str(), None))
                    .await
                    .map(|r| r.map(|r| (header_revision(r.header()), true)))
            }
            Write::Delete => tokio::time::timeout(OP_TIMEOUT, client.delete(key.as_str(), None))
                .await
                .map(|r| r.map(|r| (header_revision(r.header()), r.deleted() > 0))),
        };
        let acked = {
            let mut ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
            if let Ok(Ok((revision, deleted))) = answer {
                ledger.acked.push(WriteAck {
                    key,
                    write,
                    deleted,
                    revision,
                });
                true
            } else {
                ledger.unknown.push((key, write));
                false
            }
        };
        if !acked {
            member = (member + 1) % clients.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What the resuming watcher saw.
#[derive(Default)]
struct Watched {
    events: Vec<Ev>,
    /// (member, why the stream ended) for every stream that ended.
    breaks: Vec<(usize, String)>,
    /// Members the watch was (re)opened on, in order.
    opened_on: Vec<usize>,
}

/// Watches `w/` with `prev_kv` from `start_revision`, starting on `first`; when the stream fails
/// or is canceled, resumes from the last seen revision + 1 on the next member. Stops once it has
/// seen `target` (set by the test, 0 = not yet) and `stop` is set.
async fn resuming_watcher(
    clients: Vec<Client>,
    first: usize,
    start_revision: i64,
    target: Arc<AtomicI64>,
    watched: Arc<Mutex<Watched>>,
) {
    let mut member = first;
    let mut last_seen = start_revision - 1;
    let deadline = Instant::now() + Duration::from_secs(120);
    'streams: loop {
        assert!(Instant::now() < deadline, "the watcher ran too long");
        let done = |last_seen: i64| {
            let target = target.load(Ordering::Relaxed);
            target > 0 && last_seen >= target
        };
        if done(last_seen) {
            return;
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(last_seen + 1);
        let mut watch_client = clients[member].watch_client();
        let opened = tokio::time::timeout(
            Duration::from_secs(5),
            watch_client.watch("w/", Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            other => {
                let why = format!("open failed: {other:?}");
                watched.lock().unwrap().breaks.push((member, why));
                member = (member + 1) % clients.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        watched.lock().unwrap().opened_on.push(member);
        loop {
            if done(last_seen) {
                return;
            }
            let Ok(message) =
                tokio::time::timeout(Duration::from_millis(500), stream.message()).await
            else {
                continue;
            };
            let why = match message {
                Ok(Some(response)) if response.canceled() => {
                    format!("canceled: {:?}", response.cancel_reason())
                }
                Ok(Some(response)) => {
                    let mut watched = watched.lock().unwrap();
                    for event in response.events() {
                        let event = ev(event);
                        last_seen = event.3;
                        watched.events.push(event);
                    }
                    continue;
                }
                Ok(None) => "the stream ended".to_string(),
                Err(err) => format!("stream error: {err}"),
            };
            watched.lock().unwrap().breaks.push((member, why));
            member = (member + 1) % clients.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue 'streams;
        }
    }
}

/// Every event from `from` through `to` under `w/`, from one fresh watch on `endpoint`.
async fn replay(endpoint: &str, from: i64, to: i64) -> Vec<Ev> {
    let client = connect(&[endpoint.to_string()], OP_TIMEOUT).await;
    let options = WatchOptions::new()
        .with_prefix()
        .with_prev_key()
        .with_start_revision(from);
    let mut stream = client
        .watch_client()
        .watch("w/", Some(options))
        .await
        .expect("open the replay watch");
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while events.last().is_none_or(|e: &Ev| e.3 < to) {
        let left = deadline.saturating_duration_since(Instant::now());
        let response = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("replay did not reach revision {to}: {events:?}"))
            .expect("replay stream error")
            .expect("replay stream ended");
        assert!(!response.canceled(), "replay canceled: {response:?}");
        events.extend(response.events().iter().map(ev));
    }
    events
}

#[test]
fn watch_resumes_across_leader_kill_and_member_kill() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(3, &[]);
    let rt = runtime();
    let endpoints = cluster.endpoints();
    let clients = rt.block_on(clients_for(&endpoints));
    let start_revision = rt.block_on(converge(&endpoints, 0)) + 1;

    // The watch starts on a follower, so that killing the leader and killing the watch's member
    // are two different events.
    let (leader, _) = cluster.wait_leader(ELECTION_BOUND);
    let watch_member = (leader + 1) % 3;
    let target = Arc::new(AtomicI64::new(0));
    let watched = Arc::new(Mutex::new(Watched::default()));
    let watcher = rt.spawn(resuming_watcher(
        clients.clone(),
        watch_member,
        start_revision,
        Arc::clone(&target),
        Arc::clone(&watched),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(WriteLedger::default()));
    let writers: Vec<JoinHandle<()>> = (0..2)
        .map(|id| {
            rt.spawn(watch_writer(
                id,
                clients.clone(),
                Arc::clone(&stop),
                Arc::clone(&ledger),
            ))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    // (If leadership moved to the watch's member meanwhile, both kills hit the watch's member.)
    let (leader, _) = cluster.wait_leader(ELECTION_BOUND);
    cluster[leader].kill9();
    let (next, took) = cluster.wait_leader(ELECTION_BOUND);
    println!("killed leader m{leader}; m{next} leads {took:?} later (watch on m{watch_member})");
    std::thread::sleep(Duration::from_secs(2));
    cluster[leader].restart();
    std::thread::sleep(Duration::from_secs(1));
    let seen_before = watched.lock().unwrap().events.len();
    cluster[watch_member].kill9();
    println!("killed m{watch_member}, which the watch was on ({seen_before} events seen so far)");
    cluster.wait_leader(ELECTION_BOUND);
    std::thread::sleep(Duration::from_secs(2));
    cluster[watch_member].restart();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    join_all(&rt, writers, "writer");

    let final_revision = rt.block_on(converge(&endpoints, 0));
    target.store(final_revision, Ordering::Relaxed);
    join_all(&rt, vec![watcher], "watcher");
    let watched = Arc::try_unwrap(watched)
        .ok()
        .expect("watcher stopped")
        .into_inner()
        .unwrap();
    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("writers stopped")
        .into_inner()
        .unwrap();
    let events = &watched.events;
    println!(
        "{} events over revisions {start_revision}..={final_revision}; {} acknowledged writes, {} \
         unknown; watch opened on {:?}; stream ends: {:?}",
        events.len(),
        ledger.acked.len(),
        ledger.unknown.len(),
        watched.opened_on,
        watched.breaks
    );
    assert!(
        watched.opened_on.len() >= 2,
        "the watch was never resumed elsewhere: {:?}",
        watched.breaks
    );

    // Strictly increasing revisions (single-key writes: one event per revision).
    for pair in events.windows(2) {
        assert!(
            pair[0].3 < pair[1].3,
            "events out of order or duplicated: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    // No gap and nothing extra: the resumed watch equals one uninterrupted replay of history.
    let replayed = rt.block_on(replay(&endpoints[0], start_revision, final_revision));
    assert_eq!(
        events.len(),
        replayed.len(),
        "the resumed watch and a fresh replay of {start_revision}..={final_revision} differ in \
         length"
    );
    for (got, want) in events.iter().zip(&replayed) {
        assert_eq!(got, want, "the resumed watch differs from the replay");
    }
    // Every acknowledged write appears exactly once, at its revision.
    let by_revision: BTreeMap<i64, &Ev> = events.iter().map(|e| (e.3, e)).collect();
    for ack in &ledger.acked {
        let event = by_revision.get(&ack.revision);
        match &ack.write {
            Write::Put(value) => {
                let event = event.unwrap_or_else(|| panic!("no event for acknowledged {ack:?}"));
                assert_eq!(
                    (event.0, &event.1, &event.2),
                    (EventType::Put, &ack.key, value),
                    "{ack:?}"
                );
            }
            Write::Delete if ack.deleted => {
                let event = event.unwrap_or_else(|| panic!("no event for acknowledged {ack:?}"));
                assert_eq!(
                    (event.0, &event.1),
                    (EventType::Delete, &ack.key),
                    "{ack:?}"
                );
            }
            Write::Delete => {}
        }
    }
    // Every event is a write somebody made; prev_kv is the key's previous value.
    let acked_at: BTreeMap<i64, &WriteAck> = ledger
        .acked
        .iter()
        .filter(|a| a.write != Write::Delete || a.deleted)
        .map(|a| (a.revision, a))
        .collect();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    for event in events {
        let (kind, key, value, revision, prev) = event;
        let made = match acked_at.get(revision) {
            Some(ack) => {
                &ack.key == key
                    && match &ack.write {
                        Write::Put(v) => *kind == EventType::Put && v == value,
                        Write::Delete => *kind == EventType::Delete,
                    }
            }
            None => ledger.unknown.iter().any(|(k, w)| {
                k == key
                    && match w {
                        Write::Put(v) => *kind == EventType::Put && v == value,
                        Write::Delete => *kind == EventType::Delete,
                    }
            }),
        };
        assert!(made, "an event for a write nobody made: {event:?}");
        assert_eq!(
            prev.as_ref(),
            current.get(key),
            "prev_kv of {event:?} is not the key's previous value"
        );
        if *kind == EventType::Put {
            current.insert(key.clone(), value.clone());
        } else {
            current.remove(key);
        }
    }
    println!("watch across kills: {:?} in all", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 6. Refusals
// ---------------------------------------------------------------------------------------------

fn grpc_message(err: &etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => format!("not a gRPC status: {other:?}"),
    }
}

#[test]
fn start_up_and_reconfiguration_refusals() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(3, &[]);
    let rt = runtime();

    // A member restarted with another --initial-cluster-token than its data dir's.
    assert!(cluster[2].terminate().is_some(), "m2 stops on SIGTERM");
    let token = cluster.token.clone();
    let mut args = cluster[2].args();
    let at = args
        .iter()
        .position(|a| a == "--initial-cluster-token")
        .expect("the token flag");
    args[at + 1] = "another-token".to_string();
    let (status, log) = cluster[2].run_to_exit(&args, Duration::from_secs(30));
    let status = status.expect("a member with the wrong token exits by itself");
    assert!(!status.success(), "wrong token: {status}\n{log}");
    assert!(
        log.contains("--initial-cluster-token")
            && log.contains(&token)
            && log.contains("another-token"),
        "the refusal names both tokens:\n{log}"
    );
    println!(
        "wrong token: {status}: {}",
        log.lines().last().unwrap_or("")
    );
    cluster[2].spawn();
    cluster[2].wait_ready();

    // A fourth member that says `existing` although nobody ran `member add` for it.
    let stranger = cluster.prepare_joiner("m3", &[0, 1, 2]);
    let args = cluster[stranger].args();
    let (status, log) = cluster[stranger].run_to_exit(&args, Duration::from_secs(45));
    let status = status.expect("a member that was never added exits by itself");
    assert!(
        !status.success(),
        "joining without member add: {status}\n{log}"
    );
    let peer_url = cluster[stranger].peer_url();
    assert!(
        log.contains("has no member with peer URLs") && log.contains(&peer_url),
        "the refusal says the cluster does not know these peer URLs:\n{log}"
    );
    println!(
        "joining without member add: {status}: {}",
        log.lines().last().unwrap_or("")
    );

    let endpoints: Vec<String> = (0..3).map(|i| cluster[i].endpoint()).collect();
    rt.block_on(async {
        let mut client = connect(&endpoints[..1], OP_TIMEOUT).await;
        let members = client.member_list().await.expect("member list");
        assert_eq!(
            members.members().len(),
            3,
            "the refused members changed nothing: {:?}",
            members.members()
        );
        // Promoting a voter.
        let voter = members.members()[1].id();
        let err = client
            .member_promote(voter)
            .await
            .expect_err("promoting a voter is refused");
        assert_eq!(
            grpc_message(&err),
            "etcdserver: can only promote a learner member"
        );
        // The cluster still serves.
        client.put("still", "serving", None).await.expect("put");
    });

    // A voter added to a one-member cluster could never be outvoted: refused.
    let single = Cluster::start(1, &[]);
    rt.block_on(async {
        let mut client = connect(&[single[0].endpoint()], OP_TIMEOUT).await;
        let err = client
            .member_add(["http://127.0.0.1:1"], None)
            .await
            .expect_err("adding a voter to a one-member cluster is refused");
        assert_eq!(
            grpc_message(&err),
            "etcdserver: re-configuration failed due to not enough started members"
        );
        // A learner is fine, and can be removed again.
        let added = client
            .member_add(
                ["http://127.0.0.1:1"],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await
            .expect("adding a learner to a one-member cluster");
        let id = added.member().expect("the added member").id();
        client.member_remove(id).await.expect("remove the learner");
        assert_eq!(client.member_list().await.unwrap().members().len(), 1);
    });
    println!("refusals: {:?} in all", started.elapsed());
}
