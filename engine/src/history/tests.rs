//! History against a model: random writes to a real MVCC store, recorded by the real writer,
//! then every revision compared with what the model says; determinism of commit ids across
//! independent recordings and rebuilds; sharding bounds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use jj_lib::backend::{TreeId, TreeValue};
use proptest::prelude::*;

use super::db::HistoryDb;
use super::path::{SHARD_THRESHOLD, is_shard};
use super::writer::{Feed, Progress, Recorder};
use super::{At, ChangeKind, History, LogQuery};
use crate::mvcc::{ApplyInput, MvccOptions, MvccStore, RecordedRevision};
use crate::request::{Command, DeleteRangeRequest, Origin, Proposal, PutRequest};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<MvccStore>,
    /// The model state after each revision.
    states: BTreeMap<i64, State>,
    /// The revisions that changed each key (puts and deletes), oldest first.
    changes: BTreeMap<Vec<u8>, Vec<i64>>,
    /// Each revision as the apply hands it to history (`RecordedRevision::applied`).
    handed: Vec<RecordedRevision>,
    time: u64,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            MvccStore::open(&dir.path().join("mvcc.redb"), MvccOptions::default()).expect("store");
        let mut states = BTreeMap::new();
        states.insert(1, State::new());
        Self {
            dir,
            store: Arc::new(store),
            states,
            changes: BTreeMap::new(),
            handed: Vec::new(),
            time: 1_700_000_000_000,
        }
    }

    fn apply(&mut self, command: Command) {
        self.time += 1000;
        let proposal = Proposal {
            command: command.clone(),
            time_unix_ms: self.time,
            origin: Origin {
                user: "alice".to_owned(),
                agent: "test/1.0".to_owned(),
            },
        };
        let before = self.store.current_revision();
        let input = ApplyInput {
            proposal: Some(&proposal),
            log_term: 3,
            log_index: self.time / 1000,
        };
        let outputs = self.store.apply(&[input], b"raft", false).expect("apply");
        self.handed.extend(RecordedRevision::applied(
            &input,
            outputs[0].revision,
            &outputs[0].events,
        ));
        let after = self.store.current_revision();
        if after > before {
            let mut state = self.states[&before].clone();
            match command {
                Command::Put(put) => {
                    self.changes
                        .entry(put.key.to_vec())
                        .or_default()
                        .push(after);
                    state.insert(put.key.to_vec(), put.value.to_vec());
                }
                Command::DeleteRange(delete) => {
                    let end = delete.range_end.to_vec();
                    let before = state.clone();
                    state.retain(|k, _| {
                        if end.is_empty() {
                            k.as_slice() != delete.key.as_ref()
                        } else {
                            k.as_slice() < delete.key.as_ref() || k.as_slice() >= end.as_slice()
                        }
                    });
                    for key in before.keys().filter(|key| !state.contains_key(*key)) {
                        self.changes.entry(key.clone()).or_default().push(after);
                    }
                }
                _ => unreachable!("the model knows puts and deletes"),
            }
            self.states.insert(after, state);
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.apply(Command::Put(PutRequest {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            ..PutRequest::default()
        }));
    }

    fn delete(&mut self, key: &[u8], range_end: &[u8]) {
        self.apply(Command::DeleteRange(DeleteRangeRequest {
            key: Bytes::copy_from_slice(key),
            range_end: Bytes::copy_from_slice(range_end),
            prev_kv: false,
        }));
    }

    /// Records everything into a fresh history database in `dir`.
    /// A store after `ops`: (0 or 1: put, 2: delete; key number; value byte), the key number
    /// named by `key`.
    fn from_ops(ops: Vec<(u8, u8, u8)>, key: impl Fn(u8) -> String) -> Self {
        let mut fixture = Self::new();
        for (op, number, value) in ops {
            let key = key(number).into_bytes();
            match op {
                0 | 1 => fixture.put(&key, &[value]),
                _ => fixture.delete(&key, b""),
            }
        }
        fixture
    }

    fn record(&self, dir: &std::path::Path) -> History {
        self.record_in_rounds(dir, None)
    }

    /// Records with rounds of `(changes, loaded entries kept)` when given (see
    /// `Recorder::with_small_rounds`), else as the node does.
    fn record_in_rounds(&self, dir: &std::path::Path, rounds: Option<(usize, usize)>) -> History {
        let db = Arc::new(HistoryDb::open(&dir.join("history.redb")).expect("history db"));
        let progress = Arc::new(Progress::default());
        let mut recorder = Recorder::new(Arc::clone(&db), Arc::clone(&progress)).expect("recorder");
        if let Some((changes, loaded)) = rounds {
            recorder = recorder.with_small_rounds(changes, loaded);
        }
        recorder
            .catch_up(
                &self.store,
                &mut VecDeque::from([self.store.current_revision()]),
                true,
            )
            .expect("catch up");
        let store = Arc::clone(&self.store);
        History::online(db, progress, Box::new(move || store.current_revision()))
    }
}

fn check_against_model(fixture: &Fixture, history: &History) {
    let head = fixture.store.current_revision();
    assert_eq!(history.status().expect("status").head_revision, head);
    assert_eq!(history.status().expect("status").lag(), 0);
    let keys: Vec<Vec<u8>> = fixture
        .states
        .values()
        .flat_map(|state| state.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (&revision, state) in &fixture.states {
        for key in &keys {
            let got = history.get(key, At::Revision(revision)).expect("get");
            if let Some(kv) = &got {
                let last = fixture.changes[key].iter().rev().find(|&&r| r <= revision);
                assert_eq!(Some(&kv.mod_revision), last, "mod revision of {key:?}");
            }
            assert_eq!(
                got.map(|kv| kv.value.to_vec()),
                state.get(key).cloned(),
                "key {key:?} at revision {revision}"
            );
        }
        let listed: State = history
            .range(b"", At::Revision(revision), b"", 0)
            .expect("range")
            .into_iter()
            .map(|kv| (kv.key.to_vec(), kv.value.to_vec()))
            .collect();
        assert_eq!(&listed, state, "whole state at revision {revision}");
        if revision > 1 {
            let previous = &fixture.states[&(revision - 1)];
            let diff = history.diff(revision - 1, revision, b"").expect("diff");
            for change in &diff {
                assert_eq!(
                    change.before.as_deref(),
                    previous.get(change.key.as_ref()).map(Vec::as_slice)
                );
                assert_eq!(
                    change.after.as_deref(),
                    state.get(change.key.as_ref()).map(Vec::as_slice)
                );
            }
            let shown = history.show(revision).expect("show");
            assert_eq!(shown.entry.revision, revision);
            assert_eq!(shown.entry.origin.user, "alice");
        }
        // Blame: each key present, with the revision of its last change.
        let blamed: Vec<(Vec<u8>, i64)> = history
            .blame(b"", Some(revision), 0)
            .expect("blame")
            .into_iter()
            .map(|line| (line.key.to_vec(), line.revision))
            .collect();
        let expected: Vec<(Vec<u8>, i64)> = state
            .keys()
            .map(|key| {
                let last = fixture.changes[key].iter().rev().find(|&&r| r <= revision);
                (key.clone(), *last.expect("a present key was put"))
            })
            .collect();
        assert_eq!(blamed, expected, "blame at revision {revision}");
    }
    // The changes of each revision, and the log of prefixes: every revision that changed a key
    // under it, newest first.
    let mut changed_at: BTreeMap<i64, Vec<Vec<u8>>> = BTreeMap::new();
    for (key, revisions) in &fixture.changes {
        for &revision in revisions {
            changed_at.entry(revision).or_default().push(key.clone());
        }
    }
    for (revision, keys) in &changed_at {
        let shown: Vec<Vec<u8>> = history
            .show(*revision)
            .expect("show")
            .entry
            .changes
            .iter()
            .map(|change| change.key.to_vec())
            .collect();
        assert_eq!(&shown, keys, "changes of revision {revision}");
    }
    let prefixes: std::collections::BTreeSet<Vec<u8>> = keys
        .iter()
        .flat_map(|key| [key[..key.len().min(2)].to_vec(), key.clone()])
        .collect();
    for prefix in &prefixes {
        let expected: Vec<i64> = changed_at
            .iter()
            .rev()
            .filter(|(_, keys)| keys.iter().any(|key| key.starts_with(prefix)))
            .map(|(revision, _)| *revision)
            .collect();
        let logged: Vec<i64> = history
            .log(&LogQuery {
                key: Some(Bytes::copy_from_slice(prefix)),
                prefix: true,
                limit: usize::MAX,
                ..LogQuery::default()
            })
            .expect("prefix log")
            .iter()
            .map(|entry| entry.revision)
            .collect();
        assert_eq!(logged, expected, "log of prefix {prefix:?}");
    }
    // The log of each key: every revision that changed it, newest first, across spans; also
    // paged and bounded by revisions.
    for (key, changed) in &fixture.changes {
        let logged = |query: LogQuery| -> Vec<i64> {
            history
                .log(&LogQuery {
                    key: Some(Bytes::copy_from_slice(key)),
                    limit: usize::MAX,
                    ..query
                })
                .expect("log")
                .iter()
                .map(|entry| entry.revision)
                .collect()
        };
        let newest_first: Vec<i64> = changed.iter().rev().copied().collect();
        assert_eq!(logged(LogQuery::default()), newest_first, "log of {key:?}");
        let limited = history
            .log(&LogQuery {
                key: Some(Bytes::copy_from_slice(key)),
                limit: 2,
                ..LogQuery::default()
            })
            .expect("log");
        assert_eq!(limited.len(), newest_first.len().min(2));
        let (low, high) = (changed[0] + 1, head - 1);
        let bounded: Vec<i64> = newest_first
            .iter()
            .copied()
            .filter(|r| (low..=high).contains(r))
            .collect();
        if low <= high {
            assert_eq!(
                logged(LogQuery {
                    min_revision: low,
                    max_revision: high,
                    ..LogQuery::default()
                }),
                bounded,
                "log of {key:?} in {low}..={high}"
            );
        }
    }
}

#[test]
fn history_equals_the_model_at_every_revision() {
    let mut fixture = Fixture::new();
    fixture.put(b"/a", b"1");
    fixture.put(b"/a/b", b"child");
    fixture.put(b"/a", b"2");
    fixture.put(b"bin\x00ary", b"\xff\x00");
    fixture.delete(b"/a", b"");
    fixture.put(b"/c", b"3");
    fixture.delete(b"/", b"0");
    fixture.put(b"/a", b"back");
    let dir = tempfile::tempdir().expect("tempdir");
    let history = fixture.record(dir.path());
    check_against_model(&fixture, &history);

    let log = history
        .log(&LogQuery {
            key: Some(Bytes::from_static(b"/a")),
            ..LogQuery::default()
        })
        .expect("log");
    let revisions: Vec<i64> = log.iter().map(|e| e.revision).collect();
    assert_eq!(
        revisions,
        vec![9, 6, 4, 2],
        "newest first, only /a's changes"
    );
    let range_delete = history.show(8).expect("show");
    let deleted: Vec<&[u8]> = range_delete
        .entry
        .changes
        .iter()
        .map(|c| c.key.as_ref())
        .collect();
    assert_eq!(
        deleted,
        vec![&b"/a/b"[..], b"/c"],
        "delete-range of [/, 0) removed two keys"
    );
    assert!(
        range_delete
            .entry
            .changes
            .iter()
            .all(|c| c.kind == ChangeKind::Delete)
    );

    let blame = history.blame(b"/", None, 0).expect("blame");
    let blamed: Vec<(&[u8], i64)> = blame.iter().map(|l| (l.key.as_ref(), l.revision)).collect();
    assert_eq!(blamed, vec![(&b"/a"[..], 9)]);

    let at_time = history
        .get(b"/a", At::Time(1_700_000_000_000 + 3500))
        .expect("get at time")
        .expect("present");
    assert_eq!(at_time.value.as_ref(), b"2");
    assert_eq!(at_time.mod_revision, 4);

    let ops = history.oplog(0).expect("oplog");
    assert_eq!(ops.len(), 1, "one catch-up batch");
    assert!(
        ops[0]
            .attributes
            .iter()
            .any(|(k, v)| k == "raft.log_id" && v.starts_with("3-"))
    );
}

#[test]
fn commit_ids_depend_only_on_the_log() {
    let mut fixture = Fixture::new();
    for i in 0..50u32 {
        fixture.put(format!("/k/{}", i % 7).as_bytes(), &i.to_be_bytes());
        if i % 11 == 0 {
            fixture.delete(b"/k/3", b"");
        }
    }
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let a = fixture.record(first.path());
    let b = fixture.record(second.path());
    let query = LogQuery {
        limit: 1000,
        ..LogQuery::default()
    };
    let ids_a: Vec<String> = a
        .log(&query)
        .expect("log")
        .into_iter()
        .map(|e| e.commit_id)
        .collect();
    let ids_b: Vec<String> = b
        .log(&query)
        .expect("log")
        .into_iter()
        .map(|e| e.commit_id)
        .collect();
    assert_eq!(ids_a.len() as i64, fixture.store.current_revision() - 1);
    assert_eq!(
        ids_a, ids_b,
        "independent recordings agree commit by commit"
    );
}

#[test]
fn large_directories_are_sharded_into_bounded_trees() {
    let mut fixture = Fixture::new();
    for i in 0..1500u32 {
        fixture.put(format!("/registry/events/default/e{i}").as_bytes(), b"v");
    }
    for i in (0..1500u32).step_by(3) {
        fixture.delete(format!("/registry/events/default/e{i}").as_bytes(), b"");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let history = fixture.record(dir.path());
    let listed = history
        .range(
            b"/registry/events/default/",
            At::Revision(fixture.store.current_revision()),
            b"",
            0,
        )
        .expect("range");
    assert_eq!(listed.len(), 1000);
    for i in [1u32, 2, 1499] {
        let key = format!("/registry/events/default/e{i}");
        assert!(
            history
                .get(
                    key.as_bytes(),
                    At::Revision(fixture.store.current_revision())
                )
                .expect("get")
                .is_some()
        );
        let db = &history_db(&history);
        let head = db.head().expect("head");
        assert!(
            super::tree::lookup(
                &db.backend,
                &TreeId::new(head.tree_id.clone()),
                key.as_bytes()
            )
            .expect("lookup")
            .is_some()
        );
    }
    let db = history_db(&history);
    let head = db.head().expect("head");
    let mut largest = 0;
    let mut sharded = false;
    check_trees(&db, &TreeId::new(head.tree_id), &mut largest, &mut sharded);
    assert!(sharded, "1000 entries in one directory must be sharded");
    assert!(
        largest <= SHARD_THRESHOLD,
        "largest tree has {largest} entries"
    );
}

fn history_db(history: &History) -> Arc<HistoryDb> {
    history.db()
}

fn check_trees(db: &HistoryDb, id: &TreeId, largest: &mut usize, sharded: &mut bool) {
    let tree = db.backend.tree(id).expect("tree");
    *largest = (*largest).max(tree.entries().count());
    for entry in tree.entries() {
        if is_shard(entry.name().as_internal_str()) {
            *sharded = true;
        }
        if let TreeValue::Tree(child) = entry.value() {
            check_trees(db, child, largest, sharded);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn random_histories_match_the_model(ops in proptest::collection::vec(
        (0u8..3, 0u8..12, any::<u8>()), 1..60)) {
        let fixture = Fixture::from_ops(ops, |key| format!("/p/{}/{}", key % 3, key));
        let dir = tempfile::tempdir().expect("tempdir");
        let history = fixture.record(dir.path());
        check_against_model(&fixture, &history);
        // Again from the database alone (no cached trees): deltas resolve to the same trees.
        drop(history);
        check_against_model(&fixture, &reopen(dir.path()));
    }

    /// Recorded in many small rounds, with the working tree unloading directories between
    /// them (all it can, or some): every revision still matches the model, read back from disk,
    /// and the commit ids are those of a recording in one round.
    #[test]
    fn histories_recorded_in_small_rounds_match_the_model(
        ops in proptest::collection::vec((0u8..3, 0u8..100, any::<u8>()), 1..150),
        changes in 1usize..20,
        loaded in prop_oneof![Just(0usize), Just(40)],
    ) {
        // Two directories of up to 50 keys: they shard, and merge back as keys go.
        let fixture = Fixture::from_ops(ops, |key| format!("/p/{}/{}", key % 2, key));
        let dir = tempfile::tempdir().expect("tempdir");
        let history = fixture.record_in_rounds(dir.path(), Some((changes, loaded)));
        let head = history.status().expect("status").head_commit_id;
        drop(history);
        check_against_model(&fixture, &reopen(dir.path()));
        let at_once = tempfile::tempdir().expect("tempdir");
        let history = fixture.record(at_once.path());
        prop_assert_eq!(history.status().expect("status").head_commit_id, head);
    }
}

/// The history database recorded in `dir`, opened afresh (as `kvctl --data-dir` does).
fn reopen(dir: &std::path::Path) -> History {
    let db = HistoryDb::open_existing(&dir.join("history.redb")).expect("history db");
    History::offline(Arc::new(db))
}

#[test]
fn rebuild_reproduces_the_commit_ids() {
    let mut fixture = Fixture::new();
    for i in 0..30u32 {
        fixture.put(format!("/r/{}", i % 5).as_bytes(), &i.to_be_bytes());
    }
    let data = tempfile::tempdir().expect("tempdir");
    let member = data.path().join("member");
    std::fs::create_dir_all(&member).expect("member dir");
    // The fixture's store stands in for the data dir's: copy it into place.
    fixture.store.sync().expect("sync");
    std::fs::copy(
        fixture.dir.path().join("mvcc.redb"),
        member.join("mvcc.redb"),
    )
    .expect("copy");
    let original = fixture.record(&member);
    let query = LogQuery {
        limit: 1000,
        ..LogQuery::default()
    };
    let before: Vec<String> = original
        .log(&query)
        .expect("log")
        .into_iter()
        .map(|e| e.commit_id)
        .collect();
    drop(original);
    let mut reports = 0;
    let status = super::rebuild(data.path(), &mut |_, _| reports += 1).expect("rebuild");
    assert!(reports > 0);
    assert_eq!(status.head_revision, fixture.store.current_revision());
    let rebuilt = History::open_read_only(data.path()).expect("open");
    let after: Vec<String> = rebuilt
        .log(&query)
        .expect("log")
        .into_iter()
        .map(|e| e.commit_id)
        .collect();
    assert_eq!(before, after);
    assert_eq!(status.head_commit_id, after[0]);
}

/// Compacts the fixture's store at `revision` and runs the physical removal to the end.
fn compact_physically(fixture: &mut Fixture, revision: i64) {
    fixture.time += 1000;
    let proposal = Proposal {
        command: Command::Compact { revision },
        time_unix_ms: fixture.time,
        origin: Origin::default(),
    };
    fixture
        .store
        .apply(
            &[ApplyInput {
                proposal: Some(&proposal),
                log_term: 3,
                log_index: fixture.time / 1000,
            }],
            b"raft",
            false,
        )
        .expect("compact");
    while fixture.store.compact_step(7).expect("compact step") {}
    assert_eq!(fixture.store.replay_floor().expect("floor"), revision);
}

fn commit_ids(history: &History) -> BTreeMap<i64, String> {
    history
        .log(&LogQuery {
            limit: 1000,
            ..LogQuery::default()
        })
        .expect("log")
        .into_iter()
        .map(|entry| (entry.revision, entry.commit_id))
        .collect()
}

/// A member whose history must start at a compact revision (a snapshot of a compacted store,
/// a rebuild after compaction) starts from the state there; with the store's anchor, it records
/// the very commits its peers did, and without one, its own import commit.
#[test]
fn history_starts_at_the_replay_floor_with_the_peers_commit() {
    let mut fixture = Fixture::new();
    for i in 0..40u32 {
        fixture.put(format!("/c/{}", i % 6).as_bytes(), &i.to_be_bytes());
        if i % 9 == 8 {
            fixture.delete(format!("/c/{}", i % 6).as_bytes(), b"");
        }
    }
    let peer_dir = tempfile::tempdir().expect("tempdir");
    let peer = fixture.record(peer_dir.path());
    let floor = fixture.store.current_revision() - 10;
    compact_physically(&mut fixture, floor);

    // Without an anchor: an import commit of its own at the floor, correct state from there.
    let alone_dir = tempfile::tempdir().expect("tempdir");
    let alone = fixture.record(alone_dir.path());
    let alone_ids = commit_ids(&alone);
    assert_eq!(alone_ids.keys().next(), Some(&floor));
    assert_ne!(alone_ids[&floor], commit_ids(&peer)[&floor]);
    for revision in floor..=fixture.store.current_revision() {
        for (key, value) in &fixture.states[&revision] {
            let got = alone
                .get(key, At::Revision(revision))
                .expect("get")
                .map(|version| version.value);
            assert_eq!(got.as_deref(), Some(value.as_slice()), "{revision}");
        }
    }

    // With the anchor the peer's history keeps: the same commits from the floor on, and on
    // after further writes.
    let anchor = peer.commit_object(floor).expect("read").expect("recorded");
    fixture
        .store
        .set_history_anchor(&crate::mvcc::HistoryAnchor {
            revision: floor,
            commit: anchor,
        })
        .expect("anchor");
    let anchored_dir = tempfile::tempdir().expect("tempdir");
    let anchored = fixture.record(anchored_dir.path());
    let peer_ids = commit_ids(&peer);
    let anchored_ids = commit_ids(&anchored);
    assert_eq!(anchored_ids.keys().next(), Some(&floor));
    for (revision, id) in &anchored_ids {
        assert_eq!(Some(id), peer_ids.get(revision), "revision {revision}");
    }
    drop((peer, anchored));
    fixture.put(b"/c/new", b"after");
    let peer = fixture.record(peer_dir.path());
    let anchored = fixture.record(anchored_dir.path());
    let head = fixture.store.current_revision();
    assert_eq!(commit_ids(&peer)[&head], commit_ids(&anchored)[&head]);
}

#[test]
fn retention_trims_old_revisions_and_keeps_the_rest_whole() {
    check_retention(false);
}

#[test]
fn retention_trims_a_database_of_format_5_as_well() {
    check_retention(true);
}

/// Trims a recorded history by age and checks what is left, in a database of the current
/// format or, with `as_format_5`, one whose packs are `packs` rows (format 5).
fn check_retention(as_format_5: bool) {
    let mut fixture = Fixture::new();
    for i in 0..60u32 {
        fixture.put(
            format!("/t/{}", i % 9).as_bytes(),
            format!("v{i}").as_bytes(),
        );
        if i % 13 == 0 {
            fixture.delete(format!("/t/{}", i % 9).as_bytes(), b"");
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut history = fixture.record(dir.path());
    if as_format_5 {
        let db = history.db();
        let txn = db.db.begin_write().expect("write");
        unblock(&txn);
        ungroup(&txn);
        txn.open_table(super::index::META)
            .expect("meta")
            .insert(super::index::META_FORMAT, b"5".as_slice())
            .expect("format");
        txn.commit().expect("commit");
        // Opened again as a server opens it.
        drop((db, history));
        history = fixture.record(dir.path());
    }
    let db = history.db();
    let objects_before = count_objects(&db);
    let head = fixture.store.current_revision();
    let keep_from = head - 20;
    let packed_below_before = packed_objects_below(&db, keep_from);
    // Revision r was proposed at start + (r - 1) seconds (one apply per second from 1).
    let time_of_keep = history
        .log(&LogQuery {
            min_revision: keep_from,
            max_revision: keep_from,
            ..LogQuery::default()
        })
        .expect("log")[0]
        .time_unix_ms;
    let mut recorder =
        Recorder::new(Arc::clone(&db), Arc::new(Progress::default())).expect("recorder");
    let retention = super::Retention {
        max_age: Some(std::time::Duration::from_secs(60)),
        max_bytes: None,
    };
    let trimmed = recorder
        .trim_if_needed(&retention, time_of_keep + 60_000)
        .expect("trim");
    assert_eq!(trimmed, Some(keep_from));
    assert!(
        count_objects(&db) < objects_before,
        "unreachable objects were swept"
    );
    // The packs of trimmed revisions keep what the oldest kept tree still reaches (the files of
    // keys last written before it) and nothing else.
    let packed_below = packed_objects_below(&db, keep_from);
    assert!(
        0 < packed_below && packed_below < packed_below_before,
        "packs rewritten: {packed_below_before} packed objects below the trim point, now {packed_below}"
    );
    {
        use redb::{ReadableDatabase, ReadableTable};
        let txn = db.db.begin_read().expect("read");
        let key_log = txn.open_table(super::index::KEY_LOG).expect("key_log");
        let revisions: Vec<i64> = key_log
            .iter()
            .expect("rows")
            .map(|row| {
                let (key, _) = row.expect("row");
                super::index::split_key_log_key(key.value()).expect("key").1
            })
            .collect();
        assert!(revisions.iter().all(|&r| r >= keep_from), "key_log trimmed");
        assert!(revisions.contains(&head), "newer rows kept");
    }
    // Read what is left from the file, past the caches of the process that trimmed (trees it
    // resolved before the trim stay in memory).
    drop((recorder, db, history));
    let history = fixture.record(dir.path());
    assert!(matches!(
        history.get(b"/t/1", At::Revision(keep_from - 1)),
        Err(super::HistoryError::Trimmed { .. })
    ));
    for revision in keep_from..=head {
        let state = &fixture.states[&revision];
        let listed: State = history
            .range(b"", At::Revision(revision), b"", 0)
            .expect("range")
            .into_iter()
            .map(|kv| (kv.key.to_vec(), kv.value.to_vec()))
            .collect();
        assert_eq!(&listed, state, "state at kept revision {revision}");
        for key in state.keys() {
            assert_eq!(
                history
                    .get(key, At::Revision(revision))
                    .expect("get")
                    .map(|kv| kv.value.to_vec())
                    .as_ref(),
                state.get(key)
            );
        }
    }
    let ops = history.oplog(0).expect("oplog");
    assert!(
        ops[0]
            .description
            .starts_with(&format!("trim history before revision {keep_from}"))
    );
    // History goes on after a trim.
    fixture.put(b"/t/new", b"after");
    drop(history);
    let history = fixture.record(dir.path());
    assert_eq!(
        history
            .get(b"/t/new", At::Revision(fixture.store.current_revision()))
            .expect("get")
            .map(|kv| kv.value),
        Some(Bytes::from_static(b"after"))
    );
}

/// Objects in the packs of revisions before `revision`.
fn packed_objects_below(db: &HistoryDb, revision: i64) -> usize {
    use redb::ReadableDatabase;
    let txn = db.db.begin_read().expect("read");
    let below = u64::try_from(revision).expect("positive");
    packs_of(
        &txn.open_table(super::backend::PACK_GROUPS).expect("groups"),
        &txn.open_table(super::backend::PACKS).expect("packs"),
    )
    .into_iter()
    .filter(|(locator, _)| *locator < below)
    .map(|(_, pack)| super::pack::objects(&pack).count())
    .sum()
}

/// Every stored pack, by locator: from the groups (format 6), then the `packs` rows (format 5).
fn packs_of(
    groups: &impl redb::ReadableTable<u64, &'static [u8]>,
    packs: &impl redb::ReadableTable<u64, &'static [u8]>,
) -> Vec<(u64, Vec<u8>)> {
    let mut all = Vec::new();
    for row in groups.iter().expect("rows") {
        let (_, group) = row.expect("row");
        for (locator, pack) in super::pack::sections(group.value()) {
            all.push((locator, pack.to_vec()));
        }
    }
    for row in packs.iter().expect("rows") {
        let (locator, pack) = row.expect("row");
        all.push((locator.value(), pack.value().to_vec()));
    }
    all
}

/// Moves every packed object into a row of its own (written by its locator's revision) and
/// drops the packs: a database as format 3 and before stored it.
fn unpack(txn: &redb::WriteTransaction) {
    let all = packs_of(
        &txn.open_table(super::backend::PACK_GROUPS).expect("groups"),
        &txn.open_table(super::backend::PACKS).expect("packs"),
    );
    let mut objects = txn.open_table(super::backend::OBJECTS).expect("objects");
    for (locator, pack) in all {
        for object in super::pack::objects(&pack) {
            let key = super::backend::packed_object_key(locator, &object);
            let mut value = super::index::encode_i64(locator as i64).to_vec();
            value.extend_from_slice(object.bytes);
            objects
                .insert(key.as_slice(), value.as_slice())
                .expect("insert");
        }
    }
    drop(objects);
    txn.delete_table(super::backend::PACK_GROUPS)
        .expect("delete");
    txn.delete_table(super::backend::PACKS).expect("delete");
}

/// Moves every block's rows into `revisions` rows of their own and drops the blocks: a database
/// as format 6 and before stored them.
fn unblock(txn: &redb::WriteTransaction) {
    use redb::ReadableTable;
    let blocks = txn
        .open_table(super::revision_blocks::REVISION_BLOCKS)
        .expect("blocks");
    let mut revisions = txn.open_table(super::index::REVISIONS).expect("revisions");
    for entry in blocks.iter().expect("blocks") {
        let (first, block) = entry.expect("block");
        let first = super::index::decode_i64(first.value()).expect("first");
        for (revision, row) in super::revision_blocks::rows(first, block.value()) {
            revisions
                .insert(super::index::encode_i64(revision).as_slice(), row)
                .expect("insert");
        }
    }
    drop((blocks, revisions));
    txn.delete_table(super::revision_blocks::REVISION_BLOCKS)
        .expect("delete");
}

/// Moves every pack out of its group into a `packs` row of its own and drops the groups: a
/// database as format 5 stored it.
fn ungroup(txn: &redb::WriteTransaction) {
    let all = packs_of(
        &txn.open_table(super::backend::PACK_GROUPS).expect("groups"),
        &txn.open_table(super::backend::PACKS).expect("packs"),
    );
    let mut packs = txn.open_table(super::backend::PACKS).expect("packs");
    for (locator, pack) in all {
        packs.insert(locator, pack.as_slice()).expect("insert");
    }
    drop(packs);
    txn.delete_table(super::backend::PACK_GROUPS)
        .expect("delete");
}

/// Moves every revision's inline changes into `changed` rows, writes the `key_log` rows of the
/// revisions still in the batch and drops `key_log_through`: a database as format 4 and before
/// stored it.
fn unfold(txn: &redb::WriteTransaction) {
    use redb::ReadableTable;
    let meta = txn.open_table(super::index::META).expect("meta");
    let head = super::db::read_head(&meta).expect("head");
    let through = super::db::read_key_log_through(&meta, &head).expect("through");
    drop(meta);
    let mut revisions = txn.open_table(super::index::REVISIONS).expect("revisions");
    let mut changed = txn.open_table(super::index::CHANGED).expect("changed");
    let mut key_log = txn.open_table(super::index::KEY_LOG).expect("key_log");
    let rows: Vec<(Vec<u8>, Vec<u8>)> = revisions
        .iter()
        .expect("rows")
        .map(|row| {
            let (key, value) = row.expect("row");
            (key.value().to_vec(), value.value().to_vec())
        })
        .collect();
    for (key, value) in rows {
        let revision = super::index::decode_i64(&key).expect("revision");
        let (record, inline) = super::index::decode_revision_row(&value).expect("row");
        let was_inline = inline.is_some();
        let mut changes: Vec<(u8, Vec<u8>)> = Vec::new();
        super::index::visit_changes(&changed, revision, inline, |kind, key| {
            changes.push((kind, key.to_vec()));
            true
        })
        .expect("changes");
        if was_inline {
            for (seq, (kind, key)) in changes.iter().enumerate() {
                let mut row = vec![*kind];
                row.extend_from_slice(key);
                changed
                    .insert(
                        super::index::changed_key(revision, seq as u32).as_slice(),
                        row.as_slice(),
                    )
                    .expect("insert");
            }
        }
        if revision > through {
            for (kind, changed_key) in &changes {
                key_log
                    .insert(
                        super::index::key_log_key(changed_key, revision).as_slice(),
                        [*kind].as_slice(),
                    )
                    .expect("insert");
            }
        }
        let bare = super::index::encode_revision_row(&record.as_ref(), None).expect("encode");
        revisions
            .insert(key.as_slice(), bare.as_slice())
            .expect("insert");
    }
    txn.open_table(super::index::META)
        .expect("meta")
        .remove(super::index::META_KEY_LOG_THROUGH)
        .expect("remove");
}

/// `key_log_through` and the head's revision.
fn key_log_through(db: &HistoryDb) -> (i64, i64) {
    use redb::ReadableDatabase;
    let txn = db.db.begin_read().expect("read");
    let meta = txn.open_table(super::index::META).expect("meta");
    let head = super::db::read_head(&meta).expect("head");
    let through = super::db::read_key_log_through(&meta, &head).expect("through");
    (through, head.revision)
}

/// The (key, revision) of every `key_log` row.
fn key_log_rows(db: &HistoryDb) -> std::collections::BTreeSet<(Vec<u8>, i64)> {
    use redb::{ReadableDatabase, ReadableTable};
    let txn = db.db.begin_read().expect("read");
    let key_log = txn.open_table(super::index::KEY_LOG).expect("key_log");
    key_log
        .iter()
        .expect("rows")
        .map(|row| super::index::split_key_log_key(row.expect("row").0.value()).expect("key"))
        .collect()
}

/// Objects stored as rows of their own (not packed).
fn object_rows(db: &HistoryDb) -> u64 {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let txn = db.db.begin_read().expect("read");
    txn.open_table(super::backend::OBJECTS)
        .expect("objects")
        .len()
        .expect("len")
}

/// Objects stored, packed or in rows of their own.
fn count_objects(db: &HistoryDb) -> u64 {
    use redb::ReadableDatabase;
    let rows = object_rows(db);
    let txn = db.db.begin_read().expect("read");
    let packed: usize = packs_of(
        &txn.open_table(super::backend::PACK_GROUPS).expect("groups"),
        &txn.open_table(super::backend::PACKS).expect("packs"),
    )
    .iter()
    .map(|(_, pack)| super::pack::objects(pack).count())
    .sum();
    rows + packed as u64
}

#[test]
fn a_database_of_the_old_format_is_set_aside_and_history_starts_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.redb");
    {
        // What a history database looked like before ids had locators: a head, no format row.
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        let head = super::index::Head {
            revision: 5,
            ..super::index::Head::default()
        };
        txn.open_table(super::index::META)
            .expect("meta")
            .insert(
                super::index::META_HEAD,
                postcard::to_allocvec(&head).expect("encode").as_slice(),
            )
            .expect("insert");
        txn.commit().expect("commit");
    }
    let opened = HistoryDb::open(&path).expect("open");
    assert_eq!(opened.head().expect("head").revision, 0, "recorded again");
    assert!(path.with_extension("redb.format1").exists(), "kept aside");
    drop(opened);
    let err = HistoryDb::open_existing(&path.with_extension("redb.format1"))
        .err()
        .expect("an old database is refused offline");
    assert!(err.to_string().contains("older format"), "{err}");
    // The new database is of the current format: opened again, it stays.
    assert!(HistoryDb::open_existing(&path).is_ok());
}

/// Puts over 7 keys under `prefix`, each `delete_every`-th followed by a delete.
fn churn(prefix: &str, delete_every: u32) -> Fixture {
    let mut fixture = Fixture::new();
    for i in 0..30u32 {
        fixture.put(format!("{prefix}{}", i % 7).as_bytes(), &[i as u8]);
        if i % delete_every == delete_every - 1 {
            fixture.delete(format!("{prefix}{}", i % 7).as_bytes(), b"");
        }
    }
    fixture
}

/// Records `fixture` into `dir`, then turns the database into one of the older `format` with
/// `downgrade` (one transaction); returns the commit ids recorded.
fn record_as_format(
    fixture: &Fixture,
    dir: &std::path::Path,
    format: &[u8],
    downgrade: impl FnOnce(&redb::WriteTransaction),
) -> BTreeMap<i64, String> {
    let history = fixture.record(dir);
    let commits = commit_ids(&history);
    let db = history_db(&history);
    let txn = db.db.begin_write().expect("write");
    // No older format has revision blocks.
    unblock(&txn);
    downgrade(&txn);
    txn.open_table(super::index::META)
        .expect("meta")
        .insert(super::index::META_FORMAT, format)
        .expect("format");
    txn.commit().expect("commit");
    commits
}

/// `history`, recorded on top of an older format's database, still has the `commits` that
/// database held and matches the model at every revision.
fn check_continues(fixture: &Fixture, history: &History, commits: &BTreeMap<i64, String>) {
    let ids = commit_ids(history);
    for (revision, id) in commits {
        assert_eq!(ids.get(revision), Some(id), "revision {revision}");
    }
    check_against_model(fixture, history);
}

/// Records `fixture` as one of the older `format` (see [`record_as_format`]), then opens it
/// offline as it is and checks it holds the same history; returns the commit ids recorded.
fn read_offline_as_it_is(
    fixture: &Fixture,
    dir: &std::path::Path,
    format: &[u8],
    downgrade: impl FnOnce(&redb::WriteTransaction),
) -> BTreeMap<i64, String> {
    let commits = record_as_format(fixture, dir, format, downgrade);
    let db = HistoryDb::open_existing(&dir.join("history.redb"))
        .expect("an older format opens offline as it is");
    let offline = History::offline(Arc::new(db));
    assert_eq!(commit_ids(&offline), commits, "the same history");
    check_against_model(fixture, &offline);
    commits
}

#[test]
fn a_database_of_format_2_is_migrated_in_place() {
    use redb::ReadableTable;

    let fixture = churn("/m/", 5);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.redb");
    // Format 2: key_log rows without spans (and no packs).
    let commits = record_as_format(
        &fixture,
        dir.path(),
        super::index::FORMAT_UNSPANNED,
        |txn| {
            unfold(txn);
            {
                let spanned = txn.open_table(super::index::KEY_LOG).expect("key_log");
                let mut unspanned = txn
                    .open_table(super::index::KEY_LOG_FORMAT2)
                    .expect("old key_log");
                for row in spanned.iter().expect("rows") {
                    let (key, value) = row.expect("row");
                    unspanned
                        .insert(&key.value()[8..], value.value())
                        .expect("insert");
                }
            }
            txn.delete_table(super::index::KEY_LOG).expect("delete");
            unpack(txn);
        },
    );
    let err = HistoryDb::open_existing(&path)
        .err()
        .expect("refused offline before migration");
    assert!(err.to_string().contains("migrates"), "{err}");
    let migrated = History::offline(Arc::new(HistoryDb::open(&path).expect("open")));
    assert!(
        !path.with_extension("redb.format1").exists(),
        "nothing set aside"
    );
    assert_eq!(commit_ids(&migrated), commits, "the same history");
    check_against_model(&fixture, &migrated);
}

#[test]
fn a_database_of_format_3_is_read_as_it_is_and_packs_what_follows() {
    let mut fixture = churn("/u/", 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.redb");
    // Format 3: every object a row of its own, no packs.
    let commits = read_offline_as_it_is(&fixture, dir.path(), b"3", |txn| {
        unfold(txn);
        unpack(txn);
    });

    for i in 0..10u32 {
        fixture.put(format!("/u/new{i}").as_bytes(), b"after");
    }
    let history = fixture.record(dir.path());
    assert!(
        !path.with_extension("redb.format1").exists(),
        "nothing set aside"
    );
    let head = fixture.store.current_revision();
    assert!(
        packed_objects_below(&history_db(&history), head + 1) > 0,
        "new revisions are packed"
    );
    check_continues(&fixture, &history, &commits);
}

#[test]
fn a_database_of_format_4_is_read_as_it_is_and_batches_what_follows() {
    let mut fixture = churn("/f/", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    // Format 4: every revision's changes as `changed` rows, every `key_log` row written.
    let commits = read_offline_as_it_is(&fixture, dir.path(), b"4", unfold);

    for i in 0..10u32 {
        fixture.put(format!("/f/new{i}").as_bytes(), b"after");
    }
    let history = fixture.record_in_rounds(dir.path(), Some((1, 1 << 20)));
    let db = history_db(&history);
    let (through, head) = key_log_through(&db);
    assert_eq!(head, fixture.store.current_revision());
    assert!(
        through > head - 10,
        "the new revisions' rows are written in batches"
    );
    check_continues(&fixture, &history, &commits);
}

#[test]
fn a_database_of_format_5_is_read_as_it_is_and_groups_what_follows() {
    use redb::{ReadableDatabase, ReadableTableMetadata};

    let mut fixture = churn("/g/", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    // Format 5: a `packs` row per revision, no groups.
    let commits = read_offline_as_it_is(&fixture, dir.path(), b"5", ungroup);

    for i in 0..10u32 {
        fixture.put(format!("/g/new{i}").as_bytes(), b"after");
    }
    let history = fixture.record(dir.path());
    let db = history_db(&history);
    {
        let txn = db.db.begin_read().expect("read");
        let groups = txn.open_table(super::backend::PACK_GROUPS).expect("groups");
        let packs = txn.open_table(super::backend::PACKS).expect("packs");
        assert!(packs.len().expect("len") > 0, "the old packs stay");
        assert!(
            (1..=2).contains(&groups.len().expect("len")),
            "the new revisions' packs are grouped"
        );
    }
    check_continues(&fixture, &history, &commits);
}

#[test]
fn a_database_of_format_6_is_read_as_it_is_and_blocks_what_follows() {
    use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

    let mut fixture = churn("/r/", 4);
    let dir = tempfile::tempdir().expect("tempdir");
    // Format 6: a `revisions` row per revision, no blocks.
    let commits = read_offline_as_it_is(&fixture, dir.path(), b"6", |_| {});
    let old_head = fixture.store.current_revision();

    for i in 0..10u32 {
        fixture.put(format!("/r/new{i}").as_bytes(), b"after");
    }
    let history = fixture.record(dir.path());
    let db = history_db(&history);
    {
        let txn = db.db.begin_read().expect("read");
        let legacy = txn.open_table(super::index::REVISIONS).expect("revisions");
        let blocks = txn
            .open_table(super::revision_blocks::REVISION_BLOCKS)
            .expect("blocks");
        let (last_legacy, _) = legacy.last().expect("last").expect("old rows stay");
        assert_eq!(
            super::index::decode_i64(last_legacy.value()),
            Some(old_head),
            "the old rows stay where they are"
        );
        assert_eq!(blocks.len().expect("len"), 1, "the new rows make one block");
        let (first, _) = blocks.first().expect("first").expect("a block");
        assert_eq!(super::index::decode_i64(first.value()), Some(old_head + 1));
    }
    check_continues(&fixture, &history, &commits);
}

#[test]
fn key_log_batches_are_read_back_after_a_restart_and_written_whole() {
    let mut fixture = churn("/k/", 4);
    // Revision 1 is the empty store; batches of 3 revisions end at multiples of 3.
    if fixture.store.current_revision() % index_batch() == 0 {
        fixture.put(b"/k/odd", b"1");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let history = fixture.record_in_rounds(dir.path(), Some((1, 1 << 20)));
    let db = history_db(&history);
    let (through, head) = key_log_through(&db);
    assert!(through < head, "the newest revisions wait for their batch");
    check_against_model(&fixture, &history);
    drop((history, db));

    // A restart (a new recorder reads the batch back), then more revisions: the batch is
    // written with them, so every change through `key_log_through` has its row.
    for i in 0..5u32 {
        fixture.put(format!("/k/more{i}").as_bytes(), b"x");
    }
    let history = fixture.record_in_rounds(dir.path(), Some((1, 1 << 20)));
    let db = history_db(&history);
    let (through_now, _) = key_log_through(&db);
    assert!(through_now > head, "the batch read back was written");
    let rows = key_log_rows(&db);
    for (key, revisions) in &fixture.changes {
        for &revision in revisions.iter().filter(|&&r| r <= through_now) {
            assert!(
                rows.contains(&(key.clone(), revision)),
                "key_log row of {key:?} at {revision}"
            );
        }
    }
    assert!(
        rows.iter().all(|(_, revision)| *revision <= through_now),
        "no row past key_log_through"
    );
    check_against_model(&fixture, &history);
}

fn index_batch() -> i64 {
    super::index::KEY_LOG_BATCH
}

#[test]
fn revisions_handed_over_by_the_apply_record_the_history_read_from_the_store() {
    let ops: Vec<(u8, u8, u8)> = (0..80u32)
        .map(|i| ((i % 5 % 3) as u8, (i * 7 % 11) as u8, i as u8))
        .collect();
    let fixture = Fixture::from_ops(ops, |n| format!("/h/{}/k{n}", n % 3));
    let read_dir = tempfile::tempdir().expect("tempdir");
    let read = fixture.record(read_dir.path());

    // Records with a feed holding the handed revisions but `missing`, and `store`.
    let record_handed = |store: &MvccStore, missing: std::ops::Range<usize>| {
        let feed = Arc::new(Feed::default());
        for (index, revision) in fixture.handed.iter().enumerate() {
            if !missing.contains(&index) {
                feed.revision_applied(revision.clone());
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(HistoryDb::open(&dir.path().join("history.redb")).expect("db"));
        let mut recorder = Recorder::new(Arc::clone(&db), Arc::new(Progress::default()))
            .expect("recorder")
            .with_feed(Arc::clone(&feed))
            .with_small_rounds(7, 1 << 20);
        recorder
            .catch_up(
                store,
                &mut VecDeque::from([fixture.store.current_revision()]),
                true,
            )
            .expect("catch up");
        assert_eq!(feed.handed_len(), 0, "the queue was drained");
        (dir, History::offline(db))
    };

    // Everything from the queue: the store it could read from is empty.
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let empty = MvccStore::open(&empty_dir.path().join("mvcc.redb"), MvccOptions::default())
        .expect("store");
    let (_dir, handed) = record_handed(&empty, 0..0);
    assert_eq!(commit_ids(&handed), commit_ids(&read), "the same commits");
    check_against_model(&fixture, &handed);

    // A few revisions missing in the middle (as when the queue was full) come from the store.
    let middle = fixture.handed.len() / 2;
    let (_dir, mixed) = record_handed(&fixture.store, middle..middle + 3);
    assert_eq!(commit_ids(&mixed), commit_ids(&read), "the same commits");
    check_against_model(&fixture, &mixed);
}

#[test]
fn a_round_of_packs_fills_groups_of_bounded_size() {
    use redb::{ReadableDatabase, ReadableTable};

    let mut fixture = Fixture::new();
    for i in 0..40u32 {
        fixture.put(format!("/b/{}", i % 7).as_bytes(), &vec![i as u8; 2048]);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    drop(fixture.record(dir.path()));
    // Read back from the file, not from the recording process's caches.
    let history = fixture.record(dir.path());
    check_against_model(&fixture, &history);
    let db = history_db(&history);
    let txn = db.db.begin_read().expect("read");
    let groups = txn.open_table(super::backend::PACK_GROUPS).expect("groups");
    let mut sizes = Vec::new();
    let mut previous_last = 0;
    for row in groups.iter().expect("rows") {
        let (first, group) = row.expect("row");
        let locators: Vec<u64> = super::pack::sections(group.value())
            .map(|(l, _)| l)
            .collect();
        assert_eq!(
            locators.first(),
            Some(&first.value()),
            "keyed by its first pack"
        );
        assert!(
            locators.is_sorted() && first.value() > previous_last,
            "in order"
        );
        previous_last = *locators.last().expect("a section");
        sizes.push(group.value().len());
    }
    assert!(
        sizes.len() >= 3,
        "40 revisions of 2 KiB values fill several groups: {sizes:?}"
    );
    assert!(
        sizes
            .iter()
            .all(|&size| size <= super::pack::GROUP_LIMIT + 4096),
        "{sizes:?}"
    );
}

#[test]
fn objects_too_large_for_a_pack_are_rows_of_their_own() {
    let mut fixture = Fixture::new();
    fixture.put(b"/p/small", b"before");
    fixture.put(b"/p/big", &vec![7; super::pack::PACK_LIMIT + 1]);
    fixture.put(b"/p/small", b"after");
    let dir = tempfile::tempdir().expect("tempdir");
    drop(fixture.record(dir.path()));
    // Read back from the file, not from the recording process's caches.
    let history = fixture.record(dir.path());
    check_against_model(&fixture, &history);
    let db = history_db(&history);
    assert_eq!(object_rows(&db), 1, "the large file is a row of its own");
    let head = fixture.store.current_revision();
    assert!(
        packed_objects_below(&db, head + 1) > 3,
        "the rest is packed"
    );
}
