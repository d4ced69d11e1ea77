//! Support for the in-process cluster tests: a simulated network ([`network`]), a cluster of real
//! nodes over it ([`cluster`]), concurrent clients ([`workload`]), the ledger of what clients
//! were told and the checks against what members hold ([`ledger`]), and a captured log ([`log`]).
//!
//! Each scenario runs with a seed that drives every random choice of the network and of the
//! scenario (the timing of real threads is not reproducible, so a seed replays the same faults
//! and choices, not the same interleaving). Replay one with
//! `CAIRN_SIM_SEEDS=<seed> cargo test -p cairn-engine --test cluster_sim <test>`; add
//! `CAIRN_SIM_LOG_STDERR=1` (and `CAIRN_SIM_LOG_OPENRAFT=info`) to watch the log live.

pub mod cluster;
pub mod ledger;
pub mod log;
pub mod network;
pub mod workload;

use std::future::Future;
use std::time::{Duration, Instant};

/// Scenarios run one at a time: they are timing-sensitive (500 ms election timeouts) and the
/// machine is small; it also keeps the captured log to one scenario.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The seeds to run: `CAIRN_SIM_SEEDS=1,2,3` if set, else `default`.
pub fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("CAIRN_SIM_SEEDS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("CAIRN_SIM_SEEDS: {s:?} is not a number"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

/// Prints the end of the captured log if the scenario panics.
struct DumpOnPanic {
    name: String,
    seed: u64,
}

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = log::tail(400);
            eprintln!(
                "---- {} seed {} failed; replay with CAIRN_SIM_SEEDS={}; last {} log lines:",
                self.name,
                self.seed,
                self.seed,
                tail.len()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// Runs one scenario with one seed: alone, with a fresh log, bounded by `limit`.
pub async fn run<F: Future<Output = ()>>(name: &str, seed: u64, limit: Duration, scenario: F) {
    let _serial = SERIAL.lock().await;
    log::install();
    log::clear();
    println!("{name}: seed {seed} (replay: CAIRN_SIM_SEEDS={seed})");
    let _dump = DumpOnPanic {
        name: name.to_string(),
        seed,
    };
    let started = Instant::now();
    let finished = tokio::time::timeout(limit, scenario).await;
    assert!(
        finished.is_ok(),
        "{name} seed {seed}: did not finish within {limit:?}"
    );
    println!("{name}: seed {seed} passed in {:?}", started.elapsed());
}
