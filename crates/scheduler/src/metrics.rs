//! Prometheus metrics (names as kube-scheduler's), served at /metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
    pub profile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    /// scheduler_schedule_attempts_total{result=scheduled|unschedulable|error}
    pub attempts: Family<ResultLabel, Counter>,
    /// Time of one scheduling cycle (filter + score + preemption).
    pub attempt_duration: Family<ResultLabel, Histogram>,
    /// From first entering the queue to bound (upstream's pod_scheduling_sli_duration_seconds).
    pub e2e: Histogram,
    pub pending: Family<QueueLabel, Gauge>,
    pub preemption_victims: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<ResultLabel, Counter>::default();
        let attempt_duration = Family::<ResultLabel, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 20)));
        let e2e = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        let pending = Family::<QueueLabel, Gauge>::default();
        let preemption_victims = Counter::default();
        let leader = Gauge::default();
        registry.register("scheduler_schedule_attempts", "Scheduling attempts by result", attempts.clone());
        registry.register("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt latency (algorithm + preemption)", attempt_duration.clone());
        registry.register("scheduler_pod_scheduling_sli_duration_seconds", "From first queued to bound", e2e.clone());
        registry.register("scheduler_pending_pods", "Pending pods by queue", pending.clone());
        registry.register("scheduler_preemption_victims", "Pods evicted by preemption", preemption_victims.clone());
        registry.register("leader_election_master_status", "1 while this replica is the leader", leader.clone());
        Metrics { registry, attempts, attempt_duration, e2e, pending, preemption_victims, leader }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("metrics encode");
        out
    }
}

/// A minimal HTTP/1.1 endpoint: GET /metrics and /healthz, one request per connection.
pub async fn serve(listener: tokio::net::TcpListener, render: impl Fn() -> String + Send + Sync + Clone + 'static) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            while n < buf.len() {
                match sock.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(m) => n += m,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", render()),
                "/healthz" | "/livez" | "/readyz" => ("200 OK", "ok".to_string()),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        });
    }
}
