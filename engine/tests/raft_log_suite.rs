//! `WalLogStore` against openraft's storage conformance suite, plus durability across reopen.
//!
//! The suite also exercises the state machine (applied state, membership, snapshot build and
//! transfer), so it runs against the real `MvccStateMachine`.

use std::sync::Arc;

use cairn_engine::Event;
use cairn_engine::mvcc::{ApplyInput, ApplyOutput, MvccOptions, MvccStore};
use cairn_engine::raft::log_store::WalLogStore;
use cairn_engine::raft::state_machine::{ApplyObserver, MvccStateMachine};
use cairn_engine::raft::types::{LogId, TypeConfig, Vote};
use cairn_engine::wal::WalOptions;
use openraft::StorageError;
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use tempfile::TempDir;

/// The real state machine, observing nothing: the suite drives it directly.
struct NoObserver;

impl ApplyObserver for NoObserver {
    fn applied(&self, _input: &ApplyInput<'_>, _output: &ApplyOutput, _events: Vec<Event>) {}
    fn restored(&self, _store: &MvccStore) {}
}

/// A fresh store in a fresh temp dir per call; the `TempDir` is the suite's guard.
struct Builder {
    options: WalOptions,
}

impl StoreBuilder<TypeConfig, WalLogStore, MvccStateMachine, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, WalLogStore, MvccStateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let store = WalLogStore::open(&dir.path().join("wal"), self.options.clone()).unwrap();
        let sm = MvccStateMachine::open(
            &dir.path().join("mvcc.redb"),
            MvccOptions::default(),
            &dir.path().join("snap"),
            Arc::new(NoObserver),
        )
        .unwrap();
        Ok((dir, store, sm))
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
