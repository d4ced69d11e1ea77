//! Store-level tests of the MVCC rules, through the public API, one file per area.

mod compact;
mod leases;
mod maintenance;
mod quota;
mod range;
mod snapshot;
mod txn;

use std::path::PathBuf;

use bytes::Bytes;
use tempfile::TempDir;

use super::{ApplyInput, ApplyOutput, MvccOptions, MvccStore};
use crate::error::KvError;
use crate::kv::{Event, KeyValue};
use crate::request::{
    Command, CommandResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest, Proposal,
    PutRequest, RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};

/// A store in a temporary directory.
pub(super) struct Fixture {
    dir: TempDir,
    pub store: MvccStore,
}

pub(super) fn open() -> Fixture {
    open_with(MvccOptions::default())
}

pub(super) fn open_with(options: MvccOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = MvccStore::open(&dir.path().join("mvcc.redb"), options).expect("open store");
    Fixture { dir, store }
}

impl Fixture {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("mvcc.redb")
    }

    /// Closes and reopens the store with `options`.
    pub fn reopen(self, options: MvccOptions) -> Fixture {
        let Fixture { dir, store } = self;
        drop(store);
        let store = MvccStore::open(&dir.path().join("mvcc.redb"), options).expect("reopen");
        Fixture { dir, store }
    }

    /// Applies one command, then runs any pending compaction's physical removal to the end.
    pub fn apply(&self, command: Command) -> ApplyOutput {
        let output = self.apply_only(command);
        self.finish_compaction();
        output
    }

    /// Runs the physical removal of a pending compaction to the end, in tiny steps.
    pub fn finish_compaction(&self) {
        while self.store.compact_step(1).expect("compact step") {}
    }

    /// Applies without running a pending compaction's physical removal.
    pub fn apply_only(&self, command: Command) -> ApplyOutput {
        let proposal = Proposal {
            command,
            time_unix_ms: 0,
            origin: crate::request::Origin::default(),
        };
        let mut outputs = self
            .store
            .apply(
                &[ApplyInput {
                    proposal: Some(&proposal),
                    log_term: 0,
                    log_index: 0,
                }],
                b"raft",
                false,
            )
            .expect("apply");
        assert_eq!(outputs.len(), 1);
        outputs.remove(0)
    }

    pub fn put(&self, key: &str, value: &str) -> ApplyOutput {
        self.apply(Command::Put(put_req(key, value)))
    }

    pub fn put_lease(&self, key: &str, value: &str, lease: i64) -> ApplyOutput {
        self.apply(Command::Put(PutRequest {
            lease,
            ..put_req(key, value)
        }))
    }

    pub fn delete(&self, key: &str, range_end: &str) -> ApplyOutput {
        self.apply(Command::DeleteRange(DeleteRangeRequest {
            key: b(key),
            range_end: b(range_end),
            prev_kv: true,
        }))
    }

    pub fn txn(&self, txn: TxnRequest) -> ApplyOutput {
        self.apply(Command::Txn(txn))
    }

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        self.store.range(req).map(|(response, _)| response)
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        let mut response = self.range(&range_req(key, "")).expect("range");
        assert!(response.kvs.len() <= 1);
        response.kvs.pop()
    }

    pub fn get_at(&self, key: &str, revision: i64) -> Result<Option<KeyValue>, KvError> {
        let req = RangeRequest {
            revision,
            ..range_req(key, "")
        };
        self.range(&req).map(|mut response| response.kvs.pop())
    }

    /// Keys of a range at `revision`.
    pub fn keys_at(&self, key: &str, range_end: &str, revision: i64) -> Vec<String> {
        let req = RangeRequest {
            revision,
            ..range_req(key, range_end)
        };
        self.range(&req)
            .expect("range")
            .kvs
            .iter()
            .map(|kv| s(&kv.key))
            .collect()
    }
}

pub(super) fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub(super) fn s(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(super) fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: b(key),
        value: b(value),
        ..PutRequest::default()
    }
}

pub(super) fn range_req(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        range_end: b(range_end),
        ..RangeRequest::default()
    }
}

pub(super) fn compare(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        result,
        target,
        key: b(key),
        range_end: Bytes::new(),
    }
}

pub(super) fn txn_response(output: &ApplyOutput) -> &TxnResponse {
    match &output.result {
        Ok(CommandResponse::Txn(response)) => response,
        other => panic!("expected a txn response, got {other:?}"),
    }
}

pub(super) fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(put_req(key, value))
}

pub(super) fn event_summary(events: &[Event]) -> Vec<(crate::kv::EventKind, String, i64)> {
    events
        .iter()
        .map(|event| (event.kind, s(&event.kv.key), event.kv.mod_revision))
        .collect()
}
