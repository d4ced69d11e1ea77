//! Watch fan-out: one published revision delivered to 1k and 10k synced watchers of a prefix
//! (100 watchers per stream), receivers drained each time. No I/O and no runtime involved:
//! this is `WatchHub::publish` plus the channel hand-off.

use std::sync::Arc;

use bytes::Bytes;
use cairn_engine::error::KvError;
use cairn_engine::kv::{Event, EventKind, KeyValue};
use cairn_engine::watch::{EventSource, WatchHub, WatchMessage, WatchOptions, WatchSpec};
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::sync::mpsc;

const WATCHERS_PER_STREAM: usize = 100;

/// A store with no history: every watcher starts synced, so nothing ever reads it.
struct NoHistory;

impl EventSource for NoHistory {
    fn current_revision(&self) -> i64 {
        1
    }
    fn compact_revision(&self) -> i64 {
        0
    }
    fn events(&self, _from: i64, _to: i64, _limit: usize) -> Result<Vec<Event>, KvError> {
        Ok(Vec::new())
    }
}

fn event(revision: i64) -> Arc<[Event]> {
    Arc::from(vec![Event {
        kind: EventKind::Put,
        kv: KeyValue {
            key: Bytes::from_static(b"/registry/pods/default/pod-1"),
            create_revision: 2,
            mod_revision: revision,
            version: revision - 1,
            value: Bytes::from(vec![b'v'; 128]),
            lease: 0,
        },
        prev_kv: None,
    }])
}

pub fn bench_fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("watch_fanout_one_event");
    for watchers in [1_000usize, 10_000] {
        let hub = WatchHub::new(Arc::new(NoHistory), WatchOptions::default());
        let mut streams = Vec::new();
        let mut receivers: Vec<mpsc::Receiver<WatchMessage>> = Vec::new();
        for _ in 0..watchers / WATCHERS_PER_STREAM {
            let (stream, rx) = hub.open_stream();
            for _ in 0..WATCHERS_PER_STREAM {
                stream
                    .create(
                        None,
                        WatchSpec {
                            key: Bytes::from_static(b"/registry/pods/"),
                            range_end: Bytes::from_static(b"/registry/pods0"),
                            prev_kv: true,
                            ..WatchSpec::default()
                        },
                    )
                    .expect("create watcher");
            }
            streams.push(stream);
            receivers.push(rx);
        }
        let mut revision = 1i64;
        group.throughput(Throughput::Elements(watchers as u64));
        group.bench_with_input(BenchmarkId::from_parameter(watchers), &watchers, |b, &n| {
            b.iter(|| {
                revision += 1;
                hub.publish(revision, event(revision));
                let mut delivered = 0usize;
                for rx in &mut receivers {
                    while rx.try_recv().is_ok() {
                        delivered += 1;
                    }
                }
                assert_eq!(delivered, n, "every watcher gets the event");
            });
        });
        assert_eq!(hub.unsynced_count(), 0, "no watcher fell behind");
        drop(streams);
    }
    group.finish();
}
