//! `skiff sim`: simulated nodes (see crates/sim).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Kubeconfig of the cluster to join (default: $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Node names are PREFIX0, PREFIX1, …
    #[arg(long, default_value = "sim-node-")]
    node_prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value = "110")]
    pods: String,
    /// Extra node labels, key=value (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Spread nodes over this many zones (topology.kubernetes.io/zone=zone-i).
    #[arg(long, default_value_t = 0)]
    zones: usize,
    /// Node taints, key[=value]:Effect (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    taints: Vec<String>,
    /// Delay from binding to Running.
    #[arg(long, default_value = "0s", value_parser = super::store::parse_duration)]
    pod_startup_delay: std::time::Duration,
    /// Node lease duration in seconds (renewed every quarter of it).
    #[arg(long, default_value_t = 40)]
    lease_duration_seconds: i32,
    /// Maximum API requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Drive bound pods to Running and finish their deletion (false: nodes only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    drive_pods: bool,
    /// Injected failure: this many nodes (the first ones) die, i.e. stop
    /// renewing their Leases and driving their pods.
    #[arg(long, default_value_t = 0)]
    fail_nodes: usize,
    /// When the --fail-nodes die, from start.
    #[arg(long, default_value = "0s", value_parser = super::store::parse_duration)]
    fail_nodes_after: std::time::Duration,
    /// The --fail-nodes come back this long after dying (default: never).
    #[arg(long, value_parser = super::store::parse_duration)]
    recover_nodes_after: Option<std::time::Duration>,
    /// Injected failure: this fraction (0..1) of pods have crashing containers
    /// (CrashLoopBackOff; Failed with exit code 1 unless restartPolicy is Always).
    #[arg(long, default_value_t = 0.0)]
    pod_failure_rate: f64,
}

pub async fn run(args: SimArgs) -> Result<()> {
    let client = super::kubeclient::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| anyhow::anyhow!("label {l:?}: want key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let taints = args.taints.iter().map(|t| skiff_sim::parse_taint(t)).collect::<Result<Vec<_>>>()?;
    let config = skiff_sim::Config {
        nodes: args.nodes,
        node_prefix: args.node_prefix,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        labels,
        zones: args.zones,
        taints,
        pod_startup_delay: args.pod_startup_delay,
        lease_duration_seconds: args.lease_duration_seconds,
        concurrency: args.concurrency,
        drive_pods: args.drive_pods,
        fail_nodes: args.fail_nodes,
        fail_nodes_after: args.fail_nodes_after,
        recover_nodes_after: args.recover_nodes_after,
        pod_failure_rate: args.pod_failure_rate,
    };
    skiff_sim::run(client, config, super::shutdown_signal()).await
}
