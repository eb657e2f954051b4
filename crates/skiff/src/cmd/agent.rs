//! `skiff agent`: the kubelet for this machine, with the embedded container
//! runtime unless `--container-runtime-endpoint` names another CRI socket.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Kubeconfig of the API server to register with.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The Node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the Node reports and the kubelet endpoint listens on (default: the first non-loopback IPv4).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Port of the kubelet endpoint (HTTPS: logs, exec, attach, port-forward, metrics).
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The CA whose client certificates the kubelet endpoint accepts (default: the kubeconfig's CA).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// The kubelet endpoint's certificate (PEM; default: a self-signed one in <root-dir>/pki).
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// A CRI runtime's socket, `unix:///run/containerd/containerd.sock`; default: the embedded runtime.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// Where the embedded runtime serves CRI.
    #[arg(long, default_value = "/run/skiff/cri.sock")]
    pub cri_socket: PathBuf,
    /// The embedded runtime's images, layers and containers.
    #[arg(long, default_value = "/var/lib/skiff/runtime")]
    pub runtime_root: PathBuf,
    /// The embedded runtime's per-container state (bundles, FIFOs, runc's
    /// --root, sandbox records): a tmpfs mounted there unless it is one
    /// already (default: <runtime-root>/state).
    #[arg(long)]
    pub runtime_state_dir: Option<PathBuf>,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    pub runc: String,
    /// The pod network's bridge and subnet.
    #[arg(long, default_value = "skiff0")]
    pub bridge: String,
    #[arg(long, default_value = "10.244.0.0/24")]
    pub pod_cidr: String,
    /// Container log files (upstream's /var/log/pods layout).
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// The kubelet's own state: pod volumes under `pods/<uid>/volumes`.
    #[arg(long, default_value = "/var/lib/skiff/kubelet")]
    pub root_dir: PathBuf,
    /// A directory of static pod manifests (YAML or JSON).
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// Hard eviction thresholds (memory.available, nodefs.available; a quantity or a percentage).
    #[arg(long, default_value = "memory.available<100Mi,nodefs.available<10%")]
    pub eviction_hard: String,
    /// Testing: a file whose quantity stands in for the observed memory.available.
    #[arg(long, hide = true)]
    pub eviction_memory_available_file: Option<PathBuf>,
    /// How often the eviction manager observes, in seconds.
    #[arg(long, hide = true, default_value_t = 10)]
    pub eviction_monitoring_period: u64,
}

/// The first non-loopback IPv4 address of this machine.
fn host_ip() -> String {
    let out = std::process::Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    text.split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next()).unwrap_or("127.0.0.1").to_string()
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_else(|_| "localhost".into())
}

pub fn config(a: &AgentArgs) -> skiff_kubelet::Config {
    skiff_kubelet::Config {
        kubeconfig: a.kubeconfig.clone(),
        node_name: a.node_name.clone().unwrap_or_else(hostname),
        node_ip: a.node_ip.clone().unwrap_or_else(host_ip),
        port: a.port,
        cri_endpoint: a.container_runtime_endpoint.clone(),
        embedded_socket: a.cri_socket.clone(),
        runtime: skiff_runtime::Config { root: a.runtime_root.clone(), state: a.runtime_state_dir.clone(), runc: a.runc.clone(), bridge: a.bridge.clone(), pod_cidr: a.pod_cidr.clone(), ..Default::default() },
        log_root: a.pod_log_dir.clone(),
        root_dir: a.root_dir.clone(),
        manifest_dir: a.pod_manifest_path.clone(),
        eviction_hard: a.eviction_hard.clone(),
        eviction_memory_file: a.eviction_memory_available_file.clone(),
        eviction_period: std::time::Duration::from_secs(a.eviction_monitoring_period.max(1)),
        client_ca_file: a.client_ca_file.clone(),
        tls_cert_file: a.tls_cert_file.clone(),
        tls_private_key_file: a.tls_private_key_file.clone(),
    }
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let cfg = config(&args);
    tokio::select! {
        r = skiff_kubelet::run(cfg) => r,
        _ = super::shutdown_signal() => Ok(()),
    }
}

/// Why this machine cannot run containers, if it cannot: the agent needs
/// root (namespaces, mounts, cgroups) and, for the embedded runtime, an OCI
/// runtime binary (another CRI runtime brings its own).
fn preflight(runc: &str, external_cri: bool) -> Option<String> {
    let root = std::process::Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.trim_ascii() == b"0");
    if !root {
        return Some("not running as root".into());
    }
    if external_cri {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = runc.contains('/') && std::path::Path::new(runc).exists() || std::env::split_paths(&path).any(|d| d.join(runc).exists());
    (!found).then(|| format!("{runc} is not installed"))
}

/// The agent inside `skiff server`: it never takes the control plane down;
/// on a machine that cannot run containers it only says why.
pub async fn run_in_server(args: AgentArgs) {
    if let Some(why) = preflight(&args.runc, args.container_runtime_endpoint.is_some()) {
        tracing::info!("not running the agent for this machine: {why} (pass --disable-agent to silence this)");
        return;
    }
    if let Err(e) = skiff_kubelet::run(config(&args)).await {
        tracing::warn!("the agent for this machine stopped: {e:#}");
    }
}
