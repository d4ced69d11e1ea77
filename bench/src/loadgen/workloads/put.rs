//! `put`: puts of `--val-size` bytes to keys of `--key-size` bytes drawn from
//! `--key-space-size` keys, at random or in order.

use bytes::Bytes;
use cairn_kvapi::pb::etcdserverpb::PutRequest;
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tonic::transport::Channel;

use crate::loadgen::cli::PutArgs;
use crate::loadgen::connect;
use crate::loadgen::keys::{self, KeyGen};
use crate::loadgen::report::Report;
use crate::loadgen::runner::{CallFuture, Client};

struct PutClient {
    kv: KvClient<Channel>,
    keys: KeyGen,
    rng: StdRng,
    value: Bytes,
}

impl Client for PutClient {
    fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>) {
        let request = PutRequest {
            key: self.keys.pick(seq, &mut self.rng),
            value: self.value.clone(),
            ..PutRequest::default()
        };
        (
            "put",
            Box::pin(async move { self.kv.put(request).await.map(drop) }),
        )
    }
}

pub async fn run(args: &PutArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let channels = connect::connect(&common.endpoints, common.conns).await?;
    let keys = KeyGen::new(b"", &args.keys);
    let value = keys::value(args.keys.value_size);
    let clients = super::clients(common, &channels, |i, channel| {
        Box::new(PutClient {
            kv: KvClient::new(channel),
            keys: keys.clone(),
            rng: StdRng::seed_from_u64(i as u64),
            value: value.clone(),
        })
    });
    Ok(super::run_clients("put", common, clients).await?.0)
}
