//! `watch` and `watch-latency`: watchers on `--streams` streams, then puts to the watched
//! keys; reports the puts and the delivery of their events.
//!
//! ```text
//!  putters (runner) ── Put(key i mod K, value = send time) ──► server
//!                                                               │ events
//!  stream 0: watchers 0..w ◄────────────────────────────────────┤
//!  stream 1: watchers w..2w ◄───────────────────────────────────┘
//!     └─ receiver task: delivery latency = arrival − send time in the value
//! ```
//!
//! Every successful put adds the number of watchers of its key to the expected deliveries;
//! after the last put the receivers get `--drain-timeout` to see them all, and deliveries that
//! never came are reported as `delivery` errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use cairn_kvapi::pb::etcdserverpb::watch_client::WatchClient;
use cairn_kvapi::pb::etcdserverpb::watch_request::RequestUnion;
use cairn_kvapi::pb::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::loadgen::cli::WatchArgs;
use crate::loadgen::connect;
use crate::loadgen::keys;
use crate::loadgen::report::Report;
use crate::loadgen::runner::{CallFuture, Client};
use crate::loadgen::stats::Recorder;

const PREFIX: &[u8] = b"watch/";
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The send time of a put, as nanoseconds since `base`, in the first 8 bytes of its value.
fn stamped_value(base: Instant, size: usize) -> Bytes {
    let nanos = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut value = BytesMut::with_capacity(size.max(8));
    value.put_u64(nanos);
    value.put_bytes(b'v', size.saturating_sub(8));
    value.freeze()
}

/// The time since the send time stamped in `value`, if it holds one.
fn delivery_latency(base: Instant, value: &[u8]) -> Option<Duration> {
    let stamp: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let sent = Duration::from_nanos(u64::from_be_bytes(stamp));
    Some(base.elapsed().saturating_sub(sent))
}

struct PutClient {
    kv: KvClient<Channel>,
    keys: Arc<[Bytes]>,
    /// Watchers of each key.
    fanout: Arc<[u64]>,
    expected: Arc<AtomicU64>,
    base: Instant,
    value_size: usize,
}

impl Client for PutClient {
    fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>) {
        let index = (seq % self.keys.len() as u64) as usize;
        let request = PutRequest {
            key: self.keys[index].clone(),
            value: stamped_value(self.base, self.value_size),
            ..PutRequest::default()
        };
        let fanout = self.fanout[index];
        (
            "put",
            Box::pin(async move {
                self.kv.put(request).await?;
                self.expected.fetch_add(fanout, Ordering::Relaxed);
                Ok(())
            }),
        )
    }
}

/// One open watch stream: the request sender must live as long as the stream should.
struct OpenStream {
    _requests: mpsc::Sender<WatchRequest>,
    receiver: JoinHandle<Recorder>,
}

/// Opens a stream on `channel` with a watcher on each of `watched`, waits until all are
/// created, then hands the stream to a receiver task.
async fn open_stream(
    channel: Channel,
    watched: Vec<Bytes>,
    prev_kv: bool,
    base: Instant,
    received: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<OpenStream> {
    // The create requests are queued before the call starts: a grpc-go server (etcd) sends
    // the response headers, which `watch()` waits for, only with its first message.
    let (requests, rx) = mpsc::channel(watched.len().max(1));
    let wanted = watched.len();
    for key in watched {
        let create = WatchCreateRequest {
            key,
            prev_kv,
            ..WatchCreateRequest::default()
        };
        requests
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .context("the watch stream closed")?;
    }
    let responses = tokio::time::timeout(CREATE_TIMEOUT, async {
        let mut responses = WatchClient::new(channel)
            .watch(ReceiverStream::new(rx))
            .await
            .context("opening a watch stream failed")?
            .into_inner();
        let mut created = 0;
        while created < wanted {
            let Some(response) = responses.message().await? else {
                bail!("the watch stream ended while creating watchers");
            };
            if response.canceled {
                bail!("watch creation refused: {}", response.cancel_reason);
            }
            if response.created {
                created += 1;
            }
        }
        Ok(responses)
    })
    .await
    .context("creating watchers timed out")??;
    let receiver = tokio::spawn(receive(responses, base, received, stop));
    Ok(OpenStream {
        _requests: requests,
        receiver,
    })
}

/// Records the delivery latency of every event until `stop` or the end of the stream.
async fn receive(
    mut responses: Streaming<WatchResponse>,
    base: Instant,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Recorder {
    let mut recorder = Recorder::new();
    recorder.declare("delivery");
    loop {
        let message = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            message = responses.message() => message,
        };
        match message {
            Ok(Some(response)) => {
                if response.canceled {
                    recorder.record_error(
                        "delivery",
                        &format!("watch canceled: {}", response.cancel_reason),
                    );
                }
                for event in &response.events {
                    let latency = event
                        .kv
                        .as_ref()
                        .and_then(|kv| delivery_latency(base, &kv.value));
                    match latency {
                        Some(latency) => recorder.record_ok("delivery", latency),
                        None => recorder.record_error("delivery", "event without a send time"),
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) => break,
            Err(status) => {
                recorder.record_error("delivery", &crate::loadgen::runner::status_message(&status));
                break;
            }
        }
    }
    recorder
}

pub async fn run(args: &WatchArgs, single_key: bool) -> anyhow::Result<Report> {
    let common = &args.common;
    let workload = if single_key { "watch-latency" } else { "watch" };
    let channels = connect::connect(&common.endpoints, common.conns).await?;
    let key_count = if single_key {
        1
    } else {
        args.watched_keys.max(1)
    };
    let keys: Arc<[Bytes]> = (0..key_count as u64)
        .map(|i| keys::key_at(PREFIX, 8, i))
        .collect();
    let mut fanout = vec![0u64; key_count];

    let base = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut streams = Vec::with_capacity(args.streams);
    for s in 0..args.streams.max(1) {
        let watched: Vec<Bytes> = (0..args.watchers_per_stream)
            .map(|j| {
                let k = (s * args.watchers_per_stream + j) % key_count;
                fanout[k] += 1;
                keys[k].clone()
            })
            .collect();
        let channel = channels[s % channels.len()].clone();
        streams.push(
            open_stream(
                channel,
                watched,
                args.prev_kv,
                base,
                Arc::clone(&received),
                stop_rx.clone(),
            )
            .await?,
        );
    }

    let fanout: Arc<[u64]> = fanout.into();
    let expected = Arc::new(AtomicU64::new(0));
    let clients = super::clients(common, &channels, |_, channel| {
        Box::new(PutClient {
            kv: KvClient::new(channel),
            keys: Arc::clone(&keys),
            fanout: Arc::clone(&fanout),
            expected: Arc::clone(&expected),
            base,
            value_size: args.value_size.max(8),
        })
    });
    let started = Instant::now();
    let (mut report, _) = super::run_clients(workload, common, clients).await?;

    let drain_deadline = Instant::now() + args.drain_timeout;
    while received.load(Ordering::Relaxed) < expected.load(Ordering::Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivery_elapsed = started.elapsed();
    stop_tx.send_replace(true);
    let mut deliveries = Recorder::new();
    for stream in streams {
        deliveries.merge(&stream.receiver.await.context("a watch receiver panicked")?);
    }
    let missing = expected
        .load(Ordering::Relaxed)
        .saturating_sub(received.load(Ordering::Relaxed));
    deliveries.record_errors("delivery", "event expected but not received", missing);
    report.ops.extend(deliveries.report(delivery_elapsed));
    report.elapsed_secs = delivery_elapsed.as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamped_values_carry_their_send_time() {
        let base = Instant::now();
        let value = stamped_value(base, 32);
        assert_eq!(value.len(), 32);
        let latency = delivery_latency(base, &value).expect("stamped");
        assert!(latency < Duration::from_secs(1));
        assert_eq!(delivery_latency(base, b"short"), None);
    }
}
