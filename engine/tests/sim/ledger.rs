//! What the clients did and what they were told, and the checks against what the members hold.
//!
//! Every write is a put of a value no other write uses (`c<client>-<seq>`), so a value found in a
//! member's history names exactly one attempt. The checks:
//!
//! - per client: acknowledged revisions strictly increase; linearizable reads never go back;
//! - real time: an operation that starts after a write was acknowledged sees (or, for a write,
//!   exceeds) that write's revision;
//! - history (per member, one revision at a time): every revision after the first holds exactly
//!   one put; every put was attempted by a client, at most once; every acknowledged write is
//!   there at its revision; all members hold the same history;
//! - reads: a linearizable read returned the history's value of its key at its revision.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_engine::KvError;
use cairn_engine::node::Node;
use cairn_engine::request::RangeRequest;

/// One put a client attempted.
#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub client: usize,
    /// The member index the request was sent to.
    pub via: usize,
    pub key: String,
    pub value: String,
    pub start: Instant,
    pub end: Instant,
    /// The revision the write was acknowledged at, or the error answered.
    pub outcome: Result<i64, KvError>,
}

/// One read a client made.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    pub client: usize,
    pub via: usize,
    pub key: String,
    pub serializable: bool,
    pub start: Instant,
    pub end: Instant,
    /// The header revision and the key's (value, mod revision), or the error answered.
    pub outcome: Result<(i64, Option<(String, i64)>), KvError>,
}

/// One change in a member's history: (revision, key, value).
pub type Change = (i64, String, String);

#[derive(Default)]
pub struct Ledger {
    writes: Mutex<Vec<WriteRecord>>,
    reads: Mutex<Vec<ReadRecord>>,
}

/// How long a client waits for any answer before calling the request hung.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

fn hung() -> KvError {
    KvError::Internal(format!("no answer within {HANG_LIMIT:?}"))
}

impl Ledger {
    /// Puts `key = value` through `node` (member `via`) and records the outcome.
    pub async fn put(
        &self,
        node: &Node,
        client: usize,
        via: usize,
        key: &str,
        value: &str,
    ) -> WriteRecord {
        let start = Instant::now();
        let request = cairn_engine::request::PutRequest {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(value.to_string()),
            ..Default::default()
        };
        let outcome = match tokio::time::timeout(HANG_LIMIT, node.put(request)).await {
            Ok(Ok((_, header))) => Ok(header.revision),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(hung()),
        };
        let record = WriteRecord {
            client,
            via,
            key: key.to_string(),
            value: value.to_string(),
            start,
            end: Instant::now(),
            outcome,
        };
        self.record_write(record.clone());
        record
    }

    pub fn record_write(&self, record: WriteRecord) {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    pub fn record_read(&self, record: ReadRecord) {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }

    /// Reads `key` through `node` (member `via`) and records the outcome.
    pub async fn get(
        &self,
        node: &Node,
        client: usize,
        via: usize,
        key: &str,
        serializable: bool,
    ) -> ReadRecord {
        let start = Instant::now();
        let request = RangeRequest {
            key: Bytes::from(key.to_string()),
            serializable,
            ..Default::default()
        };
        let outcome = match tokio::time::timeout(HANG_LIMIT, node.range(request)).await {
            Ok(Ok((response, header))) => Ok((
                header.revision,
                response.kvs.first().map(|kv| {
                    (
                        String::from_utf8_lossy(&kv.value).into_owned(),
                        kv.mod_revision,
                    )
                }),
            )),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(hung()),
        };
        let record = ReadRecord {
            client,
            via,
            key: key.to_string(),
            serializable,
            start,
            end: Instant::now(),
            outcome,
        };
        self.record_read(record.clone());
        record
    }

    pub fn writes(&self) -> Vec<WriteRecord> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn reads(&self) -> Vec<ReadRecord> {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn acked(&self) -> Vec<WriteRecord> {
        self.writes()
            .into_iter()
            .filter(|w| w.outcome.is_ok())
            .collect()
    }

    pub fn max_acked_revision(&self) -> i64 {
        self.acked()
            .iter()
            .filter_map(|w| w.outcome.as_ref().ok().copied())
            .max()
            .unwrap_or(0)
    }

    /// A one-line account for progress and failure messages.
    pub fn summary(&self) -> String {
        let writes = self.writes();
        let reads = self.reads();
        let mut errors: BTreeMap<String, usize> = BTreeMap::new();
        for err in writes
            .iter()
            .filter_map(|w| w.outcome.as_ref().err())
            .chain(reads.iter().filter_map(|r| r.outcome.as_ref().err()))
        {
            *errors.entry(format!("{err:?}")).or_default() += 1;
        }
        format!(
            "{} writes ({} acknowledged), {} reads ({} answered), errors {errors:?}",
            writes.len(),
            writes.iter().filter(|w| w.outcome.is_ok()).count(),
            reads.len(),
            reads.iter().filter(|r| r.outcome.is_ok()).count(),
        )
    }

    /// No request took longer than `limit` to answer; panics naming the slowest.
    pub fn check_bounded(&self, write_limit: Duration, read_limit: Duration) {
        for w in self.writes() {
            let took = w.end - w.start;
            assert!(
                took <= write_limit,
                "write {}={} via member {} took {took:?} (> {write_limit:?}): {:?}",
                w.key,
                w.value,
                w.via,
                w.outcome
            );
        }
        for r in self.reads() {
            let took = r.end - r.start;
            assert!(
                took <= read_limit,
                "read of {} via member {} took {took:?} (> {read_limit:?}): {:?}",
                r.key,
                r.via,
                r.outcome
            );
        }
    }

    /// Per client, in the order it issued them: acknowledged write revisions strictly increase,
    /// and linearizable reads never see a revision below anything the client saw before.
    pub fn check_client_order(&self) {
        enum Seen {
            Write(i64, String),
            Read(i64, String),
        }
        let mut per_client: BTreeMap<usize, Vec<(Instant, Seen)>> = BTreeMap::new();
        for w in self.writes() {
            if let Ok(rev) = w.outcome {
                per_client
                    .entry(w.client)
                    .or_default()
                    .push((w.start, Seen::Write(rev, w.value)));
            }
        }
        for r in self.reads() {
            if let (Ok((rev, _)), false) = (&r.outcome, r.serializable) {
                per_client
                    .entry(r.client)
                    .or_default()
                    .push((r.start, Seen::Read(*rev, r.key)));
            }
        }
        for (client, mut ops) in per_client {
            ops.sort_by_key(|(start, _)| *start);
            let mut seen = 0i64;
            for (_, op) in ops {
                match op {
                    Seen::Write(rev, value) => {
                        assert!(
                            rev > seen,
                            "client {client}: write {value} acknowledged at revision {rev}, \
                             but the client had already seen revision {seen}"
                        );
                        seen = rev;
                    }
                    Seen::Read(rev, key) => {
                        assert!(
                            rev >= seen,
                            "client {client}: linearizable read of {key} at revision {rev}, \
                             but the client had already seen revision {seen}"
                        );
                        seen = rev;
                    }
                }
            }
        }
    }

    /// Across clients, in real time: whatever starts after a write was acknowledged is ordered
    /// after it (a later write gets a higher revision, a later linearizable read at least it).
    pub fn check_real_time(&self) {
        let mut acks: Vec<(Instant, i64, String)> = self
            .acked()
            .into_iter()
            .map(|w| (w.end, w.outcome.clone().unwrap_or_default(), w.value))
            .collect();
        acks.sort_by_key(|(end, _, _)| *end);
        // The highest acknowledged revision among acks that ended at or before each point.
        let mut best: Vec<(Instant, i64, String)> = Vec::with_capacity(acks.len());
        let mut top = (0i64, String::new());
        for (end, rev, value) in acks {
            if rev > top.0 {
                top = (rev, value);
            }
            best.push((end, top.0, top.1.clone()));
        }
        let acked_before = |start: Instant| -> Option<(i64, String)> {
            let n = best.partition_point(|(end, _, _)| *end < start);
            n.checked_sub(1).map(|i| (best[i].1, best[i].2.clone()))
        };
        for w in self.acked() {
            let rev = w.outcome.clone().unwrap_or_default();
            if let Some((before, value)) = acked_before(w.start) {
                assert!(
                    rev > before,
                    "write {}={} (client {}, via member {}) acknowledged at revision {rev}, \
                     but write {value} had been acknowledged at revision {before} before it started",
                    w.key,
                    w.value,
                    w.client,
                    w.via
                );
            }
        }
        for r in self.reads() {
            let (Ok((rev, _)), false) = (&r.outcome, r.serializable) else {
                continue;
            };
            if let Some((before, value)) = acked_before(r.start) {
                assert!(
                    *rev >= before,
                    "linearizable read of {} (client {}, via member {}) answered at revision \
                     {rev}, but write {value} had been acknowledged at revision {before} \
                     before the read started",
                    r.key,
                    r.client,
                    r.via
                );
            }
        }
    }

    /// Checks one member's history against the ledger (see the module doc). `first` is the
    /// revision the workload started from (the store's revision before any client write).
    pub fn check_history(&self, member: &str, history: &[Change], first: i64, last: i64) {
        let writes = self.writes();
        let attempted: HashMap<(&str, &str), &WriteRecord> = writes
            .iter()
            .map(|w| ((w.key.as_str(), w.value.as_str()), w))
            .collect();
        let mut per_revision: BTreeMap<i64, Vec<&Change>> = BTreeMap::new();
        for change in history {
            per_revision.entry(change.0).or_default().push(change);
        }
        for rev in first + 1..=last {
            let changes = per_revision.get(&rev).map_or(0, Vec::len);
            assert_eq!(
                changes,
                1,
                "member {member}: revision {rev} holds {changes} changes, expected exactly one \
                 put: {:?}",
                per_revision.get(&rev)
            );
        }
        let mut values_seen: HashSet<&str> = HashSet::new();
        for (rev, key, value) in history {
            assert!(
                attempted.contains_key(&(key.as_str(), value.as_str())),
                "member {member}: revision {rev} holds {key}={value}, which no client wrote"
            );
            assert!(
                values_seen.insert(value.as_str()),
                "member {member}: value {value} (key {key}) was applied twice (again at \
                 revision {rev}); the write {:?} was applied more than once",
                attempted.get(&(key.as_str(), value.as_str()))
            );
        }
        let at: HashMap<i64, (&str, &str)> = history
            .iter()
            .map(|(rev, key, value)| (*rev, (key.as_str(), value.as_str())))
            .collect();
        for w in &writes {
            if let Ok(rev) = w.outcome {
                assert_eq!(
                    at.get(&rev).copied(),
                    Some((w.key.as_str(), w.value.as_str())),
                    "member {member}: write {}={} (client {}, via member {}) was acknowledged at \
                     revision {rev}, which holds something else",
                    w.key,
                    w.value,
                    w.client,
                    w.via
                );
            }
        }
    }

    /// Every answered linearizable read returned the history's value of its key at its
    /// revision; a serializable read returned the value at some revision (possibly older).
    pub fn check_reads(&self, history: &[Change]) {
        let mut per_key: HashMap<&str, Vec<(i64, &str)>> = HashMap::new();
        for (rev, key, value) in history {
            per_key
                .entry(key.as_str())
                .or_default()
                .push((*rev, value.as_str()));
        }
        for versions in per_key.values_mut() {
            versions.sort_unstable();
        }
        for r in self.reads() {
            let Ok((rev, found)) = &r.outcome else {
                continue;
            };
            let versions = per_key.get(r.key.as_str()).map_or(&[][..], Vec::as_slice);
            let n = versions.partition_point(|(v_rev, _)| v_rev <= rev);
            let expected = n
                .checked_sub(1)
                .map(|i| (versions[i].1.to_string(), versions[i].0));
            if r.serializable {
                if let Some((value, mod_rev)) = found {
                    assert!(
                        versions.contains(&(*mod_rev, value.as_str())),
                        "serializable read of {} via member {} returned {value}@{mod_rev}, \
                         which is not in the history",
                        r.key,
                        r.via
                    );
                }
            } else {
                assert_eq!(
                    found, &expected,
                    "linearizable read of {} (client {}, via member {}) at revision {rev} \
                     returned {found:?}, the history says {expected:?}",
                    r.key, r.client, r.via
                );
            }
        }
    }
}

/// The puts a member holds, one revision at a time from `first + 1` to `last`, read with
/// serializable historical ranges over every key.
pub async fn history(node: &Node, first: i64, last: i64) -> Result<Vec<Change>, KvError> {
    let mut changes = Vec::new();
    for rev in first + 1..=last {
        let request = RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            revision: rev,
            min_mod_revision: rev,
            max_mod_revision: rev,
            serializable: true,
            ..Default::default()
        };
        let (response, _) = node.range(request).await?;
        for kv in response.kvs {
            changes.push((
                kv.mod_revision,
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            ));
        }
    }
    Ok(changes)
}

/// Every acknowledged write is readable on `node` at its revision, with that mod revision
/// (those below its compact revision are not readable any more, and skipped); and every key
/// `node` holds now has a value some client wrote to it.
pub async fn check_acked_on(ledger: &Ledger, member: &str, node: &Node) {
    let writes = ledger.writes();
    let compacted = node.metrics().compact_revision;
    for w in writes.iter().filter(|w| w.outcome.is_ok()) {
        let rev = w.outcome.clone().unwrap_or_default();
        if rev < compacted {
            continue;
        }
        let request = RangeRequest {
            key: Bytes::from(w.key.clone()),
            revision: rev,
            serializable: true,
            ..Default::default()
        };
        let (response, _) = node
            .range(request)
            .await
            .unwrap_or_else(|e| panic!("member {member}: reading {} at {rev}: {e}", w.key));
        let found: Vec<(String, i64)> = response
            .kvs
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.mod_revision,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![(w.value.clone(), rev)],
            "member {member}: write {}={} (client {}, via member {}) was acknowledged at revision \
             {rev}",
            w.key,
            w.value,
            w.client,
            w.via
        );
    }
    let attempted: HashSet<(&str, &str)> = writes
        .iter()
        .map(|w| (w.key.as_str(), w.value.as_str()))
        .collect();
    let request = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        serializable: true,
        ..Default::default()
    };
    let (response, _) = node
        .range(request)
        .await
        .unwrap_or_else(|e| panic!("member {member}: reading every key: {e}"));
    for kv in response.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        let value = String::from_utf8_lossy(&kv.value);
        assert!(
            attempted.contains(&(key.as_ref(), value.as_ref())),
            "member {member}: holds {key}={value}@{}, which no client wrote",
            kv.mod_revision
        );
    }
}
