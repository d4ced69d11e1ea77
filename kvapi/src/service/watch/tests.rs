//! The watch session against the engine's real `WatchHub`, with a fake store behind it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cairn_engine::watch::{EventSource, WatchHub, WatchOptions, spawn_background};
use cairn_engine::{Event, EventKind, KeyValue, KvError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

struct Source {
    current: AtomicI64,
    compact: AtomicI64,
}

impl EventSource for Source {
    fn current_revision(&self) -> i64 {
        self.current.load(Ordering::SeqCst)
    }

    fn compact_revision(&self) -> i64 {
        self.compact.load(Ordering::SeqCst)
    }

    fn events(&self, from: i64, _to: i64, _limit: usize) -> Result<Vec<Event>, KvError> {
        let compact_revision = self.compact_revision();
        if from <= compact_revision {
            return Err(KvError::Compacted { compact_revision });
        }
        Ok(Vec::new())
    }
}

type Requests = mpsc::Sender<Result<pb::WatchRequest, Status>>;
type Responses = mpsc::Receiver<Result<pb::WatchResponse, Status>>;

struct Harness {
    hub: Arc<WatchHub>,
    requests: Option<Requests>,
    responses: Responses,
    stop: Option<oneshot::Sender<()>>,
    session: JoinHandle<()>,
    background: JoinHandle<()>,
}

const HEADER: pb::ResponseHeader = pb::ResponseHeader {
    cluster_id: 1,
    member_id: 2,
    revision: 99,
    raft_term: 3,
};

fn start(current: i64, compact: i64, fragment_limit: usize) -> Harness {
    let source = Arc::new(Source {
        current: AtomicI64::new(current),
        compact: AtomicI64::new(compact),
    });
    let hub = WatchHub::new(source, WatchOptions::default());
    let background = spawn_background(hub.clone(), Duration::ZERO);
    let (stream, messages) = hub.open_stream();
    let (output, responses) = mpsc::channel(OUTPUT_BUFFER);
    let session = Session::new(Arc::new(|| HEADER), stream, output, fragment_limit);
    let (requests, rx) = mpsc::channel(16);
    let (stop, stopped) = oneshot::channel::<()>();
    let stopping = async move {
        let _ = stopped.await;
    };
    let session = tokio::spawn(session.run(
        ReceiverStream::new(rx),
        messages,
        std::future::pending(),
        stopping,
    ));
    Harness {
        hub,
        requests: Some(requests),
        responses,
        stop: Some(stop),
        session,
        background,
    }
}

impl Harness {
    async fn send(&self, request: pb::watch_request::RequestUnion) {
        self.requests
            .as_ref()
            .expect("requests open")
            .send(Ok(pb::WatchRequest {
                request_union: Some(request),
            }))
            .await
            .expect("session alive");
    }

    async fn create(&self, create: pb::WatchCreateRequest) {
        self.send(pb::watch_request::RequestUnion::CreateRequest(create))
            .await;
    }

    async fn recv(&mut self) -> pb::WatchResponse {
        tokio::time::timeout(Duration::from_secs(5), self.responses.recv())
            .await
            .expect("a response in time")
            .expect("session alive")
            .expect("not an error")
    }

    /// Sends a progress request and returns the responses that arrive before its answer.
    async fn drain(&mut self) -> Vec<pb::WatchResponse> {
        self.send(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        ))
        .await;
        let mut before = Vec::new();
        loop {
            let response = self.recv().await;
            if response.watch_id == INVALID_WATCH_ID && !response.created {
                return before;
            }
            before.push(response);
        }
    }

    fn publish(&self, revision: i64, events: Vec<Event>) {
        self.hub.publish(revision, events.into());
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.session.abort();
        self.background.abort();
    }
}

fn put(key: &str, revision: i64, value_len: usize) -> Event {
    Event {
        kind: EventKind::Put,
        kv: KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            value: Bytes::from(vec![b'v'; value_len]),
            lease: 0,
        },
        prev_kv: None,
    }
}

fn delete(key: &str, revision: i64) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            mod_revision: revision,
            ..KeyValue::default()
        },
        prev_kv: None,
    }
}

fn watch_key(key: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..Default::default()
    }
}

fn watch_prefix(key: &str, end: &str) -> pb::WatchCreateRequest {
    pb::WatchCreateRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        range_end: Bytes::copy_from_slice(end.as_bytes()),
        ..Default::default()
    }
}

#[tokio::test]
async fn created_then_events() {
    let mut h = start(1, 0, 1 << 20);
    h.create(watch_key("a")).await;
    let created = h.recv().await;
    assert!(created.created && !created.canceled);
    assert_eq!(created.watch_id, 0);
    // The created header names the last revision handed to watchers (1 here), not the store's
    // newer revision (99): every event the watch gets is newer than it.
    assert_eq!(
        created.header,
        Some(pb::ResponseHeader {
            revision: 1,
            ..HEADER
        })
    );

    h.publish(2, vec![put("a", 2, 1), put("b", 2, 1)]);
    let events = h.recv().await;
    assert_eq!(events.watch_id, 0);
    assert_eq!(events.header.map(|h| h.revision), Some(2));
    assert_eq!(events.header.map(|h| h.member_id), Some(2));
    let keys: Vec<_> = events
        .events
        .iter()
        .map(|e| e.kv.as_ref().map(|kv| kv.key.clone()))
        .collect();
    assert_eq!(keys, vec![Some(Bytes::from_static(b"a"))]);
}

#[tokio::test]
async fn created_precedes_catch_up_events() {
    let mut h = start(1, 0, 1 << 20);
    h.publish(2, vec![put("a", 2, 1)]);
    h.publish(3, vec![put("a", 3, 1)]);
    h.create(pb::WatchCreateRequest {
        start_revision: 2,
        ..watch_key("a")
    })
    .await;
    let created = h.recv().await;
    assert!(created.created);
    let mut revisions = Vec::new();
    while revisions.len() < 2 {
        let response = h.recv().await;
        assert!(!response.created);
        revisions.extend(
            response
                .events
                .iter()
                .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)),
        );
    }
    assert_eq!(revisions, vec![2, 3]);
}

#[tokio::test]
async fn duplicate_ids_and_empty_ranges_are_refused_like_etcd() {
    let mut h = start(1, 0, 1 << 20);
    h.create(pb::WatchCreateRequest {
        watch_id: 5,
        ..watch_key("a")
    })
    .await;
    assert_eq!(h.recv().await.watch_id, 5);

    h.create(pb::WatchCreateRequest {
        watch_id: 5,
        ..watch_key("b")
    })
    .await;
    let refused = h.recv().await;
    assert!(refused.created && refused.canceled);
    assert_eq!(refused.watch_id, -1);
    assert_eq!(
        refused.cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    h.create(watch_prefix("b", "a")).await;
    let refused = h.recv().await;
    assert!(refused.created && refused.canceled);
    assert_eq!(refused.cancel_reason, "mvcc: watcher range is empty");

    // Server-assigned ids still count from 0.
    h.create(watch_key("c")).await;
    assert_eq!(h.recv().await.watch_id, 0);
}

#[tokio::test]
async fn cancel_answers_only_for_existing_watchers() {
    let mut h = start(1, 0, 1 << 20);
    h.create(watch_key("a")).await;
    let id = h.recv().await.watch_id;
    h.send(pb::watch_request::RequestUnion::CancelRequest(
        pb::WatchCancelRequest { watch_id: id },
    ))
    .await;
    let canceled = h.recv().await;
    assert!(canceled.canceled && !canceled.created);
    assert_eq!(canceled.watch_id, id);

    h.send(pb::watch_request::RequestUnion::CancelRequest(
        pb::WatchCancelRequest { watch_id: 77 },
    ))
    .await;
    h.publish(2, vec![put("a", 2, 1)]);
    assert!(
        h.drain().await.is_empty(),
        "no answer to an unknown cancel, no events after cancel"
    );
}

#[tokio::test]
async fn progress_request_reports_the_last_revision() {
    let mut h = start(1, 0, 1 << 20);
    h.create(watch_key("a")).await;
    h.recv().await;
    h.publish(2, vec![put("z", 2, 1)]);
    h.send(pb::watch_request::RequestUnion::ProgressRequest(
        pb::WatchProgressRequest {},
    ))
    .await;
    let progress = h.recv().await;
    assert_eq!(progress.watch_id, -1);
    assert!(progress.events.is_empty() && !progress.created && !progress.canceled);
    assert_eq!(progress.header.map(|h| h.revision), Some(2));
}

#[tokio::test]
async fn filters_drop_event_types() {
    let mut h = start(1, 0, 1 << 20);
    h.create(pb::WatchCreateRequest {
        filters: vec![0],
        ..watch_prefix("a", "b")
    })
    .await;
    h.recv().await;
    h.publish(2, vec![put("a1", 2, 1)]);
    h.publish(3, vec![delete("a1", 3)]);
    let events = h.recv().await;
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].r#type, 1, "only the delete");
}

#[tokio::test]
async fn large_revisions_are_fragmented_for_watchers_that_ask() {
    let mut h = start(1, 0, 2000);
    h.create(pb::WatchCreateRequest {
        fragment: true,
        watch_id: 1,
        ..watch_prefix("k", "l")
    })
    .await;
    h.recv().await;
    h.create(pb::WatchCreateRequest {
        watch_id: 2,
        ..watch_prefix("k", "l")
    })
    .await;
    h.recv().await;
    let events: Vec<_> = (0..20).map(|i| put(&format!("k{i:02}"), 2, 200)).collect();
    h.publish(2, events);

    let responses = h.drain().await;
    let fragmented: Vec<_> = responses.iter().filter(|r| r.watch_id == 1).collect();
    let whole: Vec<_> = responses.iter().filter(|r| r.watch_id == 2).collect();
    assert!(fragmented.len() > 1);
    assert_eq!(fragmented.iter().map(|r| r.events.len()).sum::<usize>(), 20);
    assert!(
        fragmented[..fragmented.len() - 1]
            .iter()
            .all(|r| r.fragment)
    );
    assert!(!fragmented[fragmented.len() - 1].fragment);
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].events.len(), 20);
    assert!(!whole[0].fragment);
}

#[tokio::test]
async fn compacted_start_cancels_the_watch() {
    let mut h = start(10, 5, 1 << 20);
    h.create(pb::WatchCreateRequest {
        start_revision: 3,
        ..watch_key("a")
    })
    .await;
    let created = h.recv().await;
    assert!(created.created);
    let compacted = h.recv().await;
    assert!(compacted.canceled);
    assert_eq!(compacted.watch_id, created.watch_id);
    assert_eq!(compacted.compact_revision, 5);
}

#[tokio::test]
async fn events_keep_flowing_after_the_client_half_closes() {
    let mut h = start(1, 0, 1 << 20);
    h.create(watch_key("a")).await;
    h.recv().await;
    h.requests = None;
    tokio::task::yield_now().await;
    h.publish(2, vec![put("a", 2, 1)]);
    assert_eq!(h.recv().await.events.len(), 1);
}

#[tokio::test]
async fn shutdown_ends_the_call_with_server_stopped() {
    let mut h = start(1, 0, 1 << 20);
    h.create(watch_key("a")).await;
    h.recv().await;
    h.stop
        .take()
        .expect("not stopped yet")
        .send(())
        .expect("session alive");
    let err = tokio::time::timeout(Duration::from_secs(5), h.responses.recv())
        .await
        .expect("in time")
        .expect("an error status")
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "etcdserver: server stopped");
    assert!(h.responses.recv().await.is_none());
    assert_eq!(h.hub.watcher_count(), 0, "the stream's watchers are gone");
}
