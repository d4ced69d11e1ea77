//! Reopen, raft state, events, hashes, sizes and defragmentation.

use super::*;

#[test]
fn reopen_after_apply_keeps_state() {
    let f = open();
    let proposal = Proposal {
        command: Command::Put(put_req("a", "1")),
        time_unix_ms: 1,
        origin: crate::request::Origin::default(),
    };
    f.store
        .apply(
            &[ApplyInput {
                proposal: Some(&proposal),
                log_term: 0,
                log_index: 0,
            }],
            b"state-1",
            true,
        )
        .expect("apply");
    f.apply(Command::Compact { revision: 2 });
    f.store.apply(&[], b"state-2", true).expect("checkpoint");
    let f = f.reopen(MvccOptions::default());
    assert_eq!(f.store.current_revision(), 2);
    assert_eq!(f.store.compact_revision(), 2);
    assert_eq!(f.get("a").map(|kv| kv.value), Some(b("1")));
    assert_eq!(
        f.store.raft_state().expect("raft state"),
        Some(b"state-2".to_vec())
    );
}

#[test]
fn fresh_store_has_no_raft_state() {
    let f = open();
    assert_eq!(f.store.raft_state().expect("raft state"), None);
}

#[test]
fn batches_give_one_output_per_input_and_blank_entries_change_nothing() {
    let f = open();
    let put = Proposal {
        command: Command::Put(put_req("a", "1")),
        time_unix_ms: 0,
        origin: crate::request::Origin::default(),
    };
    let read_only = Proposal {
        command: Command::Txn(TxnRequest::default()),
        time_unix_ms: 0,
        origin: crate::request::Origin::default(),
    };
    let inputs = [
        ApplyInput {
            proposal: None,
            log_term: 0,
            log_index: 0,
        },
        ApplyInput {
            proposal: Some(&put),
            log_term: 0,
            log_index: 0,
        },
        ApplyInput {
            proposal: Some(&read_only),
            log_term: 0,
            log_index: 0,
        },
        ApplyInput {
            proposal: Some(&put),
            log_term: 0,
            log_index: 0,
        },
    ];
    let outputs = f.store.apply(&inputs, b"", false).expect("apply");
    let revisions: Vec<i64> = outputs.iter().map(|output| output.revision).collect();
    assert_eq!(revisions, [1, 2, 2, 3]);
    assert_eq!(
        outputs[0].result,
        Ok(CommandResponse::Txn(TxnResponse {
            succeeded: true,
            responses: vec![]
        }))
    );
    assert_eq!(f.get("a").map(|kv| kv.version), Some(2));
}

#[test]
fn events_match_apply_outputs_and_keep_revisions_whole() {
    let f = open();
    let mut applied = Vec::new();
    applied.extend(f.put("a", "1").events); // 2
    applied.extend(
        f.txn(TxnRequest {
            compare: vec![],
            success: vec![put_op("b", "1"), put_op("c", "1"), put_op("a", "2")],
            failure: vec![],
        })
        .events,
    ); // 3
    applied.extend(f.delete("a", "c").events); // 4
    assert_eq!(f.store.events(1, 10, 100).expect("events"), applied);
    assert_eq!(
        f.store.events(3, 3, 1).expect("events").len(),
        3,
        "revision 3 is not split"
    );
    assert_eq!(f.store.events(2, 4, 2).expect("events").len(), 4);
    assert_eq!(f.store.events(4, 4, 10).expect("events"), applied[4..]);
    assert!(f.store.events(5, 10, 10).expect("events").is_empty());
}

#[test]
fn hash_kv_agrees_between_identical_stores() {
    let first = open();
    let second = open();
    for f in [&first, &second] {
        f.put("a", "1");
        f.put("b", "2");
        f.delete("a", "");
        f.apply(Command::Compact { revision: 3 });
        f.put("c", "3");
    }
    assert_eq!(first.store.hash_kv(0), second.store.hash_kv(0));
    assert_eq!(
        first.store.hash().expect("hash"),
        second.store.hash().expect("hash")
    );
    let at4 = first.store.hash_kv(4).expect("hash");
    assert_eq!((at4.hash_revision, at4.compact_revision), (4, 3));
    second.put("d", "4");
    assert_eq!(
        second.store.hash_kv(4).expect("hash"),
        at4,
        "later writes do not change it"
    );
    assert_ne!(second.store.hash_kv(0).expect("hash").hash, at4.hash);
    assert_eq!(first.store.hash_kv(6), Err(KvError::FutureRevision));
    assert_eq!(
        first.store.hash_kv(2),
        Err(KvError::Compacted {
            compact_revision: 3
        })
    );
}

#[test]
fn defragment_shrinks_the_file() {
    let f = open();
    let value = "x".repeat(64 * 1024);
    for round in 0..4 {
        let proposals: Vec<Proposal> = (0..16)
            .map(|i| Proposal {
                command: Command::Put(put_req(&format!("k{round}-{i}"), &value)),
                time_unix_ms: 0,
                origin: crate::request::Origin::default(),
            })
            .collect();
        let inputs: Vec<ApplyInput<'_>> = proposals
            .iter()
            .map(|proposal| ApplyInput {
                proposal: Some(proposal),
                log_term: 0,
                log_index: 0,
            })
            .collect();
        f.store.apply(&inputs, b"", true).expect("apply");
    }
    f.delete("\0", "\0");
    f.apply(Command::Compact {
        revision: f.store.current_revision(),
    });
    f.store.apply(&[], b"", true).expect("checkpoint");
    let before = f.store.db_size();
    assert!(f.store.db_size_in_use() > 0);
    f.store.defragment().expect("defragment");
    let after = f.store.db_size();
    assert!(
        after < before / 2,
        "file went from {before} to {after} bytes"
    );
    assert!(f.store.db_size_in_use() <= after);
    f.put("after", "defrag");
    assert_eq!(f.get("after").map(|kv| kv.version), Some(1));
}
