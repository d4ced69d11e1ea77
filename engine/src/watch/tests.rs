//! Hub-level tests: publish, catch-up, progress and streams, against an in-memory store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::*;
use crate::kv::{EventKind, KeyValue};

/// A toy MVCC store: the applier's side (current values, history) and the `EventSource` side.
#[derive(Default)]
struct FakeStore {
    state: Mutex<FakeState>,
    reads: AtomicUsize,
}

#[derive(Clone, Default)]
struct FakeState {
    current: i64,
    compact: i64,
    values: BTreeMap<Bytes, KeyValue>,
    history: Vec<Event>,
}

enum Op {
    Put(&'static str, &'static str),
    Delete(&'static str),
}

impl FakeStore {
    fn new(current: i64) -> Arc<Self> {
        let store = Self::default();
        store.state.lock().expect("test lock").current = current;
        Arc::new(store)
    }

    /// Applies one transaction at the next revision and returns it with its events.
    fn apply(&self, ops: &[Op]) -> (i64, Arc<[Event]>) {
        let mut state = self.state.lock().expect("test lock");
        state.current += 1;
        let rev = state.current;
        let mut events = Vec::new();
        for op in ops {
            match *op {
                Op::Put(key, value) => {
                    let key = Bytes::from_static(key.as_bytes());
                    let prev = state.values.get(&key).cloned();
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: Bytes::from_static(value.as_bytes()),
                        lease: 0,
                    };
                    state.values.insert(key, kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev_kv: prev,
                    });
                }
                Op::Delete(key) => {
                    let key = Bytes::from_static(key.as_bytes());
                    if let Some(prev) = state.values.remove(&key) {
                        let kv = KeyValue {
                            key,
                            mod_revision: rev,
                            ..KeyValue::default()
                        };
                        events.push(Event {
                            kind: EventKind::Delete,
                            kv,
                            prev_kv: Some(prev),
                        });
                    }
                }
            }
        }
        state.history.extend(events.iter().cloned());
        (rev, events.into())
    }

    fn compact(&self, rev: i64) {
        self.state.lock().expect("test lock").compact = rev;
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// A copy of this store that goes its own way (a leader applying while a follower lags).
    fn fork(&self) -> Arc<Self> {
        let state = self.state.lock().expect("test lock").clone();
        Arc::new(Self {
            state: Mutex::new(state),
            reads: AtomicUsize::new(0),
        })
    }

    /// Replaces everything with `snapshot`'s state, as a follower installing a raft snapshot.
    fn install(&self, snapshot: &FakeStore) {
        let state = snapshot.state.lock().expect("test lock").clone();
        *self.state.lock().expect("test lock") = state;
    }

    fn history(&self) -> Vec<Event> {
        self.state.lock().expect("test lock").history.clone()
    }
}

impl EventSource for FakeStore {
    fn current_revision(&self) -> i64 {
        self.state.lock().expect("test lock").current
    }

    fn compact_revision(&self) -> i64 {
        self.state.lock().expect("test lock").compact
    }

    fn events(&self, from: i64, to: i64, limit: usize) -> Result<Vec<Event>, KvError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let state = self.state.lock().expect("test lock");
        if from < state.compact {
            return Err(KvError::Compacted {
                compact_revision: state.compact,
            });
        }
        let mut out: Vec<Event> = Vec::new();
        for event in &state.history {
            let rev = event.revision();
            if rev < from || rev > to {
                continue;
            }
            if out.len() >= limit && out.last().is_some_and(|last| last.revision() != rev) {
                break;
            }
            out.push(event.clone());
        }
        Ok(out)
    }
}

struct Harness {
    store: Arc<FakeStore>,
    hub: Arc<WatchHub>,
}

impl Harness {
    fn new(options: WatchOptions) -> Self {
        let store = FakeStore::new(1);
        let hub = WatchHub::new(Arc::clone(&store) as Arc<dyn EventSource>, options);
        Self { store, hub }
    }

    /// Applies and publishes one transaction, as the applier does.
    fn txn(&self, ops: &[Op]) -> i64 {
        let (rev, events) = self.store.apply(ops);
        self.hub.publish(rev, events);
        rev
    }

    fn put(&self, key: &'static str, value: &'static str) -> i64 {
        self.txn(&[Op::Put(key, value)])
    }

    fn delete(&self, key: &'static str) -> i64 {
        self.txn(&[Op::Delete(key)])
    }

    /// Runs syncer passes until one makes no progress.
    async fn sync(&self) {
        for _ in 0..1000 {
            if !self.hub.sync_pass().await {
                return;
            }
        }
        panic!("syncer never settled");
    }
}

fn options() -> WatchOptions {
    WatchOptions::default()
}

fn spec(key: &'static str, range_end: &'static str) -> WatchSpec {
    WatchSpec {
        key: Bytes::from_static(key.as_bytes()),
        range_end: Bytes::from_static(range_end.as_bytes()),
        ..WatchSpec::default()
    }
}

fn from(mut spec: WatchSpec, start_revision: i64) -> WatchSpec {
    spec.start_revision = start_revision;
    spec
}

fn drain(rx: &mut mpsc::Receiver<WatchMessage>) -> Vec<WatchMessage> {
    let mut out = Vec::new();
    while let Ok(message) = rx.try_recv() {
        out.push(message);
    }
    out
}

/// `(watch_id, revision, key, kind)` of every event in `messages`.
fn events(messages: &[WatchMessage]) -> Vec<(i64, i64, String, EventKind)> {
    messages
        .iter()
        .filter_map(|m| match m {
            WatchMessage::Events {
                watch_id, events, ..
            } => Some(events.iter().map(move |e| {
                let key = String::from_utf8_lossy(&e.kv.key).into_owned();
                (*watch_id, e.revision(), key, e.kind)
            })),
            _ => None,
        })
        .flatten()
        .collect()
}

fn keys_for(messages: &[WatchMessage], id: i64) -> Vec<String> {
    events(messages)
        .into_iter()
        .filter(|e| e.0 == id)
        .map(|e| e.2)
        .collect()
}

fn revisions_for(messages: &[WatchMessage], id: i64) -> Vec<i64> {
    events(messages)
        .into_iter()
        .filter(|e| e.0 == id)
        .map(|e| e.1)
        .collect()
}

#[tokio::test]
async fn exact_prefix_from_key_and_range_matching() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let exact = stream.create(None, spec("/a/1", "")).expect("create");
    let prefix = stream.create(None, spec("/a/", "/a0")).expect("create");
    let from_key = stream.create(None, spec("/b", "\0")).expect("create");
    let range = stream.create(None, spec("/a/2", "/a/4")).expect("create");
    let all = stream.create(None, spec("\0", "\0")).expect("create");

    for key in ["/a/1", "/a/2", "/a/3", "/a/4", "/a", "/b", "/c/x"] {
        h.put(key, "v");
    }
    let messages = drain(&mut rx);
    assert_eq!(keys_for(&messages, exact), ["/a/1"]);
    assert_eq!(
        keys_for(&messages, prefix),
        ["/a/1", "/a/2", "/a/3", "/a/4"]
    );
    assert_eq!(keys_for(&messages, from_key), ["/b", "/c/x"]);
    assert_eq!(keys_for(&messages, range), ["/a/2", "/a/3"]);
    assert_eq!(keys_for(&messages, all).len(), 7);
    assert_eq!(h.hub.watcher_count(), 5);
    assert_eq!(h.hub.unsynced_count(), 0);
}

#[tokio::test]
async fn one_message_per_revision_with_only_matching_events() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("/p/", "/p0")).expect("create");
    let rev = h.txn(&[
        Op::Put("/p/a", "1"),
        Op::Put("/q", "2"),
        Op::Put("/p/b", "3"),
    ]);
    let messages = drain(&mut rx);
    assert_eq!(messages.len(), 1);
    let WatchMessage::Events {
        watch_id,
        revision,
        events,
    } = &messages[0]
    else {
        panic!("expected events, got {messages:?}");
    };
    assert_eq!((*watch_id, *revision), (id, rev));
    let keys: Vec<&[u8]> = events.iter().map(|e| e.kv.key.as_ref()).collect();
    assert_eq!(keys, [b"/p/a".as_ref(), b"/p/b".as_ref()]);
}

#[tokio::test]
async fn filters_and_prev_kv() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let no_put = stream
        .create(
            None,
            WatchSpec {
                filter_put: true,
                prev_kv: true,
                ..spec("k", "")
            },
        )
        .expect("create");
    let no_delete = stream
        .create(
            None,
            WatchSpec {
                filter_delete: true,
                ..spec("k", "")
            },
        )
        .expect("create");
    let with_prev = stream
        .create(
            None,
            WatchSpec {
                prev_kv: true,
                ..spec("k", "")
            },
        )
        .expect("create");
    h.put("k", "1");
    h.put("k", "2");
    h.delete("k");

    let messages = drain(&mut rx);
    let kinds = |id| -> Vec<EventKind> {
        events(&messages)
            .into_iter()
            .filter(|e| e.0 == id)
            .map(|e| e.3)
            .collect()
    };
    assert_eq!(kinds(no_put), [EventKind::Delete]);
    assert_eq!(kinds(no_delete), [EventKind::Put, EventKind::Put]);
    assert_eq!(
        kinds(with_prev),
        [EventKind::Put, EventKind::Put, EventKind::Delete]
    );

    for message in &messages {
        let WatchMessage::Events {
            watch_id, events, ..
        } = message
        else {
            continue;
        };
        for event in events {
            let expect_prev = *watch_id != no_delete && event.kv.version != 1;
            assert_eq!(
                event.prev_kv.is_some(),
                expect_prev,
                "{watch_id}: {event:?}"
            );
        }
    }
    let deleted = messages.iter().rev().find_map(|m| match m {
        WatchMessage::Events {
            watch_id, events, ..
        } if *watch_id == no_put => events.first().cloned(),
        _ => None,
    });
    let prev = deleted
        .and_then(|e| e.prev_kv)
        .expect("delete carries prev_kv");
    assert_eq!(prev.value.as_ref(), b"2");
}

#[tokio::test]
async fn start_in_the_past_from_the_ring() {
    let h = Harness::new(options());
    let first = h.put("k", "1");
    h.put("other", "x");
    h.put("k", "2");
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream
        .create(None, from(spec("k", ""), first))
        .expect("create");
    assert_eq!(h.hub.unsynced_count(), 1);
    assert!(drain(&mut rx).is_empty());

    h.sync().await;
    assert_eq!(h.hub.unsynced_count(), 0);
    let later = h.put("k", "3");
    let messages = drain(&mut rx);
    assert_eq!(revisions_for(&messages, id), [first, first + 2, later]);
    assert_eq!(h.store.reads(), 0, "the ring covered the start");
}

#[tokio::test]
async fn start_in_the_past_from_the_store() {
    let h = Harness::new(WatchOptions {
        ring_revisions: 2,
        source_batch_events: 3,
        max_events_per_message: 2,
        ..options()
    });
    let mut revs = Vec::new();
    for _ in 0..10 {
        revs.push(h.put("k", "v"));
    }
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream
        .create(None, from(spec("k", ""), revs[1]))
        .expect("create");
    h.sync().await;
    assert!(h.store.reads() > 0);
    assert_eq!(h.hub.unsynced_count(), 0);
    let messages = drain(&mut rx);
    assert_eq!(revisions_for(&messages, id), revs[1..]);
    // Catch-up messages carry the store revision as header, in messages of whole revisions.
    for message in &messages {
        let WatchMessage::Events {
            revision, events, ..
        } = message
        else {
            panic!("unexpected {message:?}");
        };
        assert_eq!(*revision, revs[9]);
        assert!(events.len() <= 2);
    }
}

#[tokio::test]
async fn compacted_start_is_reported_and_removed() {
    let h = Harness::new(options());
    for _ in 0..5 {
        h.put("k", "v");
    }
    h.store.compact(4);
    let (stream, mut rx) = h.hub.open_stream();
    // Below the compact revision is compacted; exactly at it is not (etcd's rule).
    let id = stream
        .create(Some(7), from(spec("k", ""), 3))
        .expect("create");
    let live = stream.create(None, from(spec("k", ""), 5)).expect("create");
    h.sync().await;
    let messages = drain(&mut rx);
    assert!(messages.contains(&WatchMessage::Compacted {
        watch_id: id,
        compact_revision: 4
    }));
    assert_eq!(revisions_for(&messages, live), [5, 6]);
    assert_eq!(h.hub.watcher_count(), 1);
    assert_eq!(stream.watch_ids(), [live]);
    assert_eq!(
        stream.create(Some(7), spec("k", "")),
        Ok(7),
        "the id is free again"
    );
}

#[tokio::test]
async fn compacted_while_behind_the_ring_via_source_error() {
    let h = Harness::new(WatchOptions {
        ring_revisions: 1,
        ..options()
    });
    for _ in 0..5 {
        h.put("k", "v");
    }
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, from(spec("k", ""), 2)).expect("create");
    // The store compacts after the pass read its compact revision: the read reports it.
    h.store.compact(3);
    let compact = h.store.compact_revision();
    let plan = h.hub.lock().plan_sync(0, &h.hub.options).expect("a plan");
    let range = plan.source.expect("needs the store");
    let read = range.read(h.store.as_ref()).map(Some);
    assert!(h.hub.lock().apply_sync(plan, read, 0, &h.hub.options));
    assert_eq!(
        drain(&mut rx),
        [WatchMessage::Compacted {
            watch_id: id,
            compact_revision: compact
        }]
    );
    assert_eq!(h.hub.watcher_count(), 0);
}

#[tokio::test]
async fn slow_consumer_does_not_block_and_gets_everything_once() {
    let h = Harness::new(WatchOptions {
        stream_buffer: 2,
        ring_revisions: 16,
        ..options()
    });
    let (slow, mut slow_rx) = h.hub.open_stream();
    let (fast, mut fast_rx) = h.hub.open_stream();
    let slow_id = slow.create(None, spec("/k/", "/k0")).expect("create");
    let fast_id = fast.create(None, spec("/k/", "/k0")).expect("create");

    let mut expected = Vec::new();
    let mut fast_seen = Vec::new();
    for _ in 0..50 {
        expected.push(h.put("/k/a", "v"));
        fast_seen.extend(revisions_for(&drain(&mut fast_rx), fast_id));
    }
    assert_eq!(fast_seen, expected, "the fast watcher is unaffected");
    assert_eq!(h.hub.unsynced_count(), 1);

    // Drain slowly while writes continue; the ring is too small, so the store is read too.
    let mut slow_seen = Vec::new();
    for round in 0..200 {
        slow_seen.extend(revisions_for(&drain(&mut slow_rx), slow_id));
        fast_seen.extend(revisions_for(&drain(&mut fast_rx), fast_id));
        if round % 3 == 0 && round < 60 {
            expected.push(h.put("/k/b", "v"));
        }
        h.hub.sync_pass().await;
        if h.hub.unsynced_count() == 0 && round >= 60 {
            break;
        }
    }
    slow_seen.extend(revisions_for(&drain(&mut slow_rx), slow_id));
    assert_eq!(h.hub.unsynced_count(), 0);
    assert_eq!(slow_seen, expected, "every revision exactly once, in order");
    assert!(h.store.reads() > 0);

    let last = h.put("/k/c", "v");
    assert_eq!(revisions_for(&drain(&mut slow_rx), slow_id), [last]);
    fast_seen.extend(revisions_for(&drain(&mut fast_rx), fast_id));
    assert_eq!(
        fast_seen,
        expected.iter().copied().chain([last]).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn randomized_interleavings_deliver_in_order_without_gaps() {
    let mut store_reads = 0;
    for seed in 1..=20_u64 {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let h = Harness::new(WatchOptions {
            stream_buffer: 1 + next(4) as usize,
            ring_revisions: next(8) as usize,
            source_batch_events: 1 + next(5) as usize,
            max_events_per_message: 1 + next(3) as usize,
            sync_budget_events: 1 + next(6) as usize,
            ..options()
        });
        let (stream, mut rx) = h.hub.open_stream();
        let a = stream.create(None, spec("/x/", "/x0")).expect("create");
        let b = stream.create(None, spec("/x/1", "")).expect("create");
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..150 {
            match next(6) {
                0 | 1 => {
                    let rev = h.txn(&[Op::Put("/x/1", "v"), Op::Put("/x/2", "v")]);
                    expected_a.extend([rev, rev]);
                    expected_b.push(rev);
                }
                2 => {
                    let rev = h.put("/x/3", "v");
                    expected_a.push(rev);
                }
                3 => seen.extend(drain(&mut rx)),
                4 => {
                    h.hub.sync_pass().await;
                }
                _ => {
                    if let Ok(m) = rx.try_recv() {
                        seen.push(m);
                    }
                }
            }
        }
        for _ in 0..500 {
            seen.extend(drain(&mut rx));
            h.hub.sync_pass().await;
            if h.hub.unsynced_count() == 0 {
                break;
            }
        }
        seen.extend(drain(&mut rx));
        assert_eq!(h.hub.unsynced_count(), 0, "seed {seed}");
        assert_eq!(revisions_for(&seen, a), expected_a, "seed {seed}");
        assert_eq!(revisions_for(&seen, b), expected_b, "seed {seed}");
        store_reads += h.store.reads();
    }
    assert!(store_reads > 0, "some runs must catch up from the store");
}

#[tokio::test]
async fn request_progress_waits_for_catch_up() {
    let h = Harness::new(options());
    let first = h.put("k", "1");
    let last = h.put("k", "2");
    let (stream, mut rx) = h.hub.open_stream();
    stream.create(None, spec("other", "")).expect("create");

    stream.request_progress();
    assert_eq!(
        drain(&mut rx),
        [WatchMessage::Progress {
            watch_id: -1,
            revision: last
        }],
        "all synced: answered at once"
    );

    let id = stream
        .create(None, from(spec("k", ""), first))
        .expect("create");
    stream.request_progress();
    assert!(
        drain(&mut rx).is_empty(),
        "deferred while a watcher is unsynced"
    );

    h.sync().await;
    let messages = drain(&mut rx);
    assert_eq!(revisions_for(&messages, id), [first, last]);
    assert_eq!(
        messages.last(),
        Some(&WatchMessage::Progress {
            watch_id: -1,
            revision: last
        }),
        "answered after the events it vouches for"
    );
}

#[tokio::test]
async fn request_progress_after_overflow_waits_for_the_syncer() {
    let h = Harness::new(WatchOptions {
        stream_buffer: 1,
        ..options()
    });
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("k", "")).expect("create");
    let r1 = h.put("k", "1");
    let r2 = h.put("k", "2");
    assert_eq!(h.hub.unsynced_count(), 1);
    stream.request_progress();
    assert_eq!(revisions_for(&drain(&mut rx), id), [r1]);
    h.hub.sync_pass().await;
    assert_eq!(revisions_for(&drain(&mut rx), id), [r2]);
    h.hub.sync_pass().await;
    assert_eq!(
        drain(&mut rx),
        [WatchMessage::Progress {
            watch_id: -1,
            revision: r2
        }]
    );
}

#[tokio::test]
async fn cancel_unblocks_a_deferred_progress_request() {
    let h = Harness::new(options());
    let first = h.put("k", "1");
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream
        .create(None, from(spec("k", ""), first))
        .expect("create");
    stream.request_progress();
    assert!(drain(&mut rx).is_empty());
    assert!(stream.cancel(id));
    assert_eq!(
        drain(&mut rx),
        [WatchMessage::Progress {
            watch_id: -1,
            revision: first
        }]
    );
}

#[tokio::test]
async fn periodic_progress_goes_to_idle_synced_watchers_that_asked() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let asked = stream
        .create(
            None,
            WatchSpec {
                progress_notify: true,
                ..spec("k", "")
            },
        )
        .expect("create");
    stream.create(None, spec("k", "")).expect("create");
    let rev = h.put("other", "v");

    h.hub.send_progress_notifications();
    assert_eq!(
        drain(&mut rx),
        [WatchMessage::Progress {
            watch_id: asked,
            revision: rev
        }]
    );

    let rev = h.put("k", "v");
    drain(&mut rx);
    h.hub.send_progress_notifications();
    assert!(drain(&mut rx).is_empty(), "it just got events");
    h.hub.send_progress_notifications();
    assert_eq!(
        drain(&mut rx),
        [WatchMessage::Progress {
            watch_id: asked,
            revision: rev
        }]
    );

    // An unsynced watcher gets no progress notification.
    let old = stream
        .create(
            None,
            WatchSpec {
                progress_notify: true,
                ..from(spec("k", ""), rev)
            },
        )
        .expect("create");
    h.hub.send_progress_notifications();
    let messages = drain(&mut rx);
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m, WatchMessage::Progress { watch_id, .. } if *watch_id == old)),
        "{messages:?}"
    );
}

#[tokio::test]
async fn cancel_stops_delivery() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("k", "")).expect("create");
    h.put("k", "1");
    assert!(stream.cancel(id));
    assert!(!stream.cancel(id));
    h.put("k", "2");
    assert_eq!(events(&drain(&mut rx)).len(), 1);
    assert_eq!(h.hub.watcher_count(), 0);
}

#[tokio::test]
async fn dropping_a_stream_removes_its_watchers() {
    let h = Harness::new(options());
    let (stream, _rx) = h.hub.open_stream();
    let (other, mut other_rx) = h.hub.open_stream();
    stream.create(None, spec("k", "")).expect("create");
    stream.create(None, from(spec("k", ""), 1)).expect("create");
    let kept = other.create(None, spec("k", "")).expect("create");
    assert_eq!(h.hub.watcher_count(), 3);
    drop(stream);
    assert_eq!(h.hub.watcher_count(), 1);
    assert_eq!(h.hub.unsynced_count(), 0);
    let rev = h.put("k", "v");
    assert_eq!(revisions_for(&drain(&mut other_rx), kept), [rev]);
}

#[tokio::test]
async fn auto_ids_count_up_and_skip_used_ones() {
    let h = Harness::new(options());
    let (stream, _rx) = h.hub.open_stream();
    assert_eq!(stream.create(None, spec("k", "")), Ok(0));
    assert_eq!(stream.create(None, spec("k", "")), Ok(1));
    assert_eq!(stream.create(Some(2), spec("k", "")), Ok(2));
    assert_eq!(stream.create(None, spec("k", "")), Ok(3));
    assert!(stream.cancel(0));
    assert_eq!(stream.create(None, spec("k", "")), Ok(4));
    // Ids are per stream.
    let (other, _other_rx) = h.hub.open_stream();
    assert_eq!(other.create(None, spec("k", "")), Ok(0));
}

#[tokio::test]
async fn explicit_id_in_use_and_empty_range_are_rejected() {
    let h = Harness::new(options());
    let (stream, _rx) = h.hub.open_stream();
    assert_eq!(stream.create(Some(5), spec("k", "")), Ok(5));
    assert_eq!(
        stream.create(Some(5), spec("j", "")),
        Err(WatchError::IdInUse { watch_id: 5 })
    );
    assert_eq!(
        stream.create(None, spec("b", "a")),
        Err(WatchError::EmptyRange)
    );
    assert_eq!(h.hub.watcher_count(), 1);
}

#[tokio::test]
async fn future_start_revision_skips_earlier_events() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, from(spec("k", ""), 4)).expect("create");
    assert_eq!(h.hub.unsynced_count(), 0);
    let revs: Vec<i64> = (0..4).map(|_| h.put("k", "v")).collect();
    assert_eq!(revs, [2, 3, 4, 5]);
    assert_eq!(revisions_for(&drain(&mut rx), id), [4, 5]);
}

#[tokio::test]
async fn a_revision_gap_sends_synced_watchers_to_the_store() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("k", "")).expect("create");
    let r1 = h.put("k", "1");
    // Two revisions are applied but never published (as after a snapshot install).
    let (r2, _) = h.store.apply(&[Op::Put("k", "2")]);
    let (r3, _) = h.store.apply(&[Op::Put("other", "3")]);
    let r4 = h.put("k", "4");
    assert_eq!(h.hub.unsynced_count(), 1);
    h.sync().await;
    assert_eq!(h.hub.unsynced_count(), 0);
    assert_eq!(revisions_for(&drain(&mut rx), id), [r1, r2, r4]);
    assert_eq!(r3 + 1, r4);
    // Stale publishes are ignored.
    h.hub.publish(r4, Arc::from(Vec::new()));
    assert_eq!(h.hub.last_published(), r4);
}

#[tokio::test]
async fn stalled_stream_is_skipped_by_the_syncer() {
    let h = Harness::new(WatchOptions {
        stream_buffer: 1,
        ring_revisions: 0,
        ..options()
    });
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("k", "")).expect("create");
    let r1 = h.put("k", "1");
    let r2 = h.put("k", "2");
    assert!(!h.hub.sync_pass().await);
    assert_eq!(
        h.store.reads(),
        0,
        "no store read for a consumer that is not draining"
    );
    assert_eq!(revisions_for(&drain(&mut rx), id), [r1]);
    h.sync().await;
    assert_eq!(revisions_for(&drain(&mut rx), id), [r2]);
}

#[tokio::test]
async fn background_task_catches_up_and_stops() {
    let h = Harness::new(WatchOptions {
        sync_interval: Duration::from_millis(10),
        ..options()
    });
    let first = h.put("k", "1");
    let task = spawn_background(Arc::clone(&h.hub), Duration::from_millis(20));
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream
        .create(
            None,
            WatchSpec {
                progress_notify: true,
                ..from(spec("k", ""), first)
            },
        )
        .expect("create");
    let message = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("caught up in time");
    assert_eq!(revisions_for(&[message.expect("open")], id), [first]);
    let progress = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("progress in time");
    assert_eq!(
        progress,
        Some(WatchMessage::Progress {
            watch_id: id,
            revision: first
        })
    );

    h.hub.shutdown();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops on shutdown")
        .expect("no panic");

    // A hub that is dropped stops its task too.
    let h = Harness::new(options());
    let task = spawn_background(Arc::clone(&h.hub), Duration::ZERO);
    drop(stream);
    drop(h);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops when the hub is dropped")
        .expect("no panic");
}

/// `(revision, key)` of the events of `watch_id` in `messages`.
fn rev_keys_for(messages: &[WatchMessage], watch_id: i64) -> Vec<(i64, String)> {
    events(messages)
        .into_iter()
        .filter(|e| e.0 == watch_id)
        .map(|e| (e.1, e.2))
        .collect()
}

/// `(revision, key)` of the events in `store`'s history from `from` on, under `prefix`.
fn history_under(store: &FakeStore, prefix: &str, from: i64) -> Vec<(i64, String)> {
    store
        .history()
        .iter()
        .filter(|e| e.revision() >= from && e.kv.key.starts_with(prefix.as_bytes()))
        .map(|e| {
            (
                e.revision(),
                String::from_utf8_lossy(&e.kv.key).into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn restore_replays_the_skipped_revisions_from_the_new_store() {
    let h = Harness::new(WatchOptions {
        source_batch_events: 7,
        max_events_per_message: 5,
        ..options()
    });
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("/k/", "/k0")).expect("create");
    let before: Vec<i64> = (2..=10).map(|_| h.put("/k/a", "v")).collect();
    assert_eq!(revisions_for(&drain(&mut rx), id), before);

    // The leader goes on to revision 50; this member installs its snapshot.
    let leader = h.store.fork();
    for rev in 11..=50 {
        let ops: &[Op] = match rev % 3 {
            0 => &[Op::Put("/k/b", "v"), Op::Put("/other", "v")],
            1 => &[Op::Put("/k/c", "v"), Op::Delete("/k/b")],
            _ => &[Op::Put("/k/a", "v")],
        };
        assert_eq!(leader.apply(ops).0, rev);
    }
    h.store.install(&leader);
    h.hub.restored();
    assert_eq!(h.hub.last_published(), 50);
    assert_eq!(h.hub.unsynced_count(), 1);
    assert!(drain(&mut rx).is_empty(), "nothing is sent under the lock");

    h.sync().await;
    assert_eq!(h.hub.unsynced_count(), 0);
    assert!(
        h.store.reads() > 0,
        "the ring was emptied: replayed from the store"
    );
    let messages = drain(&mut rx);
    let expected = history_under(&h.store, "/k/", 11);
    assert_eq!(expected.first().map(|e| e.0), Some(11));
    assert_eq!(expected.last().map(|e| e.0), Some(50));
    assert_eq!(
        rev_keys_for(&messages, id),
        expected,
        "11..=50, in order, once"
    );
    for message in &messages {
        let WatchMessage::Events {
            revision, events, ..
        } = message
        else {
            panic!("unexpected {message:?}");
        };
        assert_eq!(*revision, 50);
        // At most 5 events, plus the rest of a revision (never split; 2 events at most).
        assert!(events.len() <= 6, "{message:?}");
    }

    // Publishing goes on from the new store's revision.
    let r51 = h.put("/k/d", "v");
    let r52 = h.txn(&[Op::Put("/other", "v"), Op::Put("/k/e", "v")]);
    assert_eq!((r51, r52), (51, 52));
    assert_eq!(
        rev_keys_for(&drain(&mut rx), id),
        [(51, "/k/d".to_string()), (52, "/k/e".to_string())]
    );
    assert_eq!(h.hub.last_published(), 52);
}

#[tokio::test]
async fn restore_past_the_compaction_cancels_the_watcher() {
    let h = Harness::new(options());
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("k", "")).expect("create");
    for _ in 2..=10 {
        h.put("k", "v");
    }
    // Starts in the future for now, past the compaction point after the restore.
    let later = stream
        .create(None, from(spec("k", ""), 40))
        .expect("create");
    assert_eq!(h.hub.unsynced_count(), 0);
    drain(&mut rx);

    let leader = h.store.fork();
    for _ in 11..=50 {
        leader.apply(&[Op::Put("k", "v")]);
    }
    leader.compact(30);
    h.store.install(&leader);
    h.hub.restored();
    assert_eq!(h.hub.unsynced_count(), 2);
    stream.request_progress();

    h.sync().await;
    let messages = drain(&mut rx);
    assert!(revisions_for(&messages, id).is_empty(), "{messages:?}");
    assert!(messages.contains(&WatchMessage::Compacted {
        watch_id: id,
        compact_revision: 30
    }));
    assert_eq!(
        revisions_for(&messages, later),
        (40..=50).collect::<Vec<_>>()
    );
    assert_eq!(
        messages.last(),
        Some(&WatchMessage::Progress {
            watch_id: -1,
            revision: 50
        })
    );
    assert_eq!(h.hub.watcher_count(), 1);
    assert_eq!(h.hub.unsynced_count(), 0);
    assert_eq!(stream.watch_ids(), [later]);
    let rev = h.put("k", "v");
    assert_eq!(revisions_for(&drain(&mut rx), later), [rev]);
}

#[tokio::test]
async fn watchers_created_after_a_restore_start_from_the_new_store() {
    let h = Harness::new(options());
    for _ in 2..=10 {
        h.put("k", "old");
    }
    // A different history for the same revisions: the ring must not be used after the restore.
    let leader = FakeStore::new(1);
    for _ in 2..=50 {
        leader.apply(&[Op::Put("k", "new")]);
    }
    h.store.install(&leader);
    h.hub.restored();
    assert_eq!(h.hub.last_published(), 50);

    let (stream, mut rx) = h.hub.open_stream();
    let (now, header) = stream.create_at(None, spec("k", "")).expect("create");
    assert_eq!(header, 50);
    assert_eq!(h.hub.unsynced_count(), 0, "starts synced at 51");
    let past = stream.create(None, from(spec("k", ""), 5)).expect("create");
    h.sync().await;
    let rev = h.put("k", "v");
    assert_eq!(rev, 51);

    let messages = drain(&mut rx);
    assert_eq!(revisions_for(&messages, now), [51]);
    assert_eq!(revisions_for(&messages, past), (5..=51).collect::<Vec<_>>());
    let values: Vec<Vec<u8>> = messages
        .iter()
        .filter_map(|m| match m {
            WatchMessage::Events {
                watch_id, events, ..
            } if *watch_id == past => Some(events.iter().map(|e| e.kv.value.to_vec())),
            _ => None,
        })
        .flatten()
        .filter(|v| v.as_slice() != b"v")
        .collect();
    assert_eq!(values.len(), 46);
    assert!(values.iter().all(|v| v.as_slice() == b"new"), "{values:?}");
}

#[tokio::test]
async fn restore_keeps_progress_truthful() {
    let h = Harness::new(options());
    let (behind, mut behind_rx) = h.hub.open_stream();
    let (ahead, mut ahead_rx) = h.hub.open_stream();
    let notify = |spec: WatchSpec| WatchSpec {
        progress_notify: true,
        ..spec
    };
    let id = behind.create(None, notify(spec("k", ""))).expect("create");
    let future = ahead
        .create(None, notify(from(spec("k", ""), 100)))
        .expect("create");
    h.put("k", "v");
    drain(&mut behind_rx);

    let leader = h.store.fork();
    for _ in 0..20 {
        leader.apply(&[Op::Put("k", "v")]);
    }
    h.store.install(&leader);
    h.hub.restored();
    let current = h.store.current_revision();
    assert_eq!(h.hub.unsynced_count(), 1, "the future watcher stays synced");

    behind.request_progress();
    ahead.request_progress();
    h.hub.send_progress_notifications();
    assert!(drain(&mut behind_rx).is_empty(), "no progress while behind");
    assert_eq!(
        drain(&mut ahead_rx),
        [
            WatchMessage::Progress {
                watch_id: -1,
                revision: current
            },
            WatchMessage::Progress {
                watch_id: future,
                revision: current
            }
        ]
    );

    h.sync().await;
    let messages = drain(&mut behind_rx);
    assert_eq!(
        revisions_for(&messages, id),
        (3..=current).collect::<Vec<_>>()
    );
    assert_eq!(
        messages.last(),
        Some(&WatchMessage::Progress {
            watch_id: -1,
            revision: current
        }),
        "answered after the replayed events"
    );
    h.hub.send_progress_notifications();
    assert!(drain(&mut behind_rx).is_empty(), "it just got events");
    h.hub.send_progress_notifications();
    assert_eq!(
        drain(&mut behind_rx),
        [WatchMessage::Progress {
            watch_id: id,
            revision: current
        }]
    );
}

#[tokio::test]
async fn a_sync_pass_planned_before_a_restore_is_dropped() {
    let h = Harness::new(WatchOptions {
        ring_revisions: 1,
        ..options()
    });
    for _ in 2..=6 {
        h.put("k", "v");
    }
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, from(spec("k", ""), 3)).expect("create");
    let plan = h.hub.lock().plan_sync(0, &h.hub.options).expect("a plan");
    let range = plan.source.expect("needs the store");
    let read = range.read(h.store.as_ref()).map(Some);

    // The store is replaced between the read and its use.
    let leader = h.store.fork();
    for _ in 0..4 {
        leader.apply(&[Op::Put("k", "v")]);
    }
    h.store.install(&leader);
    h.hub.restored();
    assert!(h.hub.lock().apply_sync(plan, read, 0, &h.hub.options));
    assert!(drain(&mut rx).is_empty(), "the stale read is not delivered");

    h.sync().await;
    assert_eq!(
        revisions_for(&drain(&mut rx), id),
        (3..=10).collect::<Vec<_>>()
    );
    assert_eq!(h.hub.unsynced_count(), 0);
}

#[tokio::test]
async fn restore_to_the_same_revision_changes_nothing_for_watchers() {
    let h = Harness::new(WatchOptions {
        ring_revisions: 4,
        ..options()
    });
    let (stream, mut rx) = h.hub.open_stream();
    let id = stream.create(None, spec("k", "")).expect("create");
    let first = h.put("k", "v");
    h.store.install(&h.store.fork());
    h.hub.restored();
    assert_eq!(h.hub.unsynced_count(), 0);
    assert_eq!(h.hub.last_published(), first);
    let next = h.put("k", "v");
    assert_eq!(revisions_for(&drain(&mut rx), id), [first, next]);
}

/// What one stream's receiver saw, with the creations and cancellations in between (the stream
/// is drained before each, so a message logged after one was queued after it).
enum Logged {
    Created {
        id: i64,
        min_rev: i64,
        spec: WatchSpec,
    },
    Canceled(i64),
    Message(WatchMessage),
}

/// One watcher checked against the final history.
struct Tracked {
    expected: Vec<Event>,
    received: Vec<Event>,
    canceled: bool,
    compacted: Option<i64>,
}

impl Tracked {
    fn new(history: &[Event], spec: &WatchSpec, min_rev: i64) -> Self {
        let range = super::range::KeyRange::new(spec.key.clone(), spec.range_end.clone())
            .expect("valid range");
        let expected = history
            .iter()
            .filter(|e| e.revision() >= min_rev && range.contains(&e.kv.key))
            .filter(|e| match e.kind {
                EventKind::Put => !spec.filter_put,
                EventKind::Delete => !spec.filter_delete,
            })
            .map(|e| Event {
                prev_kv: None,
                ..e.clone()
            })
            .collect();
        Self {
            expected,
            received: Vec::new(),
            canceled: false,
            compacted: None,
        }
    }

    fn alive(&self) -> bool {
        !self.canceled && self.compacted.is_none()
    }

    /// A progress at `revision`: every matching event up to it has been received.
    fn check_progress(&self, revision: i64, context: &str) {
        let upto: Vec<&Event> = self
            .expected
            .iter()
            .filter(|e| e.revision() <= revision)
            .collect();
        let received: Vec<&Event> = self.received.iter().collect();
        assert_eq!(received, upto, "{context}: progress at {revision}");
    }
}

#[tokio::test]
async fn randomized_restores_with_many_streams_and_watchers() {
    const KEYS: [&str; 6] = ["/a/1", "/a/2", "/b/1", "/b/2", "c", "d/x"];
    const RANGES: [(&str, &str); 6] = [
        ("/a/1", ""),
        ("/a/", "/a0"),
        ("/b/", "\0"),
        ("/a/2", "/b/2"),
        ("\0", "\0"),
        ("c", ""),
    ];
    let (mut restores, mut compactions, mut store_reads) = (0, 0, 0);
    for seed in 1..=30_u64 {
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let h = Harness::new(WatchOptions {
            stream_buffer: 1 + next(4) as usize,
            ring_revisions: next(8) as usize,
            source_batch_events: 1 + next(5) as usize,
            max_events_per_message: 1 + next(3) as usize,
            sync_budget_events: 1 + next(6) as usize,
            ..options()
        });
        let mut streams: Vec<_> = (0..3)
            .map(|_| {
                let (stream, rx) = h.hub.open_stream();
                (stream, rx, Vec::<Logged>::new())
            })
            .collect();
        let random_ops = |next: &mut dyn FnMut(u64) -> u64| -> Vec<Op> {
            (0..=next(2))
                .map(|_| {
                    let key = KEYS[next(KEYS.len() as u64) as usize];
                    if next(4) == 0 {
                        Op::Delete(key)
                    } else {
                        Op::Put(key, "v")
                    }
                })
                .collect()
        };

        for step in 0..300 {
            let s = next(streams.len() as u64) as usize;
            let (stream, rx, log) = &mut streams[s];
            // Start with a few watchers on every stream.
            let op = if step < 6 { 3 } else { next(14) };
            match op {
                0..=2 => {
                    let ops = random_ops(&mut next);
                    h.txn(&ops);
                }
                3 => {
                    log.extend(drain(rx).into_iter().map(Logged::Message));
                    let (key, range_end) = RANGES[next(RANGES.len() as u64) as usize];
                    let last = h.hub.last_published();
                    let start = match next(4) {
                        0 => 0,
                        1 => 1 + next(last as u64) as i64,
                        2 => last + 1 + next(3) as i64,
                        _ => (last - next(5) as i64).max(1),
                    };
                    let spec = WatchSpec {
                        filter_put: next(6) == 0,
                        filter_delete: next(4) == 0,
                        progress_notify: next(2) == 0,
                        ..from(spec(key, range_end), start)
                    };
                    let (id, header) = stream.create_at(None, spec.clone()).expect("create");
                    let min_rev = if start <= 0 || start > header {
                        (header + 1).max(start)
                    } else {
                        start
                    };
                    log.push(Logged::Created { id, min_rev, spec });
                }
                4 => {
                    log.extend(drain(rx).into_iter().map(Logged::Message));
                    let ids = stream.watch_ids();
                    if !ids.is_empty() {
                        let id = ids[next(ids.len() as u64) as usize];
                        assert!(stream.cancel(id));
                        log.push(Logged::Canceled(id));
                    }
                }
                5 => log.extend(drain(rx).into_iter().map(Logged::Message)),
                6 => log.extend(rx.try_recv().ok().map(Logged::Message)),
                7 | 8 => {
                    h.hub.sync_pass().await;
                }
                9 => stream.request_progress(),
                10 => h.hub.send_progress_notifications(),
                11 => {
                    // The follower falls behind and installs the leader's snapshot.
                    let leader = h.store.fork();
                    for _ in 0..next(25) {
                        leader.apply(&random_ops(&mut next));
                    }
                    if next(3) == 0 {
                        let (low, high) = (leader.compact_revision(), leader.current_revision());
                        leader.compact(low + next((high - low + 1) as u64) as i64);
                    }
                    h.store.install(&leader);
                    h.hub.restored();
                    assert_eq!(h.hub.last_published(), h.store.current_revision());
                    restores += 1;
                }
                12 => {
                    let (low, high) = (h.store.compact_revision(), h.hub.last_published());
                    if next(3) == 0 {
                        h.store.compact(low + next((high - low + 1) as u64) as i64);
                    }
                }
                _ => {
                    for (_, rx, log) in &mut streams {
                        log.extend(drain(rx).into_iter().map(Logged::Message));
                    }
                }
            }
        }
        // Settle, then one more write: everyone still watching gets it, one way or the other.
        for round in 0..2 {
            if round == 1 {
                h.txn(&[
                    Op::Put("/a/1", "v"),
                    Op::Put("/b/1", "v"),
                    Op::Put("c", "v"),
                ]);
            }
            for _ in 0..5000 {
                for (_, rx, log) in &mut streams {
                    log.extend(drain(rx).into_iter().map(Logged::Message));
                }
                h.hub.sync_pass().await;
                if h.hub.unsynced_count() == 0 {
                    break;
                }
            }
            for (_, rx, log) in &mut streams {
                log.extend(drain(rx).into_iter().map(Logged::Message));
            }
            assert_eq!(h.hub.unsynced_count(), 0, "seed {seed}");
        }
        store_reads += h.store.reads();

        let history = h.store.history();
        for (s, (_, _, log)) in streams.iter().enumerate() {
            let mut watchers: BTreeMap<i64, Tracked> = BTreeMap::new();
            for entry in log {
                match entry {
                    Logged::Created { id, min_rev, spec } => {
                        let tracked = Tracked::new(&history, spec, *min_rev);
                        assert!(watchers.insert(*id, tracked).is_none(), "seed {seed}");
                    }
                    Logged::Canceled(id) => {
                        let w = watchers.get_mut(id).expect("known watcher");
                        assert!(w.alive(), "seed {seed} stream {s} watcher {id}");
                        w.canceled = true;
                    }
                    Logged::Message(WatchMessage::Events {
                        watch_id,
                        revision,
                        events,
                    }) => {
                        let w = watchers.get_mut(watch_id).expect("known watcher");
                        assert!(w.alive(), "seed {seed} stream {s} watcher {watch_id}");
                        assert!(!events.is_empty());
                        assert!(events.iter().all(|e| e.revision() <= *revision));
                        w.received.extend(events.iter().cloned());
                    }
                    Logged::Message(WatchMessage::Compacted {
                        watch_id,
                        compact_revision,
                    }) => {
                        let w = watchers.get_mut(watch_id).expect("known watcher");
                        assert!(w.alive(), "seed {seed} stream {s} watcher {watch_id}");
                        assert!(*compact_revision > 0);
                        w.compacted = Some(*compact_revision);
                        compactions += 1;
                    }
                    Logged::Message(WatchMessage::Progress {
                        watch_id: -1,
                        revision,
                    }) => {
                        for (id, w) in watchers.iter().filter(|(_, w)| w.alive()) {
                            w.check_progress(*revision, &format!("seed {seed} s{s} w{id}"));
                        }
                    }
                    Logged::Message(WatchMessage::Progress { watch_id, revision }) => {
                        let w = &watchers[watch_id];
                        assert!(w.alive(), "seed {seed} stream {s} watcher {watch_id}");
                        w.check_progress(*revision, &format!("seed {seed} s{s} w{watch_id}"));
                    }
                }
            }
            for (id, w) in &watchers {
                let context = format!("seed {seed} stream {s} watcher {id}");
                if let Some(compact) = w.compacted {
                    assert!(w.expected.starts_with(&w.received), "{context}");
                    assert!(
                        w.received.iter().all(|e| e.revision() < compact),
                        "{context}"
                    );
                } else if w.canceled {
                    assert!(w.expected.starts_with(&w.received), "{context}");
                } else {
                    assert_eq!(w.received, w.expected, "{context}");
                }
            }
        }
    }
    assert!(restores > 100, "{restores} restores");
    assert!(
        compactions > 0,
        "some watchers must fall behind a compaction"
    );
    assert!(store_reads > 0, "some catch-up must read the store");
}
