//! `txn-put` (transactions of `--txn-ops` puts, no compares) and `txn-mixed` (transactions
//! holding one range or one put, chosen by `--rw-ratio`; reads and writes reported apart).

use bytes::Bytes;
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use cairn_kvapi::pb::etcdserverpb::request_op::Request;
use cairn_kvapi::pb::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

use crate::loadgen::cli::{Consistency, TxnMixedArgs, TxnPutArgs};
use crate::loadgen::connect;
use crate::loadgen::keys::{self, KeyGen};
use crate::loadgen::report::Report;
use crate::loadgen::runner::{CallFuture, Client};

fn put_op(key: Bytes, value: Bytes) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key,
            value,
            ..PutRequest::default()
        })),
    }
}

struct TxnPutClient {
    kv: KvClient<Channel>,
    keys: KeyGen,
    rng: StdRng,
    value: Bytes,
    ops: usize,
}

impl Client for TxnPutClient {
    fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>) {
        // etcd rejects a txn that puts one key twice; consecutive indexes keep them distinct
        // as long as the key space holds `ops` keys.
        let first = self.keys.pick(seq, &mut self.rng);
        let mut success = vec![put_op(first.clone(), self.value.clone())];
        let space = self.keys.space();
        let base = (seq.wrapping_mul(self.ops as u64)) % space;
        for i in 1..self.ops as u64 {
            let key = self.keys.key((base + i) % space);
            if key != first {
                success.push(put_op(key, self.value.clone()));
            }
        }
        let request = TxnRequest {
            success,
            ..TxnRequest::default()
        };
        (
            "txn-put",
            Box::pin(async move { self.kv.txn(request).await.map(drop) }),
        )
    }
}

pub async fn run_put(args: &TxnPutArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    if args.keys.key_space_size < args.txn_ops as u64 {
        anyhow::bail!(
            "--key-space-size must be at least --txn-ops (a txn may not put a key twice)"
        );
    }
    let channels = connect::connect(&common.endpoints, common.conns).await?;
    let keys = KeyGen::new(b"", &args.keys);
    let value = keys::value(args.keys.value_size);
    let clients = super::clients(common, &channels, |i, channel| {
        Box::new(TxnPutClient {
            kv: KvClient::new(channel),
            keys: keys.clone(),
            rng: StdRng::seed_from_u64(i as u64),
            value: value.clone(),
            ops: args.txn_ops.max(1),
        })
    });
    Ok(super::run_clients("txn-put", common, clients).await?.0)
}

struct TxnMixedClient {
    kv: KvClient<Channel>,
    keys: KeyGen,
    rng: StdRng,
    value: Bytes,
    /// Probability that a request is a read: ratio / (ratio + 1).
    read_share: f64,
    serializable: bool,
}

impl Client for TxnMixedClient {
    fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>) {
        let key = self.keys.pick(seq, &mut self.rng);
        let read = self.rng.random_bool(self.read_share);
        let (op, request) = if read {
            let range = RangeRequest {
                key,
                serializable: self.serializable,
                ..RangeRequest::default()
            };
            ("read", Request::RequestRange(range))
        } else {
            let put = PutRequest {
                key,
                value: self.value.clone(),
                ..PutRequest::default()
            };
            ("write", Request::RequestPut(put))
        };
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(request),
            }],
            ..TxnRequest::default()
        };
        (
            op,
            Box::pin(async move { self.kv.txn(txn).await.map(drop) }),
        )
    }
}

pub async fn run_mixed(args: &TxnMixedArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    if !(args.rw_ratio.is_finite() && args.rw_ratio >= 0.0) {
        anyhow::bail!("--rw-ratio must be a non-negative number");
    }
    let channels = connect::connect(&common.endpoints, common.conns).await?;
    let keys = KeyGen::new(b"", &args.keys);
    let value = keys::value(args.keys.value_size);
    super::preload(&channels, keys.all(), &value).await?;
    let read_share = args.rw_ratio / (args.rw_ratio + 1.0);
    let serializable = args.consistency == Consistency::Serializable;
    let clients = super::clients(common, &channels, |i, channel| {
        Box::new(TxnMixedClient {
            kv: KvClient::new(channel),
            keys: keys.clone(),
            rng: StdRng::seed_from_u64(i as u64),
            value: value.clone(),
            read_share,
            serializable,
        })
    });
    Ok(super::run_clients("txn-mixed", common, clients).await?.0)
}
