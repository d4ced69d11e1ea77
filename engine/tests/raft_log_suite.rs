//! `WalLogStore` against openraft's storage conformance suite, plus durability across reopen.
//!
//! The suite also needs a state machine. It only applies blank and membership entries and
//! moves snapshots around, so a minimal in-memory one is defined here; the log store is what is
//! under test.

use std::io::{self, Cursor};
use std::sync::{Arc, Mutex};

use cairn_engine::raft::log_store::WalLogStore;
use cairn_engine::raft::types::{LogId, StoredMembership, TypeConfig, Vote};
use cairn_engine::wal::WalOptions;
use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{
    EntryResponder, IOFlushed, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use openraft::{EntryPayload, OptionalSend, StorageError};
use tempfile::TempDir;

type SnapshotMeta = openraft::SnapshotMeta<
    <TypeConfig as openraft::RaftTypeConfig>::LeaderId,
    u64,
    cairn_engine::raft::types::MemberNode,
>;
type Snapshot = openraft::Snapshot<
    <TypeConfig as openraft::RaftTypeConfig>::LeaderId,
    u64,
    cairn_engine::raft::types::MemberNode,
    Cursor<Vec<u8>>,
>;

#[derive(Default)]
struct SmState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
}

/// Applies nothing but raft's own entries; snapshots carry only the metadata.
#[derive(Clone, Default)]
struct MemStateMachine {
    state: Arc<Mutex<SmState>>,
}

impl RaftSnapshotBuilder<TypeConfig> for MemStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let mut state = self.state.lock().unwrap();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
        };
        state.snapshot = Some((meta.clone(), Vec::new()));
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(Vec::new()),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemStateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let state = self.state.lock().unwrap();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            {
                let mut state = self.state.lock().unwrap();
                state.last_applied = Some(log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    state.membership = StoredMembership::new(Some(log_id), m.clone());
                }
            }
            if let Some(responder) = responder {
                responder.send(cairn_engine::raft::types::Applied {
                    revision: 0,
                    result: Ok(cairn_engine::request::CommandResponse::Compact),
                });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let mut state = self.state.lock().unwrap();
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.snapshot = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let state = self.state.lock().unwrap();
        Ok(state.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Cursor::new(data.clone()),
        }))
    }
}

/// A fresh store in a fresh temp dir per call; the `TempDir` is the suite's guard.
struct Builder {
    options: WalOptions,
}

impl StoreBuilder<TypeConfig, WalLogStore, MemStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, WalLogStore, MemStateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let store = WalLogStore::open(dir.path(), self.options.clone()).unwrap();
        Ok((dir, store, MemStateMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_log_suite() {
    Suite::test_all(Builder {
        options: WalOptions::default(),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_log_suite_with_tiny_segments() {
    // Every entry rolls a segment: truncation and purge cross segment boundaries.
    Suite::test_all(Builder {
        options: WalOptions {
            segment_size: 1,
            ..WalOptions::default()
        },
    })
    .await
    .unwrap();
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        <TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(term, 1),
        index,
    )
}

fn blank(term: u64, index: u64) -> cairn_engine::raft::types::Entry {
    cairn_engine::raft::types::Entry::new_blank(log_id(term, index))
}

/// Appends and waits for the durability callback.
async fn append(store: &mut WalLogStore, entries: Vec<cairn_engine::raft::types::Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size: 200,
        ..WalOptions::default()
    };
    let vote = Vote::new(5, 1);
    {
        let mut store = WalLogStore::open(dir.path(), options.clone()).unwrap();
        append(&mut store, (1..=30).map(|i| blank(2, i)).collect()).await;
        assert!(store.wal_stats().fsync_count() >= 1);
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(2, 25))).await.unwrap();
        store.purge(log_id(2, 10)).await.unwrap();
        store.truncate_after(Some(log_id(2, 27))).await.unwrap();
        append(&mut store, vec![blank(5, 28)]).await;
    }
    let mut store = WalLogStore::open(dir.path(), options).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 10)));
    assert_eq!(state.last_log_id, Some(log_id(5, 28)));
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 25)));
    let mut reader = store.get_log_reader().await;
    assert_eq!(reader.read_vote().await.unwrap(), Some(vote));
    let entries = reader.try_get_log_entries(0..100).await.unwrap();
    let ids: Vec<LogId> = entries.iter().map(RaftEntry::log_id).collect();
    let mut want: Vec<LogId> = (11..=27).map(|i| log_id(2, i)).collect();
    want.push(log_id(5, 28));
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_past_the_last_entry_continues_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = WalLogStore::open(dir.path(), WalOptions::default()).unwrap();
        append(&mut store, (0..=5).map(|i| blank(1, i)).collect()).await;
        // As after installing a snapshot that is ahead of the log.
        store.purge(log_id(3, 40)).await.unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(3, 40)));
    }
    let mut store = WalLogStore::open(dir.path(), WalOptions::default()).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 40)));
    assert_eq!(state.last_log_id, Some(log_id(3, 40)));
    append(&mut store, vec![blank(3, 41)]).await;
    let mut reader = store.get_log_reader().await;
    assert_eq!(
        reader.try_get_log_entries(..).await.unwrap(),
        vec![blank(3, 41)]
    );
}
