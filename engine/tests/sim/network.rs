//! A simulated peer network: routes the engine's encoded peer messages to the registered
//! [`PeerService`] of the member a peer URL names, and applies faults on the way.
//!
//! ```text
//!  node A ─► SimTransport(from = A's URL) ─► SimNet: down? blocked? drop? delay? ─► PeerService(B)
//!                                            ◄── answer leg: blocked (B→A)? drop? delay? ◄──┘
//! ```
//!
//! - A member that is not registered (down) is `Unreachable`; so is a blocked link (partitions are
//!   directional: blocking A→B loses A's requests to B and B's answers to A).
//! - A random drop is `Failed`: half of them lose the request, half deliver it (the receiver
//!   does the work in its own task) and lose the answer.
//! - A random delay on each leg reorders concurrent messages.
//! - Append streams get the same faults per message; a dropped request or answer ends the answer
//!   stream with an error, as a broken connection would.
//! - Every delivery re-checks the link after the delay: a message in flight when a partition
//!   starts or its receiver restarts is lost.
//!
//! Every random decision comes from one `StdRng` seeded by the test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use cairn_engine::node::{PeerError, PeerService};
use cairn_engine::raft::transport::{
    AnswerStream, ByteStream, Envelope, PeerRpc, PeerTarget, PeerTransport, SNAPSHOT_CHUNK_BYTES,
    TransportError,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random faults applied to every message on every link.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that one message (or one answer) is lost.
    pub drop: f64,
    /// Each leg of a message is delayed by a uniform duration in this range.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Faults {
    pub const NONE: Faults = Faults {
        drop: 0.0,
        min_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };
}

/// What happened on the network, for the test's own checks and for failure messages.
#[derive(Default)]
pub struct NetStats {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub unreachable: AtomicU64,
    /// Messages refused as unreachable, per target peer URL (as addressed).
    unreachable_to: Mutex<BTreeMap<String, u64>>,
    /// Snapshots streamed to their receiver and handed to its raft, per receiving peer URL.
    snapshots: Mutex<BTreeMap<String, u64>>,
}

impl NetStats {
    pub fn snapshots_received(&self, url: &str) -> u64 {
        lock(&self.snapshots).get(url).copied().unwrap_or(0)
    }

    /// Messages to `url` refused because its member was down or the link blocked.
    pub fn unreachable_to(&self, url: &str) -> u64 {
        lock(&self.unreachable_to).get(url).copied().unwrap_or(0)
    }

    fn count_unreachable(&self, target: &PeerTarget) {
        self.unreachable.fetch_add(1, Ordering::Relaxed);
        let mut per_url = lock(&self.unreachable_to);
        for url in &target.peer_urls {
            *per_url.entry(url.clone()).or_default() += 1;
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "delivered {}, dropped {}, unreachable {}, snapshots {:?}",
            self.delivered.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.unreachable.load(Ordering::Relaxed),
            lock(&self.snapshots),
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One registered member: its receiving side and the registration it belongs to (a restarted
/// member gets a new generation, so messages addressed to the old one are lost).
#[derive(Clone)]
struct Route {
    service: PeerService,
    generation: u64,
}

#[derive(Default)]
struct NetState {
    routes: HashMap<String, Route>,
    /// Blocked directional links, `(from URL, to URL)`.
    blocked: HashSet<(String, String)>,
    faults: Faults,
    next_generation: u64,
}

/// The fate of one message leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Deliver,
    /// Lost before the receiver saw it.
    DropRequest,
    /// Delivered and served, the answer lost.
    DropAnswer,
}

/// The simulated network shared by the members of one cluster.
pub struct SimNet {
    state: Mutex<NetState>,
    rng: Mutex<StdRng>,
    pub stats: NetStats,
}

impl SimNet {
    pub fn new(seed: u64) -> Arc<SimNet> {
        Arc::new(SimNet {
            state: Mutex::new(NetState::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: NetStats::default(),
        })
    }

    /// The transport a member whose peer URL is `own_url` sends through.
    pub fn transport(self: &Arc<Self>, own_url: &str) -> Arc<dyn PeerTransport> {
        Arc::new(SimTransport {
            net: Arc::clone(self),
            from: own_url.to_string(),
        })
    }

    /// Makes the member at `url` reachable (it is up).
    pub fn register(&self, url: &str, service: PeerService) {
        let mut state = lock(&self.state);
        state.next_generation += 1;
        let generation = state.next_generation;
        state.routes.insert(
            url.to_string(),
            Route {
                service,
                generation,
            },
        );
    }

    /// Makes the member at `url` unreachable (it is down); drops the network's handle on it.
    pub fn deregister(&self, url: &str) {
        lock(&self.state).routes.remove(url);
    }

    /// Blocks the directional link `from` → `to`.
    pub fn block(&self, from: &str, to: &str) {
        lock(&self.state)
            .blocked
            .insert((from.to_string(), to.to_string()));
    }

    /// Opens the directional link `from` → `to`.
    pub fn unblock(&self, from: &str, to: &str) {
        lock(&self.state)
            .blocked
            .remove(&(from.to_string(), to.to_string()));
    }

    /// Blocks every link between `a` and `b`, both ways.
    pub fn cut(&self, a: &str, b: &str) {
        self.block(a, b);
        self.block(b, a);
    }

    /// Cuts every link between the two sides.
    pub fn partition(&self, side_a: &[String], side_b: &[String]) {
        for a in side_a {
            for b in side_b {
                self.cut(a, b);
            }
        }
    }

    /// Opens every blocked link.
    pub fn heal_links(&self) {
        lock(&self.state).blocked.clear();
    }

    /// Opens every link and stops random faults.
    pub fn heal(&self) {
        let mut state = lock(&self.state);
        state.blocked.clear();
        state.faults = Faults::NONE;
    }

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.state).faults = faults;
    }

    fn random_bool(&self, p: f64) -> bool {
        p > 0.0 && lock(&self.rng).random_bool(p.min(1.0))
    }

    /// A uniform delay from the current fault settings.
    fn delay(&self) -> Duration {
        let faults = lock(&self.state).faults;
        if faults.max_delay <= faults.min_delay {
            return faults.min_delay;
        }
        let min = faults.min_delay.as_micros() as u64;
        let max = faults.max_delay.as_micros() as u64;
        Duration::from_micros(lock(&self.rng).random_range(min..=max))
    }

    /// Whether one message is lost, from the current fault settings.
    fn dropped(&self) -> bool {
        let drop = lock(&self.state).faults.drop;
        let dropped = self.random_bool(drop);
        if dropped {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        dropped
    }

    /// The fate of a unary message: dropped before or after delivery, or delivered.
    fn fate(&self) -> Fate {
        if !self.dropped() {
            Fate::Deliver
        } else if self.random_bool(0.5) {
            Fate::DropRequest
        } else {
            Fate::DropAnswer
        }
    }

    /// The route for a message `from` → any of `to_urls`, if the member is up and the link open.
    fn route(&self, from: &str, target: &PeerTarget) -> Result<(String, Route), TransportError> {
        let state = lock(&self.state);
        let found = target.peer_urls.iter().find_map(|url| {
            state
                .routes
                .get(url)
                .map(|route| (url.clone(), route.clone()))
        });
        let Some((url, route)) = found else {
            self.stats.count_unreachable(target);
            return Err(TransportError::Unreachable {
                member: target.member_id,
                reason: format!("no member is up at {:?}", target.peer_urls),
            });
        };
        if state.blocked.contains(&(from.to_string(), url.clone())) {
            self.stats.count_unreachable(target);
            return Err(TransportError::Unreachable {
                member: target.member_id,
                reason: format!("link {from} -> {url} is partitioned"),
            });
        }
        Ok((url, route))
    }

    /// Whether the link `from` → `to` is open and `to` is still the registration `generation`.
    fn link_up(&self, from: &str, to: &str, generation: u64) -> bool {
        let state = lock(&self.state);
        state
            .routes
            .get(to)
            .is_some_and(|route| route.generation == generation)
            && !state.blocked.contains(&(from.to_string(), to.to_string()))
    }

    /// Whether the answer leg `to` → `from` is open (the sender's own registration does not
    /// matter: it is waiting for the answer in this process).
    fn answer_link_up(&self, from: &str, to: &str, generation: u64) -> bool {
        let state = lock(&self.state);
        state
            .routes
            .get(to)
            .is_some_and(|route| route.generation == generation)
            && !state.blocked.contains(&(to.to_string(), from.to_string()))
    }

    fn count_snapshot(&self, url: &str) {
        *lock(&self.stats.snapshots)
            .entry(url.to_string())
            .or_default() += 1;
    }
}

fn lost(member: u64, what: &str) -> TransportError {
    TransportError::Failed {
        member,
        reason: format!("simulated network lost the {what}"),
    }
}

fn peer_failure(member: u64, err: PeerError) -> TransportError {
    match err {
        PeerError::Mismatch(reason) | PeerError::BadMessage(reason) => {
            TransportError::Rejected { member, reason }
        }
        other => TransportError::Failed {
            member,
            reason: other.to_string(),
        },
    }
}

/// One member's sending side.
struct SimTransport {
    net: Arc<SimNet>,
    from: String,
}

impl PeerTransport for SimTransport {
    fn unary(
        &self,
        target: &PeerTarget,
        rpc: PeerRpc,
        envelope: Envelope,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let net = Arc::clone(&self.net);
        let from = self.from.clone();
        let target = target.clone();
        let member = target.member_id;
        let call = async move {
            let (to, route) = net.route(&from, &target)?;
            let fate = net.fate();
            tokio::time::sleep(net.delay()).await;
            if fate == Fate::DropRequest || !net.link_up(&from, &to, route.generation) {
                return Err(lost(member, "request"));
            }
            net.stats.delivered.fetch_add(1, Ordering::Relaxed);
            // The receiver serves the message on its own, whatever happens to the sender.
            let service = route.service.clone();
            let served = tokio::spawn(async move { service.unary(rpc, envelope, &payload).await });
            let answer = served
                .await
                .map_err(|e| lost(member, &format!("answer (receiver task: {e})")))?
                .map_err(|e| peer_failure(member, e))?;
            tokio::time::sleep(net.delay()).await;
            if fate == Fate::DropAnswer || !net.answer_link_up(&from, &to, route.generation) {
                return Err(lost(member, "answer"));
            }
            Ok(answer)
        };
        async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer,
                Err(_) => Err(TransportError::Timeout { member, timeout }),
            }
        }
        .boxed()
    }

    fn append_stream(
        &self,
        target: &PeerTarget,
        envelope: Envelope,
        requests: ByteStream,
    ) -> BoxFuture<'static, Result<AnswerStream, TransportError>> {
        let net = Arc::clone(&self.net);
        let from = self.from.clone();
        let target = target.clone();
        let member = target.member_id;
        async move {
            let (to, route) = net.route(&from, &target)?;
            if net.dropped() {
                return Err(lost(member, "stream"));
            }
            let generation = route.generation;
            // Set when a request is lost: the answer stream ends with an error after the
            // answers to the requests before it.
            let broken = Arc::new(Mutex::new(None::<TransportError>));
            let requests = {
                let net = Arc::clone(&net);
                let from = from.clone();
                let to = to.clone();
                let broken = Arc::clone(&broken);
                requests
                    .then(move |bytes| {
                        let net = Arc::clone(&net);
                        let from = from.clone();
                        let to = to.clone();
                        let broken = Arc::clone(&broken);
                        async move {
                            let drop = net.dropped();
                            tokio::time::sleep(net.delay()).await;
                            if drop || !net.link_up(&from, &to, generation) {
                                *lock(&broken) = Some(lost(member, "append request"));
                                return None;
                            }
                            net.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            Some(bytes)
                        }
                    })
                    .take_while(|bytes| futures::future::ready(bytes.is_some()))
                    .filter_map(futures::future::ready)
                    .boxed()
            };
            let answers = route
                .service
                .append_stream(envelope, requests)
                .map_err(|e| peer_failure(member, e))?;
            let answers = futures::stream::unfold(Some(answers), move |answers| {
                let net = Arc::clone(&net);
                let from = from.clone();
                let to = to.clone();
                let broken = Arc::clone(&broken);
                async move {
                    let mut answers = answers?;
                    match answers.next().await {
                        Some(Ok(bytes)) => {
                            let drop = net.dropped();
                            tokio::time::sleep(net.delay()).await;
                            if drop || !net.answer_link_up(&from, &to, generation) {
                                return Some((Err(lost(member, "append answer")), None));
                            }
                            Some((Ok(bytes), Some(answers)))
                        }
                        Some(Err(err)) => Some((Err(peer_failure(member, err)), None)),
                        None => lock(&broken).take().map(|err| (Err(err), None)),
                    }
                }
            });
            Ok(answers.boxed())
        }
        .boxed()
    }

    fn snapshot(
        &self,
        target: &PeerTarget,
        envelope: Envelope,
        meta: Bytes,
        data: File,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let net = Arc::clone(&self.net);
        let from = self.from.clone();
        let target = target.clone();
        let member = target.member_id;
        let call = async move {
            let (to, route) = net.route(&from, &target)?;
            let generation = route.generation;
            tokio::time::sleep(net.delay()).await;
            if net.dropped() || !net.link_up(&from, &to, generation) {
                return Err(lost(member, "snapshot meta"));
            }
            let mut receiver = route
                .service
                .receive_snapshot(envelope, &meta)
                .await
                .map_err(|e| peer_failure(member, e))?;
            let mut data = Some(data);
            loop {
                let Some(mut file) = data.take() else { break };
                let (file, chunk) = tokio::task::spawn_blocking(move || {
                    let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
                    (&mut file)
                        .take(SNAPSHOT_CHUNK_BYTES as u64)
                        .read_to_end(&mut chunk)
                        .map(|_| (file, chunk))
                })
                .await
                .map_err(|e| lost(member, &format!("snapshot chunk (reader: {e})")))?
                .map_err(|e| lost(member, &format!("snapshot chunk (read: {e})")))?;
                if chunk.is_empty() {
                    break;
                }
                tokio::time::sleep(net.delay()).await;
                if net.dropped() || !net.link_up(&from, &to, generation) {
                    return Err(lost(member, "snapshot chunk"));
                }
                receiver
                    .write(&chunk)
                    .await
                    .map_err(|e| peer_failure(member, e))?;
                data = Some(file);
            }
            let answer = receiver
                .finish()
                .await
                .map_err(|e| peer_failure(member, e))?;
            net.count_snapshot(&to);
            tokio::time::sleep(net.delay()).await;
            if net.dropped() || !net.answer_link_up(&from, &to, generation) {
                return Err(lost(member, "snapshot answer"));
            }
            Ok(answer)
        };
        async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer,
                Err(_) => Err(TransportError::Timeout { member, timeout }),
            }
        }
        .boxed()
    }
}
