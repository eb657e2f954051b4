//! Prometheus metrics of the store, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub revision: Gauge,
    pub compact_revision: Gauge,
    pub keys: Gauge,
    pub watchers: Gauge,
    pub leases: Gauge,
    pub wal_fsync_seconds: Histogram,
    pub commit_batch_size: Histogram,
    pub apply_seconds: Histogram,
    pub proposals_failed: Counter,
    pub snapshots: Counter,
    pub snapshots_received: Counter,
    pub grpc_requests: Family<MethodLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("skiff_store"),
            revision: Gauge::default(),
            compact_revision: Gauge::default(),
            keys: Gauge::default(),
            watchers: Gauge::default(),
            leases: Gauge::default(),
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            apply_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 16)),
            proposals_failed: Counter::default(),
            snapshots: Counter::default(),
            snapshots_received: Counter::default(),
            grpc_requests: Family::default(),
        };
        m.registry.register("revision", "Current revision of the store", m.revision.clone());
        m.registry.register("compact_revision", "Revision of the last compaction", m.compact_revision.clone());
        m.registry.register("keys", "Live keys", m.keys.clone());
        m.registry.register("watchers", "Open watchers", m.watchers.clone());
        m.registry.register("leases", "Granted leases", m.leases.clone());
        m.registry.register("wal_fsync_duration_seconds", "Latency of WAL write+fsync per batch", m.wal_fsync_seconds.clone());
        m.registry.register("commit_batch_size", "Commands per group commit", m.commit_batch_size.clone());
        m.registry.register("apply_duration_seconds", "Time to apply one committed batch", m.apply_seconds.clone());
        m.registry.register("proposals_failed", "Commands that failed to become durable", m.proposals_failed.clone());
        m.registry.register("snapshots", "Snapshots written", m.snapshots.clone());
        m.registry.register("snapshots_received", "Snapshots installed from the Raft leader (a follower too far behind its log)", m.snapshots_received.clone());
        m.registry.register("grpc_requests", "gRPC requests served, by method", m.grpc_requests.clone());
        m
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
