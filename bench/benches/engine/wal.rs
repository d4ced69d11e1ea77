//! WAL append + fdatasync by batch size: one fsync per batch is the group-commit floor.

use bytes::Bytes;
use cairn_engine::wal::{Wal, WalOptions};
use criterion::{BenchmarkId, Criterion, Throughput};

pub fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_fsync");
    let payload = Bytes::from(vec![0xa5u8; 256]);
    for batch in [1usize, 16, 256] {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("open wal");
        let mut next_index = 1u64;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let entries: Vec<(u64, Bytes)> = (0..batch)
                    .map(|i| (next_index + i as u64, payload.clone()))
                    .collect();
                next_index += batch as u64;
                wal.append(entries).wait().expect("append");
            });
        });
    }
    group.finish();
}
