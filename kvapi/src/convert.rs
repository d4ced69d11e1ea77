//! Conversions between etcd's wire messages (`pb`) and the engine's request types.
//!
//! Both sides hold keys and values as `bytes::Bytes`, so a conversion moves reference counts and
//! never copies payloads. Requests are converted after validation (`validate.rs`); the few
//! conversions that can still fail (enum values no etcd client sends) return a `Status`.

pub mod history;

use cairn_engine::node::ResponseHeader;
use cairn_engine::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse,
};
use cairn_engine::{Event, EventKind, KeyValue};
use tonic::Status;

use crate::pb::{etcdserverpb as pb, mvccpb};
use crate::status::{self, EtcdError};

pub fn header(h: ResponseHeader) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: h.revision,
        raft_term: h.raft_term,
    }
}

pub fn key_value(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn key_value_from_pb(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(ev: Event) -> mvccpb::Event {
    let kind = match ev.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind.into(),
        kv: Some(key_value(ev.kv)),
        prev_kv: ev.prev_kv.map(key_value),
    }
}

/// The inverse of [`event`], for clients built on this crate (kvctl) and tests.
pub fn event_from_pb(ev: mvccpb::Event) -> Event {
    let kind = match ev.r#type() {
        mvccpb::event::EventType::Put => EventKind::Put,
        mvccpb::event::EventType::Delete => EventKind::Delete,
    };
    Event {
        kind,
        kv: ev.kv.map(key_value_from_pb).unwrap_or_default(),
        prev_kv: ev.prev_kv.map(key_value_from_pb),
    }
}

// ---- requests ----

pub fn range_request(r: pb::RangeRequest) -> Result<RangeRequest, Status> {
    use pb::range_request::{SortOrder as PbOrder, SortTarget as PbTarget};
    let sort_order = match PbOrder::try_from(r.sort_order) {
        Ok(PbOrder::None) => SortOrder::None,
        Ok(PbOrder::Ascend) => SortOrder::Ascend,
        Ok(PbOrder::Descend) => SortOrder::Descend,
        Err(_) => return Err(EtcdError::InvalidSortOption.into()),
    };
    let sort_target = match PbTarget::try_from(r.sort_target) {
        Ok(PbTarget::Key) => SortTarget::Key,
        Ok(PbTarget::Version) => SortTarget::Version,
        Ok(PbTarget::Create) => SortTarget::Create,
        Ok(PbTarget::Mod) => SortTarget::Mod,
        Ok(PbTarget::Value) => SortTarget::Value,
        Err(_) => return Err(EtcdError::InvalidSortOption.into()),
    };
    Ok(RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put_request(r: pb::PutRequest) -> PutRequest {
    PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_range_request(r: pb::DeleteRangeRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

/// etcd compares a missing or mismatched `target_union` as the zero value of the target's type
/// (`0`, or an empty value), so the conversion does the same.
pub fn compare(c: pb::Compare) -> Result<Compare, Status> {
    use pb::compare::{CompareResult as PbResult, CompareTarget as PbTarget, TargetUnion as Union};
    let result = match PbResult::try_from(c.result) {
        Ok(PbResult::Equal) => CompareResult::Equal,
        Ok(PbResult::Greater) => CompareResult::Greater,
        Ok(PbResult::Less) => CompareResult::Less,
        Ok(PbResult::NotEqual) => CompareResult::NotEqual,
        Err(_) => return Err(status::invalid_compare("result", c.result)),
    };
    let union = c.target_union;
    let target = match PbTarget::try_from(c.target) {
        Ok(PbTarget::Version) => CompareTarget::Version(match union {
            Some(Union::Version(v)) => v,
            _ => 0,
        }),
        Ok(PbTarget::Create) => CompareTarget::Create(match union {
            Some(Union::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(PbTarget::Mod) => CompareTarget::Mod(match union {
            Some(Union::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(PbTarget::Value) => CompareTarget::Value(match union {
            Some(Union::Value(v)) => v,
            _ => bytes::Bytes::new(),
        }),
        Ok(PbTarget::Lease) => CompareTarget::Lease(match union {
            Some(Union::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => return Err(status::invalid_compare("target", c.target)),
    };
    Ok(Compare {
        result,
        target,
        key: c.key,
        range_end: c.range_end,
    })
}

pub fn request_op(op: pb::RequestOp) -> Result<RequestOp, Status> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => RequestOp::Range(range_request(r)?),
        Some(Request::RequestPut(r)) => RequestOp::Put(put_request(r)),
        Some(Request::RequestDeleteRange(r)) => RequestOp::DeleteRange(delete_range_request(r)),
        Some(Request::RequestTxn(r)) => RequestOp::Txn(txn_request(r)?),
        // etcd answers an empty op with ErrGRPCKeyNotFound (v3rpc `checkRequestOp`).
        None => return Err(EtcdError::KeyNotFound.into()),
    })
}

pub fn txn_request(r: pb::TxnRequest) -> Result<TxnRequest, Status> {
    Ok(TxnRequest {
        compare: r
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: r
            .success
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
        failure: r
            .failure
            .into_iter()
            .map(request_op)
            .collect::<Result<_, _>>()?,
    })
}

// ---- responses ----

pub fn range_response(r: RangeResponse, h: Option<ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse {
        header: h.map(header),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(r: PutResponse, h: Option<ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse {
        header: h.map(header),
        prev_kv: r.prev_kv.map(key_value),
    }
}

pub fn delete_range_response(
    r: DeleteRangeResponse,
    h: Option<ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: h.map(header),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value).collect(),
    }
}

/// A txn response; etcd fills the header of every nested response with the txn's header too.
pub fn txn_response(r: TxnResponse, h: Option<ResponseHeader>) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = r
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                ResponseOp::Range(r) => Response::ResponseRange(range_response(r, h)),
                ResponseOp::Put(r) => Response::ResponsePut(put_response(r, h)),
                ResponseOp::DeleteRange(r) => {
                    Response::ResponseDeleteRange(delete_range_response(r, h))
                }
                ResponseOp::Txn(r) => Response::ResponseTxn(txn_response(r, h)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: h.map(header),
        succeeded: r.succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn kv(key: &'static str, rev: i64) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(key.as_bytes()),
            create_revision: rev - 1,
            mod_revision: rev,
            version: 2,
            value: Bytes::from_static(b"v"),
            lease: 7,
        }
    }

    #[test]
    fn key_values_and_events_round_trip() {
        let original = kv("a", 10);
        assert_eq!(key_value_from_pb(key_value(original.clone())), original);

        for ev in [
            Event {
                kind: EventKind::Put,
                kv: kv("a", 10),
                prev_kv: Some(kv("a", 9)),
            },
            Event {
                kind: EventKind::Delete,
                kv: kv("b", 11),
                prev_kv: None,
            },
        ] {
            assert_eq!(event_from_pb(event(ev.clone())), ev);
        }
    }

    #[test]
    fn conversion_shares_payload_buffers() {
        let value = Bytes::from(vec![1u8; 4096]);
        let put = put_request(pb::PutRequest {
            key: Bytes::from_static(b"k"),
            value: value.clone(),
            ..Default::default()
        });
        assert_eq!(put.value.as_ptr(), value.as_ptr());
    }

    #[test]
    fn range_request_maps_every_field() {
        let r = range_request(pb::RangeRequest {
            key: Bytes::from_static(b"a"),
            range_end: Bytes::from_static(b"b"),
            limit: 3,
            revision: 4,
            sort_order: pb::range_request::SortOrder::Descend.into(),
            sort_target: pb::range_request::SortTarget::Mod.into(),
            serializable: true,
            keys_only: true,
            count_only: true,
            min_mod_revision: 1,
            max_mod_revision: 2,
            min_create_revision: 3,
            max_create_revision: 4,
        })
        .expect("valid request");
        assert_eq!(r.sort_order, SortOrder::Descend);
        assert_eq!(r.sort_target, SortTarget::Mod);
        assert_eq!((r.limit, r.revision), (3, 4));
        assert!(r.serializable && r.keys_only && r.count_only);
        assert_eq!(
            (
                r.min_mod_revision,
                r.max_mod_revision,
                r.min_create_revision,
                r.max_create_revision
            ),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn compare_missing_union_is_zero_value() {
        use pb::compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let c = compare(pb::Compare {
            result: R::Equal.into(),
            target: T::Value.into(),
            key: Bytes::from_static(b"k"),
            target_union: Some(U::Version(3)),
            range_end: Bytes::new(),
        })
        .expect("valid compare");
        assert_eq!(c.target, CompareTarget::Value(Bytes::new()));

        let c = compare(pb::Compare {
            result: R::NotEqual.into(),
            target: T::Mod.into(),
            key: Bytes::from_static(b"k"),
            target_union: Some(U::ModRevision(9)),
            range_end: Bytes::from_static(b"z"),
        })
        .expect("valid compare");
        assert_eq!(c.result, CompareResult::NotEqual);
        assert_eq!(c.target, CompareTarget::Mod(9));
        assert_eq!(c.range_end, Bytes::from_static(b"z"));

        let err = compare(pb::Compare {
            target: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn nested_txn_round_trip_shapes() {
        use pb::request_op::Request;
        let inner = pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(Request::RequestPut(pb::PutRequest {
                    key: Bytes::from_static(b"x"),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let outer = pb::TxnRequest {
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(inner)),
            }],
            ..Default::default()
        };
        let txn = txn_request(outer).expect("valid txn");
        let RequestOp::Txn(inner) = &txn.failure[0] else {
            panic!("nested txn expected")
        };
        assert!(matches!(&inner.success[0], RequestOp::Put(p) if p.key == "x"));

        let empty = pb::TxnRequest {
            success: vec![pb::RequestOp { request: None }],
            ..Default::default()
        };
        assert_eq!(
            txn_request(empty).unwrap_err().message(),
            "etcdserver: key not found"
        );
    }

    #[test]
    fn txn_response_headers_are_filled_recursively() {
        let h = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 3,
            raft_term: 4,
        };
        let resp = TxnResponse {
            succeeded: true,
            responses: vec![
                ResponseOp::Put(PutResponse {
                    prev_kv: Some(kv("a", 2)),
                }),
                ResponseOp::Txn(TxnResponse {
                    succeeded: false,
                    responses: vec![ResponseOp::Range(RangeResponse {
                        kvs: vec![kv("b", 3)],
                        more: true,
                        count: 5,
                    })],
                }),
            ],
        };
        let out = txn_response(resp, Some(h));
        assert_eq!(out.header, Some(header(h)));
        let Some(pb::response_op::Response::ResponseTxn(nested)) = &out.responses[1].response
        else {
            panic!("nested txn response expected")
        };
        let Some(pb::response_op::Response::ResponseRange(range)) = &nested.responses[0].response
        else {
            panic!("range response expected")
        };
        assert_eq!(range.header.map(|h| h.revision), Some(3));
        assert_eq!((range.count, range.more), (5, true));
    }
}
