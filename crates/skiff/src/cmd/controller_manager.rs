//! `skiff controller-manager`: the controllers, against any API server (kube-controller-manager).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args, Debug, Clone)]
pub struct ControllerManagerArgs {
    /// Kubeconfig with the API server's address and credentials.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Controllers to run, as kube-controller-manager's --controllers: `*` for all, `-name` to disable one.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Elect a leader through the kube-system/kube-controller-manager Lease before running.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Serve plain-HTTP /metrics (workqueue depth, adds, retries) on this address.
    #[arg(long)]
    pub metrics_bind_address: Option<SocketAddr>,
    /// The cluster CA published as the `kube-root-ca.crt` ConfigMap in every namespace.
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetControllerArgs,
}

/// Flags of the node, IPAM and PodGC controllers (kube-controller-manager's names and defaults).
#[derive(Args, Debug, Clone)]
pub struct NetControllerArgs {
    /// A node whose heartbeats (Lease, status) are older than this is marked Ready=Unknown and tainted unreachable.
    #[arg(long, default_value = "40s", value_parser = super::store::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = super::store::parse_duration)]
    pub node_monitor_period: std::time::Duration,
    /// Give every node a spec.podCIDR from --cluster-cidr.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub allocate_node_cidrs: bool,
    /// The range node pod CIDRs are carved from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Terminated pods kept before PodGC deletes the oldest (0 = keep all).
    #[arg(long, default_value_t = 12500)]
    pub terminated_pod_gc_threshold: usize,
    /// How often PodGC runs (upstream: fixed 20s; a flag here so tests need not wait).
    #[arg(long, default_value = "20s", value_parser = super::store::parse_duration, hide = true)]
    pub pod_gc_period: std::time::Duration,
    /// Nodes per second tainted NoExecute (their pods evicted) in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
    /// The same in a partially disrupted zone larger than --large-cluster-size-threshold (else 0).
    #[arg(long, default_value_t = 0.01)]
    pub secondary_node_eviction_rate: f64,
    /// Fraction of not-Ready nodes (more than 2) that makes a zone partially disrupted.
    #[arg(long, default_value_t = 0.55)]
    pub unhealthy_zone_threshold: f64,
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: usize,
}

impl NetControllerArgs {
    pub fn options(&self) -> skiff_controllers::NetOptions {
        skiff_controllers::NetOptions {
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_monitor_period: self.node_monitor_period,
            allocate_node_cidrs: self.allocate_node_cidrs,
            cluster_cidr: self.cluster_cidr.clone(),
            node_cidr_mask_size: self.node_cidr_mask_size,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            pod_gc_period: self.pod_gc_period,
            eviction: skiff_controllers::zone_eviction::EvictionRates {
                primary: self.node_eviction_rate,
                secondary: self.secondary_node_eviction_rate,
                unhealthy_threshold: self.unhealthy_zone_threshold,
                large_cluster: self.large_cluster_size_threshold,
            },
        }
    }
}

pub async fn run(args: ControllerManagerArgs) -> Result<()> {
    let client = skiff_controllers::client_from_kubeconfig(&args.kubeconfig).await?;
    let metrics = skiff_controllers::queue::QueueMetrics::default();
    if let Some(addr) = args.metrics_bind_address {
        let mut reg = prometheus_client::registry::Registry::default();
        metrics.register(&mut reg);
        tokio::spawn(serve_metrics(addr, std::sync::Arc::new(reg)));
    }
    let root_ca = match &args.root_ca_file {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?),
        None => None,
    };
    let opts = skiff_controllers::Options { controllers: args.controllers, leader_elect: args.leader_elect, root_ca, net: args.net.options(), ..Default::default() };
    tokio::select! {
        r = skiff_controllers::run(client, opts, metrics) => r,
        _ = super::shutdown_signal() => Ok(()),
    }
}

/// A minimal HTTP/1.0 responder for Prometheus scrapes.
async fn serve_metrics(addr: SocketAddr, reg: std::sync::Arc<prometheus_client::registry::Registry>) {
    let Ok(l) = tokio::net::TcpListener::bind(addr).await else {
        tracing::error!(%addr, "cannot listen for metrics");
        return;
    };
    loop {
        let Ok((mut s, _)) = l.accept().await else { continue };
        let reg = reg.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).await;
            let mut body = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut body, &reg);
            let resp = format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
