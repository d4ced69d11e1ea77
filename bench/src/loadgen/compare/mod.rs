//! `loadgen compare`: the same workload against etcd, Cairn and the null server, alternating
//! servers round by round on fresh processes and data dirs, then medians and ratios.
//!
//! ```text
//!  round 1: etcd ─► cairn ─► null      each: start (fresh temp data dir, free loopback port)
//!  round 2: etcd ─► cairn ─► null            ─► wait until it answers ─► run the workload
//!  round 3: …                                ─► read VmHWM ─► SIGTERM (SIGKILL after 10 s)
//! ```
//!
//! With `--members N` (N > 1) each etcd and Cairn run is an N-member cluster instead
//! ([`Deployment`]): the members start together with the same flags on both servers, the
//! workload gets every member's client endpoint, peak RSS is the largest member's (and the sum),
//! and the raft term is compared before and after the workload to catch elections. The null
//! server has no cluster form and is skipped.
//!
//! Durability is each server's default, which is equivalent: etcd fsyncs its WAL before it
//! acknowledges a write, and so does Cairn. The null server runs only the KV workloads.

mod deployment;
mod server;
mod summary;

use anyhow::{Context, bail};
use clap::Parser;

pub use deployment::{Deployment, Leadership, PeakRss};
pub use server::{Binaries, Member, ServerKind, ServerProcess, free_port, free_ports};
pub use summary::{Comparison, Layout, Run, median};

use super::cli::{Cli, Command, CompareArgs, FirstEndpoint};
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
    let members = args.members.max(1);
    let mut kinds = vec![ServerKind::Etcd, ServerKind::Cairn];
    if members == 1 && !args.no_null && workload.null_server_can_serve() {
        kinds.push(ServerKind::Null);
    }
    let layout = Layout {
        members,
        first_endpoint: (members > 1).then(|| {
            match args.first_endpoint {
                FirstEndpoint::Leader => "leader",
                FirstEndpoint::Follower => "follower",
            }
            .to_string()
        }),
    };

    let rounds = args.rounds.max(1);
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for &kind in &kinds {
            let deployment = Deployment::start(
                kind,
                &binaries,
                args.data_root.as_deref(),
                members,
                args.first_endpoint,
            )
            .await?;
            let run = run_once(&workload, &deployment, round).await;
            let log = deployment.log_tail();
            deployment.stop().await?;
            let run = run.with_context(|| format!("{kind} round {round}; server log:\n{log}"))?;
            eprintln!("round {round}/{rounds} {kind:<5} {}", run_line(&run));
            runs.push(run);
        }
    }
    Ok(Comparison::new(
        args.workload.join(" "),
        rounds,
        layout,
        runs,
    ))
}

/// Runs `workload` once against `deployment`, with all its client endpoints.
async fn run_once(
    workload: &Command,
    deployment: &Deployment,
    round: usize,
) -> anyhow::Result<Run> {
    let mut command = workload.clone();
    if let Some(common) = command.common_mut() {
        common.endpoints = deployment.endpoints().to_vec();
    }
    let before = deployment.leadership().await;
    let report = workloads::run(&command).await?;
    let after = deployment.leadership().await;
    let peak_rss = deployment.peak_rss()?;
    let elections = match (before, after) {
        (Some(Ok(before)), Some(Ok(after))) => {
            if after.leader != before.leader {
                eprintln!(
                    "round {round} {}: the leader changed during the workload ({:x} -> {:x})",
                    deployment.kind, before.leader, after.leader
                );
            }
            Some(after.term.saturating_sub(before.term))
        }
        (Some(before), Some(after)) => {
            let err = before.err().or(after.err()).map(|e| format!("{e:#}"));
            eprintln!(
                "round {round} {}: cannot tell whether an election happened: {}",
                deployment.kind,
                err.unwrap_or_default()
            );
            None
        }
        _ => None,
    };
    Ok(Run {
        round,
        server: deployment.kind,
        peak_rss_bytes: peak_rss.max_bytes,
        peak_rss_sum_bytes: peak_rss.sum_bytes,
        elections,
        report,
    })
}

/// One line of progress for a finished run.
fn run_line(run: &Run) -> String {
    let line = run
        .report
        .ops
        .iter()
        .map(|o| {
            format!(
                "{} {:.0}/s p99 {:.3} ms errors {}",
                o.op, o.throughput, o.latency_ms.p99, o.errors
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    match run.elections {
        Some(elections) => format!("{line}; term +{elections}"),
        None => line,
    }
}
