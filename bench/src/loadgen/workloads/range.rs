//! `range`: reads of one key of the key space, or of a whole prefix of `--prefix-keys` keys,
//! linearizable or serializable. The keys are loaded first (not measured).

use bytes::Bytes;
use cairn_kvapi::pb::etcdserverpb::RangeRequest;
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tonic::transport::Channel;

use crate::loadgen::cli::{Consistency, KeyArgs, RangeArgs};
use crate::loadgen::connect;
use crate::loadgen::keys::{self, KeyGen};
use crate::loadgen::report::Report;
use crate::loadgen::runner::{CallFuture, Client};

const PREFIX: &[u8] = b"range/";

/// What each request reads.
#[derive(Clone)]
enum Target {
    /// One key of the key space per request.
    Key(KeyGen),
    /// The same range every time.
    Prefix { key: Bytes, range_end: Bytes },
}

struct RangeClient {
    kv: KvClient<Channel>,
    target: Target,
    rng: StdRng,
    serializable: bool,
    limit: i64,
}

impl Client for RangeClient {
    fn call(&mut self, seq: u64) -> (&'static str, CallFuture<'_>) {
        let (key, range_end) = match &self.target {
            Target::Key(keys) => (keys.pick(seq, &mut self.rng), Bytes::new()),
            Target::Prefix { key, range_end } => (key.clone(), range_end.clone()),
        };
        let request = RangeRequest {
            key,
            range_end,
            limit: self.limit,
            serializable: self.serializable,
            ..RangeRequest::default()
        };
        (
            "range",
            Box::pin(async move { self.kv.range(request).await.map(drop) }),
        )
    }
}

pub async fn run(args: &RangeArgs) -> anyhow::Result<Report> {
    let common = &args.common;
    let channels = connect::connect(&common.endpoints, common.conns).await?;
    let value = keys::value(args.keys.value_size);
    let target = if args.prefix_keys > 0 {
        let loaded = KeyGen::new(
            PREFIX,
            &KeyArgs {
                key_space_size: args.prefix_keys,
                sequential_keys: true,
                ..args.keys.clone()
            },
        );
        super::preload(&channels, loaded.all(), &value).await?;
        Target::Prefix {
            key: Bytes::from_static(PREFIX),
            range_end: keys::prefix_end(PREFIX),
        }
    } else {
        let keys = KeyGen::new(PREFIX, &args.keys);
        super::preload(&channels, keys.all(), &value).await?;
        Target::Key(keys)
    };
    let serializable = args.consistency == Consistency::Serializable;
    let clients = super::clients(common, &channels, |i, channel| {
        Box::new(RangeClient {
            kv: KvClient::new(channel),
            target: target.clone(),
            rng: StdRng::seed_from_u64(i as u64),
            serializable,
            limit: args.limit,
        })
    });
    Ok(super::run_clients("range", common, clients).await?.0)
}
