//! `bench endpoints`: how fast a Service's Endpoints and EndpointSlices
//! follow its pods. A `skiff server`, `skiff sim` nodes (driving pods to
//! Running and Ready), `skiff scheduler`; one Service, then a ReplicaSet of
//! P pods behind it. Reported: time from the ReplicaSet's create until the
//! slices (and the Endpoints object) list all P endpoints ready, how many
//! slice writes that took (watch events), and the same for scaling to zero.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};

use crate::scheduler::{client, spawn, start_server};

#[derive(clap::Args)]
pub struct EndpointsArgs {
    #[arg(long, default_value = "target/release/skiff")]
    skiff_bin: PathBuf,
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    #[arg(long, default_value_t = 1000)]
    pods: usize,
}

/// (ready endpoints over all slices, slices, ready addresses in Endpoints).
async fn state(slices: &Api<EndpointSlice>, eps: &Api<Endpoints>) -> Result<(usize, usize, usize)> {
    let l = slices.list(&ListParams::default().labels("kubernetes.io/service-name=bench")).await?;
    let ready = l.items.iter().flat_map(|s| s.endpoints.iter()).filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true)).count();
    let addrs = eps.get_opt("bench").await?.map(|e| e.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum()).unwrap_or(0);
    Ok((ready, l.items.len(), addrs))
}

/// Poll until `done(state)`; returns (seconds until slices done, seconds until Endpoints done, slices).
async fn until(slices: &Api<EndpointSlice>, eps: &Api<Endpoints>, t0: Instant, want: usize) -> Result<(f64, f64, usize)> {
    let (mut s_done, mut e_done, mut n) = (None, None, 0);
    let deadline = t0 + Duration::from_secs(600);
    while s_done.is_none() || e_done.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "endpoints did not converge in 10 minutes");
        let (ready, count, addrs) = state(slices, eps).await?;
        if s_done.is_none() && ready == want {
            s_done = Some(t0.elapsed().as_secs_f64());
            n = count;
        }
        if e_done.is_none() && addrs == want {
            e_done = Some(t0.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((s_done.unwrap(), e_done.unwrap(), n))
}

pub async fn run(args: EndpointsArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_server, kubeconfig) = start_server(&args.skiff_bin, dir.path(), &["--disable-agent", "--disable-scheduler"]).await?;
    let kc = kubeconfig.to_str().unwrap();
    let _sim = spawn(&args.skiff_bin, &["sim", "--kubeconfig", kc, "--nodes", &args.nodes.to_string()], dir.path().join("sim.log"))?;
    let _sched = spawn(&args.skiff_bin, &["scheduler", "--kubeconfig", kc, "--leader-elect=false"], dir.path().join("scheduler.log"))?;
    let client = client(&kubeconfig).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    while nodes.list_metadata(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(0) < args.nodes {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    crate::progress(&format!("{} sim nodes up", args.nodes));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}, "spec": {"selector": {"app": "bench"}, "ports": [{"port": 80, "targetPort": 8080}]}}))?;
    Api::<Service>::namespaced(client.clone(), "default").create(&PostParams::default(), &svc).await?;
    // Slice writes, counted from one watch.
    let writes = Arc::new(AtomicUsize::new(0));
    let w = writes.clone();
    let wapi = slices.clone();
    tokio::spawn(async move {
        let mut s = watcher::watcher(wapi, watcher::Config::default().labels("kubernetes.io/service-name=bench")).boxed();
        while let Some(Ok(ev)) = s.next().await {
            if matches!(ev, Event::Apply(_) | Event::Delete(_)) {
                w.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}, "spec": {"replicas": args.pods,
        "selector": {"matchLabels": {"app": "bench"}},
        "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}))?;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    crate::progress(&format!("creating a ReplicaSet of {} pods", args.pods));
    let before = writes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    rss.create(&PostParams::default(), &rs).await?;
    let (up_slices, up_eps, n) = until(&slices, &eps, t0, args.pods).await?;
    let up_writes = writes.load(Ordering::Relaxed) - before;
    crate::progress("scaling to 0");
    let before = writes.load(Ordering::Relaxed);
    let t1 = Instant::now();
    rss.patch("bench", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}}))).await?;
    let (down_slices, down_eps, _) = until(&slices, &eps, t1, 0).await?;
    let down_writes = writes.load(Ordering::Relaxed) - before;
    println!("| nodes | pods | slices | up: all ready in slices (s) | up: in Endpoints (s) | up: slice writes | down: slices empty (s) | down: Endpoints empty (s) | down: slice writes |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("| {} | {} | {n} | {up_slices:.1} | {up_eps:.1} | {up_writes} | {down_slices:.1} | {down_eps:.1} | {down_writes} |", args.nodes, args.pods);
    Ok(())
}
