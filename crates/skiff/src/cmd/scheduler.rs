//! `skiff scheduler`: the scheduler (see crates/scheduler).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    /// Kubeconfig of the cluster (default: $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Schedule pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Elect a leader through a Lease before scheduling (run several replicas safely).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Lease namespace/name used for leader election.
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    #[arg(long, default_value = "15s", value_parser = super::store::parse_duration)]
    leader_elect_lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = super::store::parse_duration)]
    leader_elect_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = super::store::parse_duration)]
    leader_elect_retry_period: Duration,
    /// Serve Prometheus metrics on this address (/metrics, /healthz).
    #[arg(long)]
    metrics_address: Option<SocketAddr>,
    /// Bindings in flight at most.
    #[arg(long, default_value_t = 64)]
    parallel_binds: usize,
    /// Do not emit a "Scheduled" event for every bound pod.
    #[arg(long)]
    no_scheduled_events: bool,
}

pub async fn run(args: SchedulerArgs) -> Result<()> {
    let client = super::kubeclient::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    // hostname_pid_random: unique per replica, and tells an operator which process leads.
    let identity = format!("{}_{}_{:x}", skiff_scheduler::api::hostname(), std::process::id(), rand_id());
    let leader_election = args.leader_elect.then_some(skiff_scheduler::leader::Config {
        namespace: args.leader_elect_resource_namespace,
        name: args.leader_elect_resource_name,
        identity,
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    });
    let cfg = skiff_scheduler::Config {
        scheduler_name: args.scheduler_name,
        leader_election,
        metrics_addr: args.metrics_address,
        parallel_binds: args.parallel_binds,
        scheduled_events: !args.no_scheduled_events,
    };
    skiff_scheduler::run(client, cfg, super::shutdown_signal()).await
}

/// The scheduler inside `skiff server`: the upstream defaults (leader
/// election on the `kube-system/kube-scheduler` Lease, so that several
/// servers, or a separate `skiff scheduler`, never schedule at once). Its
/// metrics are served by `skiff scheduler --metrics-address` only.
pub async fn run_in_server(kubeconfig: PathBuf) {
    let args = SchedulerArgs {
        kubeconfig: Some(kubeconfig),
        scheduler_name: "default-scheduler".into(),
        leader_elect: true,
        leader_elect_resource_namespace: "kube-system".into(),
        leader_elect_resource_name: "kube-scheduler".into(),
        leader_elect_lease_duration: Duration::from_secs(15),
        leader_elect_renew_deadline: Duration::from_secs(10),
        leader_elect_retry_period: Duration::from_secs(2),
        metrics_address: None,
        parallel_binds: 64,
        no_scheduled_events: false,
    };
    // Lost leadership ends a run; stand again as a candidate, as a restarted kube-scheduler would.
    loop {
        match run(args.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "scheduler stopped; restarting"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn rand_id() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    t ^ ((std::process::id() as u64) << 32)
}
