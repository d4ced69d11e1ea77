//! The workloads, one module each, and what they share: building clients over the
//! connections, loading keys before a read workload, and turning a run into a [`Report`].

mod lease;
mod put;
mod range;
mod txn;
mod watch;

use std::sync::Arc;

use anyhow::bail;
use bytes::Bytes;
use cairn_kvapi::pb::etcdserverpb::PutRequest;
use cairn_kvapi::pb::etcdserverpb::kv_client::KvClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use super::cli::{Command, CommonArgs};
use super::report::Report;
use super::runner::{self, Client, RunOutcome, RunSpec};

/// Runs the workload `command` names; an error for `compare` and `null-server`.
pub async fn run(command: &Command) -> anyhow::Result<Report> {
    match command {
        Command::Put(args) => put::run(args).await,
        Command::Range(args) => range::run(args).await,
        Command::TxnPut(args) => txn::run_put(args).await,
        Command::TxnMixed(args) => txn::run_mixed(args).await,
        Command::Watch(args) => watch::run(args, false).await,
        Command::WatchLatency(args) => watch::run(args, true).await,
        Command::LeaseKeepalive(args) => lease::run(args).await,
        Command::Compare(_) | Command::NullServer(_) => {
            bail!("{} is not a workload", command.name())
        }
    }
}

/// One client per `--clients`, the i-th on connection `i mod conns`.
fn clients(
    common: &CommonArgs,
    channels: &[Channel],
    mut make: impl FnMut(usize, Channel) -> Box<dyn Client>,
) -> Vec<Box<dyn Client>> {
    (0..common.clients.max(1))
        .map(|i| make(i, channels[i % channels.len()].clone()))
        .collect()
}

/// Runs `clients` as `common` says and reports under `workload`.
async fn run_clients(
    workload: &str,
    common: &CommonArgs,
    clients: Vec<Box<dyn Client>>,
) -> anyhow::Result<(Report, RunOutcome)> {
    let outcome = runner::run(&RunSpec::from_common(common), clients).await?;
    let report = Report {
        workload: workload.to_string(),
        endpoints: common.endpoints.clone(),
        conns: common.conns.max(1),
        clients: common.clients.max(1),
        elapsed_secs: outcome.elapsed.as_secs_f64(),
        ops: outcome.recorder.report(outcome.elapsed),
    };
    Ok((report, outcome))
}

/// Puts every key with `value`, 32 at a time over the connections (not measured).
async fn preload(
    channels: &[Channel],
    keys: impl Iterator<Item = Bytes>,
    value: &Bytes,
) -> anyhow::Result<()> {
    let keys = Arc::new(Mutex::new(keys.collect::<Vec<_>>()));
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let mut kv = KvClient::new(channels[i % channels.len()].clone());
            let keys = Arc::clone(&keys);
            let value = value.clone();
            tokio::spawn(async move {
                loop {
                    let Some(key) = keys.lock().await.pop() else {
                        return Ok(());
                    };
                    let request = PutRequest {
                        key,
                        value: value.clone(),
                        ..PutRequest::default()
                    };
                    if let Err(status) = kv.put(request).await {
                        bail!("loading keys failed: {}", runner::status_message(&status));
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}
