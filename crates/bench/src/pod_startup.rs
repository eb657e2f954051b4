//! `bench pod-startup`: issue 7's pod startup latency — from just before a
//! Pod's create is sent until a watch shows it Running — on one real node
//! (`skiff agent` with the embedded runtime and runc) with a local busybox
//! image, so no pull is timed. Phases: one pod at a time, then a burst of
//! pods created at once, then the agent's RSS with the burst running. The
//! agent is its own process (the server runs with --disable-agent) so its
//! RSS is the kubelet's alone. Needs root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::scheduler::{client, spawn, start_server, Kill};
use crate::containerd::{Containerd, Setup};
use crate::stats;

const NODE: &str = "bench-node";

#[derive(clap::Args)]
pub struct PodStartupArgs {
    /// The skiff binary (any build; the report names it).
    #[arg(long, default_value = "target/release/skiff")]
    skiff_bin: PathBuf,
    /// Pods started one after the other in phase (a).
    #[arg(long, default_value_t = 20)]
    sequential: usize,
    /// Pods created at once in phase (b).
    #[arg(long, default_value_t = 50)]
    burst: usize,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Run the pods through a private containerd (Debian's, its CRI plugin)
    /// instead of the embedded runtime.
    #[arg(long)]
    containerd: bool,
}

/// What the pod watch reports: a pod first seen Running, or gone.
enum Seen {
    Running(String, Instant),
    Gone(String),
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "restartPolicy": "Always", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": crate::busybox::IMAGE, "command": ["sleep", "3600"]}]}
    }))?)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS missing")
}

/// Waits on the watch until `want` names have each been seen Running (or
/// gone, for `gone`), recording first-Running times into `running`.
async fn wait_for(
    rx: &mut UnboundedReceiver<Seen>,
    running: &mut HashMap<String, Instant>,
    gone: &mut Vec<String>,
    done: impl Fn(&HashMap<String, Instant>, &[String]) -> bool,
    timeout: Duration,
    what: &str,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(running, gone) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Seen::Running(n, t))) => {
                running.entry(n).or_insert(t);
            }
            Ok(Some(Seen::Gone(n))) => gone.push(n),
            Ok(None) => bail!("pod watch ended while waiting for {what}"),
            Err(_) => bail!("timed out after {timeout:?} waiting for {what}"),
        }
    }
    Ok(())
}

/// Deletes `names` and waits for the watch to show them gone, so the next
/// phase starts on an empty node.
async fn delete_all(api: &Api<Pod>, names: &[String], rx: &mut UnboundedReceiver<Seen>, timeout: Duration) -> Result<()> {
    let mut gone = Vec::new();
    for n in names {
        api.delete(n, &DeleteParams::default()).await.with_context(|| format!("delete {n}"))?;
    }
    let mut running = HashMap::new();
    wait_for(rx, &mut running, &mut gone, |_, g| names.iter().all(|n| g.contains(n)), timeout, "pods deleted").await
}

/// The private containerd's bridge, subnet and sandbox image (apart from the tests').
const CONTAINERD: Setup = Setup { bridge: "skiffbctrd0", subnet: "10.244.248.0/24", pause: "skiff.bench/pause:1" };

fn spawn_agent(bin: &Path, kubeconfig: &Path, dir: &Path, port: u16, containerd: Option<&Path>) -> Result<Kill> {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![
        "agent".to_string(), "--kubeconfig".into(), s(kubeconfig), "--node-name".into(), NODE.into(), "--node-ip".into(), "127.0.0.1".into(),
        "--port".into(), port.to_string(), "--bridge".into(), "skiffbench0".into(),
        "--runtime-root".into(), s(&dir.join("runtime")), "--cri-socket".into(), s(&dir.join("cri.sock")),
        "--pod-log-dir".into(), s(&dir.join("pods")), "--root-dir".into(), s(&dir.join("kubelet")),
    ];
    match containerd {
        // containerd's CNI subnet is the node's pod CIDR.
        Some(sock) => args.extend(["--container-runtime-endpoint".to_string(), format!("unix://{}", s(sock)), "--pod-cidr".into(), CONTAINERD.subnet.into()]),
        None => args.extend(["--pod-cidr".to_string(), "10.244.251.0/24".into()]),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    spawn(&bin.to_path_buf(), &args, dir.join("agent.log"))
}

/// How many `sleep 3600` processes exist: proof that Running pods are real
/// containers, not status the agent merely wrote.
fn sleepers() -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok()).filter(|c| c.as_slice() == b"sleep\x003600\x00").count()
}

fn percentiles(samples: &[Duration]) -> (f64, f64, f64) {
    let mut h = stats::histogram();
    for d in samples {
        stats::record(&mut h, *d);
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    (ms(0.5), ms(0.99), h.max() as f64 / 1000.0)
}

pub async fn run(args: PodStartupArgs) -> Result<String> {
    if !is_root() {
        // A plain message, not an error with a backtrace: nothing went wrong.
        eprintln!("bench pod-startup runs real containers (namespaces, mounts, cgroups, runc) and needs root; rerun it as root");
        std::process::exit(2);
    }
    ensure!(args.sequential > 0 && args.burst > 0, "--sequential and --burst must be positive");
    let timeout = Duration::from_secs(args.timeout_secs);
    let bin = std::fs::canonicalize(&args.skiff_bin).with_context(|| format!("skiff binary {}", args.skiff_bin.display()))?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    // Dropped after the agent (and containerd), before `dir`.
    let _unmount = crate::mounts::UnmountOnDrop(d.to_path_buf());

    crate::progress("building and importing the busybox image");
    let ctrd = if args.containerd {
        let c = Containerd::start(&d.join("containerd"), &CONTAINERD)?;
        let env = serde_json::json!(["PATH=/bin"]);
        c.import(&crate::busybox::build_named(d, CONTAINERD.pause, serde_json::json!({"Env": env, "Entrypoint": ["/bin/sleep", "2147483647"]}))?)?;
        // The CRI normalizes `busybox:…` to docker.io/library/busybox:….
        c.import(&crate::busybox::build_named(d, &format!("docker.io/library/{}", crate::busybox::IMAGE), serde_json::json!({"Env": env, "Cmd": ["sh"]}))?)?;
        Some(c)
    } else {
        let image = crate::busybox::build(d)?;
        let out = Command::new(&bin).args(["images", "import"]).arg(&image).arg("--runtime-root").arg(d.join("runtime")).output()?;
        ensure!(out.status.success(), "skiff images import: {}", String::from_utf8_lossy(&out.stderr));
        None
    };

    let start = Instant::now();
    let (server, kubeconfig) = start_server(&bin, d, &["--disable-agent", "--disable-scheduler"]).await?;
    let kport = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let agent = spawn_agent(&bin, &kubeconfig, d, kport, ctrd.as_ref().map(|c| c.socket()).as_deref())?;
    let client = client(&kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |n: &Node| n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    loop {
        if nodes.get_opt(NODE).await?.as_ref().is_some_and(ready) {
            break;
        }
        ensure!(start.elapsed() < Duration::from_secs(60), "node {NODE} not Ready after 60 s; agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_rss = rss_kib(agent.pid())?;
    crate::progress(&format!("node Ready after {:.1}s; agent RSS {} MiB idle", start.elapsed().as_secs_f64(), idle_rss / 1024));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch_api = pods.clone();
    tokio::spawn(async move {
        let mut s = watcher::watcher(watch_api, watcher::Config::default()).boxed();
        while let Some(ev) = s.next().await {
            let msg = match ev {
                Ok(Event::Apply(p) | Event::InitApply(p)) if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") => {
                    Seen::Running(p.metadata.name.unwrap_or_default(), Instant::now())
                }
                Ok(Event::Delete(p)) => Seen::Gone(p.metadata.name.unwrap_or_default()),
                _ => continue,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });

    // (a) One pod at a time, each deleted before the next.
    let mut seq = Vec::new();
    for i in 0..args.sequential {
        let name = format!("seq-{i}");
        let t0 = Instant::now();
        pods.create(&PostParams::default(), &pod(&name)?).await.with_context(|| format!("create {name}"))?;
        let mut running = HashMap::new();
        wait_for(&mut rx, &mut running, &mut Vec::new(), |r, _| r.contains_key(&name), timeout, &format!("{name} Running")).await?;
        seq.push(running[&name].duration_since(t0));
        crate::progress(&format!("{name}: Running after {:.0} ms", seq[i].as_secs_f64() * 1e3));
        delete_all(&pods, std::slice::from_ref(&name), &mut rx, timeout).await?;
    }

    // (b) A burst created at once, one task per pod.
    crate::progress(&format!("creating {} pods at once", args.burst));
    let names: Vec<String> = (0..args.burst).map(|i| format!("burst-{i}")).collect();
    let burst_t0 = Instant::now();
    let cpu_t0 = (crate::noise::Sample::now(&[]), crate::noise::process_cpu(&agent.pid().to_string()), crate::noise::process_cpu(&server.pid().to_string()));
    let creates = futures::future::join_all(names.iter().map(|n| {
        let api = pods.clone();
        async move {
            let t0 = Instant::now();
            api.create(&PostParams::default(), &pod(n)?).await.with_context(|| format!("create {n}"))?;
            anyhow::Ok((n.clone(), t0))
        }
    }))
    .await;
    let sent: HashMap<String, Instant> = creates.into_iter().collect::<Result<_>>()?;
    let mut running = HashMap::new();
    wait_for(&mut rx, &mut running, &mut Vec::new(), |r, _| names.iter().all(|n| r.contains_key(n)), timeout, "the burst Running").await?;
    let burst: Vec<Duration> = names.iter().map(|n| running[n].duration_since(sent[n])).collect();
    let all_running = names.iter().map(|n| running[n]).max().unwrap().duration_since(burst_t0);
    // Where the burst's CPU went: the whole machine (runc, pause processes,
    // kernel work for namespaces and mounts, all of it) and the two skiff processes.
    let tick = crate::noise::ticks_per_sec();
    let burst_cpu = (
        crate::noise::Sample::now(&[]).machine_busy_secs_since(&cpu_t0.0),
        crate::noise::process_cpu(&agent.pid().to_string()).saturating_sub(cpu_t0.1) as f64 / tick,
        crate::noise::process_cpu(&server.pid().to_string()).saturating_sub(cpu_t0.2) as f64 / tick,
    );
    crate::progress(&format!("all {} Running after {:.2}s", args.burst, all_running.as_secs_f64()));

    // (c) RSS with the burst running, after a short settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_rss = rss_kib(agent.pid())?;
    let server_rss = rss_kib(server.pid())?;
    // containerd does the runtime's work outside the agent: itself plus one shim per pod.
    let runtime_rss = ctrd.as_ref().map(|c| (rss_kib(c.pid()).unwrap_or(0), c.shims().iter().map(|p| rss_kib(*p).unwrap_or(0)).sum::<u64>(), c.shims().len()));
    let live = sleepers();
    ensure!(live >= args.burst, "only {live} `sleep 3600` processes with {} pods Running", args.burst);
    delete_all(&pods, &names, &mut rx, timeout).await?;
    crate::progress("cleaned up");

    let (s50, s99, smax) = percentiles(&seq);
    let (b50, b99, bmax) = percentiles(&burst);
    let mib = |k: u64| k as f64 / 1024.0;
    let runtime = if args.containerd { "on Debian's containerd (its CRI plugin, runc shims; a private instance)" } else { "(embedded runtime, runc)" };
    let mut r = format!(
        "Command: `{}`\n\nMachine: {}\n\nBinary: `{}`. One `skiff server --disable-agent --disable-scheduler` and one `skiff agent` \
         {runtime} on this machine; pods set spec.nodeName; busybox image imported locally; latency from just before each \
         create is sent until a pod watch shows phase Running. With the burst Running, {live} `sleep 3600` container processes were found in /proc.\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        crate::machine(),
        bin.display()
    );
    r += "| phase | pods | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n";
    r += &format!("| (a) one at a time | {} | {s50:.0} | {s99:.0} | {smax:.0} |\n", args.sequential);
    r += &format!("| (b) all at once (all Running after {:.2} s) | {} | {b50:.0} | {b99:.0} | {bmax:.0} |\n\n", all_running.as_secs_f64(), args.burst);
    r += &format!(
        "CPU used from the burst's first create until all {} were Running: {:.2} CPU-seconds on the whole machine, of which the agent process {:.2} and the server process {:.2} (the rest: runc, the pause processes, the shells that keep containers, the bench, the kernel's threads).\n\n",
        args.burst, burst_cpu.0, burst_cpu.1, burst_cpu.2
    );
    r += "| process | idle VmRSS MiB | VmRSS MiB with the burst running |\n|---|---:|---:|\n";
    r += &format!("| skiff agent | {:.1} | {:.1} |\n| skiff server (API server, store, controllers) | - | {:.1} |\n", mib(idle_rss), mib(agent_rss), mib(server_rss));
    if let Some((daemon, shims, n)) = runtime_rss {
        r += &format!("| containerd | - | {:.1} |\n| its {n} shims, together | - | {:.1} |\n", mib(daemon), mib(shims));
    }
    r += "\n";
    let goal = |p99: f64| if p99 <= 1000.0 { "met" } else { "**not met**" };
    r += &format!("Goal p99 ≤ 1 s: one at a time {}, burst of {} {}.\n", goal(s99), args.burst, goal(b99));
    Ok(r)
}
