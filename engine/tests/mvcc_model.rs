//! Model test of the MVCC store: random sequences of puts, deletes, txns, compactions and
//! (historical) ranges, applied in random batches, against a naive model that keeps every
//! version in a `BTreeMap<(key, main, sub), Option<KeyValue>>` and answers every read by brute
//! force. Apply outputs (revision, response, events), range responses and the event history
//! must match exactly.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_engine::error::KvError;
use cairn_engine::kv::{Event, EventKind, KeyValue};
use cairn_engine::mvcc::{ApplyInput, ApplyOutput, MvccOptions, MvccStore, RecordedRevision};
use cairn_engine::request::{
    Command, CommandResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, Proposal, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use proptest::prelude::*;

// ───────────────────────────── the model ─────────────────────────────

#[derive(Default)]
struct Model {
    /// Every version ever written; `None` is a tombstone.
    versions: BTreeMap<(Vec<u8>, i64, i64), Option<KeyValue>>,
    /// The store revision after the last command.
    revision: i64,
    compact: i64,
    /// Changes made by the command being applied.
    sub: i64,
    events: Vec<Event>,
    history: Vec<Event>,
    /// Granted leases: id → ttl.
    leases: BTreeMap<i64, i64>,
}

fn in_span(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

impl Model {
    fn new() -> Self {
        Model {
            revision: 1,
            ..Model::default()
        }
    }

    /// The revision reads inside the current command see.
    fn view(&self) -> i64 {
        self.revision + i64::from(self.sub > 0)
    }

    /// Every key alive at `rev`, in key order.
    fn state_at(&self, rev: i64) -> BTreeMap<Vec<u8>, KeyValue> {
        let mut state = BTreeMap::new();
        for ((key, main, _), version) in &self.versions {
            if *main <= rev {
                match version {
                    Some(kv) => state.insert(key.clone(), kv.clone()),
                    None => state.remove(key),
                };
            }
        }
        state
    }

    fn resolve(&self, revision: i64) -> Result<i64, KvError> {
        let view = self.view();
        if revision <= 0 {
            Ok(view)
        } else if revision > view {
            Err(KvError::FutureRevision)
        } else if revision < self.compact {
            Err(KvError::Compacted {
                compact_revision: self.compact,
            })
        } else {
            Ok(revision)
        }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, KvError> {
        let rev = self.resolve(req.revision)?;
        let mut kvs: Vec<KeyValue> = self
            .state_at(rev)
            .into_values()
            .filter(|kv| in_span(&kv.key, &req.key, &req.range_end))
            .collect();
        let count = kvs.len() as i64;
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
        let field = |kv: &KeyValue| -> (i64, Bytes) {
            match req.sort_target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, Bytes::new()),
                SortTarget::Create => (kv.create_revision, Bytes::new()),
                SortTarget::Mod => (kv.mod_revision, Bytes::new()),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        match req.sort_order {
            SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(field(kv))),
            SortOrder::Ascend => kvs.sort_by_key(field),
            SortOrder::None if req.sort_target != SortTarget::Key => kvs.sort_by_key(field),
            SortOrder::None => {}
        }
        if req.count_only {
            kvs.clear();
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse { kvs, more, count })
    }

    fn current(&self, key: &[u8]) -> Option<KeyValue> {
        self.state_at(self.view()).remove(key)
    }

    fn write(&mut self, key: &[u8], version: Option<KeyValue>, prev: Option<KeyValue>) {
        let main = self.revision + 1;
        self.versions
            .insert((key.to_vec(), main, self.sub), version.clone());
        self.sub += 1;
        let (kind, kv) = match version {
            Some(kv) => (EventKind::Put, kv),
            None => (
                EventKind::Delete,
                KeyValue {
                    key: Bytes::copy_from_slice(key),
                    mod_revision: main,
                    ..KeyValue::default()
                },
            ),
        };
        self.events.push(Event {
            kind,
            kv,
            prev_kv: prev,
        });
    }

    fn put(&mut self, req: &PutRequest) -> PutResponse {
        let prev = self.current(&req.key);
        let main = self.revision + 1;
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(main, |p| p.create_revision),
            mod_revision: main,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value: req.value.clone(),
            lease: req.lease,
        };
        self.write(&req.key, Some(kv), prev.clone());
        PutResponse {
            prev_kv: if req.prev_kv { prev } else { None },
        }
    }

    fn delete(&mut self, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> = self
            .state_at(self.view())
            .into_values()
            .filter(|kv| in_span(&kv.key, &req.key, &req.range_end))
            .collect();
        for kv in &doomed {
            self.write(&kv.key, None, Some(kv.clone()));
        }
        DeleteRangeResponse {
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn compare(&self, compare: &Compare) -> bool {
        let kvs: Vec<KeyValue> = self
            .state_at(self.view())
            .into_values()
            .filter(|kv| in_span(&kv.key, &compare.key, &compare.range_end))
            .collect();
        if kvs.is_empty() && matches!(compare.target, CompareTarget::Value(_)) {
            return false;
        }
        let kvs = if kvs.is_empty() {
            vec![KeyValue::default()]
        } else {
            kvs
        };
        kvs.iter().all(|kv| {
            let ordering = match &compare.target {
                CompareTarget::Version(v) => kv.version.cmp(v),
                CompareTarget::Create(v) => kv.create_revision.cmp(v),
                CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                CompareTarget::Lease(v) => kv.lease.cmp(v),
                CompareTarget::Value(v) => kv.value.cmp(v),
            };
            match compare.result {
                CompareResult::Equal => ordering.is_eq(),
                CompareResult::NotEqual => ordering.is_ne(),
                CompareResult::Greater => ordering.is_gt(),
                CompareResult::Less => ordering.is_lt(),
            }
        })
    }

    /// The branch taken by `req` and by every nested txn on the taken branches, pre-order,
    /// all judged against the state at the start of the txn.
    fn path(&self, req: &TxnRequest, path: &mut Vec<bool>) {
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        path.push(succeeded);
        for op in if succeeded {
            &req.success
        } else {
            &req.failure
        } {
            if let RequestOp::Txn(nested) = op {
                self.path(nested, path);
            }
        }
    }

    /// The taken operations, flattened in execution order.
    fn taken<'r>(
        req: &'r TxnRequest,
        path: &mut impl Iterator<Item = bool>,
        out: &mut Vec<&'r RequestOp>,
    ) {
        let succeeded = path.next().expect("path covers every nested txn");
        for op in if succeeded {
            &req.success
        } else {
            &req.failure
        } {
            out.push(op);
            if let RequestOp::Txn(nested) = op {
                Self::taken(nested, path, out);
            }
        }
    }

    fn run(&mut self, req: &TxnRequest, path: &mut impl Iterator<Item = bool>) -> TxnResponse {
        let succeeded = path.next().expect("path covers every nested txn");
        let mut responses = Vec::new();
        for op in if succeeded {
            &req.success
        } else {
            &req.failure
        } {
            responses.push(match op {
                RequestOp::Range(range) => {
                    ResponseOp::Range(self.range(range).expect("ranges were checked"))
                }
                RequestOp::Put(put) => ResponseOp::Put(self.put(put)),
                RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(self.delete(delete)),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.run(nested, path)),
            });
        }
        TxnResponse {
            succeeded,
            responses,
        }
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, KvError> {
        let mut path = Vec::new();
        self.path(req, &mut path);
        let mut taken = Vec::new();
        Self::taken(req, &mut path.iter().copied(), &mut taken);
        for op in &taken {
            if let RequestOp::Put(put) = op
                && put.lease != 0
                && !self.leases.contains_key(&put.lease)
            {
                return Err(KvError::LeaseNotFound);
            }
        }
        for op in &taken {
            if let RequestOp::Range(range) = op
                && range.revision > 0
            {
                self.resolve(range.revision)?;
            }
        }
        Ok(self.run(req, &mut path.into_iter()))
    }

    /// Keys attached to lease `id`, in key order.
    fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        self.state_at(self.view())
            .into_values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key)
            .collect()
    }

    fn apply(&mut self, command: &Command) -> ApplyOutput {
        self.sub = 0;
        self.events.clear();
        let result = match command {
            Command::Put(put) if put.lease != 0 && !self.leases.contains_key(&put.lease) => {
                Err(KvError::LeaseNotFound)
            }
            Command::Put(put) => Ok(CommandResponse::Put(self.put(put))),
            Command::DeleteRange(delete) => Ok(CommandResponse::DeleteRange(self.delete(delete))),
            Command::Txn(txn) => self.txn(txn).map(CommandResponse::Txn),
            Command::Compact { revision } => {
                if *revision <= self.compact {
                    Err(KvError::Compacted {
                        compact_revision: self.compact,
                    })
                } else if *revision > self.revision {
                    Err(KvError::FutureRevision)
                } else {
                    self.compact = *revision;
                    Ok(CommandResponse::Compact)
                }
            }
            Command::LeaseGrant { id, ttl } => {
                if self.leases.contains_key(id) {
                    Err(KvError::LeaseExists)
                } else {
                    self.leases.insert(*id, *ttl);
                    Ok(CommandResponse::LeaseGrant { id: *id, ttl: *ttl })
                }
            }
            Command::LeaseRevoke { id } => {
                if self.leases.remove(id).is_some() {
                    for kv in self.state_at(self.view()).into_values() {
                        if kv.lease == *id {
                            self.write(&kv.key.clone(), None, Some(kv));
                        }
                    }
                    Ok(CommandResponse::LeaseRevoke)
                } else {
                    Err(KvError::LeaseNotFound)
                }
            }
            Command::Alarm { .. } => unreachable!("the generator makes no alarms"),
        };
        if self.sub > 0 {
            self.revision += 1;
        }
        self.sub = 0;
        let events = std::mem::take(&mut self.events);
        self.history.extend(events.iter().cloned());
        ApplyOutput {
            revision: self.revision,
            result,
            events,
        }
    }
}

// ───────────────────────────── generators ─────────────────────────────

const KEYS: [&str; 6] = ["a", "ab", "b", "b\0", "c", "d"];

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(&KEYS[..]).prop_map(|k| Bytes::from_static(k.as_bytes()))
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => Just(Bytes::new()),
        1 => Just(Bytes::from_static(b"\0")),
        2 => prop::sample::select(&["b", "c", "e", "ab"][..]).prop_map(|k| Bytes::from_static(k.as_bytes())),
    ]
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(&["", "x", "y", "zz"][..]).prop_map(|v| Bytes::from_static(v.as_bytes()))
}

fn lease() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 1 => Just(1i64), 1 => Just(2i64)]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), value(), any::<bool>(), lease()).prop_map(|(key, value, prev_kv, lease)| PutRequest {
        key,
        value,
        prev_kv,
        lease,
        ..PutRequest::default()
    })
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

/// A range request; `revision` is a back-offset resolved when the step runs (-1 = future).
fn range(historical: bool) -> impl Strategy<Value = (RangeRequest, Option<i64>)> {
    let sort_order =
        prop::sample::select(&[SortOrder::None, SortOrder::Ascend, SortOrder::Descend][..]);
    let sort_target = prop::sample::select(
        &[
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value,
        ][..],
    );
    let back = if historical {
        prop_oneof![2 => Just(None), 3 => (-1i64..6).prop_map(Some)].boxed()
    } else {
        Just(None).boxed()
    };
    (
        (key(), range_end(), 0i64..4, sort_order, sort_target),
        (any::<bool>(), prop::bool::weighted(0.15), 0i64..6, 0i64..6),
        back,
    )
        .prop_map(
            |(
                (key, range_end, limit, sort_order, sort_target),
                (keys_only, count_only, min_mod, max_create),
                back,
            )| {
                (
                    RangeRequest {
                        key,
                        range_end,
                        limit,
                        sort_order,
                        sort_target,
                        keys_only,
                        count_only,
                        min_mod_revision: min_mod,
                        max_create_revision: if max_create > 3 { 0 } else { max_create * 3 },
                        ..RangeRequest::default()
                    },
                    back,
                )
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..3).prop_map(CompareTarget::Version),
        (0i64..8).prop_map(CompareTarget::Mod),
        (0i64..8).prop_map(CompareTarget::Create),
        value().prop_map(CompareTarget::Value),
    ];
    let result = prop::sample::select(
        &[
            CompareResult::Equal,
            CompareResult::NotEqual,
            CompareResult::Greater,
            CompareResult::Less,
        ][..],
    );
    (
        key(),
        prop_oneof![3 => Just(Bytes::new()), 1 => range_end()],
        result,
        target,
    )
        .prop_map(|(key, range_end, result, target)| Compare {
            result,
            target,
            key,
            range_end,
        })
}

fn flat_op() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        3 => put().prop_map(RequestOp::Put),
        2 => delete().prop_map(RequestOp::DeleteRange),
        2 => range(false).prop_map(|(range, _)| RequestOp::Range(range)),
    ]
}

fn txn_with(op: BoxedStrategy<RequestOp>) -> impl Strategy<Value = TxnRequest> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

/// A txn whose operations may include one level of nested txns.
fn txn() -> impl Strategy<Value = TxnRequest> {
    let op = prop_oneof![
        6 => flat_op(),
        1 => txn_with(flat_op().boxed()).prop_map(RequestOp::Txn),
    ];
    txn_with(op.boxed())
}

#[derive(Clone, Debug)]
enum Step {
    /// Commands applied in one batch; a `Compact` here carries a back-offset from the
    /// current revision (negative = future) resolved when the step runs.
    Apply(Vec<Command>),
    Range(RangeRequest, Option<i64>),
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        5 => put().prop_map(Command::Put),
        2 => delete().prop_map(Command::DeleteRange),
        3 => txn().prop_map(Command::Txn),
        1 => (-1i64..5).prop_map(|back| Command::Compact { revision: back }),
        1 => (1i64..3).prop_map(|id| Command::LeaseGrant { id, ttl: 10 }),
        1 => (1i64..3).prop_map(|id| Command::LeaseRevoke { id }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => prop::collection::vec(command(), 1..4).prop_map(Step::Apply),
        2 => range(true).prop_map(|(req, back)| Step::Range(req, back)),
    ]
}

// ───────────────────────────── the test ─────────────────────────────

fn back_to_revision(current: i64, back: i64) -> i64 {
    if back < 0 {
        current + 1
    } else {
        (current - back).max(1)
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|err| TestCaseError::fail(err.to_string()))?;
    let store = MvccStore::open(&dir.path().join("model.redb"), MvccOptions::default())
        .map_err(|err| TestCaseError::fail(err.to_string()))?;
    let mut model = Model::new();
    for step in steps {
        match step {
            Step::Apply(commands) => {
                // Compaction targets are relative to the revision at the start of the batch.
                let commands: Vec<Command> = commands
                    .iter()
                    .map(|command| match command {
                        Command::Compact { revision: back } => Command::Compact {
                            revision: back_to_revision(model.revision, *back),
                        },
                        other => other.clone(),
                    })
                    .collect();
                let proposals: Vec<Proposal> = commands
                    .iter()
                    .map(|command| Proposal {
                        command: command.clone(),
                        time_unix_ms: 1_700_000_000_000 + model.revision as u64,
                        origin: cairn_engine::request::Origin {
                            user: "model".to_owned(),
                            agent: String::new(),
                        },
                    })
                    .collect();
                let inputs: Vec<ApplyInput<'_>> = proposals
                    .iter()
                    .enumerate()
                    .map(|(index, proposal)| ApplyInput {
                        proposal: Some(proposal),
                        log_term: 2,
                        log_index: model.revision as u64 * 10 + index as u64,
                    })
                    .collect();
                let outputs = store
                    .apply(&inputs, b"", false)
                    .map_err(|err| TestCaseError::fail(err.to_string()))?;
                let revision_before = model.revision;
                let expected: Vec<ApplyOutput> = commands.iter().map(|c| model.apply(c)).collect();
                prop_assert_eq!(&outputs, &expected, "commands {:?}", commands);
                // What the apply hands history is what history would read back from the store.
                let mut before = revision_before;
                for (input, output) in inputs.iter().zip(&outputs) {
                    let handed = RecordedRevision::applied(input, output.revision, &output.events);
                    let read = store
                        .recorded_revisions(before + 1, 1)
                        .map_err(|err| TestCaseError::fail(err.to_string()))?
                        .into_iter()
                        .next()
                        .filter(|read| read.revision == output.revision);
                    prop_assert_eq!(handed, read, "revision {}", output.revision);
                    before = output.revision;
                }
                prop_assert_eq!(store.current_revision(), model.revision);
                prop_assert_eq!(store.compact_revision(), model.compact);
            }
            Step::Range(req, back) => {
                let mut req = req.clone();
                req.revision = back.map_or(0, |back| back_to_revision(model.revision, back));
                let actual = store.range(&req);
                let expected = model.range(&req).map(|response| (response, model.revision));
                prop_assert_eq!(actual, expected, "range {:?}", req);
            }
        }
    }
    let events = store.events(model.compact + 1, model.revision, usize::MAX);
    let expected: Vec<Event> = model
        .history
        .iter()
        .filter(|event| event.revision() > model.compact)
        .cloned()
        .collect();
    prop_assert_eq!(events, Ok(expected));
    let leases: Vec<(i64, i64)> = model.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect();
    prop_assert_eq!(
        store
            .leases()
            .map_err(|err| TestCaseError::fail(err.to_string()))?,
        leases
    );
    for id in 1..3 {
        let keys = store
            .lease_keys(id)
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(keys, model.lease_keys(id), "keys of lease {}", id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(steps in prop::collection::vec(step(), 1..40)) {
        run(&steps)?;
    }
}
