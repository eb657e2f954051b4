//! Container probes (startup, liveness, readiness) and lifecycle hooks, by
//! exec (CRI ExecSync), httpGet and tcpSocket (from the node to the pod IP).
//! Each probe keeps upstream's counters: initialDelaySeconds, periodSeconds,
//! timeoutSeconds, successThreshold, failureThreshold.

use serde_json::Value;
use skiff_cri as cri;
use skiff_cri::runtime_service_client::RuntimeServiceClient;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// One probe's running state for one container instance.
#[derive(Debug)]
pub struct Probe {
    spec: Value,
    started: Instant,
    next: Instant,
    ok_run: u32,
    fail_run: u32,
    /// The verdict so far: None until the threshold is first reached.
    pub result: Option<bool>,
}

fn secs(spec: &Value, k: &str, default: u64) -> u64 {
    spec[k].as_u64().unwrap_or(default)
}

impl Probe {
    pub fn new(spec: Value, now: Instant) -> Self {
        let delay = Duration::from_secs(secs(&spec, "initialDelaySeconds", 0));
        Self { spec, started: now, next: now + delay, ok_run: 0, fail_run: 0, result: None }
    }

    /// Record one outcome; returns the verdict after it.
    pub fn record(&mut self, ok: bool, now: Instant) -> Option<bool> {
        self.next = now + Duration::from_secs(secs(&self.spec, "periodSeconds", 10).max(1));
        if ok {
            self.ok_run += 1;
            self.fail_run = 0;
            if self.ok_run >= secs(&self.spec, "successThreshold", 1) as u32 {
                self.result = Some(true);
            }
        } else {
            self.fail_run += 1;
            self.ok_run = 0;
            if self.fail_run >= secs(&self.spec, "failureThreshold", 3) as u32 {
                self.result = Some(false);
            }
        }
        self.result
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next && now >= self.started
    }

    /// Run the probe once against the container.
    pub async fn run(&self, rt: &mut RuntimeServiceClient<Channel>, container_id: &str, pod_ip: &str) -> bool {
        let timeout = secs(&self.spec, "timeoutSeconds", 1).max(1);
        action(&self.spec, rt, container_id, pod_ip, timeout).await
    }
}

/// `grpc.health.v1.Health/Check` on `addr`: healthy only when SERVING.
pub async fn grpc_check(addr: &str, service: &str, limit: Duration) -> bool {
    use skiff_cri::health::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    let check = async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect_timeout(limit).connect().await.ok()?;
        let r = HealthClient::new(ch).check(HealthCheckRequest { service: service.to_string() }).await.ok()?;
        Some(r.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(tokio::time::timeout(limit, check).await, Ok(Some(true)))
}

/// Run a probe or hook action (`exec`, `httpGet`, `tcpSocket`, `grpc`); true on success.
pub async fn action(spec: &Value, rt: &mut RuntimeServiceClient<Channel>, container_id: &str, pod_ip: &str, timeout: u64) -> bool {
    let limit = Duration::from_secs(timeout);
    if let Some(cmd) = spec["exec"]["command"].as_array() {
        let cmd = cmd.iter().filter_map(|c| c.as_str().map(str::to_string)).collect();
        let r = rt.exec_sync(cri::ExecSyncRequest { container_id: container_id.to_string(), cmd, timeout: timeout as i64 }).await;
        return r.is_ok_and(|r| r.into_inner().exit_code == 0);
    }
    let host = |s: &Value| s["host"].as_str().filter(|h| !h.is_empty()).unwrap_or(pod_ip).to_string();
    if spec["tcpSocket"].is_object() {
        let Some(port) = spec["tcpSocket"]["port"].as_u64() else { return false };
        let addr = format!("{}:{port}", host(&spec["tcpSocket"]));
        return matches!(tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)));
    }
    if spec["grpc"].is_object() {
        // Upstream dials the pod IP; a grpc probe has no host field.
        let Some(port) = spec["grpc"]["port"].as_u64() else { return false };
        return grpc_check(&format!("{pod_ip}:{port}"), spec["grpc"]["service"].as_str().unwrap_or(""), limit).await;
    }
    if spec["httpGet"].is_object() {
        let h = &spec["httpGet"];
        let Some(port) = h["port"].as_u64() else { return false };
        let addr = format!("{}:{port}", host(h));
        let path = h["path"].as_str().unwrap_or("/").to_string();
        let fut = async move {
            let mut c = tokio::net::TcpStream::connect(&addr).await.ok()?;
            c.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\n\r\n").as_bytes()).await.ok()?;
            let mut buf = vec![0u8; 64];
            let n = c.read(&mut buf).await.ok()?;
            String::from_utf8_lossy(&buf[..n]).split_whitespace().nth(1)?.parse::<u16>().ok()
        };
        return matches!(tokio::time::timeout(limit, fut).await, Ok(Some(code)) if (200..400).contains(&code));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn thresholds_and_periods() {
        let t0 = Instant::now();
        let mut p = Probe::new(json!({"initialDelaySeconds": 2, "periodSeconds": 1, "failureThreshold": 2, "successThreshold": 2}), t0);
        assert!(!p.due(t0 + Duration::from_secs(1)));
        assert!(p.due(t0 + Duration::from_secs(2)));
        assert_eq!(p.record(true, t0), None);
        assert_eq!(p.record(true, t0), Some(true));
        assert_eq!(p.record(false, t0), Some(true), "one failure is under the threshold");
        assert_eq!(p.record(false, t0), Some(false));
        assert!(!p.due(t0));
        assert!(p.due(t0 + Duration::from_secs(1)));
    }

    struct Health(i32);
    #[tonic::async_trait]
    impl skiff_cri::health::health_server::Health for Health {
        async fn check(&self, r: tonic::Request<skiff_cri::health::HealthCheckRequest>) -> Result<tonic::Response<skiff_cri::health::HealthCheckResponse>, tonic::Status> {
            let status = if r.into_inner().service == "db" { 3 } else { self.0 };
            Ok(tonic::Response::new(skiff_cri::health::HealthCheckResponse { status }))
        }
    }

    async fn serve(status: i32) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(tonic::transport::Server::builder().add_service(skiff_cri::health::health_server::HealthServer::new(Health(status))).serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)));
        addr
    }

    #[tokio::test]
    async fn grpc_probe_needs_serving() {
        let t = Duration::from_secs(2);
        let serving = serve(1).await;
        assert!(grpc_check(&serving, "", t).await);
        assert!(!grpc_check(&serving, "db", t).await, "SERVICE_UNKNOWN is a failure");
        assert!(!grpc_check(&serve(2).await, "", t).await, "NOT_SERVING is a failure");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        assert!(!grpc_check(&closed, "", t).await);
    }
}
