//! Compaction: errors, what survives, events after compaction.

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::*;
use crate::mvcc::tables;

/// Row counts of the history and changes tables.
fn history_and_changes(f: &Fixture) -> (u64, u64) {
    let db = f.store.db();
    let txn = db.begin_read().expect("read txn");
    let history = txn
        .open_table(tables::HISTORY)
        .expect("history")
        .len()
        .expect("len");
    let changes = txn
        .open_table(tables::CHANGES)
        .expect("changes")
        .len()
        .expect("len");
    (history, changes)
}

#[test]
fn compact_errors_and_no_revision_bump() {
    let f = open();
    f.put("a", "1");
    f.put("a", "2");
    assert_eq!(
        f.apply(Command::Compact { revision: 4 }).result,
        Err(KvError::FutureRevision)
    );
    let output = f.apply(Command::Compact { revision: 2 });
    assert_eq!(output.result, Ok(CommandResponse::Compact));
    assert_eq!(output.revision, 3);
    assert_eq!(f.store.compact_revision(), 2);
    assert_eq!(
        f.apply(Command::Compact { revision: 2 }).result,
        Err(KvError::Compacted {
            compact_revision: 2
        })
    );
    assert_eq!(
        f.apply(Command::Compact { revision: 1 }).result,
        Err(KvError::Compacted {
            compact_revision: 2
        })
    );
    assert_eq!(
        f.apply(Command::Compact { revision: 3 }).result,
        Ok(CommandResponse::Compact)
    );
}

#[test]
fn compaction_keeps_the_latest_version_and_drops_tombstones() {
    let f = open();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.delete("a", ""); // 4
    f.put("b", "1"); // 5
    f.put("b", "2"); // 6
    f.put("a", "3"); // 7
    f.put("c", "1"); // 8
    assert_eq!(history_and_changes(&f), (7, 7));
    f.apply(Command::Compact { revision: 5 });
    // a: 2, 3, 4(tombstone) go; b@5 stays (latest <= 5); b@6, a@7, c@8 are newer. The change
    // row of b@5 stays too: a watch from exactly the compact revision still sees it.
    assert_eq!(history_and_changes(&f), (4, 4));
    assert_eq!(f.keys_at("\0", "\0", 5), ["b"]);
    assert_eq!(
        f.get_at("b", 5).expect("read").map(|kv| kv.value),
        Some(b("1"))
    );
    assert_eq!(f.keys_at("\0", "\0", 6), ["b"]);
    assert_eq!(f.keys_at("\0", "\0", 7), ["a", "b"]);
    f.apply(Command::Compact { revision: 8 });
    assert_eq!(history_and_changes(&f), (3, 1));
    assert_eq!(f.keys_at("\0", "\0", 8), ["a", "b", "c"]);
    let b_now = f.get("b").expect("b");
    assert_eq!((b_now.create_revision, b_now.version), (5, 2));
}

#[test]
fn compacting_a_key_deleted_at_the_compact_revision_removes_it() {
    let f = open();
    f.put("a", "1"); // 2
    f.delete("a", ""); // 3
    f.apply(Command::Compact { revision: 3 });
    assert_eq!(history_and_changes(&f), (0, 0));
    assert_eq!(f.get_at("a", 3).expect("read"), None);
}

#[test]
fn events_after_compaction() {
    let f = open();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.put("a", "3"); // 4
    f.delete("a", ""); // 5
    f.apply(Command::Compact { revision: 3 });
    assert_eq!(
        f.store.events(2, 10, 100),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
    // From exactly the compact revision, as etcd: its put is still there, without prev_kv
    // (the previous version is compacted away).
    let from_compact = f
        .store
        .events(3, 10, 100)
        .expect("events from the compact revision");
    assert_eq!(from_compact.len(), 3);
    assert_eq!(from_compact[0].kv.mod_revision, 3);
    assert_eq!(from_compact[0].prev_kv, None);
    let events = f.store.events(4, 10, 100).expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b("2"))
    );
    assert_eq!(
        events[1].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b("3"))
    );
}

#[test]
fn pending_compaction_is_invisible_to_reads_hashes_and_events() {
    let f = open();
    for i in 0..20 {
        f.put(&format!("k{}", i % 4), &format!("v{i}")); // 2..=21
    }
    f.delete("k0", ""); // 22
    f.put("k1", "last"); // 23
    assert!(
        f.apply_only(Command::Compact { revision: 21 })
            .result
            .is_ok()
    );
    let before = (
        f.keys_at("\0", "\0", 21),
        f.keys_at("\0", "\0", 23),
        f.store.hash_kv(0).expect("hash"),
        f.store.events(21, 23, 100).expect("events"),
    );
    let (history_pending, _) = history_and_changes(&f);
    assert!(
        f.store.compact_step(2).expect("step"),
        "more work after a small step"
    );
    let midway = (
        f.keys_at("\0", "\0", 21),
        f.keys_at("\0", "\0", 23),
        f.store.hash_kv(0).expect("hash"),
        f.store.events(21, 23, 100).expect("events"),
    );
    f.finish_compaction();
    let after = (
        f.keys_at("\0", "\0", 21),
        f.keys_at("\0", "\0", 23),
        f.store.hash_kv(0).expect("hash"),
        f.store.events(21, 23, 100).expect("events"),
    );
    assert_eq!(before, midway);
    assert_eq!(before, after);
    let (history_done, _) = history_and_changes(&f);
    assert!(
        history_done < history_pending,
        "{history_done} < {history_pending}"
    );
    assert!(!f.store.compact_step(100).expect("step"), "nothing left");
}
