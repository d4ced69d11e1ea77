//! Transaction execution, as etcd's applier runs a `TxnRequest`.
//!
//! ```text
//! 1. path   every compare of the txn and of the nested txns on the chosen branches, evaluated
//!           against the state at the start of the txn (pre-order: one bool per txn)
//! 2. check  along the path, before anything is written: ranges at a future or compacted
//!           revision, puts naming a missing lease, ignore_value/ignore_lease on a missing key
//!           → the whole txn fails and writes nothing
//! 3. run    the chosen operations in order on the Writer; each sees the earlier ones' writes
//! ```
//!
//! A compare with a `range_end` must hold for every key in the range; when the range holds no
//! key, VALUE compares fail and the others compare against zero (etcd `applyCompare`).

use std::cmp::Ordering;

use super::error::OpResult;
use super::read::{KeySpan, Revisions};
use super::write::Writer;
use crate::error::KvError;
use crate::kv::KeyValue;
use crate::request::{
    Compare, CompareResult, CompareTarget, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

/// Runs `req` on `writer`, inside the current command.
pub(crate) fn execute(writer: &mut Writer<'_>, req: &TxnRequest) -> OpResult<TxnResponse> {
    let mut path = Vec::new();
    choose_path(writer, req, &mut path)?;
    let mut checks = Checks {
        effects: Vec::new(),
        range_error: None,
    };
    check(writer, req, &path, &mut 0, &mut checks)?;
    if let Some(error) = checks.range_error {
        return Err(error.into());
    }
    run(writer, req, &path, &mut 0)
}

/// The quota cost of `req` (etcd `costTxn`): the larger of its branches' put sizes, nested txns
/// included.
pub(crate) fn put_cost(req: &TxnRequest, per_put_overhead: u64) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match op {
                RequestOp::Put(put) => {
                    per_put_overhead + put.key.len() as u64 + put.value.len() as u64
                }
                RequestOp::Txn(nested) => put_cost(nested, per_put_overhead),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => 0,
            })
            .sum()
    };
    branch(&req.success).max(branch(&req.failure))
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

fn choose_path(writer: &Writer<'_>, req: &TxnRequest, path: &mut Vec<bool>) -> OpResult<()> {
    let mut succeeded = true;
    for compare in &req.compare {
        if !evaluate(writer, compare)? {
            succeeded = false;
            break;
        }
    }
    path.push(succeeded);
    for op in branch(req, succeeded) {
        if let RequestOp::Txn(nested) = op {
            choose_path(writer, nested, path)?;
        }
    }
    Ok(())
}

fn evaluate(writer: &Writer<'_>, compare: &Compare) -> OpResult<bool> {
    let span = KeySpan::new(&compare.key, &compare.range_end);
    let revisions = writer.revisions();
    let mut holds = true;
    let mut seen = false;
    writer
        .source()
        .visit(span, revisions.current, revisions, |kv| {
            seen = true;
            if holds {
                holds = compare_kv(
                    compare,
                    &kv.to_key_value(matches!(compare.target, CompareTarget::Value(_))),
                );
            }
        })?;
    if seen {
        return Ok(holds);
    }
    if matches!(compare.target, CompareTarget::Value(_)) {
        return Ok(false);
    }
    Ok(compare_kv(compare, &KeyValue::default()))
}

fn compare_kv(compare: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
    };
    match compare.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// A change made by an earlier operation of the txn, used to know whether a key exists when a
/// later put with `ignore_value` / `ignore_lease` runs.
enum Effect<'a> {
    Put(&'a [u8]),
    Delete(KeySpan<'a>),
}

/// What the check pass has seen so far.
struct Checks<'r> {
    effects: Vec<Effect<'r>>,
    /// The first range at a future or compacted revision. etcd checks every put before any
    /// range, so a put error wins over it.
    range_error: Option<KvError>,
}

fn check<'r>(
    writer: &Writer<'_>,
    req: &'r TxnRequest,
    path: &[bool],
    at: &mut usize,
    checks: &mut Checks<'r>,
) -> OpResult<()> {
    let succeeded = path.get(*at).copied().unwrap_or(true);
    *at += 1;
    let start = writer.revisions();
    for op in branch(req, succeeded) {
        match op {
            RequestOp::Range(range) => {
                if let Err(error) = check_range_revision(start, range.revision) {
                    checks.range_error.get_or_insert(error);
                }
            }
            RequestOp::Put(put) => {
                if (put.ignore_value || put.ignore_lease)
                    && !key_exists(writer, &put.key, &checks.effects)?
                {
                    return Err(KvError::KeyNotFound.into());
                }
                if put.lease != 0 && !writer.lease_exists(put.lease)? {
                    return Err(KvError::LeaseNotFound.into());
                }
                checks.effects.push(Effect::Put(&put.key));
            }
            RequestOp::DeleteRange(delete) => {
                checks
                    .effects
                    .push(Effect::Delete(KeySpan::new(&delete.key, &delete.range_end)));
            }
            RequestOp::Txn(nested) => check(writer, nested, path, at, checks)?,
        }
    }
    Ok(())
}

fn check_range_revision(start: Revisions, revision: i64) -> Result<(), KvError> {
    if revision > 0 {
        start.resolve(revision)?;
    }
    Ok(())
}

fn key_exists(writer: &Writer<'_>, key: &[u8], effects: &[Effect<'_>]) -> OpResult<bool> {
    for effect in effects.iter().rev() {
        match effect {
            Effect::Put(put) if *put == key => return Ok(true),
            Effect::Delete(span) if span.contains(key) => return Ok(false),
            Effect::Put(_) | Effect::Delete(_) => {}
        }
    }
    Ok(writer.source().get(key)?.is_some())
}

fn run(
    writer: &mut Writer<'_>,
    req: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> OpResult<TxnResponse> {
    let succeeded = path.get(*at).copied().unwrap_or(true);
    *at += 1;
    let ops = branch(req, succeeded);
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match op {
            RequestOp::Range(range) => ResponseOp::Range(writer.range(range)?),
            RequestOp::Put(put) => ResponseOp::Put(writer.put(put)?),
            RequestOp::DeleteRange(delete) => ResponseOp::DeleteRange(writer.delete_range(delete)?),
            RequestOp::Txn(nested) => ResponseOp::Txn(run(writer, nested, path, at)?),
        };
        responses.push(response);
    }
    Ok(TxnResponse {
        succeeded,
        responses,
    })
}
