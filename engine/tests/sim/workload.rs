//! Concurrent clients: each loops picking a running member, then writing a unique value to one
//! of a few shared keys or reading one, and records everything in the ledger.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;

use super::cluster::Cluster;
use super::ledger::Ledger;

/// Which members a client sends its requests to.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Any running member.
    Any,
    /// Only these members (when running).
    Among(Vec<usize>),
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub clients: usize,
    /// Keys `k/0` … `k/<keys-1>`, shared by all clients.
    pub keys: usize,
    /// Percentage of operations that are reads (a third of them serializable).
    pub read_percent: u32,
    pub targets: Targets,
    /// Pause between two operations of one client.
    pub pause: Duration,
    /// Client numbers start here (so two workloads in one scenario write different values).
    pub first_client: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 3,
            keys: 8,
            read_percent: 20,
            targets: Targets::Any,
            pause: Duration::from_millis(5),
            first_client: 0,
        }
    }
}

/// Running clients; [`Clients::stop`] ends them after their current operation.
pub struct Clients {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

pub fn key(i: usize) -> String {
    format!("k/{i:03}")
}

impl Clients {
    pub fn spawn(cluster: &Arc<Cluster>, ledger: &Arc<Ledger>, work: &Workload) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..work.clients)
            .map(|c| {
                let client = work.first_client + c;
                let cluster = Arc::clone(cluster);
                let ledger = Arc::clone(ledger);
                let stop = Arc::clone(&stop);
                let work = work.clone();
                let seed = cluster.seed ^ (0x00c1_1e47 + client as u64).wrapping_mul(0x9e37_79b9);
                tokio::spawn(async move {
                    run_client(client, &cluster, &ledger, &work, &stop, seed).await;
                })
            })
            .collect();
        Clients { stop, handles }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            if let Err(err) = handle.await {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    }
}

async fn run_client(
    client: usize,
    cluster: &Cluster,
    ledger: &Ledger,
    work: &Workload,
    stop: &AtomicBool,
    seed: u64,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let candidates: Vec<usize> = match &work.targets {
            Targets::Any => cluster.up(),
            Targets::Among(among) => {
                let up = cluster.up();
                among.iter().copied().filter(|i| up.contains(i)).collect()
            }
        };
        let Some(&via) = candidates.choose(&mut rng) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Some(node) = cluster.node(via) else {
            continue;
        };
        let key = key(rng.random_range(0..work.keys));
        let failed = if rng.random_range(0..100) < work.read_percent {
            let serializable = rng.random_bool(1.0 / 3.0);
            let read = ledger.get(&node, client, via, &key, serializable).await;
            read.outcome.is_err()
        } else {
            seq += 1;
            let value = format!("c{client}-{seq}");
            let write = ledger.put(&node, client, via, &key, &value).await;
            write.outcome.is_err()
        };
        drop(node);
        let pause = if failed {
            Duration::from_millis(50)
        } else {
            work.pause
        };
        tokio::time::sleep(pause).await;
    }
}
