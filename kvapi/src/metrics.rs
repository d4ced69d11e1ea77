//! The Prometheus registry behind `/metrics`: etcd's server, mvcc and disk metrics read from
//! the node at scrape time, plus go-grpc-prometheus's per-method gRPC metrics (`grpc_layer.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use cairn_engine::node::NodeMetrics;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::config::ApiConfig;

/// Labels of every gRPC metric, in go-grpc-prometheus's order.
const GRPC_LABELS: [&str; 3] = ["grpc_method", "grpc_service", "grpc_type"];

/// Where node metrics come from at scrape time.
pub type MetricsSource = Box<dyn Fn() -> NodeMetrics + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    pub grpc_handling_seconds: HistogramVec,
}

impl Metrics {
    /// `source` is read on every scrape (the server passes `Node::metrics`).
    pub fn new(source: MetricsSource, config: &ApiConfig) -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let grpc_started = IntCounterVec::new(
            Opts::new(
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
            ),
            &GRPC_LABELS,
        )?;
        let grpc_handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
        )?;
        let grpc_handling_seconds = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            ),
            &GRPC_LABELS,
        )?;
        registry.register(Box::new(grpc_started.clone()))?;
        registry.register(Box::new(grpc_handled.clone()))?;
        registry.register(Box::new(grpc_handling_seconds.clone()))?;
        registry.register(Box::new(NodeCollector::new(source, config)?))?;
        Ok(Arc::new(Self {
            registry,
            grpc_started,
            grpc_handled,
            grpc_handling_seconds,
        }))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%err, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// What a node metric is exported as.
#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// One exported family read from [`NodeMetrics`].
struct NodeFamily {
    desc: Desc,
    kind: Kind,
    value: fn(&NodeMetrics) -> f64,
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// etcd's metrics built from `Node::metrics()` on each scrape, so nothing is copied in between.
struct NodeCollector {
    source: MetricsSource,
    families: Vec<NodeFamily>,
    wal_fsync: Desc,
    /// `etcd_server_version{server_version}` and `etcd_cluster_version{cluster_version}` = 1.
    versions: Vec<(Desc, LabelPair)>,
}

impl NodeCollector {
    fn new(source: MetricsSource, config: &ApiConfig) -> Result<Self, prometheus::Error> {
        let desc = |name: &str, help: &str| {
            Desc::new(name.to_owned(), help.to_owned(), Vec::new(), HashMap::new())
        };
        let family = |name: &str, help: &str, kind: Kind, value: fn(&NodeMetrics) -> f64| {
            desc(name, help).map(|desc| NodeFamily { desc, kind, value })
        };
        let families = vec![
            family(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
                Kind::Gauge,
                |m| flag(m.has_leader),
            )?,
            family(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                Kind::Gauge,
                |m| flag(m.is_leader),
            )?,
            family(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
                Kind::Counter,
                |m| m.leader_changes_seen as f64,
            )?,
            // etcd exports the committed and applied totals as gauges.
            family(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
                Kind::Gauge,
                |m| m.proposals_committed as f64,
            )?,
            family(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
                Kind::Gauge,
                |m| m.proposals_applied as f64,
            )?,
            family(
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
                Kind::Gauge,
                |m| m.proposals_pending as f64,
            )?,
            family(
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
                Kind::Counter,
                |m| m.proposals_failed as f64,
            )?,
            family(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
                Kind::Gauge,
                |m| m.db_total_size_bytes as f64,
            )?,
            family(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
                Kind::Gauge,
                |m| m.db_total_size_in_use_bytes as f64,
            )?,
            family(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
                Kind::Gauge,
                |m| m.current_revision as f64,
            )?,
            family(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
                Kind::Gauge,
                |m| m.compact_revision as f64,
            )?,
            family(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
                Kind::Gauge,
                |m| m.watchers as f64,
            )?,
            family(
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
                Kind::Gauge,
                |m| m.slow_watchers as f64,
            )?,
            family(
                "etcd_debugging_lessor_leases",
                "Number of leases currently granted.",
                Kind::Gauge,
                |m| m.leases as f64,
            )?,
            family(
                "cairn_history_head_revision",
                "The newest revision recorded in the jj history.",
                Kind::Gauge,
                |m| m.history_head_revision as f64,
            )?,
            family(
                "cairn_history_lag_revisions",
                "Revisions applied to the store but not yet recorded in history.",
                Kind::Gauge,
                |m| m.history_lag_revisions as f64,
            )?,
        ];
        let wal_fsync = desc(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        )?;
        let version_desc = |name: &str, help: &str, label: &str| -> Result<_, prometheus::Error> {
            let d = Desc::new(
                name.to_owned(),
                help.to_owned(),
                vec![label.to_owned()],
                HashMap::new(),
            )?;
            Ok(d)
        };
        let versions = vec![
            (
                version_desc(
                    "etcd_server_version",
                    "Which version is running. 1 for 'server_version' label with current version.",
                    "server_version",
                )?,
                label_pair("server_version", &config.version),
            ),
            (
                version_desc(
                    "etcd_cluster_version",
                    "Which version is running. 1 for 'cluster_version' label with current cluster version",
                    "cluster_version",
                )?,
                label_pair("cluster_version", &config.cluster_version),
            ),
        ];
        Ok(Self {
            source,
            families,
            wal_fsync,
            versions,
        })
    }
}

fn label_pair(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn metric_family(desc: &Desc, kind: MetricType, metric: Metric) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(desc.fq_name.clone());
    family.set_help(desc.help.clone());
    family.set_field_type(kind);
    family.set_metric(vec![metric]);
    family
}

fn gauge_metric(value: f64) -> Metric {
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    let mut metric = Metric::default();
    metric.set_gauge(gauge);
    metric
}

impl Collector for NodeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families
            .iter()
            .map(|f| &f.desc)
            .chain(std::iter::once(&self.wal_fsync))
            .chain(self.versions.iter().map(|(d, _)| d))
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let m = (self.source)();
        let mut out: Vec<MetricFamily> = self
            .families
            .iter()
            .map(|f| {
                let value = (f.value)(&m);
                match f.kind {
                    Kind::Gauge => metric_family(&f.desc, MetricType::GAUGE, gauge_metric(value)),
                    Kind::Counter => {
                        let mut counter = Counter::default();
                        counter.set_value(value);
                        let mut metric = Metric::default();
                        metric.set_counter(counter);
                        metric_family(&f.desc, MetricType::COUNTER, metric)
                    }
                }
            })
            .collect();

        // Only the count and the sum are known: the histogram has just the +Inf bucket, which
        // the encoder derives from the count.
        let mut histogram = Histogram::default();
        histogram.set_sample_count(m.wal_fsync_count);
        histogram.set_sample_sum(m.wal_fsync_seconds_sum);
        let mut metric = Metric::default();
        metric.set_histogram(histogram);
        out.push(metric_family(
            &self.wal_fsync,
            MetricType::HISTOGRAM,
            metric,
        ));

        for (desc, label) in &self.versions {
            let mut metric = gauge_metric(1.0);
            metric.set_label(vec![label.clone()]);
            out.push(metric_family(desc, MetricType::GAUGE, metric));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_are_exported_with_etcds_names() {
        let source: MetricsSource = Box::new(|| NodeMetrics {
            has_leader: true,
            is_leader: true,
            leader_changes_seen: 2,
            proposals_committed: 40,
            proposals_applied: 39,
            proposals_pending: 1,
            proposals_failed: 3,
            wal_fsync_count: 10,
            wal_fsync_seconds_sum: 0.5,
            db_total_size_bytes: 4096,
            db_total_size_in_use_bytes: 2048,
            current_revision: 17,
            compact_revision: 5,
            watchers: 6,
            slow_watchers: 1,
            leases: 2,
            history_head_revision: 15,
            history_lag_revisions: 2,
        });
        let metrics = Metrics::new(source, &ApiConfig::default()).expect("metrics register");
        metrics
            .grpc_started
            .with_label_values(&["Range", "etcdserverpb.KV", "unary"])
            .inc();
        let text = metrics.render();
        for line in [
            "etcd_server_has_leader 1",
            "etcd_server_is_leader 1",
            "# TYPE etcd_server_leader_changes_seen_total counter",
            "etcd_server_leader_changes_seen_total 2",
            "etcd_server_proposals_committed_total 40",
            "etcd_server_proposals_applied_total 39",
            "etcd_server_proposals_pending 1",
            "etcd_server_proposals_failed_total 3",
            "etcd_mvcc_db_total_size_in_bytes 4096",
            "etcd_mvcc_db_total_size_in_use_in_bytes 2048",
            "etcd_debugging_mvcc_current_revision 17",
            "etcd_debugging_mvcc_compact_revision 5",
            "etcd_debugging_mvcc_watcher_total 6",
            "etcd_debugging_mvcc_slow_watcher_total 1",
            "etcd_debugging_lessor_leases 2",
            "cairn_history_head_revision 15",
            "cairn_history_lag_revisions 2",
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 10",
            "etcd_disk_wal_fsync_duration_seconds_sum 0.5",
            "etcd_disk_wal_fsync_duration_seconds_count 10",
            "etcd_server_version{server_version=\"3.6.5\"} 1",
            "etcd_cluster_version{cluster_version=\"3.6.0\"} 1",
            "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
