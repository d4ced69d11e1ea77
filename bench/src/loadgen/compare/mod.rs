//! `loadgen compare`: the same workload against etcd, Cairn and the null server, alternating
//! servers round by round on fresh processes and data dirs, then medians and ratios.
//!
//! ```text
//!  round 1: etcd ─► cairn ─► null      each: start (fresh temp data dir, free loopback port)
//!  round 2: etcd ─► cairn ─► null            ─► wait until it answers ─► run the workload
//!  round 3: …                                ─► read VmHWM ─► SIGTERM (SIGKILL after 10 s)
//! ```
//!
//! Durability is each server's default, which is equivalent: etcd fsyncs its WAL before it
//! acknowledges a write, and so does Cairn. The null server runs only the KV workloads.

mod server;
mod summary;

use anyhow::{Context, bail};
use clap::Parser;

pub use server::{Binaries, ServerKind, ServerProcess, free_port};
pub use summary::{Comparison, Run, median};

use super::cli::{Cli, CompareArgs};
use super::workloads;

/// Runs the comparison `args` describes and prints it.
pub async fn run(args: &CompareArgs) -> anyhow::Result<Comparison> {
    let parsed = Cli::try_parse_from(
        std::iter::once("loadgen".to_string()).chain(args.workload.iter().cloned()),
    )
    .context("the workload after `--` does not parse")?;
    let workload = parsed.command;
    if workload.common().is_none() {
        bail!("`{}` is not a workload", workload.name());
    }
    let binaries = Binaries {
        etcd: args.etcd.clone(),
        cairn: args.cairn.clone(),
        loadgen: std::env::current_exe().context("cannot find the loadgen binary")?,
    };
    for (name, path) in [("etcd", &binaries.etcd), ("cairn", &binaries.cairn)] {
        if !path.exists() {
            bail!("the {name} binary {} does not exist", path.display());
        }
    }
    let mut kinds = vec![ServerKind::Etcd, ServerKind::Cairn];
    if !args.no_null && workload.null_server_can_serve() {
        kinds.push(ServerKind::Null);
    }

    let mut runs = Vec::new();
    for round in 1..=args.rounds.max(1) {
        for &kind in &kinds {
            let server = ServerProcess::start(kind, &binaries, args.data_root.as_deref()).await?;
            let mut command = workload.clone();
            if let Some(common) = command.common_mut() {
                common.endpoints = vec![server.endpoint.clone()];
            }
            let result = workloads::run(&command).await;
            let peak_rss = server.peak_rss_bytes();
            let log = server.log_tail();
            server.stop().await?;
            let report =
                result.with_context(|| format!("{kind} round {round}; server log:\n{log}"))?;
            let peak_rss_bytes = peak_rss?;
            eprintln!(
                "round {round}/{rounds} {kind:<5} {}",
                report
                    .ops
                    .iter()
                    .map(|o| format!(
                        "{} {:.0}/s p99 {:.3} ms errors {}",
                        o.op, o.throughput, o.latency_ms.p99, o.errors
                    ))
                    .collect::<Vec<_>>()
                    .join("; "),
                rounds = args.rounds.max(1),
            );
            runs.push(Run {
                round,
                server: kind,
                peak_rss_bytes,
                report,
            });
        }
    }
    Ok(Comparison::new(
        args.workload.join(" "),
        args.rounds.max(1),
        runs,
    ))
}
