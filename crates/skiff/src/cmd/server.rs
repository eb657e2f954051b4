//! `skiff server`: the control plane on the embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use skiff_apiserver::{bootstrap, certs, kv::Embedded, storage::Storage, AppState};
use skiff_store::{Config, Store};


#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Where the store, the PKI and the admin kubeconfig live
    /// (default: /var/lib/skiff as root, else the user's data directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address and port of the HTTPS API.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// How often the store's history is compacted (kube-apiserver's default is 5m).
    #[arg(long, default_value = "5m", value_parser = super::store::parse_duration)]
    compaction_interval: std::time::Duration,
    /// How often a quiet watch that allows bookmarks gets a BOOKMARK event.
    #[arg(long, default_value = "1m", value_parser = super::store::parse_duration, hide = true)]
    watch_bookmark_interval: std::time::Duration,
    /// The range Services take cluster IPs from (kube-apiserver's --service-cluster-ip-range).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// The range of ports NodePort Services take (kube-apiserver's --service-node-port-range).
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// Keep the cluster's state in these external etcd members
    /// (comma-separated `http://host:port`) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Reads served at once; more get 429 (kube-apiserver's --max-requests-inflight).
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Writes served at once; more get 429 (kube-apiserver's --max-mutating-requests-inflight).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Verify kubelets' serving certificates against this CA (PEM); by default they are not verified, as upstream.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Do not run a kubelet (and the embedded container runtime) for this machine.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the controller manager in this process (run `skiff controller-manager` elsewhere, or none).
    #[arg(long)]
    disable_controllers: bool,
    /// Do not run the scheduler in this process (run `skiff scheduler` elsewhere, or none).
    #[arg(long)]
    disable_scheduler: bool,
    /// Admission plugins to turn off, comma-separated, as kube-apiserver's flag
    /// (only `ServiceAccount` can be: the others are part of the API's semantics here).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// The Node name of this machine's agent (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Port of this machine's kubelet endpoint.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// The agent's CRI runtime socket, `unix:///run/containerd/containerd.sock`
    /// (as `skiff agent --container-runtime-endpoint`); default: the embedded runtime.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    #[command(flatten)]
    net: super::controller_manager::NetControllerArgs,
    /// etcd's clustering flags: with `--initial-cluster` naming several
    /// members, this server's embedded store is one member of a Raft cluster
    /// and every member serves the Kubernetes API.
    #[command(flatten)]
    cluster: super::store::ClusterFlags,
    /// Also serve this member's etcd v3 API on these URLs (for etcdctl; off by default).
    #[arg(long)]
    listen_client_urls: Option<String>,
    /// Client URLs this member advertises in `member list` (default: --listen-client-urls).
    #[arg(long)]
    advertise_client_urls: Option<String>,
}

/// Serve the embedded store's etcd v3 API (for `etcdctl member list`,
/// `endpoint status`, `member add`) next to the Kubernetes API.
async fn serve_etcd_api(store: &Store, id: skiff_store::grpc::Identity, urls: &str) -> Result<()> {
    let ctx = skiff_store::grpc::Ctx { store: store.clone(), id, progress_interval: std::time::Duration::from_secs(600) };
    for addr in super::urls::listen_addrs("--listen-client-urls", urls)? {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, "serving the store's etcd v3 API");
        tokio::spawn(skiff_store::grpc::serve(ctx.clone(), listener, std::future::pending::<()>()));
    }
    Ok(())
}

/// The in-process agent's flags: what `skiff agent` would get on this
/// machine, with its state under the server's data directory.
fn agent_args(args: &ServerArgs, dir: &std::path::Path, kubeconfig: PathBuf) -> super::agent::AgentArgs {
    super::agent::AgentArgs {
        kubeconfig,
        node_name: args.node_name.clone(),
        node_ip: None,
        port: args.kubelet_port,
        client_ca_file: None,
        tls_cert_file: None,
        tls_private_key_file: None,
        container_runtime_endpoint: args.container_runtime_endpoint.clone(),
        cri_socket: dir.join("cri.sock"),
        runtime_root: dir.join("runtime"),
        runtime_state_dir: None,
        runc: "runc".into(),
        bridge: "skiff0".into(),
        pod_cidr: "10.244.0.0/24".into(),
        pod_log_dir: "/var/log/pods".into(),
        root_dir: dir.join("kubelet"),
        pod_manifest_path: None,
        eviction_hard: "memory.available<100Mi,nodefs.available<10%".into(),
        eviction_memory_available_file: None,
        eviction_monitoring_period: 10,
    }
}

fn default_data_dir() -> PathBuf {
    let root = std::process::Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.trim_ascii() == b"0");
    if root {
        return PathBuf::from("/var/lib/skiff");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d).join("skiff"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".local/share/skiff"),
    }
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if !args.etcd_servers.is_empty() && (args.cluster.initial_cluster.is_some() || args.listen_client_urls.is_some()) {
        anyhow::bail!("--etcd-servers keeps the state in an external etcd; it cannot be combined with --initial-cluster or --listen-client-urls");
    }
    let (kv, store): (Arc<dyn skiff_apiserver::kv::Kv>, Option<Store>) = if args.etcd_servers.is_empty() {
        let client_urls = args.advertise_client_urls.as_ref().or(args.listen_client_urls.as_ref()).map(|u| super::urls::list(u)).unwrap_or_default();
        let (store, id) = args.cluster.open(Config::new(dir.join("store")), client_urls)?;
        if let Some(urls) = &args.listen_client_urls {
            serve_etcd_api(&store, id, urls).await?;
        }
        (Arc::new(Embedded(store.clone())), Some(store))
    } else {
        tracing::info!(servers = ?args.etcd_servers, "using external etcd");
        (Arc::new(skiff_apiserver::etcd::Remote::connect(&args.etcd_servers)?), None)
    };
    // A lone embedded store answers at once; a Raft member waits for a
    // quorum of its peers, and an external etcd may still be starting.
    let clustered = store.as_ref().is_some_and(|s| s.cluster().is_some());
    let patience = if store.is_none() || clustered { 120 } else { 1 };
    let mut storage = Storage::new(kv.clone());
    // Deletions wait for the garbage collector and namespace controller through finalizers.
    storage.controllers = !args.disable_controllers;
    for plugin in &args.disable_admission_plugins {
        match plugin.as_str() {
            "ServiceAccount" => storage.service_account_admission = false,
            other => anyhow::bail!("--disable-admission-plugins: {other:?} cannot be disabled (only ServiceAccount can)"),
        }
    }
    storage.bookmark_interval = args.watch_bookmark_interval;
    storage.service_ranges = skiff_apiserver::admission::service_alloc::ServiceRanges::default()
        .with_cidr(&args.service_cluster_ip_range)
        .and_then(|r| r.with_node_ports(&args.service_node_port_range))
        .map_err(anyhow::Error::msg)?;
    tokio::spawn(skiff_apiserver::compactor::run(kv, args.compaction_interval));
    // An external etcd may still be starting: retry for a while before giving up.
    let mut attempt = 0;
    while let Err(e) = bootstrap::ensure(&storage, &storage.service_ranges.first_ip(), args.listen.port()).await {
        attempt += 1;
        if attempt >= patience {
            return Err(e.context("creating the cluster's initial objects"));
        }
        tracing::warn!("waiting for the store: {e:#}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    if clustered || store.is_none() {
        // Several API servers on one store: one CA and admin token for all.
        certs::share_through_store(storage.kv().as_ref(), &dir).await?;
    }
    let pki = certs::ensure(&dir, args.listen)?;
    // Service-account tokens: the key ensure() made (or the cluster's, adopted above).
    storage.service_accounts = Some(Arc::new(skiff_apiserver::authn::Tokens::load(&dir.join("pki"))?));
    let kubelet_ca = match &args.kubelet_certificate_authority {
        Some(f) => Some(std::fs::read(f).with_context(|| format!("reading --kubelet-certificate-authority {}", f.display()))?),
        None => None,
    };
    storage.kubelet = skiff_apiserver::kubelet_client::KubeletClient::new(Some((&pki.kubelet_client_cert_pem, &pki.kubelet_client_key_pem)), kubelet_ca.as_deref())?;
    let kubeconfig = certs::write_kubeconfig(&dir, &pki, args.listen)?;
    if !args.disable_agent {
        tokio::spawn(super::agent::run_in_server(agent_args(&args, &dir, kubeconfig.clone())));
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, data_dir = %dir.display(), "API server ready");
    println!("export KUBECONFIG={}", kubeconfig.display());
    // The controllers' work-queue metrics are served on the API server's /metrics.
    let queue_metrics = skiff_controllers::queue::QueueMetrics::default();
    let mut api_metrics = skiff_apiserver::metrics::Metrics::default();
    if !args.disable_controllers {
        queue_metrics.register(api_metrics.registry_mut());
        let queue_metrics = queue_metrics.clone();
        let kc = kubeconfig.clone();
        let ca_pem = pki.ca_pem.clone();
        let net = args.net.options();
        tokio::spawn(async move {
            let client = match skiff_controllers::client_from_kubeconfig(&kc).await {
                Ok(c) => c,
                Err(e) => return tracing::error!(error = %format!("{e:#}"), "controller manager cannot start"),
            };
            let opts = skiff_controllers::Options { root_ca: Some(ca_pem), net, ..Default::default() };
            if let Err(e) = skiff_controllers::run(client, opts, queue_metrics).await {
                tracing::error!(error = %format!("{e:#}"), "controller manager stopped");
            }
        });
    }
    if !args.disable_scheduler {
        tokio::spawn(super::scheduler::run_in_server(kubeconfig.clone()));
    }
    let inflight = skiff_apiserver::inflight::Inflight::new(args.max_requests_inflight, args.max_mutating_requests_inflight);
    let state = AppState { storage, token: Arc::new(pki.admin_token.clone()), metrics: Arc::new(api_metrics), inflight };
    skiff_apiserver::serve(listener, &pki, state, super::shutdown_signal()).await?;
    tracing::info!("shutting down");
    drop(store);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn the_in_process_agent_gets_the_runtime_endpoint() {
        let cli = Cli::try_parse_from(["server", "--container-runtime-endpoint", "unix:///run/containerd/containerd.sock", "--kubelet-port", "10260"]).unwrap();
        let a = agent_args(&cli.server, std::path::Path::new("/d"), "/d/admin.kubeconfig".into());
        assert_eq!(a.container_runtime_endpoint.as_deref(), Some("unix:///run/containerd/containerd.sock"));
        assert_eq!(a.port, 10260);
        assert_eq!(a.cri_socket, std::path::Path::new("/d/cri.sock"));
        let cfg = super::super::agent::config(&a);
        assert_eq!(cfg.cri_endpoint.as_deref(), Some("unix:///run/containerd/containerd.sock"));
        let cli = Cli::try_parse_from(["server"]).unwrap();
        assert_eq!(agent_args(&cli.server, std::path::Path::new("/d"), "/k".into()).container_runtime_endpoint, None);
    }
}
