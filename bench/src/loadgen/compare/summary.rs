//! Medians over rounds and the ratios Cairn/etcd and Cairn/null, as a table or JSON.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::server::ServerKind;
use crate::loadgen::report::Report;

/// One workload run against one server or cluster.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub round: usize,
    pub server: ServerKind,
    /// Peak RSS of the server; of a cluster, the largest member's.
    pub peak_rss_bytes: u64,
    /// The members' peak RSS added up (the same as `peak_rss_bytes` for a single server).
    pub peak_rss_sum_bytes: u64,
    /// How far a cluster's raft term advanced during the workload (each election attempt
    /// advances it): 0 when the leader held; `None` for a single server or when unknown.
    pub elections: Option<u64>,
    pub report: Report,
}

/// What was deployed: a single server or clusters of `members`.
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    pub members: usize,
    /// For clusters, whose client endpoint the workload got first (`leader` or `follower`).
    pub first_endpoint: Option<String>,
}

/// One operation on one server, over all rounds.
#[derive(Clone, Debug, Serialize)]
pub struct OpSummary {
    pub op: String,
    pub throughput_by_round: Vec<f64>,
    pub median_throughput: f64,
    pub median_p50_ms: f64,
    pub median_p90_ms: f64,
    pub median_p99_ms: f64,
    pub median_p999_ms: f64,
    /// Errors over all rounds.
    pub errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerSummary {
    pub server: ServerKind,
    /// Median over rounds of the (largest member's) peak RSS.
    pub median_peak_rss_mib: f64,
    /// Median over rounds of the members' peak RSS added up.
    pub median_peak_rss_sum_mib: f64,
    /// Raft term advances during the workloads, over all rounds (clusters only).
    pub elections: u64,
    pub ops: Vec<OpSummary>,
}

/// Cairn's median divided by etcd's, for one operation.
#[derive(Clone, Debug, Serialize)]
pub struct OpRatio {
    pub op: String,
    pub throughput: f64,
    pub p50: f64,
    pub p99: f64,
}

/// Cairn's median throughput as a fraction of the null server's.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingFraction {
    pub op: String,
    pub fraction: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub workload: String,
    pub rounds: usize,
    pub layout: Layout,
    pub servers: Vec<ServerSummary>,
    pub cairn_over_etcd: Vec<OpRatio>,
    pub peak_rss_cairn_over_etcd: Option<f64>,
    /// Of the members' peak RSS added up; clusters only.
    pub peak_rss_sum_cairn_over_etcd: Option<f64>,
    pub cairn_over_null: Vec<CeilingFraction>,
    pub runs: Vec<Run>,
}

/// The median; the mean of the middle two for an even count; NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        f64::midpoint(sorted[mid - 1], sorted[mid])
    }
}

fn summarize_server(server: ServerKind, runs: &[Run]) -> Option<ServerSummary> {
    let runs: Vec<&Run> = runs.iter().filter(|r| r.server == server).collect();
    if runs.is_empty() {
        return None;
    }
    let names: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.report.ops.iter().map(|o| o.op.as_str()))
        .collect();
    let ops = names
        .into_iter()
        .map(|name| {
            let ops: Vec<_> = runs.iter().filter_map(|r| r.report.op(name)).collect();
            let pick = |f: &dyn Fn(&crate::loadgen::report::OpReport) -> f64| {
                median(&ops.iter().map(|o| f(o)).collect::<Vec<_>>())
            };
            OpSummary {
                op: name.to_string(),
                throughput_by_round: ops.iter().map(|o| o.throughput).collect(),
                median_throughput: pick(&|o| o.throughput),
                median_p50_ms: pick(&|o| o.latency_ms.p50),
                median_p90_ms: pick(&|o| o.latency_ms.p90),
                median_p99_ms: pick(&|o| o.latency_ms.p99),
                median_p999_ms: pick(&|o| o.latency_ms.p999),
                errors: ops.iter().map(|o| o.errors).sum(),
            }
        })
        .collect();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let rss: Vec<f64> = runs.iter().map(|r| mib(r.peak_rss_bytes)).collect();
    let rss_sum: Vec<f64> = runs.iter().map(|r| mib(r.peak_rss_sum_bytes)).collect();
    Some(ServerSummary {
        server,
        median_peak_rss_mib: median(&rss),
        median_peak_rss_sum_mib: median(&rss_sum),
        elections: runs.iter().filter_map(|r| r.elections).sum(),
        ops,
    })
}

impl Comparison {
    pub fn new(workload: String, rounds: usize, layout: Layout, runs: Vec<Run>) -> Self {
        let servers: Vec<ServerSummary> = [ServerKind::Etcd, ServerKind::Cairn, ServerKind::Null]
            .into_iter()
            .filter_map(|kind| summarize_server(kind, &runs))
            .collect();
        let find = |kind| servers.iter().find(|s| s.server == kind);
        let (etcd, cairn, null) = (
            find(ServerKind::Etcd),
            find(ServerKind::Cairn),
            find(ServerKind::Null),
        );
        let mut cairn_over_etcd = Vec::new();
        let mut cairn_over_null = Vec::new();
        let mut peak_rss_cairn_over_etcd = None;
        let mut peak_rss_sum_cairn_over_etcd = None;
        if let Some(cairn) = cairn {
            for op in &cairn.ops {
                if let Some(theirs) = etcd.and_then(|e| e.ops.iter().find(|o| o.op == op.op)) {
                    cairn_over_etcd.push(OpRatio {
                        op: op.op.clone(),
                        throughput: op.median_throughput / theirs.median_throughput,
                        p50: op.median_p50_ms / theirs.median_p50_ms,
                        p99: op.median_p99_ms / theirs.median_p99_ms,
                    });
                }
                if let Some(ceiling) = null.and_then(|n| n.ops.iter().find(|o| o.op == op.op)) {
                    cairn_over_null.push(CeilingFraction {
                        op: op.op.clone(),
                        fraction: op.median_throughput / ceiling.median_throughput,
                    });
                }
            }
            peak_rss_cairn_over_etcd =
                etcd.map(|e| cairn.median_peak_rss_mib / e.median_peak_rss_mib);
            if layout.members > 1 {
                peak_rss_sum_cairn_over_etcd =
                    etcd.map(|e| cairn.median_peak_rss_sum_mib / e.median_peak_rss_sum_mib);
            }
        }
        Self {
            workload,
            rounds,
            layout,
            servers,
            cairn_over_etcd,
            peak_rss_cairn_over_etcd,
            peak_rss_sum_cairn_over_etcd,
            cairn_over_null,
            runs,
        }
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let cluster = self.layout.members > 1;
        let order: Vec<String> = self.servers.iter().map(|s| s.server.to_string()).collect();
        let layout = if cluster {
            format!(
                "; {}-member clusters, endpoints {} first; RSS = largest member, sum = all members",
                self.layout.members,
                self.layout.first_endpoint.as_deref().unwrap_or("leader")
            )
        } else {
            String::new()
        };
        // Writing to a String never fails.
        let _ = writeln!(
            out,
            "compare: {} ({} rounds; each round runs {} in turn{layout})",
            self.workload,
            self.rounds,
            order.join(", ")
        );
        let _ = write!(
            out,
            "{:<6} {:<10} {:>30} {:>11} {:>8} {:>8} {:>8} {:>9} {:>7} {:>9}",
            "server",
            "op",
            "req/s by round",
            "median/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "RSS MiB"
        );
        let _ = writeln!(out, "{}", if cluster { "   sum MiB" } else { "" });
        for server in &self.servers {
            for op in &server.ops {
                let rounds: Vec<String> = op
                    .throughput_by_round
                    .iter()
                    .map(|t| format!("{t:.0}"))
                    .collect();
                let _ = write!(
                    out,
                    "{:<6} {:<10} {:>30} {:>11.0} {:>8.3} {:>8.3} {:>8.3} {:>9.3} {:>7} {:>9.1}",
                    server.server.to_string(),
                    op.op,
                    rounds.join(" "),
                    op.median_throughput,
                    op.median_p50_ms,
                    op.median_p90_ms,
                    op.median_p99_ms,
                    op.median_p999_ms,
                    op.errors,
                    server.median_peak_rss_mib
                );
                if cluster {
                    let _ = write!(out, " {:>9.1}", server.median_peak_rss_sum_mib);
                }
                let _ = writeln!(out);
            }
        }
        if cluster {
            let elections: Vec<String> = self
                .servers
                .iter()
                .map(|s| format!("{} {}", s.server, s.elections))
                .collect();
            let _ = writeln!(
                out,
                "raft term advances during the workloads (elections): {}",
                elections.join(", ")
            );
        }
        for ratio in &self.cairn_over_etcd {
            let _ = writeln!(
                out,
                "cairn/etcd {}: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
                ratio.op, ratio.throughput, ratio.p50, ratio.p99
            );
        }
        if let Some(rss) = self.peak_rss_cairn_over_etcd {
            let _ = writeln!(out, "cairn/etcd peak RSS: {rss:.2}x");
        }
        if let Some(rss) = self.peak_rss_sum_cairn_over_etcd {
            let _ = writeln!(out, "cairn/etcd peak RSS summed over members: {rss:.2}x");
        }
        for ceiling in &self.cairn_over_null {
            let _ = writeln!(
                out,
                "cairn/null {}: {:.0}% of the RPC ceiling",
                ceiling.op,
                ceiling.fraction * 100.0
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::report::{Latency, OpReport};

    fn run(round: usize, server: ServerKind, throughput: f64, p99: f64, rss_mib: u64) -> Run {
        Run {
            round,
            server,
            peak_rss_bytes: rss_mib * 1024 * 1024,
            peak_rss_sum_bytes: rss_mib * 1024 * 1024,
            elections: None,
            report: Report {
                workload: "put".into(),
                endpoints: vec![],
                conns: 1,
                clients: 1,
                elapsed_secs: 1.0,
                ops: vec![OpReport {
                    op: "put".into(),
                    requests: throughput as u64,
                    errors: 0,
                    throughput,
                    latency_ms: Latency {
                        p50: p99 / 2.0,
                        p99,
                        ..Latency::default()
                    },
                    error_samples: vec![],
                }],
            },
        }
    }

    #[test]
    fn medians() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn ratios_use_medians() {
        let runs = vec![
            run(1, ServerKind::Etcd, 100.0, 10.0, 100),
            run(1, ServerKind::Cairn, 250.0, 4.0, 30),
            run(1, ServerKind::Null, 500.0, 1.0, 10),
            run(2, ServerKind::Etcd, 90.0, 12.0, 110),
            run(2, ServerKind::Cairn, 200.0, 5.0, 30),
            run(2, ServerKind::Null, 520.0, 1.0, 10),
            run(3, ServerKind::Etcd, 110.0, 11.0, 90),
            run(3, ServerKind::Cairn, 220.0, 6.0, 50),
            run(3, ServerKind::Null, 480.0, 1.0, 10),
        ];
        let single = Layout {
            members: 1,
            first_endpoint: None,
        };
        let c = Comparison::new("put".into(), 3, single, runs);
        assert_eq!(c.servers.len(), 3);
        let ratio = &c.cairn_over_etcd[0];
        assert!((ratio.throughput - 2.2).abs() < 1e-9);
        assert!((ratio.p99 - 5.0 / 11.0).abs() < 1e-9);
        assert!((c.peak_rss_cairn_over_etcd.expect("rss") - 0.3).abs() < 1e-9);
        assert!((c.cairn_over_null[0].fraction - 220.0 / 500.0).abs() < 1e-9);
        let table = c.table();
        assert!(
            table.contains("cairn/etcd put: throughput 2.20x"),
            "{table}"
        );
        assert!(c.peak_rss_sum_cairn_over_etcd.is_none());
        assert!(!table.contains("sum MiB"), "{table}");
    }

    #[test]
    fn clusters_report_summed_rss_and_elections() {
        let member = |round, server, throughput, rss_mib: u64, elections| Run {
            peak_rss_sum_bytes: 3 * rss_mib * 1024 * 1024,
            elections: Some(elections),
            ..run(round, server, throughput, 10.0, rss_mib)
        };
        let runs = vec![
            member(1, ServerKind::Etcd, 100.0, 40, 0),
            member(1, ServerKind::Cairn, 80.0, 50, 0),
            member(2, ServerKind::Etcd, 100.0, 40, 1),
            member(2, ServerKind::Cairn, 80.0, 50, 0),
        ];
        let layout = Layout {
            members: 3,
            first_endpoint: Some("leader".into()),
        };
        let c = Comparison::new("put".into(), 2, layout, runs);
        assert!((c.peak_rss_sum_cairn_over_etcd.expect("sum") - 1.25).abs() < 1e-9);
        assert_eq!(c.servers[0].elections, 1);
        assert!((c.servers[1].median_peak_rss_sum_mib - 150.0).abs() < 1e-9);
        let table = c.table();
        assert!(table.contains("3-member clusters"), "{table}");
        assert!(table.contains("(elections): etcd 1, cairn 0"), "{table}");
    }
}
