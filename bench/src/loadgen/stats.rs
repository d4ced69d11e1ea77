//! Per-operation latency histograms and error counts, kept per client and merged at the end.
//!
//! Latencies are recorded in microseconds in an HDR histogram (3 significant figures, up to
//! 60 s; longer ones count as 60 s), so percentiles are exact to 0.1 % at every scale.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::report::{ErrorSample, Latency, OpReport};

const MAX_MICROS: u64 = 60_000_000;
/// Distinct error messages kept per operation.
const MAX_ERROR_SAMPLES: usize = 16;

/// What one operation kind recorded.
#[derive(Clone, Debug)]
struct OpStats {
    latency: Histogram<u64>,
    errors: u64,
    error_samples: BTreeMap<String, u64>,
}

impl OpStats {
    fn new() -> Self {
        Self {
            // The bounds are constants that satisfy hdrhistogram's rules (low >= 1,
            // high >= 2 * low, sigfig <= 5).
            latency: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
            errors: 0,
            error_samples: BTreeMap::new(),
        }
    }
}

/// Latencies and errors by operation name.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    ops: BTreeMap<&'static str, OpStats>,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    fn op(&mut self, op: &'static str) -> &mut OpStats {
        self.ops.entry(op).or_insert_with(OpStats::new)
    }

    pub fn record_ok(&mut self, op: &'static str, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS);
        self.op(op)
            .latency
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    pub fn record_error(&mut self, op: &'static str, message: &str) {
        self.record_errors(op, message, 1);
    }

    /// Records `count` failures of `op` with the same message.
    pub fn record_errors(&mut self, op: &'static str, message: &str, count: u64) {
        if count == 0 {
            return;
        }
        let stats = self.op(op);
        stats.errors += count;
        if let Some(seen) = stats.error_samples.get_mut(message) {
            *seen += count;
        } else if stats.error_samples.len() < MAX_ERROR_SAMPLES {
            stats.error_samples.insert(message.to_string(), count);
        }
    }

    /// Makes sure `op` appears in the report even if it recorded nothing.
    pub fn declare(&mut self, op: &'static str) {
        self.op(op);
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (name, theirs) in &other.ops {
            let ours = self.op(name);
            // Both histograms share the same bounds, so adding never goes out of range.
            ours.latency
                .add(&theirs.latency)
                .expect("histograms with equal bounds");
            ours.errors += theirs.errors;
            for (message, count) in &theirs.error_samples {
                if let Some(ours_count) = ours.error_samples.get_mut(message) {
                    *ours_count += count;
                } else if ours.error_samples.len() < MAX_ERROR_SAMPLES {
                    ours.error_samples.insert(message.clone(), *count);
                }
            }
        }
    }

    /// Successful requests of `op` so far.
    pub fn count(&self, op: &str) -> u64 {
        self.ops.get(op).map_or(0, |s| s.latency.len())
    }

    /// One report line per operation; throughput is successful requests over `elapsed`.
    pub fn report(&self, elapsed: Duration) -> Vec<OpReport> {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        self.ops
            .iter()
            .map(|(name, stats)| {
                let h = &stats.latency;
                let ms = |micros: u64| micros as f64 / 1000.0;
                let latency_ms = if h.is_empty() {
                    Latency::default()
                } else {
                    Latency {
                        mean: h.mean() / 1000.0,
                        p50: ms(h.value_at_quantile(0.50)),
                        p90: ms(h.value_at_quantile(0.90)),
                        p99: ms(h.value_at_quantile(0.99)),
                        p999: ms(h.value_at_quantile(0.999)),
                        max: ms(h.max()),
                    }
                };
                OpReport {
                    op: (*name).to_string(),
                    requests: h.len(),
                    errors: stats.errors,
                    throughput: h.len() as f64 / secs,
                    latency_ms,
                    error_samples: stats
                        .error_samples
                        .iter()
                        .map(|(message, count)| ErrorSample {
                            message: message.clone(),
                            count: *count,
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_throughput() {
        let mut r = Recorder::new();
        for ms in 1..=100u64 {
            r.record_ok("put", Duration::from_millis(ms));
        }
        let report = r.report(Duration::from_secs(2));
        assert_eq!(report.len(), 1);
        let put = &report[0];
        assert_eq!(put.requests, 100);
        assert!((put.throughput - 50.0).abs() < 1e-9);
        assert!((put.latency_ms.p50 - 50.0).abs() < 0.1, "{put:?}");
        assert!((put.latency_ms.p99 - 99.0).abs() < 0.1, "{put:?}");
        assert!((put.latency_ms.max - 100.0).abs() < 0.1, "{put:?}");
    }

    #[test]
    fn merge_adds_counts_and_errors() {
        let mut a = Recorder::new();
        a.record_ok("get", Duration::from_micros(100));
        a.record_error("get", "Unavailable: no leader");
        let mut b = Recorder::new();
        b.record_ok("get", Duration::from_micros(300));
        b.record_error("get", "Unavailable: no leader");
        b.record_ok("put", Duration::from_micros(300));
        a.merge(&b);
        assert_eq!(a.count("get"), 2);
        assert_eq!(a.count("put"), 1);
        let report = a.report(Duration::from_secs(1));
        let get = report.iter().find(|r| r.op == "get").expect("get reported");
        assert_eq!(get.errors, 2);
        assert_eq!(get.error_samples.len(), 1);
        assert_eq!(get.error_samples[0].count, 2);
    }

    #[test]
    fn huge_latencies_saturate() {
        let mut r = Recorder::new();
        r.record_ok("slow", Duration::from_secs(3600));
        let report = r.report(Duration::from_secs(1));
        assert!((report[0].latency_ms.max - 60_000.0).abs() < 60.0);
    }
}
