//! Request checks done before the engine sees a request, exactly as etcd's `v3rpc/key.go`
//! (`checkRangeRequest`, `checkPutRequest`, `checkDeleteRequest`, `checkTxnRequest`,
//! `checkIntervals`) and etcd's request size limit.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use bytes::Bytes;

use crate::pb::etcdserverpb as pb;
use crate::status::EtcdError;

pub type CheckResult = Result<(), EtcdError>;

pub fn check_range_request(r: &pb::RangeRequest) -> CheckResult {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if pb::range_request::SortOrder::try_from(r.sort_order).is_err()
        || pb::range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put_request(r: &pb::PutRequest) -> CheckResult {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete_request(r: &pb::DeleteRangeRequest) -> CheckResult {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// Everything etcd checks on a Txn: the op counts and keys, then put/delete overlaps in each branch.
pub fn check_txn(r: &pb::TxnRequest, max_txn_ops: usize) -> CheckResult {
    check_txn_request(r, max_txn_ops)?;
    // Overlaps are checked after the op counts, which bound the work they take.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// etcd counts compares, success ops and failure ops separately: the largest of the three must not
/// exceed the limit, and a nested txn gets what is left of it.
fn check_txn_request(r: &pb::TxnRequest, max_txn_ops: usize) -> CheckResult {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_request_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_request_op(op: &pb::RequestOp, max_txn_ops: usize) -> CheckResult {
    use pb::request_op::Request;
    match &op.request {
        Some(Request::RequestRange(r)) => check_range_request(r),
        Some(Request::RequestPut(r)) => check_put_request(r),
        Some(Request::RequestDeleteRange(r)) => check_delete_request(r),
        Some(Request::RequestTxn(r)) => check_txn_request(r, max_txn_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

/// Whether a txn only reads (etcd's `isTxnReadonly`): such a txn is not proposed through raft, so
/// etcd does not apply the request size limit to it.
pub fn is_txn_read_only(r: &pb::TxnRequest) -> bool {
    use pb::request_op::Request;
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) => true,
            Some(Request::RequestTxn(t)) => is_txn_read_only(t),
            _ => false,
        })
}

/// etcd refuses a proposal whose encoding exceeds `--max-request-bytes`.
pub fn check_request_size(encoded_len: usize, max_request_bytes: usize) -> CheckResult {
    if encoded_len > max_request_bytes {
        return Err(EtcdError::RequestTooLarge);
    }
    Ok(())
}

/// Puts and deletes of one txn branch, as etcd's `checkIntervals` collects them.
struct Writes {
    puts: HashSet<Bytes>,
    dels: IntervalSet,
}

/// Finds a put that overlaps another put or a delete in the same branch of a txn.
///
/// This follows etcd's algorithm step by step, including its blind spots, because clients rely on
/// what etcd accepts:
/// - a nested txn's puts are checked against this level's deletes and the deletes of the nested
///   txns before it, never against the deletes of nested txns after it;
/// - the two branches of a nested txn may put the same key (only one of them runs);
/// - a delete with `range_end = "\0"` (from-key) is the interval `[key, "\0")`, which contains no
///   key, so it conflicts with nothing.
fn check_intervals(reqs: &[pb::RequestOp]) -> Result<Writes, EtcdError> {
    use pb::request_op::Request;
    let mut dels = IntervalSet::default();
    for op in reqs {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            if d.range_end.is_empty() {
                dels.insert_point(&d.key);
            } else {
                dels.insert(d.key.clone(), d.range_end.clone());
            }
        }
    }

    let mut puts: HashSet<Bytes> = HashSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(txn)) = &op.request else {
            continue;
        };
        let then = check_intervals(&txn.success)?;
        let otherwise = check_intervals(&txn.failure)?;
        for key in &then.puts {
            if puts.contains(key) || dels.contains(key) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &otherwise.puts {
            if puts.contains(key) && !then.puts.contains(key) {
                return Err(EtcdError::DuplicateKey);
            }
            if dels.contains(key) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        dels.extend(then.dels);
        dels.extend(otherwise.dels);
    }

    for op in reqs {
        let Some(Request::RequestPut(put)) = &op.request else {
            continue;
        };
        if puts.contains(&put.key) || dels.contains(&put.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok(Writes { puts, dels })
}

/// A union of half-open key intervals `[begin, end)`, kept as disjoint merged intervals so that a
/// membership test is one ordered-map lookup.
#[derive(Default)]
struct IntervalSet {
    /// begin -> end, disjoint and not adjacent.
    map: BTreeMap<Bytes, Bytes>,
}

impl IntervalSet {
    fn insert_point(&mut self, key: &Bytes) {
        let mut end = Vec::with_capacity(key.len() + 1);
        end.extend_from_slice(key);
        end.push(0);
        self.insert(key.clone(), Bytes::from(end));
    }

    fn insert(&mut self, begin: Bytes, end: Bytes) {
        if begin >= end {
            return; // empty: contains no key
        }
        let (mut begin, mut end) = (begin, end);
        // An interval starting at or before `begin` that reaches it absorbs the new one.
        if let Some((b, e)) = self.map.range(..=begin.clone()).next_back()
            && *e >= begin
        {
            begin = b.clone();
            if *e > end {
                end = e.clone();
            }
        }
        // Every interval starting inside [begin, end] merges in.
        let covered: Vec<Bytes> = self
            .map
            .range((Bound::Included(begin.clone()), Bound::Included(end.clone())))
            .map(|(b, _)| b.clone())
            .collect();
        for b in covered {
            if let Some(e) = self.map.remove(&b)
                && e > end
            {
                end = e;
            }
        }
        self.map.insert(begin, end);
    }

    fn extend(&mut self, other: IntervalSet) {
        for (begin, end) in other.map {
            self.insert(begin, end);
        }
    }

    fn contains(&self, key: &Bytes) -> bool {
        self.map
            .range(..=key.clone())
            .next_back()
            .is_some_and(|(_, end)| key < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(key: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestPut(pb::PutRequest {
                key: b(key),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, end: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: b(key),
                range_end: b(end),
                prev_kv: false,
            })),
        }
    }

    fn get(key: &str) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestRange(pb::RangeRequest {
                key: b(key),
                ..Default::default()
            })),
        }
    }

    fn txn(success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    fn nested(t: pb::TxnRequest) -> pb::RequestOp {
        pb::RequestOp {
            request: Some(Request::RequestTxn(t)),
        }
    }

    fn compare(key: &str) -> pb::Compare {
        pb::Compare {
            key: b(key),
            ..Default::default()
        }
    }

    #[test]
    fn empty_keys_are_refused_with_etcds_message() {
        let err = check_range_request(&pb::RangeRequest::default()).unwrap_err();
        assert_eq!(err.to_string(), "etcdserver: key is not provided");
        assert_eq!(
            check_put_request(&pb::PutRequest::default()),
            Err(EtcdError::EmptyKey)
        );
        assert_eq!(
            check_delete_request(&pb::DeleteRangeRequest::default()),
            Err(EtcdError::EmptyKey)
        );
        let t = pb::TxnRequest {
            compare: vec![compare("")],
            ..Default::default()
        };
        assert_eq!(check_txn(&t, 128), Err(EtcdError::EmptyKey));
        assert_eq!(
            check_txn(&txn(vec![put("")], vec![]), 128),
            Err(EtcdError::EmptyKey)
        );
        assert_eq!(
            check_txn(&txn(vec![], vec![get("")]), 128),
            Err(EtcdError::EmptyKey)
        );
    }

    #[test]
    fn put_with_ignore_flags() {
        let r = pb::PutRequest {
            key: b("k"),
            value: b("v"),
            ignore_value: true,
            ..Default::default()
        };
        assert_eq!(
            check_put_request(&r).unwrap_err().to_string(),
            "etcdserver: value is provided"
        );
        let r = pb::PutRequest {
            key: b("k"),
            lease: 5,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(
            check_put_request(&r).unwrap_err().to_string(),
            "etcdserver: lease is provided"
        );
        let r = pb::PutRequest {
            key: b("k"),
            ignore_value: true,
            ignore_lease: true,
            ..Default::default()
        };
        assert_eq!(check_put_request(&r), Ok(()));
    }

    #[test]
    fn unknown_sort_options_are_refused() {
        let ok = pb::RangeRequest {
            key: b("k"),
            sort_order: 2,
            sort_target: 4,
            ..Default::default()
        };
        assert_eq!(check_range_request(&ok), Ok(()));
        for (order, target) in [(3, 0), (0, 5), (-1, 0), (200, 100)] {
            let r = pb::RangeRequest {
                key: b("k"),
                sort_order: order,
                sort_target: target,
                ..Default::default()
            };
            let err = check_range_request(&r).unwrap_err();
            assert_eq!(err.to_string(), "etcdserver: invalid sort option");
        }
        let bad = pb::RangeRequest {
            key: b("k"),
            sort_order: 9,
            ..Default::default()
        };
        let t = txn(
            vec![pb::RequestOp {
                request: Some(Request::RequestRange(bad)),
            }],
            vec![],
        );
        assert_eq!(check_txn(&t, 128), Err(EtcdError::InvalidSortOption));
    }

    #[test]
    fn empty_op_is_key_not_found() {
        let t = txn(vec![pb::RequestOp { request: None }], vec![]);
        assert_eq!(
            check_txn(&t, 128).unwrap_err().to_string(),
            "etcdserver: key not found"
        );
    }

    #[test]
    fn op_counts_are_per_list_not_summed() {
        let ops = |n: usize| (0..n).map(|i| put(&format!("k{i}"))).collect::<Vec<_>>();
        // 3 compares, 3 success and 3 failure ops fit a limit of 3.
        let t = pb::TxnRequest {
            compare: vec![compare("a"), compare("b"), compare("c")],
            success: ops(3),
            failure: ops(3),
        };
        assert_eq!(check_txn(&t, 3), Ok(()));
        let t = txn(ops(4), vec![]);
        let err = check_txn(&t, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "etcdserver: too many operations in txn request"
        );
        let t = pb::TxnRequest {
            compare: (0..4).map(|_| compare("a")).collect(),
            ..Default::default()
        };
        assert_eq!(check_txn(&t, 3), Err(EtcdError::TooManyOps));
    }

    #[test]
    fn nested_txn_gets_the_remaining_budget() {
        // Outer uses 2 of 4; the nested txn may use 2 more, not 3.
        let inner_ok = txn(vec![put("x"), put("y")], vec![]);
        let t = txn(vec![nested(inner_ok), put("a")], vec![]);
        assert_eq!(check_txn(&t, 4), Ok(()));
        let inner_big = txn(vec![put("x"), put("y"), put("z")], vec![]);
        let t = txn(vec![nested(inner_big), put("a")], vec![]);
        assert_eq!(check_txn(&t, 4), Err(EtcdError::TooManyOps));
    }

    #[test]
    fn duplicate_puts_in_one_branch() {
        let t = txn(vec![put("a"), put("a")], vec![]);
        assert_eq!(
            check_txn(&t, 128).unwrap_err().to_string(),
            "etcdserver: duplicate key given in txn request"
        );
        // The same key in success and failure is fine: only one branch runs.
        assert_eq!(check_txn(&txn(vec![put("a")], vec![put("a")]), 128), Ok(()));
        // Ranges never conflict.
        assert_eq!(
            check_txn(&txn(vec![get("a"), put("a"), get("a")], vec![]), 128),
            Ok(())
        );
    }

    #[test]
    fn delete_covering_a_put() {
        assert_eq!(
            check_txn(&txn(vec![put("b"), del("a", "c")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![del("b", ""), put("b")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        // Half-open: the end key is outside.
        assert_eq!(
            check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), 128),
            Ok(())
        );
        // Overlapping deletes are fine.
        assert_eq!(
            check_txn(&txn(vec![del("a", "c"), del("b", "d")], vec![]), 128),
            Ok(())
        );
        // etcd's from-key delete ("\0") is an empty interval to this check.
        assert_eq!(
            check_txn(&txn(vec![put("b"), del("a", "\0")], vec![]), 128),
            Ok(())
        );
    }

    #[test]
    fn nested_txn_overlaps() {
        // A nested put against an outer put.
        let t = txn(vec![put("a"), nested(txn(vec![put("a")], vec![]))], vec![]);
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        // A nested put inside an outer delete range.
        let t = txn(
            vec![del("a", "z"), nested(txn(vec![], vec![put("m")]))],
            vec![],
        );
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        // A nested delete covering an outer put.
        let t = txn(
            vec![nested(txn(vec![del("a", "z")], vec![])), put("m")],
            vec![],
        );
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        // Both branches of one nested txn may put the same key.
        let t = txn(vec![nested(txn(vec![put("k")], vec![put("k")]))], vec![]);
        assert_eq!(check_txn(&t, 128), Ok(()));
        // Two nested txns putting the same key conflict.
        let t = txn(
            vec![
                nested(txn(vec![put("k")], vec![])),
                nested(txn(vec![], vec![put("k")])),
            ],
            vec![],
        );
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        // A later nested delete is not checked against an earlier nested put (as in etcd).
        let t = txn(
            vec![
                nested(txn(vec![put("k")], vec![])),
                nested(txn(vec![del("k", "")], vec![])),
            ],
            vec![],
        );
        assert_eq!(check_txn(&t, 128), Ok(()));
        // An earlier nested delete is checked against a later nested put.
        let t = txn(
            vec![
                nested(txn(vec![del("k", "")], vec![])),
                nested(txn(vec![put("k")], vec![])),
            ],
            vec![],
        );
        assert_eq!(check_txn(&t, 128), Err(EtcdError::DuplicateKey));
        // Deeper nesting propagates.
        let deep = nested(txn(vec![nested(txn(vec![put("q")], vec![]))], vec![]));
        assert_eq!(
            check_txn(&txn(vec![deep, put("q")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
    }

    #[test]
    fn interval_set_merges() {
        let mut s = IntervalSet::default();
        s.insert(b("c"), b("e"));
        s.insert(b("a"), b("b"));
        s.insert(b("b"), b("c")); // bridges both
        s.insert(b("x"), b("x")); // empty
        s.insert_point(&b("m"));
        assert_eq!(s.map.len(), 2);
        for k in ["a", "b", "bz", "c", "d", "m"] {
            assert!(s.contains(&b(k)), "{k}");
        }
        for k in ["", "e", "l", "m\0", "x"] {
            assert!(!s.contains(&b(k)), "{k:?}");
        }
        let mut t = IntervalSet::default();
        t.insert(b("0"), b("z"));
        s.extend(t);
        assert_eq!(s.map.len(), 1);
    }

    #[test]
    fn read_only_txns() {
        assert!(is_txn_read_only(&txn(
            vec![get("a")],
            vec![nested(txn(vec![get("b")], vec![]))]
        )));
        assert!(!is_txn_read_only(&txn(
            vec![get("a")],
            vec![nested(txn(vec![put("b")], vec![]))]
        )));
        assert!(!is_txn_read_only(&txn(vec![], vec![del("a", "")])));
    }

    #[test]
    fn request_size_limit() {
        assert_eq!(check_request_size(10, 10), Ok(()));
        let err = check_request_size(11, 10).unwrap_err();
        assert_eq!(err.to_string(), "etcdserver: request is too large");
    }
}
