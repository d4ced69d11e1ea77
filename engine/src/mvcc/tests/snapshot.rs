//! Snapshot write and restore.

use super::*;
use crate::mvcc::{MvccError, SNAPSHOT_MAGIC};

fn populated() -> Fixture {
    let f = open();
    f.apply(Command::LeaseGrant { id: 3, ttl: 30 });
    f.put("a", "1");
    f.put_lease("b\0x", "2", 3);
    f.put("a", "3");
    f.delete("a", "");
    f.put("c", "4");
    f.apply(Command::Compact { revision: 3 });
    f
}

#[test]
fn round_trip_preserves_everything() {
    let f = populated();
    let mut bytes = Vec::new();
    let info = f.store.write_snapshot(&mut bytes).expect("snapshot");
    assert_eq!(&bytes[..8], &SNAPSHOT_MAGIC);
    assert_eq!(info.size_bytes, bytes.len() as u64);
    assert_eq!((info.revision, info.compact_revision), (6, 3));
    let target = f.dir.path().join("restored.redb");
    let restored =
        MvccStore::restore_snapshot(&target, &mut bytes.as_slice(), MvccOptions::default())
            .expect("restore");
    assert_eq!(
        restored.hash().expect("hash"),
        f.store.hash().expect("hash")
    );
    assert_eq!(restored.current_revision(), 6);
    assert_eq!(restored.compact_revision(), 3);
    assert_eq!(restored.lease_keys(3).expect("keys"), [b("b\0x")]);
    assert_eq!(restored.raft_state().expect("raft"), Some(b"raft".to_vec()));
    assert_eq!(restored.hash_kv(0), f.store.hash_kv(0));
    assert_eq!(restored.events(4, 6, 10), f.store.events(4, 6, 10));
}

#[test]
fn zero_padding_after_the_digest_is_accepted() {
    // The Snapshot RPC pads to etcd's 512-byte alignment before its own trailing digest.
    let f = populated();
    let mut bytes = Vec::new();
    f.store.write_snapshot(&mut bytes).expect("snapshot");
    bytes.resize(bytes.len() + 300, 0);
    let target = f.dir.path().join("padded.redb");
    let restored =
        MvccStore::restore_snapshot(&target, &mut bytes.as_slice(), MvccOptions::default())
            .expect("padded snapshot restores");
    assert_eq!(restored.current_revision(), f.store.current_revision());
}

#[test]
fn corrupt_snapshots_are_refused_and_leave_no_file() {
    let f = populated();
    let mut bytes = Vec::new();
    f.store.write_snapshot(&mut bytes).expect("snapshot");
    let target = f.dir.path().join("restored.redb");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let result =
        MvccStore::restore_snapshot(&target, &mut flipped.as_slice(), MvccOptions::default());
    assert!(
        matches!(result, Err(MvccError::InvalidSnapshot { .. })),
        "{:?}",
        result.err()
    );
    assert!(!target.exists());
    let truncated = &bytes[..bytes.len() - 1];
    let result = MvccStore::restore_snapshot(&target, &mut &truncated[..], MvccOptions::default());
    assert!(matches!(result, Err(MvccError::InvalidSnapshot { .. })));
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0, 0, 7]);
    let result =
        MvccStore::restore_snapshot(&target, &mut trailing.as_slice(), MvccOptions::default());
    assert!(matches!(result, Err(MvccError::InvalidSnapshot { .. })));
    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    let result =
        MvccStore::restore_snapshot(&target, &mut bad_magic.as_slice(), MvccOptions::default());
    assert!(matches!(
        result,
        Err(MvccError::InvalidSnapshot { what: "bad magic" })
    ));
    assert!(!target.exists());
}

#[test]
fn restore_refuses_an_existing_path() {
    let f = populated();
    let mut bytes = Vec::new();
    f.store.write_snapshot(&mut bytes).expect("snapshot");
    let result =
        MvccStore::restore_snapshot(&f.path(), &mut bytes.as_slice(), MvccOptions::default());
    assert!(matches!(result, Err(MvccError::AlreadyExists { .. })));
}
