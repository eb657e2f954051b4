//! `bench scheduler-cycle`: the scheduling algorithm alone, in process — the
//! cache, filters, scores and assume of `skiff-scheduler` on N synthetic
//! nodes, without the API server, the network or binding. It shows how much
//! of `bench scheduler`'s end-to-end time is the algorithm itself, and it is
//! the loop to profile when making a cycle cheaper.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;
use skiff_scheduler::cache::State;
use skiff_scheduler::framework::PodInfo;

#[derive(clap::Args)]
pub struct CycleArgs {
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods placed before measuring.
    #[arg(long, default_value_t = 1000)]
    init_pods: usize,
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// basic (SchedulingBasic) or spread (each pod has a zone topology spread
    /// constraint and a preferred pod anti-affinity on its app label).
    #[arg(long, default_value = "basic")]
    scenario: String,
}

fn node(i: usize) -> k8s_openapi::api::core::v1::Node {
    let name = format!("node-{i}");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"}, "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}}
    }))
    .expect("node")
}

fn pod(i: usize, scenario: &str) -> k8s_openapi::api::core::v1::Pod {
    let app = format!("app-{}", i % 50);
    let mut p = json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "default", "uid": format!("uid-{i}"), "labels": {"app": app}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}}}]}
    });
    if scenario == "spread" {
        p["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": app}}}]);
        p["spec"]["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100,
            "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}}]}});
    }
    serde_json::from_value(p).expect("pod")
}

pub fn run(args: CycleArgs) -> Result<()> {
    anyhow::ensure!(matches!(args.scenario.as_str(), "basic" | "spread"), "--scenario must be basic or spread");
    let plugins = skiff_scheduler::plugins::default_plugins();
    let mut st = State::new("default-scheduler");
    for i in 0..args.nodes {
        st.upsert_node(node(i));
    }
    // Pods are decoded before the clock starts: the informer does that work, not the cycle.
    let infos: Vec<Arc<PodInfo>> = (0..args.init_pods + args.pods).map(|i| Arc::new(PodInfo::new(pod(i, &args.scenario), 0))).collect();
    let place = |st: &mut State, i: usize| -> Result<std::time::Duration> {
        let info = infos[i].clone();
        let t0 = Instant::now();
        let chosen = skiff_scheduler::schedule::schedule(&plugins, st, &info).map_err(|e| anyhow::anyhow!(e.message(None)))?;
        st.assume(info, &chosen);
        Ok(t0.elapsed())
    };
    for i in 0..args.init_pods {
        place(&mut st, i)?;
    }
    let mut h = crate::stats::histogram();
    let t0 = Instant::now();
    for i in args.init_pods..args.init_pods + args.pods {
        let d = place(&mut st, i)?;
        crate::stats::record(&mut h, d);
    }
    let elapsed = t0.elapsed();
    println!("| scenario | nodes | init pods | pods | pods/s | p50 cycle (µs) | p99 cycle (µs) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {} | {:.0} | {} | {} |",
        args.scenario,
        args.nodes,
        args.init_pods,
        args.pods,
        args.pods as f64 / elapsed.as_secs_f64(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99)
    );
    Ok(())
}
