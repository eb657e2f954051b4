//! `bench scheduler`: upstream scheduler_perf's SchedulingBasic on Skiff —
//! a `skiff server`, `skiff sim` with N fake nodes (nodes only, no pod
//! lifecycle, as scheduler_perf has no kubelets), one `skiff scheduler`,
//! then P pods created as fast as the client can; throughput is pods bound
//! per second over the measured phase, latency is per pod from its create
//! returning to the watch showing it bound.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

#[derive(clap::Args)]
pub struct SchedulerArgs {
    #[arg(long, default_value = "target/release/skiff")]
    skiff_bin: PathBuf,
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods scheduled before measuring (upstream: 1,000 init pods).
    #[arg(long, default_value_t = 1000)]
    init_pods: usize,
    /// Measured pods.
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Concurrent pod creations.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// basic (SchedulingBasic) or spread: nodes in 3 zones, every pod in one of
    /// 50 apps with a DoNotSchedule zone topology spread constraint and a
    /// preferred pod anti-affinity by hostname on its app label.
    #[arg(long, default_value = "basic")]
    scenario: String,
    /// Also run the controller manager in the server. Off by default, as in
    /// upstream's scheduler_perf, whose test cluster is an API server and the
    /// scheduler only; on, every pod event also feeds the controllers' pod
    /// informer and the garbage collector's watch.
    #[arg(long)]
    controllers: bool,
}

pub(crate) struct Kill(Child);
impl Kill {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn spawn(bin: &PathBuf, args: &[&str], log: PathBuf) -> Result<Kill> {
    let child = Command::new(bin).args(args).stdout(Stdio::null()).stderr(std::fs::File::create(log)?).spawn().context("spawn skiff")?;
    Ok(Kill(child))
}

/// A `skiff server` on a free loopback port, its data in `dir/server`, with
/// `extra` flags; returns once its kubeconfig exists and it accepts
/// connections, with that kubeconfig's path.
pub(crate) async fn start_server(bin: &PathBuf, dir: &std::path::Path, extra: &[&str]) -> Result<(Kill, PathBuf)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data = dir.join("server");
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["server", "--data-dir", data.to_str().context("data dir path")?, "--listen", &listen];
    args.extend_from_slice(extra);
    let server = spawn(bin, &args, dir.join("server.log"))?;
    let kubeconfig = data.join("kubeconfig.yaml");
    let start = Instant::now();
    while !kubeconfig.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "skiff server did not start; see {}", dir.join("server.log").display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((server, kubeconfig))
}

/// A kube client from the admin kubeconfig a `skiff server` wrote.
pub(crate) async fn client(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let kcfg = kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::read_from(kubeconfig)?, &Default::default()).await?;
    Ok(kube::Client::try_from(kcfg)?)
}

fn pod(name: &str, spread: bool) -> Pod {
    let mut p = serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}}}]}
    });
    if spread {
        let n: usize = name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let app = format!("app-{}", n % 50);
        p["metadata"]["labels"] = serde_json::json!({"app": app});
        p["spec"]["topologySpreadConstraints"] = serde_json::json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}}}]);
        p["spec"]["affinity"] = serde_json::json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}}]}});
    }
    serde_json::from_value(p).unwrap()
}

/// Each pod's name and JSON body, made before the measured phase starts.
fn bodies(names: impl Iterator<Item = String>, spread: bool) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(names.map(|n| serde_json::to_vec(&pod(&n, spread)).map(|b| (n, b))).collect::<Result<_, _>>()?)
}

/// Of a pod's watch event, only what the bench reads: the rest of the
/// object is skipped by the parser, not built into a `Pod`.
#[derive(serde::Deserialize)]
struct LeanEvent {
    #[serde(rename = "type")]
    kind: String,
    object: LeanPod,
}

#[derive(serde::Deserialize)]
struct LeanPod {
    metadata: LeanMeta,
    #[serde(default)]
    spec: Option<LeanSpec>,
}

#[derive(serde::Deserialize)]
struct LeanMeta {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "resourceVersion")]
    resource_version: String,
}

#[derive(serde::Deserialize)]
struct LeanSpec {
    #[serde(default, rename = "nodeName")]
    node_name: Option<String>,
}

/// Sends each pod's name when a watch event first shows it bound. The load
/// generator shares the two cores with what it measures; a kube-runtime
/// watcher builds a whole `Pod` from each event (two a pod). This one reads
/// the lines itself and picks out three fields, resuming from the last
/// resourceVersion if the server ends the watch. An ERROR event (say, that
/// resourceVersion compacted away) ends it: the run then fails, waiting.
async fn watch_bound(client: kube::Client, mut rv: String, tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>) {
    use futures::AsyncBufReadExt;
    loop {
        let uri = format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&timeoutSeconds=3600");
        let Ok(req) = hyper::Request::get(uri).body(Vec::new()) else { return };
        let body = match client.request_stream(req).await {
            Ok(b) => b,
            // The run is over (the server is stopping): nothing is listening.
            Err(_) if tx.is_closed() => return,
            Err(e) => {
                eprintln!("bench: pod watch: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut lines = body.lines();
        while let Some(Ok(line)) = lines.next().await {
            let Ok(ev) = serde_json::from_str::<LeanEvent>(&line) else { continue };
            if ev.kind == "ERROR" {
                eprintln!("bench: pod watch ended: {line}");
                return;
            }
            rv = ev.object.metadata.resource_version;
            if ev.kind != "DELETED" && ev.object.spec.and_then(|s| s.node_name).is_some_and(|n| !n.is_empty()) {
                let _ = tx.send((ev.object.metadata.name, Instant::now()));
            }
        }
    }
}

/// Creates the pods and returns, per pod, when its create returned.
///
/// The load generator shares the two cores with what it measures, so it
/// spends as little as it can: bodies are serialized before (see [`bodies`])
/// and responses are checked for success but not decoded into Pods.
async fn create_all(client: &kube::Client, bodies: Vec<(String, Vec<u8>)>, clients: usize) -> Result<HashMap<String, Instant>> {
    let results: Vec<Result<(String, Instant)>> = futures::stream::iter(bodies)
        .map(|(n, body)| {
            let client = client.clone();
            async move {
                let req = hyper::Request::post("/api/v1/namespaces/default/pods").header("content-type", "application/json").body(body)?;
                client.request_text(req).await.with_context(|| format!("create {n}"))?;
                Ok((n, Instant::now()))
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    results.into_iter().collect()
}

pub async fn run(args: SchedulerArgs) -> Result<()> {
    anyhow::ensure!(matches!(args.scenario.as_str(), "basic" | "spread"), "--scenario must be basic or spread");
    let spread = args.scenario == "spread";
    let dir = tempfile::tempdir()?;
    let start = Instant::now();
    // As upstream's scheduler_perf test server: without ServiceAccount admission
    // (no pod here runs, so none needs a token volume), and without controllers
    // unless asked for.
    let mut flags = vec!["--disable-agent", "--disable-scheduler", "--disable-admission-plugins=ServiceAccount"];
    if !args.controllers {
        flags.push("--disable-controllers");
    }
    let (server, kubeconfig) = start_server(&args.skiff_bin, dir.path(), &flags).await?;
    let kc = kubeconfig.to_str().unwrap();
    crate::progress(&format!("registering {} sim nodes", args.nodes));
    let _sim = spawn(&args.skiff_bin, &["sim", "--kubeconfig", kc, "--nodes", &args.nodes.to_string(), "--drive-pods=false", "--lease-duration-seconds", "400", "--cpu", "32", "--memory", "256Gi", "--zones", "3"], dir.path().join("sim.log"))?;
    let client = client(&kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    loop {
        let n = nodes.list_metadata(&ListParams::default().limit(1)).await.map(|l| l.metadata.remaining_item_count.unwrap_or(0) as usize + l.items.len()).unwrap_or(0);
        if n >= args.nodes {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    crate::progress(&format!("nodes ready after {:.1}s; starting the scheduler", start.elapsed().as_secs_f64()));
    let sched = spawn(&args.skiff_bin, &["scheduler", "--kubeconfig", kc, "--leader-elect=false", "--no-scheduled-events"], dir.path().join("scheduler.log"))?;

    // Bound times from one watch, of every pod: a field selector
    // (`spec.nodeName!=`) would halve the events but cost the server more
    // than it saves here, as the server must then decode each pod to test
    // it (measured: docs/benchmarks.md). See [`watch_bound`].
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let rv = Api::<Pod>::namespaced(client.clone(), "default").list_metadata(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
    tokio::spawn(watch_bound(client.clone(), rv, tx));
    let mut bound: HashMap<String, Instant> = HashMap::new();
    let mut wait_bound = |want: &dyn Fn(&HashMap<String, Instant>) -> bool, bound: &mut HashMap<String, Instant>| -> bool {
        while let Ok((n, t)) = rx.try_recv() {
            bound.entry(n).or_insert(t);
        }
        want(bound)
    };
    crate::progress(&format!("creating {} init pods", args.init_pods));
    create_all(&client, bodies((0..args.init_pods).map(|i| format!("init-{i}")), spread)?, args.clients).await?;
    while !wait_bound(&|b| b.keys().filter(|k| k.starts_with("init-")).count() >= args.init_pods, &mut bound) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::progress(&format!("creating {} measured pods", args.pods));
    let measured = bodies((0..args.pods).map(|i| format!("pod-{i}")), spread)?;
    let cpu = |pid: u32| crate::rollout::cpu_secs(pid).unwrap_or(0.0);
    let cpu0 = [cpu(server.pid()), cpu(sched.pid()), cpu(std::process::id())];
    let t0 = Instant::now();
    let created = create_all(&client, measured, args.clients).await?;
    let create_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !wait_bound(&|b| b.keys().filter(|k| k.starts_with("pod-")).count() >= args.pods, &mut bound) {
        anyhow::ensure!(Instant::now() < deadline, "pods not all bound after 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu1 = [cpu(server.pid()), cpu(sched.pid()), cpu(std::process::id())];
    let last = bound.iter().filter(|(k, _)| k.starts_with("pod-")).map(|(_, t)| *t).max().unwrap();
    let secs = last.duration_since(t0).as_secs_f64();
    let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
    for (name, tc) in &created {
        let tb = bound[name];
        h.record(tb.saturating_duration_since(*tc).as_micros() as u64)?;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("| scenario | controllers | nodes | init pods | pods | create phase (s) | all bound (s) | pods/s | p50 latency (ms) | p99 latency (ms) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ctl = if args.controllers { "on" } else { "off" };
    println!("| {} | {ctl} | {} | {} | {} | {create_secs:.1} | {secs:.1} | {:.0} | {:.0} | {:.0} |", args.scenario, args.nodes, args.init_pods, args.pods, args.pods as f64 / secs, ms(0.5), ms(0.99));
    // Where the two cores went during the measured phase (CPU time per pod).
    let per_pod = |i: usize| (cpu1[i] - cpu0[i]) * 1e6 / args.pods as f64;
    println!();
    println!("| CPU per pod (µs) | server | scheduler | bench (creates, watch) | total |");
    println!("|---|---:|---:|---:|---:|");
    println!("| measured phase | {:.0} | {:.0} | {:.0} | {:.0} |", per_pod(0), per_pod(1), per_pod(2), per_pod(0) + per_pod(1) + per_pod(2));
    Ok(())
}
