//! History: jj's file-based `SimpleBackend` against Cairn's `RedbBackend` for the objects one
//! revision writes, and the cost of recording one revision as the keyspace grows.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_engine::history::{OfflineRecorder, RedbBackend};
use cairn_engine::mvcc::{ApplyInput, MvccOptions, MvccStore};
use cairn_engine::request::{Command, Origin, Proposal, PutRequest, RequestOp, TxnRequest};
use criterion::Criterion;
use jj_lib::backend::{
    Backend, ChangeId, Commit, CommitId, CopyId, MillisSinceEpoch, Signature, Timestamp, Tree,
    TreeValue,
};
use jj_lib::merge::Merge;
use jj_lib::repo_path::{RepoPath, RepoPathComponentBuf};
use jj_lib::simple_backend::SimpleBackend;
use pollster::FutureExt as _;

/// The objects of one revision of a key four directories deep, in a directory of 32 entries:
/// one file, four trees, one commit.
fn write_revision(backend: &dyn Backend, i: u64, parent: &CommitId) -> CommitId {
    let value = format!("{{\"kind\":\"Pod\",\"generation\":{i}}}").repeat(8);
    let file = backend
        .write_file(RepoPath::root(), &mut value.as_bytes())
        .block_on()
        .expect("write file");
    let entries: Vec<(RepoPathComponentBuf, TreeValue)> = (0..32)
        .map(|n| {
            (
                RepoPathComponentBuf::new(format!("pod-{n:02}~")).expect("name"),
                TreeValue::File {
                    id: file.clone(),
                    executable: false,
                    copy_id: CopyId::placeholder(),
                },
            )
        })
        .collect();
    let mut tree = backend
        .write_tree(RepoPath::root(), &Tree::from_sorted_entries(entries))
        .block_on()
        .expect("write tree");
    for name in ["default", "pods", "registry"] {
        let parent_tree = Tree::from_sorted_entries(vec![(
            RepoPathComponentBuf::new(name).expect("name"),
            TreeValue::Tree(tree),
        )]);
        tree = backend
            .write_tree(RepoPath::root(), &parent_tree)
            .block_on()
            .expect("write tree");
    }
    let signature = Signature {
        name: "cairn".to_owned(),
        email: String::new(),
        timestamp: Timestamp {
            timestamp: MillisSinceEpoch(i as i64),
            tz_offset: 0,
        },
    };
    let commit = Commit {
        parents: vec![parent.clone()],
        predecessors: Vec::new(),
        root_tree: Merge::resolved(tree),
        conflict_labels: Merge::resolved(String::new()),
        change_id: ChangeId::new(i.to_be_bytes().repeat(2)),
        description: format!("revision {i}"),
        author: signature.clone(),
        committer: signature,
        secure_sig: None,
    };
    backend
        .write_commit(commit, None)
        .block_on()
        .expect("write commit")
        .0
}

pub fn bench_backends(c: &mut Criterion) {
    let mut group = c.benchmark_group("history/backend_revision");
    group.measurement_time(Duration::from_secs(5));
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = SimpleBackend::init(dir.path());
        let mut parent = backend.root_commit_id().clone();
        let mut i = 0u64;
        group.bench_function("simple", |b| {
            b.iter(|| {
                i += 1;
                parent = write_revision(&backend, i, &parent);
            });
        });
    }
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = RedbBackend::open_standalone(&dir.path().join("objects.redb")).expect("open");
        let mut parent = backend.root_commit_id().clone();
        let mut i = 0u64;
        group.bench_function("redb", |b| {
            b.iter(|| {
                i += 1;
                parent = write_revision(&backend, i, &parent);
                backend.commit_pending().expect("commit");
            });
        });
    }
    group.finish();
}

fn apply(store: &MvccStore, commands: Vec<Command>, index: &mut u64) {
    let proposals: Vec<Proposal> = commands
        .into_iter()
        .map(|command| Proposal {
            command,
            time_unix_ms: 1,
            origin: Origin::default(),
        })
        .collect();
    let inputs: Vec<ApplyInput<'_>> = proposals
        .iter()
        .map(|proposal| {
            *index += 1;
            ApplyInput {
                proposal: Some(proposal),
                log_term: 1,
                log_index: *index,
            }
        })
        .collect();
    store.apply(&inputs, b"", false).expect("apply");
}

fn key(i: u64) -> Bytes {
    Bytes::from(format!("/registry/pods/default/pod-{i:08}"))
}

/// Recording one single-key revision into a keyspace of N keys under one prefix (the history
/// writer's per-revision cost; it must not grow with N).
pub fn bench_record(c: &mut Criterion) {
    let sizes: &[u64] = if crate::full_run() {
        &[10_000, 100_000]
    } else {
        &[1_000]
    };
    let mut group = c.benchmark_group("history/record_revision");
    group.measurement_time(Duration::from_secs(5));
    for &size in sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            MvccStore::open(&dir.path().join("mvcc.redb"), MvccOptions::default()).expect("store");
        let mut index = 0;
        let value = Bytes::from(vec![b'v'; 256]);
        for start in (0..size).step_by(1000) {
            let ops = (start..(start + 1000).min(size))
                .map(|i| {
                    RequestOp::Put(PutRequest {
                        key: key(i),
                        value: value.clone(),
                        ..PutRequest::default()
                    })
                })
                .collect();
            apply(
                &store,
                vec![Command::Txn(TxnRequest {
                    compare: Vec::new(),
                    success: ops,
                    failure: Vec::new(),
                })],
                &mut index,
            );
        }
        let mut recorder =
            OfflineRecorder::open(&dir.path().join("history.redb")).expect("recorder");
        recorder.record(&store).expect("record keyspace");
        let mut n = 0u64;
        group.bench_function(format!("{size}_keys"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    n += 1;
                    let command = Command::Put(PutRequest {
                        key: key((n * 7919) % size),
                        value: Bytes::from(format!("value {n}")),
                        ..PutRequest::default()
                    });
                    apply(&store, vec![command], &mut index);
                    let started = Instant::now();
                    recorder.record(&store).expect("record");
                    total += started.elapsed();
                }
                total
            });
        });
    }
    group.finish();
}
