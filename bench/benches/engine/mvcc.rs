//! MVCC put / range / txn on redb at 10k and 1M keys.

use bytes::Bytes;
use cairn_engine::mvcc::{ApplyInput, MvccOptions, MvccStore};
use cairn_engine::request::{
    Command, Compare, CompareResult, CompareTarget, Proposal, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use criterion::{BenchmarkId, Criterion, Throughput};

pub(crate) fn sizes() -> Vec<usize> {
    if crate::full_run() {
        vec![10_000, 1_000_000]
    } else {
        vec![10_000]
    }
}

pub(crate) fn key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/pods/default/pod-{i:08}"))
}

pub(crate) fn put(i: usize) -> Proposal {
    Proposal {
        command: Command::Put(PutRequest {
            key: key(i),
            value: Bytes::from(vec![b'v'; 128]),
            ..PutRequest::default()
        }),
        time_unix_ms: 0,
        origin: cairn_engine::request::Origin::default(),
    }
}

/// A store holding `keys` keys, loaded in batches of 10k puts per transaction.
pub(crate) fn loaded_store(keys: usize) -> (tempfile::TempDir, MvccStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store =
        MvccStore::open(&dir.path().join("mvcc.redb"), MvccOptions::default()).expect("open");
    for chunk_start in (0..keys).step_by(10_000) {
        let proposals: Vec<Proposal> = (chunk_start..(chunk_start + 10_000).min(keys))
            .map(put)
            .collect();
        let inputs: Vec<ApplyInput<'_>> = proposals
            .iter()
            .map(|p| ApplyInput {
                proposal: Some(p),
                log_term: 0,
                log_index: 0,
            })
            .collect();
        store.apply(&inputs, &[], false).expect("load");
    }
    (dir, store)
}

pub fn bench_put(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc_put_batch_of_64");
    group.throughput(Throughput::Elements(64));
    for keys in sizes() {
        let (_dir, store) = loaded_store(keys);
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, &keys| {
            b.iter(|| {
                let proposals: Vec<Proposal> =
                    (0..64).map(|i| put((next + i * 7919) % keys)).collect();
                next += 1;
                let inputs: Vec<ApplyInput<'_>> = proposals
                    .iter()
                    .map(|p| ApplyInput {
                        proposal: Some(p),
                        log_term: 0,
                        log_index: 0,
                    })
                    .collect();
                store.apply(&inputs, &[], false).expect("apply");
            });
        });
    }
    group.finish();
}

pub fn bench_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc_range");
    for keys in sizes() {
        let (_dir, store) = loaded_store(keys);
        group.bench_with_input(BenchmarkId::new("one_key", keys), &keys, |b, &keys| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7919) % keys;
                let req = RangeRequest {
                    key: key(i),
                    ..RangeRequest::default()
                };
                store.range(&req).expect("range");
            });
        });
        group.bench_with_input(BenchmarkId::new("prefix_limit_500", keys), &keys, |b, _| {
            b.iter(|| {
                let req = RangeRequest {
                    key: Bytes::from_static(b"/registry/pods/"),
                    range_end: Bytes::from_static(b"/registry/pods0"),
                    limit: 500,
                    ..RangeRequest::default()
                };
                store.range(&req).expect("range");
            });
        });
    }
    group.finish();
}

pub fn bench_txn(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc_txn_update_guarded");
    for keys in sizes() {
        let (_dir, store) = loaded_store(keys);
        group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, &keys| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 7919) % keys;
                // kube-apiserver's update shape: if mod_revision(k) > 0 then put else range.
                let txn = Proposal {
                    command: Command::Txn(TxnRequest {
                        compare: vec![Compare {
                            result: CompareResult::Greater,
                            target: CompareTarget::Mod(0),
                            key: key(i),
                            range_end: Bytes::new(),
                        }],
                        success: vec![RequestOp::Put(PutRequest {
                            key: key(i),
                            value: Bytes::from(vec![b'w'; 128]),
                            ..PutRequest::default()
                        })],
                        failure: vec![RequestOp::Range(RangeRequest {
                            key: key(i),
                            ..RangeRequest::default()
                        })],
                    }),
                    time_unix_ms: 0,
                    origin: cairn_engine::request::Origin::default(),
                };
                store
                    .apply(
                        &[ApplyInput {
                            proposal: Some(&txn),
                            log_term: 0,
                            log_index: 0,
                        }],
                        &[],
                        false,
                    )
                    .expect("txn");
            });
        });
    }
    group.finish();
}
