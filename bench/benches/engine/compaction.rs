//! MVCC compaction: dropping the history of 10k revisions of updates, in a store of 10k and
//! (full run) 1M keys. Its cost should follow the revisions compacted, not the keyspace.

use cairn_engine::mvcc::{ApplyInput, MvccStore};
use cairn_engine::request::{Command, Proposal};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};

use crate::mvcc::{loaded_store, put, sizes};

/// Revisions of history made (and compacted) per iteration.
const REVISIONS: usize = 10_000;

fn apply(store: &MvccStore, proposals: &[Proposal]) {
    let inputs: Vec<ApplyInput<'_>> = proposals
        .iter()
        .map(|p| ApplyInput {
            proposal: Some(p),
            log_term: 0,
            log_index: 0,
        })
        .collect();
    store.apply(&inputs, &[], false).expect("apply");
}

pub fn bench_compact(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc_compact_10k_revisions");
    group.throughput(Throughput::Elements(REVISIONS as u64));
    group.sample_size(10);
    for keys in sizes() {
        let (_dir, store) = loaded_store(keys);
        let mut round = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, &keys| {
            b.iter_batched(
                || {
                    // 10k updates spread over the keyspace, each its own revision.
                    round += 1;
                    let updates: Vec<Proposal> = (0..REVISIONS)
                        .map(|i| put((round * 7919 + i * 104_729) % keys))
                        .collect();
                    apply(&store, &updates);
                },
                |()| {
                    let compact = Proposal {
                        command: Command::Compact {
                            revision: store.current_revision(),
                        },
                        time_unix_ms: 0,
                        origin: cairn_engine::request::Origin::default(),
                    };
                    apply(&store, &[compact]);
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}
