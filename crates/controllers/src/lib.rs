//! Skiff's kube-controller-manager: controllers that drive the cluster's
//! actual state toward the desired state stored in the API server.
//!
//! Each controller lives in its own module. They share informers (one watch
//! per type, a local cache) and each has its own rate-limited work queue.
//! Only the holder of the `kube-system/kube-controller-manager` Lease runs
//! them.

pub mod cron;
pub mod cronjob;
pub mod deployment;
pub mod deployment_util;
pub mod events;
pub mod daemonset;
pub mod daemonset_util;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod informer;
pub mod job;
pub mod job_util;
pub mod leader;
pub mod namespace;
pub mod queue;
pub mod replicaset;
pub mod rootca;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttl;
pub mod util;
// Networking, node and cleanup controllers (issue 6, part 1).
pub mod endpoints;
pub mod endpointslice;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
// ResourceQuota status (issue 6).
pub mod quantity;
pub mod quota_usage;
pub mod resourcequota;
pub mod replicationcontroller;
pub mod service_endpoints;
pub mod taint_manager;
pub mod zone_eviction;

use std::sync::Arc;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::Client;

use informer::Informer;
use queue::QueueMetrics;

/// Everything the controllers share: the client, the informers, the metrics.
pub struct Ctx {
    pub client: Client,
    pub pods: Arc<Informer<Pod>>,
    pub rss: Arc<Informer<ReplicaSet>>,
    pub deploys: Arc<Informer<Deployment>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    pub configmaps: Arc<Informer<ConfigMap>>,
    pub metrics: QueueMetrics,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpointslices: Arc<Informer<EndpointSlice>>,
    pub nodes: Arc<Informer<Node>>,
    /// Node heartbeats (`kube-node-lease` namespace only).
    pub node_leases: Arc<Informer<Lease>>,
    pub rcs: Arc<Informer<ReplicationController>>,
    pub statefulsets: Arc<Informer<StatefulSet>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    pub pvcs: Arc<Informer<PersistentVolumeClaim>>,
    pub jobs: Arc<Informer<Job>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub cronjobs: Arc<Informer<CronJob>>,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Controllers to run: names as upstream's `--controllers` (`*` = all).
    pub controllers: Vec<String>,
    pub leader_elect: bool,
    pub identity: String,
    /// The cluster CA (PEM) to publish as `kube-root-ca.crt`; none = the publisher does not run.
    pub root_ca: Option<String>,
    pub net: NetOptions,
}

/// Options of the node, networking and cleanup controllers (kube-controller-manager flag names).
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// `--node-monitor-grace-period`: a node whose heartbeat is older is Ready=Unknown.
    pub node_monitor_grace_period: std::time::Duration,
    /// `--node-monitor-period`: how often node health is checked.
    pub node_monitor_period: std::time::Duration,
    /// `--allocate-node-cidrs`, `--cluster-cidr`, `--node-cidr-mask-size`.
    pub allocate_node_cidrs: bool,
    pub cluster_cidr: String,
    pub node_cidr_mask_size: u8,
    /// `--terminated-pod-gc-threshold` (0 = never collect terminated pods).
    pub terminated_pod_gc_threshold: usize,
    /// How often PodGC runs (upstream: 20 s, not a flag).
    pub pod_gc_period: std::time::Duration,
    /// `--node-eviction-rate` and friends: how fast nodes are tainted NoExecute per zone.
    pub eviction: zone_eviction::EvictionRates,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            node_monitor_period: std::time::Duration::from_secs(5),
            allocate_node_cidrs: true,
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            terminated_pod_gc_threshold: 12500,
            pod_gc_period: std::time::Duration::from_secs(20),
            eviction: Default::default(),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options { controllers: vec!["*".into()], leader_elect: true, identity: default_identity(), root_ca: None, net: NetOptions::default() }
    }
}

pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "skiff".into());
    format!("{host}_{}", std::process::id())
}

fn enabled(opts: &Options, name: &str) -> bool {
    let mut on = false;
    for c in &opts.controllers {
        if c == "*" || c == name {
            on = true;
        }
        if c.strip_prefix('-') == Some(name) {
            return false;
        }
    }
    on
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
    Ok(Client::try_from(cfg)?)
}

/// Run the controller manager until the process ends: wait for the leader
/// lease, start the controllers, and stop them if leadership is lost.
pub async fn run(client: Client, opts: Options, metrics: QueueMetrics) -> Result<()> {
    let lc = leader::LeaderConfig::kube_controller_manager(opts.identity.clone());
    loop {
        if opts.leader_elect {
            leader::acquire(&client, &lc).await;
        }
        let handle = tokio::spawn(start_controllers(client.clone(), opts.clone(), metrics.clone()));
        if opts.leader_elect {
            leader::keep_renewing(&client, &lc).await;
            handle.abort();
            tracing::warn!("stopped controllers after losing the leader lease");
        } else {
            handle.await?;
            return Ok(());
        }
    }
}

async fn start_controllers(client: Client, opts: Options, metrics: QueueMetrics) {
    let ctx = Arc::new(Ctx {
        pods: Informer::new(Api::all(client.clone())),
        rss: Informer::new(Api::all(client.clone())),
        deploys: Informer::new(Api::all(client.clone())),
        namespaces: Informer::new(Api::all(client.clone())),
        serviceaccounts: Informer::new(Api::all(client.clone())),
        configmaps: Informer::new(Api::all(client.clone())),
        services: Informer::new(Api::all(client.clone())),
        endpoints: Informer::new(Api::all(client.clone())),
        endpointslices: Informer::new(Api::all(client.clone())),
        nodes: Informer::new(Api::all(client.clone())),
        node_leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease")),
        rcs: Informer::new(Api::all(client.clone())),
        client: client.clone(),
        metrics,
        statefulsets: Informer::new(Api::all(client.clone())),
        revisions: Informer::new(Api::all(client.clone())),
        pvcs: Informer::new(Api::all(client.clone())),
        jobs: Informer::new(Api::all(client.clone())),
        daemonsets: Informer::new(Api::all(client.clone())),
        cronjobs: Informer::new(Api::all(client)),
    });
    if enabled(&opts, "replicaset") {
        replicaset::ReplicaSetController::start(ctx.clone());
    }
    if enabled(&opts, "deployment") {
        deployment::DeploymentController::start(ctx.clone());
    }
    if enabled(&opts, "garbage-collector") {
        gc::GarbageCollector::start(ctx.clone());
    }
    if enabled(&opts, "namespace") {
        namespace::NamespaceController::start(ctx.clone());
    }
    if enabled(&opts, "serviceaccount") {
        serviceaccount::start(ctx.clone());
        ctx.serviceaccounts.start();
    }
    if enabled(&opts, "resourcequota") {
        // Lists what it needs each pass; no informer to start.
        resourcequota::start(ctx.clone());
    }
    if let (true, Some(ca)) = (enabled(&opts, "root-ca-cert-publisher"), opts.root_ca.clone()) {
        rootca::start(ctx.clone(), ca);
        ctx.configmaps.start();
    }
    // Workload controllers (StatefulSet, DaemonSet, Job, CronJob, TTL).
    let (mut sts, mut jobs, mut dss, mut cjs) = (false, false, false, false);
    if enabled(&opts, "statefulset") {
        statefulset::StatefulSetController::start(ctx.clone());
        sts = true;
    }
    if enabled(&opts, "job") {
        job::JobController::start(ctx.clone());
        jobs = true;
    }
    if enabled(&opts, "daemonset") {
        daemonset::DaemonSetController::start(ctx.clone());
        dss = true;
    }
    if enabled(&opts, "cronjob") {
        cronjob::CronJobController::start(ctx.clone());
        (cjs, jobs) = (true, true);
    }
    if enabled(&opts, "ttl-after-finished") {
        ttl::start(ctx.clone());
        jobs = true;
    }
    // Every handler is registered before any informer starts (the net
    // controllers' starter starts theirs last), so none misses the initial list.
    start_net_controllers(&ctx, &opts);
    if sts {
        ctx.statefulsets.start();
        ctx.pvcs.start();
    }
    if sts || dss {
        ctx.revisions.start();
    }
    if dss {
        ctx.daemonsets.start();
        ctx.nodes.start();
    }
    if jobs {
        ctx.jobs.start();
    }
    if cjs {
        ctx.cronjobs.start();
    }
    ctx.namespaces.start();
    ctx.pods.start();
    ctx.rss.start();
    ctx.deploys.start();
    tracing::info!(controllers = ?opts.controllers, "controllers started");
    std::future::pending::<()>().await;
}

/// Endpoints, EndpointSlice, node lifecycle, IPAM, PodGC and
/// ReplicationController, with the informers they need.
fn start_net_controllers(ctx: &Arc<Ctx>, opts: &Options) {
    let (mut services, mut slices, mut nodes, mut leases) = (false, false, false, false);
    if enabled(opts, "endpoints") {
        endpoints::start(ctx.clone());
        services = true;
    }
    if enabled(opts, "endpointslice") {
        endpointslice::start(ctx.clone());
        (services, slices, nodes) = (true, true, true);
    }
    if enabled(opts, "nodelifecycle") {
        nodelifecycle::start(ctx.clone(), opts.net.clone());
        taint_manager::start(ctx.clone());
        (nodes, leases) = (true, true);
    }
    if enabled(opts, "nodeipam") && opts.net.allocate_node_cidrs {
        match nodeipam::start(ctx.clone(), &opts.net) {
            Ok(()) => nodes = true,
            Err(e) => tracing::error!(error = %format!("{e:#}"), "node IPAM not started"),
        }
    }
    if enabled(opts, "podgc") {
        podgc::start(ctx.clone(), opts.net.clone());
        nodes = true;
    }
    if enabled(opts, "replicationcontroller") {
        replicationcontroller::start(ctx.clone());
        ctx.rcs.start();
    }
    // Informers start after every handler is registered, so none misses the initial list.
    if services {
        ctx.services.start();
        ctx.endpoints.start();
    }
    if slices {
        ctx.endpointslices.start();
    }
    if nodes {
        ctx.nodes.start();
    }
    if leases {
        ctx.node_leases.start();
    }
}
