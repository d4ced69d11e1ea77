//! Criterion benches for the engine internals. One entry point, a module per group: WAL
//! append + fdatasync, MVCC put / range / txn, compaction, watch fan-out, snapshot build.
//!
//! `cargo bench -p cairn-bench` runs everything, including the 1M-key MVCC sizes; under
//! `cargo test` (CI's quick mode) each bench runs once and the 1M-key sizes are skipped so the
//! suite stays fast.

mod compaction;
mod history;
mod mvcc;
mod snapshot;
mod wal;
mod watch;

use criterion::{criterion_group, criterion_main};

/// True under `cargo bench` (criterion is passed `--bench`), false in test mode.
pub(crate) fn full_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

criterion_group!(
    benches,
    wal::bench_append,
    mvcc::bench_put,
    mvcc::bench_range,
    mvcc::bench_txn,
    compaction::bench_compact,
    watch::bench_fanout,
    snapshot::bench_write_snapshot,
    history::bench_backends,
    history::bench_record
);
criterion_main!(benches);
