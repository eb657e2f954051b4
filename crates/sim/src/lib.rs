//! `skiff sim`: simulated nodes, like kwok.
//!
//! It registers Node objects, keeps their Leases in `kube-node-lease` renewed,
//! and plays a kubelet's part for pods bound to them: Pending → Running with
//! the conditions and container statuses a real kubelet reports, and the
//! final (grace period 0) delete once a pod is being deleted; pods can ask to
//! exit (Succeeded/Failed) through annotations, see [`exit`], and nodes and
//! containers can be made to fail, see [`faults`]. Everything is
//! driven through the API with one pod watch for all nodes, so thousands of
//! nodes cost a watch, a few tasks and a lease write per node per interval.

pub mod exit;
mod faults;
mod lease;
mod node;
mod pods;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Taint;

/// What to simulate. `skiff sim`'s flags map onto this one to one.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many nodes: `{node_prefix}{0..nodes}`.
    pub nodes: usize,
    pub node_prefix: String,
    /// Capacity (= allocatable) of every node, as Kubernetes quantities.
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// Extra labels on every node (besides kubernetes.io/hostname, os, arch).
    pub labels: BTreeMap<String, String>,
    /// If > 0, node i gets topology.kubernetes.io/zone=zone-{i % zones}.
    pub zones: usize,
    pub taints: Vec<Taint>,
    /// Time from a pod being bound to it running.
    pub pod_startup_delay: Duration,
    /// Lease duration (kubelet: 40s); leases are renewed every quarter of it.
    pub lease_duration_seconds: i32,
    /// At most this many API requests in flight.
    pub concurrency: usize,
    /// Drive bound pods to Running (off: nodes only, as scheduler_perf's fake nodes).
    pub drive_pods: bool,
    /// Injected failures (see [`faults`]): this many nodes (the first ones)
    /// die `fail_nodes_after` from start, and come back `recover_nodes_after`
    /// later if set.
    pub fail_nodes: usize,
    pub fail_nodes_after: Duration,
    pub recover_nodes_after: Option<Duration>,
    /// Fraction (0..=1) of pods whose containers crash.
    pub pod_failure_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nodes: 1,
            node_prefix: "sim-node-".into(),
            cpu: "32".into(),
            memory: "256Gi".into(),
            pods: "110".into(),
            labels: BTreeMap::new(),
            zones: 0,
            taints: Vec::new(),
            pod_startup_delay: Duration::from_millis(0),
            lease_duration_seconds: 40,
            concurrency: 32,
            drive_pods: true,
            fail_nodes: 0,
            fail_nodes_after: Duration::ZERO,
            recover_nodes_after: None,
            pod_failure_rate: 0.0,
        }
    }
}

impl Config {
    pub fn node_name(&self, i: usize) -> String {
        format!("{}{}", self.node_prefix, i)
    }
}

/// Parses `key=value:Effect` or `key:Effect` (kubectl taint syntax).
pub fn parse_taint(s: &str) -> Result<Taint> {
    let (kv, effect) = s.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("taint {s:?}: want key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        anyhow::bail!("taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (kv.to_string(), None),
    };
    Ok(Taint { key, value, effect: effect.into(), time_added: None })
}

/// Register the nodes, then renew leases and drive pods until `shutdown`.
pub async fn run(client: kube::Client, config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&config.pod_failure_rate), "the pod failure rate must be between 0 and 1");
    let config = Arc::new(config);
    node::register_all(&client, &config).await?;
    retry_transient("creating namespace kube-node-lease", || lease::ensure_namespace(&client)).await?;
    tracing::info!(nodes = config.nodes, "sim nodes registered");
    let faults = Arc::new(faults::Faults::new(&config));
    let leases = tokio::spawn(lease::renew_forever(client.clone(), config.clone(), faults.clone()));
    let pods = tokio::spawn({
        let (client, config) = (client.clone(), config.clone());
        async move {
            if config.drive_pods {
                pods::drive(client, config, faults).await
            } else {
                std::future::pending().await
            }
        }
    });
    tokio::select! {
        _ = shutdown => {}
        r = pods => r??,
    }
    leases.abort();
    Ok(())
}

/// RFC 3339 "now" with second precision, as Kubernetes writes metav1.Time.
pub(crate) fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

pub(crate) const RETRY: Duration = Duration::from_millis(500);

/// Run `op` until it succeeds or fails for a reason retrying cannot fix.
/// Like a kubelet, sim keeps trying while the API server is unreachable,
/// overloaded (429) or failing (5xx), so a busy or restarting server does not
/// end the run; a 4xx that says the request itself is wrong ends it.
pub(crate) async fn retry_transient<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = RETRY;
    loop {
        match op().await {
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "{what}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

fn is_transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(s)) => s.code == 429 || s.code >= 500,
        Some(_) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> anyhow::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({"code": code})).unwrap();
        anyhow::Error::from(kube::Error::Api(Box::new(status))).context("creating node n-0")
    }

    #[test]
    fn only_unreachable_overloaded_or_failing_servers_are_retried() {
        assert!(is_transient(&api_error(500)));
        assert!(is_transient(&api_error(503)));
        assert!(is_transient(&api_error(429)));
        assert!(!is_transient(&api_error(422)));
        assert!(!is_transient(&api_error(403)));
        assert!(!is_transient(&anyhow::anyhow!("bad taint")));
    }

    #[tokio::test]
    async fn retry_transient_retries_until_success_and_stops_on_a_client_error() {
        let mut calls = 0;
        let r = retry_transient("op", || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(api_error(503)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<()> = retry_transient("op", || {
            calls += 1;
            async { Err(api_error(422)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn taints_parse_as_kubectl_writes_them() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_deref(), t.effect.as_str()), ("dedicated", Some("gpu"), "NoSchedule"));
        let t = parse_taint("node-role.kubernetes.io/control-plane:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value, t.effect.as_str()), ("node-role.kubernetes.io/control-plane", None, "NoSchedule"));
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert!(parse_taint("novalue").is_err());
    }

    #[test]
    fn nodes_have_status_labels_and_zones() {
        let c = Config { zones: 3, nodes: 5, ..Default::default() };
        let n = node::build(&c, 4);
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "sim-node-4");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        let st = n.status.unwrap();
        assert_eq!(st.allocatable.unwrap()["cpu"].0, "32");
        assert!(st.conditions.unwrap().iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert_eq!(node::node_ip(258), "10.64.1.2");
    }
}
