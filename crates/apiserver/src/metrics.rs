//! Prometheus metrics of the API server, at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
    pub code: u16,
}

pub struct Metrics {
    registry: Registry,
    /// Requests served, by verb, resource and status code (apiserver_request_total upstream).
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            request_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
        };
        m.registry.register("apiserver_request", "API requests by verb, resource and HTTP code", m.requests.clone());
        m.registry.register("apiserver_request_duration_seconds", "API request latency (watches: time to first byte)", m.request_seconds.clone());
        m
    }
}

impl Metrics {
    /// For metrics of components running in the same process (the
    /// controller manager's work queues in `skiff server`), so one scrape sees all.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
