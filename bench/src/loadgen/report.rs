//! The result of a workload run, printed as a table or as JSON.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSample {
    pub message: String,
    pub count: u64,
}

/// One operation kind of a run (`put`, `range`, `read`/`write` of txn-mixed, `delivery` of
/// the watch workloads…).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    pub op: String,
    /// Successful requests (for `delivery`: events received).
    pub requests: u64,
    /// Failed requests (for `delivery`: events expected but never received).
    pub errors: u64,
    /// Successful requests per second of the run.
    pub throughput: f64,
    pub latency_ms: Latency,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<ErrorSample>,
}

/// A whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    pub elapsed_secs: f64,
    pub ops: Vec<OpReport>,
}

impl Report {
    /// The report line of `op`, if the run recorded it.
    pub fn op(&self, op: &str) -> Option<&OpReport> {
        self.ops.iter().find(|r| r.op == op)
    }

    pub fn total_errors(&self) -> u64 {
        self.ops.iter().map(|r| r.errors).sum()
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // Writing to a String never fails.
        let _ = writeln!(
            out,
            "{} against {} ({} conns, {} clients), {:.2} s",
            self.workload,
            self.endpoints.join(","),
            self.conns,
            self.clients,
            self.elapsed_secs
        );
        let _ = writeln!(
            out,
            "{:<10} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "requests",
            "errors",
            "req/s",
            "mean ms",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        for op in &self.ops {
            let l = op.latency_ms;
            let _ = writeln!(
                out,
                "{:<10} {:>10} {:>8} {:>12.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                op.op,
                op.requests,
                op.errors,
                op.throughput,
                l.mean,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max
            );
            for sample in &op.error_samples {
                let _ = writeln!(out, "  {} × {}", sample.count, sample.message);
            }
        }
        out
    }

    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            workload: "put".into(),
            endpoints: vec!["127.0.0.1:2379".into()],
            conns: 1,
            clients: 2,
            elapsed_secs: 1.0,
            ops: vec![OpReport {
                op: "put".into(),
                requests: 10,
                errors: 1,
                throughput: 10.0,
                latency_ms: Latency {
                    p50: 0.5,
                    ..Latency::default()
                },
                error_samples: vec![ErrorSample {
                    message: "Unavailable: no leader".into(),
                    count: 1,
                }],
            }],
        }
    }

    #[test]
    fn json_round_trips() {
        let report = sample();
        let parsed: Report = serde_json::from_str(&report.json().expect("json")).expect("parse");
        assert_eq!(parsed, report);
        assert_eq!(parsed.total_errors(), 1);
    }

    #[test]
    fn table_has_one_line_per_op_and_error_sample() {
        let table = sample().table();
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.contains("no leader"));
    }
}
