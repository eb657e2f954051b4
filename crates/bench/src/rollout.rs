//! `bench rollout`: the controller manager's headline job. A `skiff server`
//! (API server + scheduler, controllers off), a separate `skiff
//! controller-manager` process (so its CPU time is its own), `skiff sim`
//! nodes that drive pods to Running and Ready; then a Deployment of R
//! replicas is created and, once available, rolled out to a new template
//! (RollingUpdate, 25%/25%). Per phase: time until the Deployment reports
//! every replica updated and available, API requests the server served
//! (its `apiserver_request_total`), and the controller manager's CPU time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

use crate::scheduler::{client, spawn, start_server};

#[derive(clap::Args)]
pub struct RolloutArgs {
    #[arg(long, default_value = "target/release/skiff")]
    skiff_bin: PathBuf,
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
}

/// utime + stime of a process, in seconds (from /proc/<pid>/stat).
pub(crate) fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Sum of `apiserver_request_total` over every label set.
async fn api_requests(client: &kube::Client) -> Result<f64> {
    let req = hyper::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    Ok(text.lines().filter(|l| l.starts_with("apiserver_request_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum())
}

fn complete(d: &Deployment, replicas: i32) -> bool {
    let (Some(s), Some(generation)) = (d.status.as_ref(), d.metadata.generation) else { return false };
    s.observed_generation == Some(generation)
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.unavailable_replicas.unwrap_or(0) == 0
}

async fn wait_complete(api: &Api<Deployment>, replicas: i32, t0: Instant) -> Result<f64> {
    let deadline = t0 + Duration::from_secs(900);
    let mut last_report = Instant::now();
    loop {
        let d = api.get("bench").await?;
        if complete(&d, replicas) {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            let s = d.status.unwrap_or_default();
            crate::progress(&format!("updated {} available {} of {replicas}", s.updated_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0)));
            last_report = Instant::now();
        }
        anyhow::ensure!(Instant::now() < deadline, "the Deployment did not complete in 15 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(args: RolloutArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, kubeconfig) = start_server(&args.skiff_bin, dir.path(), &["--disable-agent", "--disable-controllers"]).await?;
    let kc = kubeconfig.to_str().unwrap();
    let cm = spawn(&args.skiff_bin, &["controller-manager", "--kubeconfig", kc, "--leader-elect=false"], dir.path().join("controller-manager.log"))?;
    let cm_pid = cm.pid();
    crate::progress(&format!("registering {} sim nodes", args.nodes));
    let _sim = spawn(&args.skiff_bin, &["sim", "--kubeconfig", kc, "--nodes", &args.nodes.to_string()], dir.path().join("sim.log"))?;
    let client = client(&kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    while nodes.list_metadata(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0) < args.nodes {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Let the node registrations' own traffic settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}, "spec": {"replicas": args.replicas,
        "selector": {"matchLabels": {"app": "bench"}},
        "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}))?;
    let mut rows = Vec::new();
    for phase in ["create", "rollout"] {
        let (req0, cpu0) = (api_requests(&client).await?, cpu_secs(cm_pid)?);
        let t0 = Instant::now();
        if phase == "create" {
            crate::progress(&format!("creating a Deployment of {} replicas", args.replicas));
            deploys.create(&PostParams::default(), &d).await?;
        } else {
            crate::progress("rolling out a new template");
            let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"bench/rev": "2"}}}}});
            deploys.patch("bench", &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        let secs = wait_complete(&deploys, args.replicas, t0).await?;
        let (req1, cpu1) = (api_requests(&client).await?, cpu_secs(cm_pid)?);
        rows.push((phase, secs, req1 - req0, cpu1 - cpu0));
    }
    println!("| phase | nodes | replicas | time to complete (s) | API requests (all clients) | controller-manager CPU (s) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (phase, secs, reqs, cpu) in rows {
        println!("| {phase} | {} | {} | {secs:.1} | {reqs:.0} | {cpu:.2} |", args.nodes, args.replicas);
    }
    Ok(())
}
