//! Crash tests: a real `cairn` process is killed with SIGKILL at random moments while clients
//! write to it; after every restart, every write the server acknowledged must still be there.
//!
//! ```text
//!   cycle n:  start/restart ──► verify everything acknowledged so far ──► N concurrent writers
//!             ──► random delay (fixed-seed rng, printed) ──► SIGKILL ──► writers stop on error
//! ```
//!
//! What "survived" means, as etcd promises it: an acknowledged put is present with the
//! acknowledged value and `mod_revision`; the current revision is at least every acknowledged
//! revision; revisions never go backwards across restarts and are never handed out twice; a txn
//! is all or nothing; an acknowledged lease still exists with its keys attached. A write that was
//! in flight at the kill may or may not have happened, but only as it was sent.
//!
//! Set `CAIRN_CRASH_SEED` to replay a run with another seed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Cairn;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseTimeToLiveOptions, PutOptions,
    Txn, TxnOp,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 0x00C0_FFEE_2024;
/// Longest time writers run before the kill.
const MAX_DELAY_MS: u64 = 400;
/// Bound on how long writers take to notice the kill (requests time out well before).
const WRITER_STOP: Duration = Duration::from_secs(30);

fn seed(salt: u64) -> u64 {
    let base = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    base ^ salt
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A client for a server that reported healthy (bounded retries: the port may need a moment).
async fn connect(endpoint: &str) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect([endpoint], Some(options.clone())).await {
            Ok(client) => return client,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "cannot connect to {endpoint}: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Prints the end of the server's log when the test fails, for the post-mortem.
struct LogOnPanic(std::path::PathBuf);

impl LogOnPanic {
    fn new(server: &Cairn) -> Self {
        // The harness writes the server's stderr beside its data dir.
        LogOnPanic(server.data_dir.with_extension("log"))
    }
}

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let start = log.len().saturating_sub(6000);
            let start = (start..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(log.len());
            eprintln!("---- server log tail ----\n{}", &log[start..]);
        }
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("every response has a header").revision()
}

/// Runs `writers` until a random moment, kills the server, and waits for the writers to stop.
fn run_and_kill<F>(
    rt: &tokio::runtime::Runtime,
    server: &mut Cairn,
    delay: Duration,
    writers: Vec<F>,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    rt.block_on(async {
        let tasks: Vec<_> = writers.into_iter().map(tokio::spawn).collect();
        tokio::time::sleep(delay).await;
        server.kill9();
        for task in tasks {
            tokio::time::timeout(WRITER_STOP, task)
                .await
                .expect("a writer did not notice the kill")
                .expect("a writer panicked");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Puts of unique keys
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct PutAck {
    key: String,
    value: String,
    revision: i64,
}

#[derive(Default)]
struct PutLog {
    /// Every put sent, acknowledged or not: key → value.
    attempted: BTreeMap<String, String>,
    /// Acknowledged puts, per writer in the order they were acknowledged.
    acked: Vec<Vec<PutAck>>,
}

async fn put_writer(mut client: Client, cycle: usize, writer: usize, log: Arc<Mutex<PutLog>>) {
    for seq in 0.. {
        let key = format!("crash/{cycle:02}/{writer}/{seq:06}");
        let value = format!("value-{cycle}-{writer}-{seq}");
        log.lock()
            .expect("put log")
            .attempted
            .insert(key.clone(), value.clone());
        match client.put(key.clone(), value.clone(), None).await {
            Ok(response) => {
                let revision = header_revision(response.header());
                log.lock().expect("put log").acked[writer].push(PutAck {
                    key,
                    value,
                    revision,
                });
            }
            Err(_) => return,
        }
    }
}

/// Checks the whole `crash/` keyspace against what was attempted and acknowledged; returns the
/// current revision.
async fn verify_puts(
    endpoint: &str,
    attempted: &BTreeMap<String, String>,
    acked: &BTreeMap<String, PutAck>,
    floor: i64,
) -> i64 {
    let mut client = connect(endpoint).await;
    let response = client
        .get("crash/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read back after restart");
    let current = header_revision(response.header());
    assert!(
        current >= floor,
        "the revision went backwards across a restart: {current} < {floor}"
    );
    if let Some(max) = acked.values().map(|a| a.revision).max() {
        assert!(
            current >= max,
            "current revision {current} < acknowledged revision {max}"
        );
    }
    let mut present = BTreeMap::new();
    let mut revisions = BTreeSet::new();
    for kv in response.kvs() {
        let key = kv.key_str().expect("UTF-8 key").to_string();
        let value = kv.value_str().expect("UTF-8 value").to_string();
        assert_eq!(
            attempted.get(&key),
            Some(&value),
            "{key} holds {value:?}, which no client ever wrote there"
        );
        assert_eq!(kv.version(), 1, "{key} was written once: {kv:?}");
        assert_eq!(kv.create_revision(), kv.mod_revision(), "{key}: {kv:?}");
        assert!(
            kv.mod_revision() <= current,
            "{key} is newer than the store: {kv:?}"
        );
        assert!(
            revisions.insert(kv.mod_revision()),
            "two puts share revision {}",
            kv.mod_revision()
        );
        present.insert(key, (value, kv.mod_revision()));
    }
    for (key, ack) in acked {
        let Some((value, revision)) = present.get(key) else {
            panic!("acknowledged put lost: {ack:?}");
        };
        assert_eq!(value, &ack.value, "acknowledged value changed: {ack:?}");
        assert_eq!(
            *revision, ack.revision,
            "acknowledged mod_revision changed: {ack:?}"
        );
    }
    current
}

#[test]
fn acknowledged_puts_survive_sigkill() {
    const CYCLES: usize = 24;
    const WRITERS: usize = 4;
    let seed = seed(1);
    println!("crash seed {seed} (set CAIRN_CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = runtime();
    let mut server = Cairn::start();
    let _log = LogOnPanic::new(&server);
    let endpoint = server.endpoint();

    let mut attempted = BTreeMap::new();
    let mut acked: BTreeMap<String, PutAck> = BTreeMap::new();
    let mut all_revisions = BTreeSet::new();
    let mut floor = rt.block_on(verify_puts(&endpoint, &attempted, &acked, 1));
    for cycle in 0..CYCLES {
        let delay = Duration::from_millis(rng.random_range(0..=MAX_DELAY_MS));
        println!("cycle {cycle}: {WRITERS} writers, SIGKILL after {delay:?}");
        let log = Arc::new(Mutex::new(PutLog {
            acked: vec![Vec::new(); WRITERS],
            ..PutLog::default()
        }));
        let writers: Vec<_> = rt.block_on(async {
            let client = connect(&endpoint).await;
            (0..WRITERS)
                .map(|w| put_writer(client.clone(), cycle, w, Arc::clone(&log)))
                .collect()
        });
        run_and_kill(&rt, &mut server, delay, writers);

        let log = std::mem::take(&mut *log.lock().expect("put log"));
        let mut count = 0;
        for (writer, acks) in log.acked.iter().enumerate() {
            for pair in acks.windows(2) {
                assert!(
                    pair[0].revision < pair[1].revision,
                    "writer {writer}: sequential puts acknowledged out of order: {pair:?}"
                );
            }
            for ack in acks {
                assert!(
                    ack.revision > floor,
                    "revision {} handed out again after a restart: {ack:?}",
                    ack.revision
                );
                assert!(
                    all_revisions.insert(ack.revision),
                    "two puts acknowledged at revision {}",
                    ack.revision
                );
                acked.insert(ack.key.clone(), ack.clone());
                count += 1;
            }
        }
        attempted.extend(log.attempted);
        println!(
            "cycle {cycle}: {count} puts acknowledged, {} in total",
            acked.len()
        );

        server.restart();
        floor = rt.block_on(verify_puts(&endpoint, &attempted, &acked, floor));
    }
    assert!(
        acked.len() >= CYCLES,
        "the writers barely wrote anything: {}",
        acked.len()
    );
    verify_history_after_crashes(&mut server, &acked);
}

/// History went through the same kills: after a last restart (which catches it up from the
/// store) and a clean stop, it holds every acknowledged put at its revision, and its head is
/// the store's revision.
fn verify_history_after_crashes(server: &mut Cairn, acked: &BTreeMap<String, PutAck>) {
    use cairn_engine::history::{At, History};
    server.restart();
    let rt = runtime();
    let revision = rt.block_on(async {
        let mut client = connect(&server.endpoint()).await;
        let response = client.get("unused", None).await.expect("get");
        header_revision(response.header())
    });
    // Give the history thread a bounded moment to record what the restart replayed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = common::http_get(server.port, "/metrics").map(|(_, body)| body);
        let head = metrics.as_deref().and_then(|body| {
            body.lines()
                .find_map(|line| line.strip_prefix("cairn_history_head_revision "))
                .and_then(|value| value.trim().parse::<f64>().ok())
        });
        if head.is_some_and(|head| head as i64 >= revision) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history stuck at {head:?}, store at {revision}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.terminate(), Some(0), "clean stop");
    let history = History::open_read_only(&server.data_dir).expect("open history");
    let status = history.status().expect("status");
    assert_eq!(
        status.head_revision, revision,
        "history head is the store's revision"
    );
    for ack in acked.values() {
        let got = history
            .get(ack.key.as_bytes(), At::Revision(ack.revision))
            .expect("history get")
            .unwrap_or_else(|| panic!("{} missing from history at {}", ack.key, ack.revision));
        assert_eq!(got.value.as_ref(), ack.value.as_bytes(), "{}", ack.key);
        assert_eq!(got.mod_revision, ack.revision, "{}", ack.key);
    }
    println!(
        "history: {} acknowledged puts at their revisions, head {}",
        acked.len(),
        status.head_revision
    );
}

// ---------------------------------------------------------------------------------------------
// Transactions: compare-and-swap counters with a sliding window of log keys
// ---------------------------------------------------------------------------------------------

/// Log keys kept per counter: a txn that sets the counter to n writes `log/n` and deletes
/// `log/(n - WINDOW)`, so after any crash exactly `log/(c-WINDOW+1) ..= log/c` exist.
const WINDOW: u64 = 3;

fn counter_key(writer: usize) -> String {
    format!("txn/ctr/{writer}")
}

fn log_key(writer: usize, n: u64) -> String {
    format!("txn/log/{writer}/{n:08}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    value: u64,
    /// `mod_revision` of the counter key (0 = absent).
    revision: i64,
}

#[derive(Default)]
struct TxnLog {
    /// Acknowledged increments per writer: (new value, revision).
    acked: Vec<Vec<(u64, i64)>>,
    /// A compare that failed although each writer owns its counter: (writer, expected counter).
    failed: Vec<(usize, Counter)>,
}

async fn txn_writer(mut client: Client, writer: usize, start: Counter, log: Arc<Mutex<TxnLog>>) {
    let mut counter = start;
    loop {
        let next = counter.value + 1;
        let mut ops = vec![
            TxnOp::put(counter_key(writer), next.to_string(), None),
            TxnOp::put(log_key(writer, next), format!("{writer}:{next}"), None),
        ];
        if next > WINDOW {
            ops.push(TxnOp::delete(log_key(writer, next - WINDOW), None));
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                counter_key(writer),
                CompareOp::Equal,
                counter.revision,
            )])
            .and_then(ops)
            .or_else([TxnOp::get(counter_key(writer), None)]);
        match client.txn(txn).await {
            Ok(response) if response.succeeded() => {
                let revision = header_revision(response.header());
                log.lock().expect("txn log").acked[writer].push((next, revision));
                counter = Counter {
                    value: next,
                    revision,
                };
            }
            Ok(_) => {
                log.lock().expect("txn log").failed.push((writer, counter));
                return;
            }
            Err(_) => return,
        }
    }
}

/// Checks every counter and its log window; returns (counters, current revision).
///
/// `known[w]` is the last state of counter `w` the test knows for sure (verified at the start of
/// the cycle, or acknowledged since): one more increment may have been in flight at the kill.
async fn verify_txns(
    endpoint: &str,
    known: &[Counter],
    acked: &[BTreeMap<u64, i64>],
    floor: i64,
) -> (Vec<Counter>, i64) {
    let mut client = connect(endpoint).await;
    let response = client
        .get("txn/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read back");
    let current = header_revision(response.header());
    assert!(
        current >= floor,
        "the revision went backwards across a restart: {current} < {floor}"
    );
    let kvs: BTreeMap<String, (String, i64)> = response
        .kvs()
        .iter()
        .map(|kv| {
            let key = kv.key_str().expect("UTF-8 key").to_string();
            (
                key,
                (
                    kv.value_str().expect("UTF-8 value").to_string(),
                    kv.mod_revision(),
                ),
            )
        })
        .collect();
    let mut counters = Vec::new();
    for (writer, base) in known.iter().enumerate() {
        let counter = match kvs.get(&counter_key(writer)) {
            None => Counter {
                value: 0,
                revision: 0,
            },
            Some((value, revision)) => Counter {
                value: value
                    .parse()
                    .unwrap_or_else(|_| panic!("counter {writer} holds {value:?}")),
                revision: *revision,
            },
        };
        assert!(
            current >= base.revision,
            "current revision {current} < acknowledged {base:?}"
        );
        // At most one increment was in flight at the kill.
        if counter.value == base.value {
            assert_eq!(
                counter, *base,
                "counter {writer}: the acknowledged mod_revision changed"
            );
        } else {
            assert_eq!(
                counter.value,
                base.value + 1,
                "counter {writer} is {counter:?} but {base:?} was the last known state"
            );
            assert!(
                counter.revision > base.revision,
                "counter {writer}: {counter:?} after {base:?}"
            );
        }
        // All-or-nothing: exactly the log window of the counter's value exists, written with it.
        let expected: BTreeSet<String> = (counter.value.saturating_sub(WINDOW - 1).max(1)
            ..=counter.value)
            .map(|n| log_key(writer, n))
            .collect();
        let prefix = format!("txn/log/{writer}/");
        let present: BTreeSet<String> = kvs
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        assert_eq!(
            present, expected,
            "counter {writer} = {counter:?}: a txn was applied partially"
        );
        for n in counter.value.saturating_sub(WINDOW - 1).max(1)..=counter.value {
            let (value, revision) = &kvs[&log_key(writer, n)];
            assert_eq!(value, &format!("{writer}:{n}"));
            if n == counter.value {
                assert_eq!(
                    *revision, counter.revision,
                    "log {n} and counter {writer} share one txn"
                );
            }
            if let Some(&acked_revision) = acked[writer].get(&n) {
                assert_eq!(
                    *revision, acked_revision,
                    "log {n} of writer {writer}: acknowledged revision changed"
                );
            }
        }
        counters.push(counter);
    }
    (counters, current)
}

#[test]
fn acknowledged_txns_survive_sigkill_all_or_nothing() {
    const CYCLES: usize = 10;
    const WRITERS: usize = 3;
    let seed = seed(2);
    println!("crash seed {seed} (set CAIRN_CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = runtime();
    // Snapshot every 40 entries: raft snapshots, log purges and the durable store sync before
    // them all happen while the server is being killed.
    let mut server = Cairn::start_with(&["--snapshot-count", "40"]);
    let _log = LogOnPanic::new(&server);
    let endpoint = server.endpoint();

    let mut acked: Vec<BTreeMap<u64, i64>> = vec![BTreeMap::new(); WRITERS];
    let zero = vec![
        Counter {
            value: 0,
            revision: 0
        };
        WRITERS
    ];
    let (mut counters, mut floor) = rt.block_on(verify_txns(&endpoint, &zero, &acked, 1));
    for cycle in 0..CYCLES {
        let delay = Duration::from_millis(rng.random_range(0..=MAX_DELAY_MS));
        println!("cycle {cycle}: {WRITERS} txn writers from {counters:?}, SIGKILL after {delay:?}");
        let log = Arc::new(Mutex::new(TxnLog {
            acked: vec![Vec::new(); WRITERS],
            ..TxnLog::default()
        }));
        let writers: Vec<_> = rt.block_on(async {
            let client = connect(&endpoint).await;
            (0..WRITERS)
                .map(|w| txn_writer(client.clone(), w, counters[w], Arc::clone(&log)))
                .collect()
        });
        run_and_kill(&rt, &mut server, delay, writers);

        let log = std::mem::take(&mut *log.lock().expect("txn log"));
        assert!(
            log.failed.is_empty(),
            "a CAS on a counter only its writer touches failed: {:?}",
            log.failed
        );
        for (writer, acks) in log.acked.iter().enumerate() {
            for &(n, revision) in acks {
                assert!(
                    revision > floor,
                    "revision {revision} handed out again after a restart"
                );
                acked[writer].insert(n, revision);
                counters[writer] = Counter { value: n, revision };
            }
        }
        println!(
            "cycle {cycle}: {:?} txns acknowledged",
            log.acked.iter().map(Vec::len).collect::<Vec<_>>()
        );

        server.restart();
        (counters, floor) = rt.block_on(verify_txns(&endpoint, &counters, &acked, floor));
    }
    let total: usize = acked.iter().map(BTreeMap::len).sum();
    assert!(
        total >= CYCLES,
        "the txn writers barely wrote anything: {total}"
    );
}

// ---------------------------------------------------------------------------------------------
// Leases: grant, then attach a key
// ---------------------------------------------------------------------------------------------

const LEASE_TTL: i64 = 300;

#[derive(Debug, Clone)]
struct Attached {
    lease: i64,
    key: String,
    revision: i64,
}

#[derive(Default)]
struct LeaseLog {
    granted: Vec<i64>,
    attached: Vec<Attached>,
    /// Keys attempted (acknowledged or not) → (value, lease).
    attempted: BTreeMap<String, (String, i64)>,
}

async fn lease_writer(mut client: Client, cycle: usize, writer: usize, log: Arc<Mutex<LeaseLog>>) {
    for seq in 0.. {
        let Ok(grant) = client.lease_grant(LEASE_TTL, None).await else {
            return;
        };
        let lease = grant.id();
        log.lock().expect("lease log").granted.push(lease);
        let key = format!("lease/{cycle:02}/{writer}/{seq:06}");
        let value = format!("{lease:x}");
        log.lock()
            .expect("lease log")
            .attempted
            .insert(key.clone(), (value.clone(), lease));
        match client
            .put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
        {
            Ok(response) => {
                let revision = header_revision(response.header());
                log.lock().expect("lease log").attached.push(Attached {
                    lease,
                    key,
                    revision,
                });
            }
            Err(_) => return,
        }
    }
}

async fn verify_leases(
    endpoint: &str,
    granted: &BTreeSet<i64>,
    attached: &BTreeMap<String, Attached>,
    attempted: &BTreeMap<String, (String, i64)>,
    recent: &[i64],
    floor: i64,
) -> i64 {
    let mut client = connect(endpoint).await;
    let listed: BTreeSet<i64> = client
        .leases()
        .await
        .expect("list leases")
        .leases()
        .iter()
        .map(etcd_client::LeaseStatus::id)
        .collect();
    let missing: Vec<_> = granted.difference(&listed).collect();
    assert!(missing.is_empty(), "acknowledged leases lost: {missing:?}");

    let response = client
        .get("lease/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read back");
    let current = header_revision(response.header());
    assert!(
        current >= floor,
        "the revision went backwards across a restart: {current} < {floor}"
    );
    let mut present = BTreeMap::new();
    for kv in response.kvs() {
        let key = kv.key_str().expect("UTF-8 key").to_string();
        let value = kv.value_str().expect("UTF-8 value").to_string();
        assert_eq!(
            attempted.get(&key),
            Some(&(value.clone(), kv.lease())),
            "{key} holds {value:?} with lease {:x}, which no client wrote",
            kv.lease()
        );
        present.insert(key, kv.clone());
    }
    for (key, ack) in attached {
        let kv = present
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged leased put lost: {ack:?}"));
        assert_eq!(kv.lease(), ack.lease, "{key}: lease changed");
        assert_eq!(
            kv.mod_revision(),
            ack.revision,
            "{key}: acknowledged mod_revision changed"
        );
        assert!(
            current >= ack.revision,
            "current revision {current} < acknowledged {}",
            ack.revision
        );
    }
    // The leases of the last cycle, one by one: alive, full TTL granted, keys attached.
    for &lease in recent {
        let ttl = client
            .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .expect("lease time to live");
        assert!(
            ttl.ttl() > 0,
            "lease {lease:x} expired or vanished: ttl {}",
            ttl.ttl()
        );
        assert_eq!(ttl.granted_ttl(), LEASE_TTL, "lease {lease:x}");
        let keys: BTreeSet<String> = ttl
            .keys()
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let expected: BTreeSet<String> = attached
            .values()
            .filter(|a| a.lease == lease)
            .map(|a| a.key.clone())
            .collect();
        assert!(
            expected.is_subset(&keys),
            "lease {lease:x} lost keys: {expected:?} vs {keys:?}"
        );
    }
    current
}

#[test]
fn acknowledged_leases_and_attachments_survive_sigkill() {
    const CYCLES: usize = 10;
    const WRITERS: usize = 3;
    let seed = seed(3);
    println!("crash seed {seed} (set CAIRN_CRASH_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let rt = runtime();
    let mut server = Cairn::start();
    let _log = LogOnPanic::new(&server);
    let endpoint = server.endpoint();

    let mut granted = BTreeSet::new();
    let mut attached: BTreeMap<String, Attached> = BTreeMap::new();
    let mut attempted = BTreeMap::new();
    let mut floor = 1;
    for cycle in 0..CYCLES {
        let delay = Duration::from_millis(rng.random_range(0..=MAX_DELAY_MS));
        println!("cycle {cycle}: {WRITERS} lease writers, SIGKILL after {delay:?}");
        let log = Arc::new(Mutex::new(LeaseLog::default()));
        let writers: Vec<_> = rt.block_on(async {
            let client = connect(&endpoint).await;
            (0..WRITERS)
                .map(|w| lease_writer(client.clone(), cycle, w, Arc::clone(&log)))
                .collect()
        });
        run_and_kill(&rt, &mut server, delay, writers);

        let log = std::mem::take(&mut *log.lock().expect("lease log"));
        for ack in &log.attached {
            assert!(
                ack.revision > floor,
                "revision {} handed out again after a restart",
                ack.revision
            );
        }
        println!(
            "cycle {cycle}: {} leases granted, {} keys attached",
            log.granted.len(),
            log.attached.len()
        );
        granted.extend(log.granted.iter().copied());
        attached.extend(log.attached.into_iter().map(|a| (a.key.clone(), a)));
        attempted.extend(log.attempted);

        server.restart();
        floor = rt.block_on(verify_leases(
            &endpoint,
            &granted,
            &attached,
            &attempted,
            &log.granted,
            floor,
        ));
    }
    assert!(!granted.is_empty(), "no lease was ever granted");
}
