//! Skiff's kubelet (`skiff agent`): registers this machine as a Node, keeps
//! its Lease fresh, watches the pods bound to it and runs each through a pod
//! worker (`worker.rs`) that talks to the container runtime only through the
//! CRI gRPC API — the embedded `skiff-runtime` on a unix socket by default,
//! or any other CRI runtime's socket.

pub mod auth;
pub mod backoff;
pub mod cadvisor;
pub mod client;
pub mod crilog;
pub mod downward;
pub mod eviction;
pub mod housekeeping;
pub mod namespaces;
pub mod node;
pub mod pki;
pub mod pod_cgroups;
pub mod probes;
pub mod resource_metrics;
pub mod resources;
pub mod sa_token;
pub mod server;
pub mod spdy_client;
pub mod static_pods;
pub mod stats;
pub mod streaming;
pub mod status;
pub mod subject;
pub mod translate;
pub mod volumes;
pub mod worker;

use anyhow::{Context, Result};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use serde_json::Value;
use skiff_cri::image_service_client::ImageServiceClient;
use skiff_cri::runtime_service_client::RuntimeServiceClient;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;

/// How the agent is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub node_ip: String,
    pub port: u16,
    /// A CRI socket (`unix:///path`); None runs the embedded runtime on `embedded_socket`.
    pub cri_endpoint: Option<String>,
    pub embedded_socket: PathBuf,
    pub runtime: skiff_runtime::Config,
    pub log_root: PathBuf,
    /// Pod volumes live under `<root_dir>/pods/<uid>/volumes`.
    pub root_dir: PathBuf,
    /// A directory of static pod manifests.
    pub manifest_dir: Option<PathBuf>,
    /// `--eviction-hard`, e.g. `memory.available<100Mi,nodefs.available<10%`.
    pub eviction_hard: String,
    /// A file whose quantity replaces the observed memory.available (tests).
    pub eviction_memory_file: Option<PathBuf>,
    pub eviction_period: Duration,
    /// `--client-ca-file`: the CA whose client certificates the kubelet API
    /// accepts; None: the kubeconfig's `certificate-authority-data`.
    pub client_ca_file: Option<PathBuf>,
    /// `--tls-cert-file` and `--tls-private-key-file`; None: a self-signed
    /// pair kept in `<root_dir>/pki`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
}

/// The kubelet's counters, on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub syncs: Counter,
    pub restarts: Counter,
    pub running_pods: Gauge,
    registry: parking_lot::Mutex<Option<prometheus_client::registry::Registry>>,
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut reg = self.registry.lock();
        let reg = reg.get_or_insert_with(|| {
            let mut r = prometheus_client::registry::Registry::default();
            r.register("kubelet_pod_worker_syncs", "Pod worker sync passes", self.syncs.clone());
            r.register("kubelet_container_restarts", "Containers restarted by restartPolicy", self.restarts.clone());
            r.register("kubelet_running_pods", "Pods with a worker on this node", self.running_pods.clone());
            r
        });
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, reg);
        out
    }
}

/// What every pod worker shares.
pub struct Ctx {
    pub api: client::Api,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
    pub node_ip: String,
    /// The runtime's CRI name (`skiff`, `containerd`): the scheme of
    /// containerIDs and of the node's containerRuntimeVersion, as upstream.
    pub runtime_name: String,
    pub log_root: PathBuf,
    pub root_dir: PathBuf,
    pub metrics: Metrics,
    /// Pods with a worker, by uid: what the eviction manager ranks.
    pub live_pods: eviction::LivePods,
    /// Pods the eviction manager chose, by uid, with the message for their status.
    pub evictions: parking_lot::Mutex<HashMap<String, String>>,
    /// (memory, disk) pressure, for the node's conditions.
    pub pressure: Arc<parking_lot::Mutex<(bool, bool)>>,
    pub node_name: String,
    /// The node's and pods' previous CPU samples, for their usageNanoCores.
    pub rates: stats::Rates,
}

/// A tonic channel to a CRI unix socket.
pub async fn connect_cri(path: PathBuf) -> Result<Channel> {
    let ep = tonic::transport::Endpoint::try_from("http://[::1]:50051")?;
    for _ in 0..100 {
        let p = path.clone();
        let r = ep.connect_with_connector(tower::service_fn(move |_| {
            let p = p.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
        }));
        match r.await {
            Ok(ch) => return Ok(ch),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    anyhow::bail!("cannot connect to the CRI socket {}", path.display())
}

/// The kubelet API's TLS configuration and authenticator (see `auth.rs`).
fn serving(cfg: &Config, api: &client::Api) -> Result<(Arc<rustls::ServerConfig>, Arc<auth::Authenticator>)> {
    let ca = match &cfg.client_ca_file {
        Some(f) => std::fs::read(f).with_context(|| format!("reading --client-ca-file {}", f.display()))?,
        None => api.ca_pem().to_vec(),
    };
    let authn = auth::Authenticator::new(Some(&ca), Some(api.token().to_string()))?;
    let cert = match (&cfg.tls_cert_file, &cfg.tls_private_key_file) {
        (Some(c), Some(k)) => pki::load(c, k)?,
        (None, None) => pki::self_signed(&cfg.root_dir.join("pki"), &cfg.node_name, &[cfg.node_ip.as_str()])?,
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    };
    tracing::info!(cert = %cert.cert_path.display(), "kubelet API serves HTTPS and requires a client certificate or token");
    Ok((authn.server_config(cert)?, Arc::new(authn)))
}

/// Run the agent until the process ends.
pub async fn run(cfg: Config) -> Result<()> {
    let api = client::Api::from_kubeconfig(&cfg.kubeconfig)?;
    let socket = match &cfg.cri_endpoint {
        Some(e) => PathBuf::from(e.strip_prefix("unix://").unwrap_or(e)),
        None => {
            let rt = skiff_runtime::Runtime::new(cfg.runtime.clone())?;
            rt.adopt();
            let sock = cfg.embedded_socket.clone();
            tokio::spawn(async move {
                if let Err(e) = skiff_runtime::service::serve_unix(rt, &sock).await {
                    tracing::error!("CRI server: {e:#}");
                }
            });
            cfg.embedded_socket.clone()
        }
    };
    // Pod cgroups of pods that ended while no agent watched (in the background: there may be thousands).
    tokio::task::spawn_blocking(|| {
        let n = pod_cgroups::sweep();
        if n > 0 {
            tracing::info!(removed = n, "removed the cgroups of pods that are gone");
        }
    });
    let ch = connect_cri(socket).await?;
    let mut rt = RuntimeServiceClient::new(ch.clone());
    let v = rt.version(skiff_cri::VersionRequest { version: "v1".into() }).await.context("CRI Version")?.into_inner();
    tracing::info!(runtime = %v.runtime_name, version = %v.runtime_version, "connected to the container runtime");
    let thresholds = eviction::parse(&cfg.eviction_hard)?;
    let listener = tokio::net::TcpListener::bind((cfg.node_ip.as_str(), cfg.port)).await.with_context(|| format!("binding {}:{}", cfg.node_ip, cfg.port))?;
    let ctx = Arc::new(Ctx { api: api.clone(), rt, img: ImageServiceClient::new(ch), node_ip: cfg.node_ip.clone(), runtime_name: v.runtime_name.clone(), log_root: cfg.log_root.clone(), root_dir: cfg.root_dir.clone(), metrics: Metrics::default(), live_pods: Default::default(), evictions: Default::default(), pressure: Default::default(), node_name: cfg.node_name.clone(), rates: Default::default() });
    let (tls, auth) = serving(&cfg, &api)?;
    tokio::spawn(server::serve(ctx.clone(), listener, tls, auth));
    loop {
        match node::register(&api, &node::node_object(&cfg.node_name, &cfg.node_ip, cfg.port, &cfg.runtime.pod_cidr, &format!("{}://{}", v.runtime_name, v.runtime_version))).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("{e:#}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tokio::spawn(node::heartbeat(api.clone(), cfg.node_name.clone(), ctx.pressure.clone()));
    let observer = eviction::Observer { fs_path: cfg.root_dir.clone(), override_file: cfg.eviction_memory_file.clone() };
    tokio::spawn(eviction::run(ctx.clone(), cfg.node_name.clone(), thresholds, observer, cfg.eviction_period));
    if let Some(dir) = cfg.manifest_dir.clone() {
        tokio::spawn(static_pods::run(api.clone(), dir, cfg.node_name.clone()));
    }
    watch_pods(ctx, &cfg.node_name).await
}

/// List then watch this node's pods, feeding each pod's worker its latest object.
async fn watch_pods(ctx: Arc<Ctx>, node: &str) -> Result<()> {
    let mut workers: HashMap<String, watch::Sender<Option<Value>>> = HashMap::new();
    let mut housekept = false;
    let sel = format!("fieldSelector=spec.nodeName%3D{node}");
    let feed = |workers: &mut HashMap<String, watch::Sender<Option<Value>>>, pod: Option<Value>, uid: String| {
        workers.retain(|_, tx| !tx.is_closed());
        match (workers.get(&uid), pod) {
            (Some(tx), p) => {
                let _ = tx.send(p);
            }
            (None, Some(p)) => {
                let (tx, rx) = watch::channel(Some(p));
                tokio::spawn(worker::Worker::new(ctx.clone()).run(rx));
                workers.insert(uid, tx);
            }
            (None, None) => {}
        }
        ctx.metrics.running_pods.set(workers.len() as i64);
    };
    loop {
        let list = match ctx.api.ok("GET", &format!("/api/v1/pods?{sel}"), "application/json", None).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing pods: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let listed: Vec<String> = list["items"].as_array().into_iter().flatten().filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string)).collect();
        for gone in workers.keys().filter(|u| !listed.contains(u)).cloned().collect::<Vec<_>>() {
            feed(&mut workers, None, gone);
        }
        for p in list["items"].as_array().cloned().unwrap_or_default() {
            let uid = p["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            feed(&mut workers, Some(p), uid);
        }
        if !housekept {
            // Once, after the first list and before the watch can feed a new
            // pod: every pod bound here now has a worker, so what the runtime
            // and the disk hold for any other pod is left from pods deleted
            // while no agent ran.
            housekept = true;
            let known = workers.keys().cloned().collect();
            let orphans = crate::housekeeping::find(&ctx, &known).await;
            tokio::spawn(crate::housekeeping::remove(ctx.clone(), orphans));
        }
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
        let mut events = match ctx.api.watch(&format!("/api/v1/pods?{sel}&watch=1&resourceVersion={rv}&allowWatchBookmarks=true")).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching pods: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(ev) = events.recv().await {
            let obj = ev["object"].clone();
            let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            match ev["type"].as_str() {
                Some("ADDED" | "MODIFIED") => feed(&mut workers, Some(obj), uid),
                Some("DELETED") => feed(&mut workers, None, uid),
                Some("ERROR") => break,
                _ => {}
            }
        }
    }
}
