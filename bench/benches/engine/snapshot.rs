//! Snapshot build: `MvccStore::write_snapshot` of a store of 10k and (full run) 1M keys.

use criterion::{BenchmarkId, Criterion, Throughput};

use crate::mvcc::{loaded_store, sizes};

pub fn bench_write_snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("mvcc_write_snapshot");
    group.sample_size(10);
    for keys in sizes() {
        let (_dir, store) = loaded_store(keys);
        let size = store
            .write_snapshot(&mut std::io::sink())
            .expect("snapshot")
            .size_bytes;
        group.throughput(Throughput::Bytes(size));
        group.bench_with_input(BenchmarkId::from_parameter(keys), &keys, |b, _| {
            b.iter(|| {
                store
                    .write_snapshot(&mut std::io::sink())
                    .expect("snapshot")
            });
        });
    }
    group.finish();
}
