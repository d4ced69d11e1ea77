//! history-scale: how history recording and queries behave as the keyspace and the number of
//! revisions grow. In process, on a real MVCC store and history database in a temp dir.
//!
//! ```text
//! history-scale --sizes 10000,100000,1000000 --revisions-per-size 10000 --value-size 256
//! ```
//!
//! For each size:
//! 1. grow the keyspace to that many keys under one prefix (transactions of 1000 puts) and
//!    record them, in history transactions of `--changes-per-transaction`;
//! 2. unless `--in-the-fill-span`, overwrite keys (untimed) up to the next `key_log` span;
//! 3. apply `--revisions-per-size` single-key overwrites, each with a value of its own, timing
//!    their apply to the MVCC store (the store's own cost at that size);
//! 4. time their recording alone: wall and CPU time, and the bytes read and written, per
//!    revision (the per-revision commit cost at that size).
//!
//! At the end: bytes per revision, and the latency of the queries kvctl makes (log of one key,
//! get at an old revision, a page of the prefix log).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use cairn_engine::history::{At, KEY_LOG_SPAN, LogQuery, OfflineRecorder};
use cairn_engine::mvcc::{ApplyInput, MvccOptions, MvccStore};
use cairn_engine::request::{Command, Origin, Proposal, PutRequest, RequestOp, TxnRequest};
use clap::Parser;
use rand::{Rng, SeedableRng};

#[derive(Parser, Debug)]
#[command(name = "history-scale", about)]
struct Args {
    /// Keyspace sizes to measure at, ascending.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<u64>,
    /// Single-key revisions recorded (and timed) at each size.
    #[arg(long, default_value_t = 10_000)]
    revisions_per_size: u64,
    /// Total single-key revisions to reach before the query measurements (filled up with
    /// overwrites after the last size).
    #[arg(long, default_value_t = 0)]
    total_revisions: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Directory for the databases (default: a temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// Time the overwrites right after growing the keyspace, while the newest `key_log` span
    /// still holds a row per key created. By default untimed overwrites first reach the next
    /// span, as when the keys were created earlier than the last few thousand revisions.
    #[arg(long)]
    in_the_fill_span: bool,
    /// Changes recorded per history transaction: by default about what the live thread's
    /// 100 ms rounds hold under load; a catch-up (restart, rebuild) records 20,000.
    #[arg(long, default_value_t = 500)]
    changes_per_transaction: usize,
}

const PREFIX: &str = "/registry/pods/default/";
/// Entries applied per MVCC apply call, like a raft batch.
const APPLY_BATCH: usize = 1000;

/// CPU time this thread has used (recording runs on it), from `/proc/thread-self/schedstat`;
/// zero where that is unavailable.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Bytes this thread has passed to `read` and `write` system calls (`rchar`, `wchar` of
/// `/proc/thread-self/io`): the database pages recording reads back and writes out. Zero where
/// that is unavailable.
fn thread_io() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("{PREFIX}pod-{i:08}"))
}

struct Load {
    store: MvccStore,
    time: u64,
    index: u64,
}

impl Load {
    fn apply(&mut self, commands: Vec<Command>) -> Result<()> {
        let proposals: Vec<Proposal> = commands
            .into_iter()
            .map(|command| {
                self.time += 1;
                Proposal {
                    command,
                    time_unix_ms: self.time,
                    origin: Origin {
                        user: "bench".to_owned(),
                        agent: "history-scale".to_owned(),
                    },
                }
            })
            .collect();
        let inputs: Vec<ApplyInput<'_>> = proposals
            .iter()
            .map(|proposal| {
                self.index += 1;
                ApplyInput {
                    proposal: Some(proposal),
                    log_term: 1,
                    log_index: self.index,
                }
            })
            .collect();
        self.store.apply(&inputs, b"", false)?;
        Ok(())
    }
}

/// `base` with its last bytes replaced by `n`: every overwrite stores a value of its own, as
/// real writes do (an identical value would leave most of the tree as it was).
fn distinct(base: &Bytes, n: u64) -> Bytes {
    let mut value = base.to_vec();
    let tail = n.to_be_bytes();
    let at = value.len().saturating_sub(tail.len());
    let len = value.len() - at;
    value[at..].copy_from_slice(&tail[tail.len() - len..]);
    Bytes::from(value)
}

fn put(key: Bytes, value: &Bytes) -> PutRequest {
    PutRequest {
        key,
        value: value.clone(),
        ..PutRequest::default()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let store = MvccStore::open(&dir.join("mvcc.redb"), MvccOptions::default())?;
    let mut load = Load {
        store,
        time: 1_700_000_000_000,
        index: 0,
    };
    let mut recorder = OfflineRecorder::open(&dir.join("history.redb"))?;
    recorder.set_changes_per_transaction(args.changes_per_transaction);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let value = Bytes::from(vec![b'v'; args.value_size]);
    let mut keys = 0u64;
    let mut single_revisions = 0u64;
    let mut overwrites = 0u64;
    println!(
        "size_keys\trecord_us_per_revision\tcpu_us_per_revision\trevisions_per_s\thistory_bytes\t\
         read_bytes_per_revision\twritten_bytes_per_revision\tmvcc_apply_cpu_us_per_revision"
    );
    for &size in &args.sizes {
        // Grow the keyspace: transactions of 1000 puts.
        while keys < size {
            let mut commands = Vec::new();
            for _ in 0..APPLY_BATCH {
                if keys >= size {
                    break;
                }
                let batch_end = (keys + 1000).min(size);
                let ops = (keys..batch_end)
                    .map(|i| RequestOp::Put(put(key(i), &value)))
                    .collect();
                keys = batch_end;
                commands.push(Command::Txn(TxnRequest {
                    compare: Vec::new(),
                    success: ops,
                    failure: Vec::new(),
                }));
            }
            load.apply(commands)?;
        }
        recorder
            .record(&load.store)
            .context("recording the keyspace")?;
        if !args.in_the_fill_span {
            // Untimed overwrites up to the next `key_log` span: the timed ones do not insert
            // among the rows of the keys just created (one per key, up to a million), which a
            // keyspace grown over time would not have in its newest span.
            let next_span = (load.store.current_revision() / KEY_LOG_SPAN + 1) * KEY_LOG_SPAN;
            let settle = next_span - load.store.current_revision();
            let commands = (0..settle)
                .map(|_| {
                    overwrites += 1;
                    let value = distinct(&value, overwrites);
                    Command::Put(put(key(rng.random_range(0..keys)), &value))
                })
                .collect::<Vec<_>>();
            for chunk in commands.chunks(APPLY_BATCH) {
                load.apply(chunk.to_vec())?;
            }
            recorder
                .record(&load.store)
                .context("recording up to the next key_log span")?;
        }
        // Single-key overwrites, recorded and timed on their own. Their apply to the MVCC store
        // is timed too: how the store itself grows costlier with the keyspace.
        let apply_cpu_started = thread_cpu();
        let mut remaining = args.revisions_per_size;
        while remaining > 0 {
            let n = remaining.min(APPLY_BATCH as u64);
            let commands = (0..n)
                .map(|_| {
                    overwrites += 1;
                    let value = distinct(&value, overwrites);
                    Command::Put(put(key(rng.random_range(0..keys)), &value))
                })
                .collect();
            load.apply(commands)?;
            remaining -= n;
        }
        let apply_cpu = thread_cpu().saturating_sub(apply_cpu_started);
        single_revisions += args.revisions_per_size;
        eprintln!(
            "{size} keys: recording {} overwrites (timed)",
            args.revisions_per_size
        );
        let started = Instant::now();
        let cpu_started = thread_cpu();
        let (read_started, written_started) = thread_io();
        let recorded = recorder.record(&load.store)?;
        let elapsed = started.elapsed();
        let cpu = thread_cpu().saturating_sub(cpu_started);
        let (read, written) = thread_io();
        let per_revision = |total: f64| total / recorded.max(1) as f64;
        println!(
            "{size}\t{:.1}\t{:.1}\t{:.0}\t{}\t{:.0}\t{:.0}\t{:.1}",
            per_revision(elapsed.as_secs_f64() * 1e6),
            per_revision(cpu.as_secs_f64() * 1e6),
            recorded as f64 / elapsed.as_secs_f64(),
            recorder.used_bytes()?,
            per_revision(read.saturating_sub(read_started) as f64),
            per_revision(written.saturating_sub(written_started) as f64),
            apply_cpu.as_secs_f64() * 1e6 / args.revisions_per_size.max(1) as f64,
        );
    }
    // Fill up to the total revision count with overwrites.
    while single_revisions < args.total_revisions {
        let n = (args.total_revisions - single_revisions).min(APPLY_BATCH as u64);
        let commands = (0..n)
            .map(|n| {
                let value = distinct(&value, single_revisions + n);
                Command::Put(put(key(rng.random_range(0..keys)), &value))
            })
            .collect();
        load.apply(commands)?;
        single_revisions += n;
        if single_revisions % 100_000 < APPLY_BATCH as u64 {
            recorder.record(&load.store)?;
        }
    }
    let started = Instant::now();
    recorder.record(&load.store)?;
    let fill = started.elapsed();
    let history = recorder.history();
    let status = history.status()?;
    let used = recorder.used_bytes()?;
    println!(
        "\nkeys {keys}, revisions {}, history {} bytes ({:.0} bytes/revision), last fill {:.1?}",
        status.head_revision,
        used,
        used as f64 / status.head_revision.max(1) as f64,
        fill
    );
    let probe = key(rng.random_range(0..keys));
    let timed = |name: &str, f: &mut dyn FnMut() -> Result<usize>| -> Result<()> {
        let mut best = Duration::MAX;
        let mut found = 0;
        for _ in 0..5 {
            let started = Instant::now();
            found = f()?;
            best = best.min(started.elapsed());
        }
        println!("{name}: {best:.2?} (best of 5), {found} results");
        Ok(())
    };
    timed("log of one key (all its revisions)", &mut || {
        Ok(history
            .log(&LogQuery {
                key: Some(probe.clone()),
                limit: 1_000_000,
                ..LogQuery::default()
            })?
            .len())
    })?;
    timed("log of one key (newest 100)", &mut || {
        Ok(history
            .log(&LogQuery {
                key: Some(probe.clone()),
                limit: 100,
                ..LogQuery::default()
            })?
            .len())
    })?;
    timed("get one key at a revision in the middle", &mut || {
        Ok(history
            .get(&probe, At::Revision(status.head_revision / 2))?
            .into_iter()
            .count())
    })?;
    timed("log of the prefix (newest 100 revisions)", &mut || {
        Ok(history
            .log(&LogQuery {
                key: Some(Bytes::from_static(PREFIX.as_bytes())),
                prefix: true,
                limit: 100,
                ..LogQuery::default()
            })?
            .len())
    })?;
    timed("show the newest revision", &mut || {
        Ok(history.show(status.head_revision)?.diffs.len())
    })?;
    Ok(())
}
