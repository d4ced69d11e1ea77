//! Multi-member clusters in one process over a simulated network that partitions, drops, delays
//! and reorders messages, and restarts members; every scenario is driven by a seed (printed at
//! its start; replay with `CAIRN_SIM_SEEDS=<seed>`). See `sim/` for the network, the cluster,
//! the clients and the checks.
// Scenarios hold several in-process members (raft, store, history) in one future; each runs
// once per seed, so its size does not matter.
#![allow(clippy::large_futures)]

mod sim;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::KvError;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use sim::cluster::{Cluster, Tuning, unavailable};
use sim::ledger::{self, Ledger};
use sim::network::Faults;
use sim::workload::{Clients, Targets, Workload};

/// The longest a write may take to be answered: the engine waits up to 7 s for a leader and a
/// commit, then up to 7 s more for its own apply; plus scheduling slack.
const WRITE_LIMIT: Duration = Duration::from_secs(16);
/// Reads may queue behind a read-index round already in flight (each bounded like a write).
const READ_LIMIT: Duration = ledger::HANG_LIMIT;
/// How fast a member that cannot reach a quorum must fail a request (7 s + slack).
const UNAVAILABLE_LIMIT: Duration = Duration::from_secs(10);
/// How soon after the faults end (the network healed, the last member restarted or removed)
/// every running member must get a write acknowledged.
const LIVENESS_LIMIT: Duration = Duration::from_secs(10);

fn scenario_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0x5eed_0f5c_e4a1_0000)
}

/// The store revision before any client write (every member agrees on it after start).
async fn start_revision(cluster: &Cluster) -> i64 {
    cluster.converge(Duration::from_secs(10)).await
}

// ---------------------------------------------------------------------------------------------
// 1. Writes through every member, read-your-writes across members.

async fn read_your_writes(seed: u64, size: usize, rounds: usize) {
    let cluster = Cluster::start(&format!("rw{size}"), seed, size, Tuning::default()).await;
    // No losses; small random delays reorder concurrent messages.
    cluster.net.set_faults(Faults {
        drop: 0.0,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(3),
    });
    let first = start_revision(&cluster).await;
    let ledger = Arc::new(Ledger::default());
    let tasks: Vec<_> = (0..3)
        .map(|client| {
            let cluster = Arc::clone(&cluster);
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                for round in 0..rounds {
                    for via in 0..size {
                        let key = format!("k/c{client}-{}", round % 3);
                        let value = format!("c{client}-r{round}-m{via}");
                        let node = cluster.running(via);
                        let write = ledger.put(&node, client, via, &key, &value).await;
                        let rev = write.outcome.unwrap_or_else(|e| {
                            panic!("write {key}={value} through member {via} failed: {e:?}")
                        });
                        for other in (0..size).filter(|o| *o != via) {
                            let node = cluster.running(other);
                            let read = ledger.get(&node, client, other, &key, false).await;
                            let (header_rev, found) = read.outcome.unwrap_or_else(|e| {
                                panic!("linearizable read of {key} through member {other}: {e:?}")
                            });
                            assert_eq!(
                                found,
                                Some((value.clone(), rev)),
                                "member {other} does not show write {key}={value}@{rev} \
                                 acknowledged by member {via}"
                            );
                            assert!(header_rev >= rev, "member {other}: header revision");
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        if let Err(err) = task.await {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    // Serializable reads converge: every member ends up answering the same for every key.
    let keys: Vec<String> = ledger
        .writes()
        .iter()
        .map(|w| w.key.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut answers = Vec::new();
        for i in 0..size {
            let node = cluster.running(i);
            let mut member = Vec::new();
            for key in &keys {
                member.push(
                    ledger
                        .get(&node, 100, i, key, true)
                        .await
                        .outcome
                        .map(|o| o.1),
                );
            }
            answers.push(member);
        }
        if answers.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serializable reads did not converge: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (last, _) = cluster.check_all(&ledger, first).await;
    assert_eq!(
        last - first,
        (3 * rounds * size) as i64,
        "one revision per write"
    );
    ledger.check_bounded(WRITE_LIMIT, READ_LIMIT);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_read_your_writes() {
    for seed in sim::seeds(&[101, 102]) {
        sim::run(
            "three_members_read_your_writes",
            seed,
            Duration::from_secs(40),
            read_your_writes(seed, 3, 8),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_members_read_your_writes() {
    for seed in sim::seeds(&[111, 112]) {
        sim::run(
            "five_members_read_your_writes",
            seed,
            Duration::from_secs(40),
            read_your_writes(seed, 5, 5),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Minority partition.

async fn minority_partition(seed: u64, size: usize) {
    let cluster = Cluster::start(&format!("minority{size}"), seed, size, Tuning::default()).await;
    let mut rng = scenario_rng(seed);
    let all: Vec<usize> = (0..size).collect();
    let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let first = start_revision(&cluster).await;
    // The minority holds the leader or not, as the seed says.
    let with_leader = rng.random_bool(0.5);
    let mut others: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    others.shuffle(&mut rng);
    let mut minority: Vec<usize> = Vec::new();
    if with_leader {
        minority.push(leader);
    }
    while minority.len() < (size - 1) / 2 {
        minority.push(others.pop().expect("enough members"));
    }
    let majority: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !minority.contains(i))
        .collect();
    println!("leader m{leader}; minority {minority:?}, majority {majority:?}");

    let ledger = Arc::new(Ledger::default());
    let clients = Clients::spawn(
        &cluster,
        &ledger,
        &Workload {
            clients: 2,
            targets: Targets::Among(majority.clone()),
            ..Workload::default()
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster
        .net
        .partition(&cluster.urls(&minority), &cluster.urls(&majority));
    let partitioned = Instant::now();
    cluster
        .wait_leader(&majority, Duration::from_secs(10))
        .await;

    // The minority's requests: writes and linearizable reads fail in time, serializable reads
    // answer from local state.
    let probes: Vec<_> = minority
        .iter()
        .map(|&m| {
            let node = cluster.running(m);
            let ledger = Arc::clone(&ledger);
            async move {
                let client = 100 + m;
                let value = format!("c{client}-minority");
                let (write, read, local) = tokio::join!(
                    ledger.put(&node, client, m, "k/000", &value),
                    ledger.get(&node, client + 100, m, "k/001", false),
                    ledger.get(&node, client + 200, m, "k/001", true),
                );
                (m, write, read, local)
            }
        })
        .collect();
    for (m, write, read, local) in futures::future::join_all(probes).await {
        match &write.outcome {
            Err(err) if unavailable(err) => {}
            other => panic!(
                "a write through minority member {m} answered {other:?} after {:?}",
                write.end - write.start
            ),
        }
        assert!(
            write.end - write.start <= UNAVAILABLE_LIMIT,
            "minority member {m} took {:?} to fail a write",
            write.end - write.start
        );
        match &read.outcome {
            Err(err) if unavailable(err) => {}
            other => panic!(
                "a linearizable read through minority member {m} answered {other:?} after {:?}",
                read.end - read.start
            ),
        }
        assert!(
            read.end - read.start <= UNAVAILABLE_LIMIT,
            "minority member {m} took {:?} to fail a linearizable read",
            read.end - read.start
        );
        assert!(
            local.outcome.is_ok(),
            "a serializable read on minority member {m}: {:?}",
            local.outcome
        );
    }
    let healed = Instant::now();
    let during = ledger
        .writes()
        .iter()
        .filter(|w| w.outcome.is_ok() && w.client < 2 && w.start >= partitioned && w.end <= healed)
        .count();
    assert!(
        during >= 5,
        "the majority acknowledged only {during} writes during the partition: {}",
        ledger.summary()
    );
    cluster.net.heal();
    cluster.wait_leader(&all, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    clients.stop().await;

    let (_, history) = cluster.check_all(&ledger, first).await;
    // Nothing written through the minority took effect.
    for (rev, key, value) in &history {
        assert!(
            !value.ends_with("-minority"),
            "a write through the minority is in the history: {key}={value}@{rev}"
        );
    }
    ledger.check_bounded(WRITE_LIMIT, READ_LIMIT);
    println!("{}; {}", ledger.summary(), cluster.net.stats.summary());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_partition_three_members() {
    for seed in sim::seeds(&[201, 202]) {
        sim::run(
            "minority_partition_three_members",
            seed,
            Duration::from_secs(30),
            minority_partition(seed, 3),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn minority_partition_five_members() {
    for seed in sim::seeds(&[211, 212]) {
        sim::run(
            "minority_partition_five_members",
            seed,
            Duration::from_secs(30),
            minority_partition(seed, 5),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Isolated leader.

async fn isolated_leader(seed: u64) {
    let size = if seed % 2 == 1 { 3 } else { 5 };
    let cluster = Cluster::start(&format!("isolated{size}"), seed, size, Tuning::default()).await;
    let all: Vec<usize> = (0..size).collect();
    let first = start_revision(&cluster).await;
    let ledger = Arc::new(Ledger::default());
    let clients = Clients::spawn(&cluster, &ledger, &Workload::default());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let old_id = cluster.id(leader);
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    println!("{size} members; isolating leader m{leader}");
    cluster
        .net
        .partition(&cluster.urls(&[leader]), &cluster.urls(&rest));
    let partitioned = Instant::now();
    // Writes straight to the old leader while it is cut off: none may be acknowledged.
    let probes: Vec<_> = (0..3)
        .map(|p| {
            let node = cluster.running(leader);
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                let client = 50 + p;
                let value = format!("c{client}-isolated");
                ledger.put(&node, client, leader, "k/000", &value).await
            })
        })
        .collect();
    let new_leader = cluster
        .wait_new_leader(&rest, old_id, Duration::from_secs(10))
        .await;
    println!(
        "m{new_leader} elected {:?} after the partition",
        partitioned.elapsed()
    );
    // Longer than the engine's request timeout, so requests at the old leader end meanwhile.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for probe in probes {
        let write = probe.await.expect("probe task");
        let took = write.end - write.start;
        match &write.outcome {
            Err(err) if unavailable(err) => {}
            other => panic!(
                "a write to the isolated old leader m{leader} answered {other:?} after {took:?}"
            ),
        }
        assert!(
            took <= UNAVAILABLE_LIMIT,
            "the isolated old leader took {took:?} to fail a write"
        );
    }
    cluster.net.heal();
    let healed = Instant::now();
    cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let served = cluster
        .check_serves_writes(&ledger, 990, LIVENESS_LIMIT)
        .await;
    println!("after healing, members served writes after {served:?}");
    clients.stop().await;

    let (_, history) = cluster.check_all(&ledger, first).await;
    let in_history: HashSet<&str> = history.iter().map(|(_, _, v)| v.as_str()).collect();
    let isolated: Vec<_> = ledger
        .writes()
        .into_iter()
        .filter(|w| w.via == leader && w.start >= partitioned && w.end <= healed)
        .collect();
    for w in &isolated {
        assert!(
            w.outcome.is_err(),
            "the isolated old leader acknowledged {}={} at {:?}",
            w.key,
            w.value,
            w.outcome
        );
        assert!(
            !in_history.contains(w.value.as_str()),
            "{}={}, sent to the isolated old leader and failed ({:?}), is in the history",
            w.key,
            w.value,
            w.outcome
        );
    }
    let majority_acks = ledger
        .writes()
        .iter()
        .filter(|w| {
            w.via != leader && w.outcome.is_ok() && w.start >= partitioned && w.end <= healed
        })
        .count();
    assert!(
        majority_acks > 0,
        "the majority acknowledged nothing while the leader was isolated: {}",
        ledger.summary()
    );
    println!(
        "{} writes sent to the isolated leader failed; {majority_acks} acknowledged by the rest; \
         {}; {}",
        isolated.len(),
        ledger.summary(),
        cluster.net.stats.summary()
    );
    ledger.check_bounded(WRITE_LIMIT, READ_LIMIT);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_is_replaced() {
    for seed in sim::seeds(&[301, 302]) {
        sim::run(
            "isolated_leader_is_replaced",
            seed,
            Duration::from_secs(35),
            isolated_leader(seed),
        )
        .await;
    }
}

/// A leader cut off from its quorum must answer a linearizable read as unavailable (etcd: a
/// read-index timeout, or "no leader" once it steps down), never serve it, never fail it as an
/// internal error.
async fn isolated_leader_read(seed: u64) {
    let cluster = Cluster::start("leaderread", seed, 3, Tuning::default()).await;
    let all: Vec<usize> = (0..3).collect();
    let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    cluster
        .net
        .partition(&cluster.urls(&[leader]), &cluster.urls(&rest));
    cluster
        .wait_new_leader(&rest, cluster.id(leader), Duration::from_secs(10))
        .await;
    let ledger = Ledger::default();
    let read = ledger
        .get(&cluster.running(leader), 0, leader, "k/000", false)
        .await;
    let took = read.end - read.start;
    match &read.outcome {
        Err(err) if unavailable(err) => {}
        other => panic!(
            "the isolated old leader m{leader} answered a linearizable read with {other:?} after {took:?}"
        ),
    }
    assert!(took <= UNAVAILABLE_LIMIT, "the read took {took:?}");
    cluster.net.heal();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_leader_fails_linearizable_reads_as_unavailable() {
    for seed in sim::seeds(&[311]) {
        sim::run(
            "isolated_leader_fails_linearizable_reads_as_unavailable",
            seed,
            Duration::from_secs(30),
            isolated_leader_read(seed),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Flapping links.

/// Random drops and delays on every link and links cut and restored at random for 10 s, under
/// three writers; with `restarts`, a random member is also stopped and restarted about every
/// two seconds.
async fn flapping_links(seed: u64, restarts: bool) {
    let size = if seed % 2 == 1 { 3 } else { 5 };
    let name = if restarts { "chaos" } else { "flap" };
    let cluster = Cluster::start(&format!("{name}{size}"), seed, size, Tuning::default()).await;
    let mut rng = scenario_rng(seed);
    let all: Vec<usize> = (0..size).collect();
    let urls = cluster.urls(&all);
    let first = start_revision(&cluster).await;
    let faults = Faults {
        drop: rng.random_range(0.02..0.15),
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(rng.random_range(5..40)),
    };
    println!("{size} members; faults {faults:?}");
    cluster.net.set_faults(faults);
    let ledger = Arc::new(Ledger::default());
    let clients = Clients::spawn(&cluster, &ledger, &Workload::default());

    let until = Instant::now() + Duration::from_secs(10);
    let mut blocked: Vec<(usize, usize)> = Vec::new();
    let mut cuts = 0;
    let mut restarted = Vec::new();
    let mut last_restart = Instant::now();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
        if restarts && last_restart.elapsed() > Duration::from_secs(2) && rng.random_bool(0.5) {
            let i = rng.random_range(0..size);
            cluster.stop(i).await;
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
            cluster.restart(i).await;
            restarted.push(i);
            last_restart = Instant::now();
        } else if !blocked.is_empty() && rng.random_bool(0.5) {
            let (a, b) = blocked.swap_remove(rng.random_range(0..blocked.len()));
            cluster.net.unblock(&urls[a], &urls[b]);
        } else if rng.random_bool(0.1) {
            blocked.clear();
            cluster.net.heal_links();
        } else {
            let a = rng.random_range(0..size);
            let b = (a + rng.random_range(1..size)) % size;
            cluster.net.block(&urls[a], &urls[b]);
            blocked.push((a, b));
            cuts += 1;
        }
    }
    let during = ledger.acked().len();
    cluster.net.heal();
    cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let served = cluster
        .check_serves_writes(&ledger, 990, LIVENESS_LIMIT)
        .await;
    println!("after healing, members served writes after {served:?}");
    clients.stop().await;
    cluster.check_all(&ledger, first).await;
    ledger.check_bounded(WRITE_LIMIT, READ_LIMIT);
    println!(
        "{cuts} link cuts; restarts {restarted:?}; {during} writes acknowledged while flapping; \
         {}; {}",
        ledger.summary(),
        cluster.net.stats.summary()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_links_keep_acknowledged_writes() {
    for seed in sim::seeds(&[401, 402]) {
        sim::run(
            "flapping_links_keep_acknowledged_writes",
            seed,
            Duration::from_secs(40),
            flapping_links(seed, false),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_links_and_restarts_keep_acknowledged_writes() {
    for seed in sim::seeds(&[451, 452]) {
        sim::run(
            "flapping_links_and_restarts_keep_acknowledged_writes",
            seed,
            Duration::from_secs(40),
            flapping_links(seed, true),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Restart every member in turn.

async fn rolling_restart(seed: u64) {
    let size = 3;
    let cluster = Cluster::start("restart", seed, size, Tuning::default()).await;
    let mut rng = scenario_rng(seed);
    let all: Vec<usize> = (0..size).collect();
    cluster.net.set_faults(Faults {
        drop: 0.01,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(5),
    });
    let first = start_revision(&cluster).await;
    let ledger = Arc::new(Ledger::default());
    let clients = Clients::spawn(&cluster, &ledger, &Workload::default());
    let mut order = all.clone();
    order.shuffle(&mut rng);
    println!("restart order {order:?}");
    let mut last_restart = Instant::now();
    for &i in &order {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
        let was_leader = cluster.agreed_leader(&all) == Some(i);
        cluster.stop(i).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1000))).await;
        cluster.restart(i).await;
        last_restart = Instant::now();
        // Rejoined: it follows the same leader as the rest, has caught up with the leader's
        // revision, and serves a linearizable read.
        let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
        let target = cluster.revision(leader);
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.revision(i) < target {
            assert!(
                Instant::now() < deadline,
                "member {i} did not catch up to revision {target} after its restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A lost read-index message fails the whole read at once (the engine does not retry
        // it), so allow a few attempts.
        let node = cluster.running(i);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let read = ledger.get(&node, 900, i, "k/000", false).await;
            let Err(err) = &read.outcome else { break };
            if attempts < 5 && Instant::now() < deadline {
                println!(
                    "m{i}: linearizable read answered {err:?} after {:?}; retrying",
                    read.end - read.start
                );
                continue;
            }
            let mine = node.status().await;
            let leaders = cluster.running(leader).status().await;
            panic!(
                "member {i} cannot serve a linearizable read after its restart: {err:?} after \
                 {:?} ({attempts} attempts); its status {mine:?}; the leader m{leader}'s \
                 {leaders:?}",
                read.end - read.start,
            );
        }
        println!(
            "m{i} (leader before: {was_leader}) rejoined in {:?}",
            last_restart.elapsed()
        );
    }
    let served = cluster
        .check_serves_writes(&ledger, 990, LIVENESS_LIMIT)
        .await;
    println!(
        "{:?} after the last restart, members served writes after {served:?}",
        last_restart.elapsed()
    );
    clients.stop().await;
    cluster.net.heal();
    cluster.check_all(&ledger, first).await;
    ledger.check_bounded(WRITE_LIMIT, READ_LIMIT);
    println!("{}; {}", ledger.summary(), cluster.net.stats.summary());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_load() {
    for seed in sim::seeds(&[501, 502]) {
        sim::run(
            "rolling_restart_under_load",
            seed,
            Duration::from_secs(40),
            rolling_restart(seed),
        )
        .await;
    }
}

/// A member that is down costs the others little: raft retries it with a backoff, not in a busy
/// loop. Measured as the messages addressed to it over two seconds.
async fn down_member_retries(seed: u64) {
    let cluster = Cluster::start("down", seed, 3, Tuning::default()).await;
    let all: Vec<usize> = (0..3).collect();
    let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let down = (leader + 1) % 3;
    let url = cluster.url(down);
    cluster.stop(down).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.net.stats.unreachable_to(&url);
    let window = Duration::from_secs(2);
    tokio::time::sleep(window).await;
    let attempts = cluster.net.stats.unreachable_to(&url) - before;
    println!("{attempts} messages to the stopped member m{down} in {window:?}");
    // Heartbeats every 50 ms from the leader, pre-votes from nobody: a few dozen a second at
    // most when backing off.
    assert!(
        attempts <= 200,
        "{attempts} messages were sent to the stopped member m{down} in {window:?} (the \
         leader retries it in a busy loop)"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn down_member_is_retried_with_backoff() {
    for seed in sim::seeds(&[551]) {
        sim::run(
            "down_member_is_retried_with_backoff",
            seed,
            Duration::from_secs(20),
            down_member_retries(seed),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Membership changes under load.

/// Retries `call` through random running members (other than `avoid`) while the answer is one
/// of `retry` or "unavailable"; returns the first other answer.
async fn with_retries<T, F, Fut>(
    cluster: &Cluster,
    rng: &mut StdRng,
    avoid: &[usize],
    what: &str,
    retry: impl Fn(&KvError) -> bool,
    mut call: F,
) -> Result<T, KvError>
where
    F: FnMut(cairn_engine::node::Node) -> Fut,
    Fut: std::future::Future<Output = Result<T, KvError>>,
{
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let candidates: Vec<usize> = cluster
            .up()
            .into_iter()
            .filter(|i| !avoid.contains(i))
            .collect();
        let via = *candidates.choose(rng).expect("a running member");
        let answer = call(cluster.running(via)).await;
        match answer {
            Err(err) if (unavailable(&err) || retry(&err)) && Instant::now() < deadline => {
                println!("{what} through m{via}: {err:?}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

async fn membership_changes(seed: u64) {
    let cluster = Cluster::start("membership", seed, 3, Tuning::default()).await;
    let mut rng = scenario_rng(seed);
    let first = start_revision(&cluster).await;
    cluster.net.set_faults(Faults {
        drop: 0.02,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(10),
    });
    let ledger = Arc::new(Ledger::default());
    let clients = Clients::spawn(&cluster, &ledger, &Workload::default());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Add a learner and start it.
    let new = cluster.add_slot();
    let new_url = cluster.url(new);
    let added = with_retries(
        &cluster,
        &mut rng,
        &[],
        "member_add",
        |_| false,
        |node| {
            let url = new_url.clone();
            async move {
                match node.member_add(vec![url.clone()], true).await {
                    Ok((id, _, _)) => Ok(id),
                    // The outcome is unknown: it may have been added.
                    Err(err) => node
                        .members()
                        .iter()
                        .find(|m| m.peer_urls.contains(&url))
                        .map(|m| m.id)
                        .ok_or(err),
                }
            }
        },
    )
    .await;
    let new_id = added.unwrap_or_else(|e| panic!("member_add: {e:?}"));
    cluster.restart(new).await;
    assert_eq!(
        cluster.id(new),
        new_id,
        "the new member took the id it was added with"
    );
    let joined = Instant::now();

    // Promote it once it has caught up.
    let promoted = with_retries(
        &cluster,
        &mut rng,
        &[new],
        "member_promote",
        |e| matches!(e, KvError::LearnerNotReady | KvError::NotEnoughStarted),
        |node| async move { node.member_promote(new_id).await.map(|_| ()) },
    )
    .await;
    match promoted {
        // A lost answer to an earlier attempt that did promote it.
        Ok(()) | Err(KvError::MemberNotLearner) => {}
        Err(err) => panic!("member_promote: {err:?}"),
    }
    println!(
        "m{new} added and promoted {:?} after it started",
        joined.elapsed()
    );

    // Remove a follower (one of the original members).
    let active = cluster.active();
    let leader = cluster.wait_leader(&active, Duration::from_secs(10)).await;
    let followers: Vec<usize> = active
        .iter()
        .copied()
        .filter(|i| *i != leader && *i != new)
        .collect();
    let follower = *followers.choose(&mut rng).expect("a follower");
    let follower_id = cluster.id(follower);
    let removed = with_retries(
        &cluster,
        &mut rng,
        &[follower],
        "member_remove(follower)",
        |e| matches!(e, KvError::NotEnoughStarted),
        |node| async move { node.member_remove(follower_id).await.map(|_| ()) },
    )
    .await;
    match removed {
        Ok(()) | Err(KvError::MemberNotFound) => {}
        Err(err) => panic!("member_remove(follower m{follower}): {err:?}"),
    }
    cluster.mark_removed(follower);
    cluster.stop(follower).await;
    println!("removed follower m{follower}");

    // Remove the leader, through a follower.
    let active = cluster.active();
    let leader = cluster.wait_leader(&active, Duration::from_secs(10)).await;
    let leader_id = cluster.id(leader);
    let removed = with_retries(
        &cluster,
        &mut rng,
        &[leader],
        "member_remove(leader)",
        |e| matches!(e, KvError::NotEnoughStarted),
        |node| async move { node.member_remove(leader_id).await.map(|_| ()) },
    )
    .await;
    match removed {
        Ok(()) | Err(KvError::MemberNotFound) => {}
        Err(err) => panic!("member_remove(leader m{leader}): {err:?}"),
    }
    let remaining: Vec<usize> = active.iter().copied().filter(|i| *i != leader).collect();
    let new_leader = cluster
        .wait_new_leader(&remaining, leader_id, Duration::from_secs(10))
        .await;
    cluster.mark_removed(leader);
    cluster.stop(leader).await;
    println!("removed leader m{leader}; m{new_leader} leads");
    let served = cluster
        .check_serves_writes(&ledger, 990, LIVENESS_LIMIT)
        .await;
    println!("after the removals, members served writes after {served:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    clients.stop().await;
    cluster.net.heal();
    cluster.converge(Duration::from_secs(20)).await;

    // The remaining members agree on the membership: exactly them, all voters.
    let expected: HashSet<u64> = remaining.iter().map(|i| cluster.id(*i)).collect();
    for &i in &remaining {
        let members = cluster.running(i).members();
        let ids: HashSet<u64> = members.iter().map(|m| m.id).collect();
        assert_eq!(ids, expected, "member {i}'s member list: {members:?}");
        assert!(
            members.iter().all(|m| !m.is_learner),
            "member {i}: learners left: {members:?}"
        );
    }
    cluster.check_all(&ledger, first).await;
    ledger.check_bounded(WRITE_LIMIT, READ_LIMIT);
    println!("{}; {}", ledger.summary(), cluster.net.stats.summary());
    cluster.shutdown().await;
}

/// A member joining right after `member_add` learns the membership from its peers; a peer that
/// has not applied the addition yet must not make it refuse to start (it should ask the others,
/// or wait), since the cluster did add it.
///
/// Deterministic set-up: 5 members; leadership moved to the member with the largest id; the
/// leader's links to the two smallest-id followers cut (they lag, the other two still commit);
/// `member_add` through the leader; then the new member starts with every member in its
/// `initial_cluster`. It probes its peers in member-id order and takes the first answer, the
/// lagging follower's.
async fn join_with_a_lagging_peer(seed: u64) {
    let cluster = Cluster::start("join", seed, 5, Tuning::default()).await;
    let all: Vec<usize> = (0..5).collect();
    let mut by_id = all.clone();
    by_id.sort_by_key(|i| cluster.id(*i));
    let largest = by_id[4];
    let mut leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    if leader != largest {
        cluster
            .running(leader)
            .move_leader(cluster.id(largest))
            .await
            .unwrap_or_else(|e| panic!("move_leader to m{largest}: {e:?}"));
        leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    }
    assert_eq!(leader, largest, "leadership moved");
    let lagging = [by_id[0], by_id[1]];
    for f in lagging {
        cluster.net.block(&cluster.url(leader), &cluster.url(f));
    }
    let new = cluster.add_slot();
    let (id, members, _) = cluster
        .running(leader)
        .member_add(vec![cluster.url(new)], true)
        .await
        .unwrap_or_else(|e| panic!("member_add: {e:?}"));
    assert!(members.iter().any(|m| m.id == id), "the leader lists it");
    let started = cluster.try_start(new).await;
    let views: Vec<(usize, bool)> = all
        .iter()
        .map(|&i| (i, cluster.running(i).members().iter().any(|m| m.id == id)))
        .collect();
    cluster.net.heal();
    if let Err(err) = started {
        panic!(
            "the member added as {id:016x} refused to start: {err}; (member, lists it) = \
             {views:?}, lagging {lagging:?}, leader m{leader}"
        );
    }
    assert_eq!(
        cluster.id(new),
        id,
        "the new member took the id it was added with"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joining_member_is_not_refused_by_a_lagging_peer() {
    for seed in sim::seeds(&[611]) {
        sim::run(
            "joining_member_is_not_refused_by_a_lagging_peer",
            seed,
            Duration::from_secs(45),
            join_with_a_lagging_peer(seed),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_changes_under_load() {
    for seed in sim::seeds(&[601, 602, 603]) {
        sim::run(
            "membership_changes_under_load",
            seed,
            Duration::from_secs(45),
            membership_changes(seed),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Snapshot catch-up.

/// Keys written while the member is down.
const SNAPSHOT_KEYS: usize = 600;
/// Writes while the member is down (one per key).
const SNAPSHOT_WRITES: usize = 600;
/// Writes after the compaction: more than a snapshot interval.
const SNAPSHOT_AFTER_COMPACTION: usize = 100;
/// A snapshot every 64 entries, and only 100 entries kept behind it for lagging followers
/// (etcd's catch-up entries, 5000 by default): the entries the stopped member needs are purged
/// long before it returns, so only a snapshot can bring it back.
const SNAPSHOT_TUNING: Tuning = Tuning {
    snapshot_count: 64,
    snapshot_catchup_entries: 100,
};

async fn snapshot_catch_up(seed: u64) {
    let size = 3;
    let cluster = Cluster::start("snapshot", seed, size, SNAPSHOT_TUNING).await;
    let mut rng = scenario_rng(seed);
    let all: Vec<usize> = (0..size).collect();
    let first = start_revision(&cluster).await;
    let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let followers: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    let lagging = *followers.choose(&mut rng).expect("a follower");
    cluster.stop(lagging).await;
    let running: Vec<usize> = all.iter().copied().filter(|i| *i != lagging).collect();
    println!("stopped m{lagging}; writing {SNAPSHOT_WRITES} entries");

    let ledger = Arc::new(Ledger::default());
    let started = Instant::now();
    let writers = 24;
    let tasks: Vec<_> = (0..writers)
        .map(|client| {
            let cluster = Arc::clone(&cluster);
            let ledger = Arc::clone(&ledger);
            let running = running.clone();
            tokio::spawn(async move {
                let mut n = client;
                while n < SNAPSHOT_WRITES {
                    let via = running[n % running.len()];
                    let key = format!("s/{:04}", n % SNAPSHOT_KEYS);
                    let value = format!("c{client}-{n}");
                    let write = ledger
                        .put(&cluster.running(via), client, via, &key, &value)
                        .await;
                    if let Err(err) = write.outcome {
                        panic!("write {key}={value} through m{via}: {err:?}");
                    }
                    n += writers;
                }
            })
        })
        .collect();
    for task in tasks {
        if let Err(err) = task.await {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    println!("wrote {SNAPSHOT_WRITES} entries in {:?}", started.elapsed());

    for i in running.iter().copied() {
        ledger::check_acked_on(&ledger, &format!("m{i}"), &cluster.running(i)).await;
    }

    // Compact (physically) most of what the lagging member missed, then write enough for the
    // leader to snapshot again: the snapshot it gets lacks the revisions its history needs, so
    // its history starts from the state at the compact revision, with the commit its peers
    // recorded there (the store's history anchor).
    let compact_at = cluster.revision(leader) - 5;
    cluster
        .running(leader)
        .compact(compact_at, true)
        .await
        .unwrap_or_else(|err| panic!("compact at {compact_at}: {err:?}"));
    for n in 0..SNAPSHOT_AFTER_COMPACTION {
        let write = ledger
            .put(
                &cluster.running(leader),
                0,
                leader,
                &format!("t/{n:03}"),
                "after",
            )
            .await;
        if let Err(err) = write.outcome {
            panic!("write t/{n:03} after the compaction: {err:?}");
        }
    }
    println!("compacted at {compact_at}, wrote {SNAPSHOT_AFTER_COMPACTION} more");

    // The transfer itself runs over a lossy network: lost chunks and answers fail it, and raft
    // sends it again.
    cluster.net.set_faults(Faults {
        drop: 0.05,
        min_delay: Duration::ZERO,
        max_delay: Duration::from_millis(5),
    });
    let restarted = Instant::now();
    cluster.restart(lagging).await;
    let leader = cluster.wait_leader(&all, Duration::from_secs(10)).await;
    let target = cluster.revision(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.revision(lagging) < target {
        assert!(
            Instant::now() < deadline,
            "m{lagging} did not catch up to revision {target}: at {}; {}",
            cluster.revision(lagging),
            cluster.net.stats.summary()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("m{lagging} caught up in {:?}", restarted.elapsed());
    cluster.net.heal();

    let last = cluster.converge(Duration::from_secs(20)).await;
    assert_eq!(
        last - first,
        (SNAPSHOT_WRITES + SNAPSHOT_AFTER_COMPACTION) as i64,
        "one revision per write"
    );
    cluster.check_hash(last).await;
    // Its history was imported at the compact revision, and still agrees with its peers'.
    let history = cluster.running(lagging).history().expect("history is on");
    let imported = tokio::task::spawn_blocking(move || {
        history.log(&cairn_engine::history::LogQuery {
            limit: 1_000_000,
            changes_limit: 1,
            ..Default::default()
        })
    })
    .await
    .expect("log task")
    .expect("history log")
    .into_iter()
    .filter(|entry| entry.log_index == 0)
    .map(|entry| entry.revision)
    .collect::<Vec<_>>();
    assert_eq!(
        imported,
        vec![compact_at],
        "m{lagging}'s history should start from the state at the compact revision"
    );
    cluster.check_commit_ids(last).await;
    cluster.check_commit_ids(compact_at).await;
    for i in all.iter().copied() {
        ledger::check_acked_on(&ledger, &format!("m{i}"), &cluster.running(i)).await;
    }
    ledger.check_client_order();
    ledger.check_real_time();

    // It came back through a snapshot: one was streamed to it and handed to its raft, and its
    // data dir now holds a snapshot file.
    let url = cluster.url(lagging);
    let received = cluster.net.stats.snapshots_received(&url);
    assert!(
        received >= 1,
        "m{lagging} caught up without receiving a snapshot; {}; log: {:?}",
        cluster.net.stats.summary(),
        sim::log::matching("snapshot")
    );
    let snap_dir = cluster
        .running(lagging)
        .data_dir()
        .join("member")
        .join("snap");
    let snapshots = std::fs::read_dir(&snap_dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            .count()
    });
    assert!(snapshots >= 1, "no snapshot file in {}", snap_dir.display());
    println!(
        "{received} snapshot(s) sent to m{lagging}; {}",
        cluster.net.stats.summary()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_catches_up_a_lagging_member() {
    for seed in sim::seeds(&[701, 702]) {
        sim::run(
            "snapshot_catches_up_a_lagging_member",
            seed,
            Duration::from_secs(45),
            snapshot_catch_up(seed),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The checks themselves: each violation they exist for is caught.

mod checks {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::{Duration, Instant};

    use cairn_engine::KvError;

    use crate::sim::ledger::{Change, Ledger, ReadRecord, WriteRecord};

    /// Times 0, 10, 20, … ms after a common origin.
    fn at(origin: Instant, tick: u64) -> Instant {
        origin + Duration::from_millis(10 * tick)
    }

    fn write(
        origin: Instant,
        client: usize,
        key: &str,
        value: &str,
        ticks: (u64, u64),
        outcome: Result<i64, KvError>,
    ) -> WriteRecord {
        WriteRecord {
            client,
            via: 0,
            key: key.into(),
            value: value.into(),
            start: at(origin, ticks.0),
            end: at(origin, ticks.1),
            outcome,
        }
    }

    fn read(
        origin: Instant,
        client: usize,
        key: &str,
        ticks: (u64, u64),
        outcome: (i64, Option<(&str, i64)>),
    ) -> ReadRecord {
        ReadRecord {
            client,
            via: 1,
            key: key.into(),
            serializable: false,
            start: at(origin, ticks.0),
            end: at(origin, ticks.1),
            outcome: Ok((outcome.0, outcome.1.map(|(v, r)| (v.to_string(), r)))),
        }
    }

    /// A consistent run: two clients, one failed write that took effect, one that did not.
    fn base(origin: Instant) -> (Ledger, Vec<Change>) {
        let ledger = Ledger::default();
        ledger.record_write(write(origin, 0, "k/a", "c0-1", (0, 2), Ok(2)));
        ledger.record_write(write(origin, 1, "k/b", "c1-1", (1, 3), Ok(3)));
        ledger.record_write(write(
            origin,
            0,
            "k/a",
            "c0-2",
            (3, 5),
            Err(KvError::Timeout),
        ));
        ledger.record_write(write(
            origin,
            1,
            "k/a",
            "c1-2",
            (4, 6),
            Err(KvError::Timeout),
        ));
        ledger.record_write(write(origin, 0, "k/b", "c0-3", (6, 8), Ok(5)));
        ledger.record_read(read(origin, 1, "k/a", (7, 9), (4, Some(("c0-2", 4)))));
        let history = vec![
            (2, "k/a".into(), "c0-1".into()),
            (3, "k/b".into(), "c1-1".into()),
            (4, "k/a".into(), "c0-2".into()),
            (5, "k/b".into(), "c0-3".into()),
        ];
        (ledger, history)
    }

    fn all_checks(ledger: &Ledger, history: &[Change]) {
        ledger.check_history("m0", history, 1, 5);
        ledger.check_reads(history);
        ledger.check_client_order();
        ledger.check_real_time();
    }

    fn caught(what: &str, check: impl FnOnce()) {
        assert!(
            catch_unwind(AssertUnwindSafe(check)).is_err(),
            "the checks missed: {what}"
        );
    }

    #[test]
    fn ledger_checks_catch_violations() {
        let origin = Instant::now();
        let (ledger, history) = base(origin);
        all_checks(&ledger, &history);

        caught("an acknowledged write missing", || {
            let (ledger, mut history) = base(origin);
            history.retain(|c| c.2 != "c1-1");
            history.push((3, "k/a".into(), "c1-2".into()));
            all_checks(&ledger, &history);
        });
        caught("a value no client wrote", || {
            let (ledger, mut history) = base(origin);
            history[2].2 = "c9-9".into();
            all_checks(&ledger, &history);
        });
        caught("a write applied twice", || {
            let (ledger, mut history) = base(origin);
            history.push((6, "k/a".into(), "c0-1".into()));
            ledger.check_history("m0", &history, 1, 6);
        });
        caught("a revision without a write", || {
            let (ledger, history) = base(origin);
            ledger.check_history("m0", &history, 1, 6);
        });
        caught("a client's revisions going back", || {
            let (ledger, history) = base(origin);
            ledger.record_read(read(origin, 0, "k/b", (9, 10), (4, Some(("c1-1", 3)))));
            ledger.check_client_order();
            ledger.check_reads(&history);
        });
        caught(
            "a write ordered before one acknowledged before it started",
            || {
                let ledger = Ledger::default();
                ledger.record_write(write(origin, 0, "k/a", "c0-1", (0, 2), Ok(3)));
                ledger.record_write(write(origin, 1, "k/a", "c1-1", (3, 4), Ok(2)));
                ledger.check_real_time();
            },
        );
        caught("a stale linearizable read", || {
            let (ledger, _) = base(origin);
            ledger.record_read(read(origin, 2, "k/b", (9, 10), (4, Some(("c1-1", 3)))));
            ledger.check_real_time();
        });
        caught("a read answering another value than the history's", || {
            let (ledger, history) = base(origin);
            ledger.record_read(read(origin, 2, "k/a", (9, 10), (5, Some(("c0-1", 2)))));
            ledger.check_reads(&history);
        });
    }
}
