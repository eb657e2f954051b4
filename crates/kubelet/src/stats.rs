//! Resource usage, as upstream's kubelet publishes it: `/metrics/cadvisor`
//! (Prometheus, cAdvisor's metric names and labels) and `/stats/summary`
//! (the Summary API's JSON, which metrics-server and `kubectl top` sit on).
//!
//! Container numbers come from the runtime through CRI `ListContainerStats`
//! — so they work on the embedded runtime and on containerd alike — joined
//! with `ListContainers` (image) and `ListPodSandbox` (pod name, namespace,
//! uid). Node numbers come from /proc, as cAdvisor's root container does.

use std::collections::HashMap;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{json, Value};
use skiff_cri as cri;

use crate::Ctx;
use skiff_runtime::timefmt::{now_nanos, rfc3339};

/// One running container's usage with the pod it belongs to.
pub struct Sample {
    pub stats: cri::ContainerStats,
    pub container: String,
    pub image: String,
    pub pod: Option<cri::PodSandboxMetadata>,
    pub started: i64,
}

/// What the runtime reports now, for every running container.
pub async fn containers(ctx: &Ctx) -> Result<Vec<Sample>, tonic::Status> {
    let mut rt = ctx.rt.clone();
    let stats = rt.list_container_stats(cri::ListContainerStatsRequest::default()).await?.into_inner().stats;
    let containers: HashMap<String, cri::Container> = rt.list_containers(cri::ListContainersRequest::default()).await?.into_inner().containers.into_iter().map(|c| (c.id.clone(), c)).collect();
    let sandboxes: HashMap<String, cri::PodSandbox> = rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await?.into_inner().items.into_iter().map(|s| (s.id.clone(), s)).collect();
    Ok(stats
        .into_iter()
        .filter_map(|s| {
            let id = s.attributes.as_ref()?.id.clone();
            let c = containers.get(&id)?;
            let pod = sandboxes.get(&c.pod_sandbox_id).and_then(|sb| sb.metadata.clone());
            let container = c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
            let image = c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
            Some(Sample { stats: s, container, image, pod, started: c.created_at })
        })
        .collect())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    container: String,
    id: String,
    image: String,
    name: String,
    namespace: String,
    pod: String,
}

fn v(x: &Option<cri::UInt64Value>) -> Option<u64> {
    x.as_ref().map(|v| v.value)
}

/// `/metrics/cadvisor`: cAdvisor's container metrics for every running container.
pub fn cadvisor_text(samples: &[Sample]) -> String {
    let cpu = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    let working_set = Family::<Labels, Gauge>::default();
    let usage = Family::<Labels, Gauge>::default();
    let rss = Family::<Labels, Gauge>::default();
    let fs = Family::<Labels, Gauge>::default();
    let start = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for s in samples {
        let id = s.stats.attributes.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        let pod = s.pod.clone().unwrap_or_default();
        let l = Labels { container: s.container.clone(), id: id.clone(), image: s.image.clone(), name: id, namespace: pod.namespace, pod: pod.name };
        if let Some(ns) = s.stats.cpu.as_ref().and_then(|c| v(&c.usage_core_nano_seconds)) {
            cpu.get_or_create(&l).inc_by(ns as f64 / 1e9);
        }
        if let Some(m) = &s.stats.memory {
            let set = |f: &Family<Labels, Gauge>, x: Option<u64>| {
                if let Some(x) = x {
                    f.get_or_create(&l).set(x as i64);
                }
            };
            set(&working_set, v(&m.working_set_bytes));
            set(&usage, v(&m.usage_bytes));
            set(&rss, v(&m.rss_bytes));
        }
        if let Some(b) = s.stats.writable_layer.as_ref().and_then(|w| v(&w.used_bytes)) {
            fs.get_or_create(&l).set(b as i64);
        }
        start.get_or_create(&l).set(s.started as f64 / 1e9);
    }
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register("container_cpu_usage_seconds", "Cumulative cpu time consumed in seconds.", cpu);
    reg.register("container_memory_working_set_bytes", "Current working set in bytes.", working_set);
    reg.register("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", usage);
    reg.register("container_memory_rss", "Size of RSS in bytes.", rss);
    reg.register("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", fs);
    reg.register("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", start);
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// The node's previous CPU sample, for its usageNanoCores.
#[derive(Default)]
pub struct NodeCpu(Mutex<Option<(i64, u64)>>);

/// Cumulative non-idle CPU time of the machine from /proc/stat, in ns.
fn node_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(busy * (1_000_000_000 / hz))
}

fn cpu_json(c: &cri::CpuUsage) -> Value {
    let mut o = json!({"time": rfc3339(c.timestamp)});
    if let Some(n) = v(&c.usage_nano_cores) {
        o["usageNanoCores"] = n.into();
    }
    if let Some(n) = v(&c.usage_core_nano_seconds) {
        o["usageCoreNanoSeconds"] = n.into();
    }
    o
}

fn memory_json(m: &cri::MemoryUsage) -> Value {
    let mut o = json!({"time": rfc3339(m.timestamp)});
    for (k, x) in [("availableBytes", &m.available_bytes), ("usageBytes", &m.usage_bytes), ("workingSetBytes", &m.working_set_bytes), ("rssBytes", &m.rss_bytes), ("pageFaults", &m.page_faults), ("majorPageFaults", &m.major_page_faults)] {
        if let Some(n) = v(x) {
            o[k] = n.into();
        }
    }
    o
}

/// Sum a field over the pod's containers (the pod's own cgroup is not read).
fn sum(parts: &[&Value], key: &str) -> Option<u64> {
    let vals: Vec<u64> = parts.iter().filter_map(|p| p[key].as_u64()).collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

/// `/stats/summary`: the Summary API (stats/v1alpha1) for this node.
pub fn summary(ctx: &Ctx, samples: &[Sample]) -> Value {
    let now = now_nanos();
    let time = rfc3339(now);
    let mut node_cpu = json!({"time": time});
    if let Some(ns) = node_cpu_ns() {
        node_cpu["usageCoreNanoSeconds"] = ns.into();
        let prev = ctx.node_cpu.0.lock().replace((now, ns));
        if let Some((t0, u0)) = prev.filter(|(t0, _)| now > *t0) {
            node_cpu["usageNanoCores"] = ((ns.saturating_sub(u0) as u128 * 1_000_000_000 / (now - t0) as u128) as u64).into();
        }
    }
    let (total, free, available) = (crate::node::meminfo("MemTotal:"), crate::node::meminfo("MemFree:"), crate::node::meminfo("MemAvailable:"));
    let usage = (total - free).max(0);
    let working_set = (usage - crate::node::meminfo("Inactive(file):")).max(0);
    let (capacity, fs_available) = crate::node::fs_stats("/");
    let node = json!({
        "nodeName": ctx.node_name,
        "cpu": node_cpu,
        "memory": {"time": time, "availableBytes": available, "usageBytes": usage, "workingSetBytes": working_set},
        "fs": {"time": time, "availableBytes": fs_available, "capacityBytes": capacity, "usedBytes": (capacity - fs_available).max(0)},
    });
    let mut pods: Vec<(cri::PodSandboxMetadata, Vec<Value>)> = vec![];
    for s in samples {
        let Some(pod) = &s.pod else { continue };
        let mut c = json!({"name": s.container, "startTime": rfc3339(s.started)});
        if let Some(cpu) = &s.stats.cpu {
            c["cpu"] = cpu_json(cpu);
        }
        if let Some(m) = &s.stats.memory {
            c["memory"] = memory_json(m);
        }
        if let Some(w) = &s.stats.writable_layer {
            c["rootfs"] = json!({"time": rfc3339(w.timestamp), "usedBytes": v(&w.used_bytes), "inodesUsed": v(&w.inodes_used)});
        }
        match pods.iter_mut().find(|(p, _)| p.uid == pod.uid) {
            Some((_, cs)) => cs.push(c),
            None => pods.push((pod.clone(), vec![c])),
        }
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|(p, containers)| {
            let cpus: Vec<&Value> = containers.iter().map(|c| &c["cpu"]).collect();
            let mems: Vec<&Value> = containers.iter().map(|c| &c["memory"]).collect();
            let mut cpu = json!({"time": time});
            let mut memory = json!({"time": time});
            for k in ["usageNanoCores", "usageCoreNanoSeconds"] {
                if let Some(x) = sum(&cpus, k) {
                    cpu[k] = x.into();
                }
            }
            for k in ["usageBytes", "workingSetBytes", "rssBytes", "pageFaults", "majorPageFaults"] {
                if let Some(x) = sum(&mems, k) {
                    memory[k] = x.into();
                }
            }
            json!({"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid}, "containers": containers, "cpu": cpu, "memory": memory})
        })
        .collect();
    json!({"node": node, "pods": pods})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pod: &str, container: &str, cpu_ns: u64, ws: u64) -> Sample {
        let u = |x| Some(cri::UInt64Value { value: x });
        Sample {
            stats: cri::ContainerStats {
                attributes: Some(cri::ContainerAttributes { id: format!("id-{container}"), ..Default::default() }),
                cpu: Some(cri::CpuUsage { timestamp: 1_700_000_000_000_000_000, usage_core_nano_seconds: u(cpu_ns), usage_nano_cores: u(1000) }),
                memory: Some(cri::MemoryUsage { timestamp: 1_700_000_000_000_000_000, working_set_bytes: u(ws), usage_bytes: u(ws * 2), ..Default::default() }),
                writable_layer: None,
            },
            container: container.into(),
            image: "busybox:latest".into(),
            pod: Some(cri::PodSandboxMetadata { name: pod.into(), namespace: "default".into(), uid: format!("uid-{pod}"), attempt: 0 }),
            started: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn cadvisor_text_has_upstream_names_and_labels() {
        let text = cadvisor_text(&[sample("web", "app", 2_500_000_000, 4096)]);
        let labels = r#"container="app",id="id-app",image="busybox:latest",name="id-app",namespace="default",pod="web""#;
        assert!(text.contains(&format!("container_cpu_usage_seconds_total{{{labels}}} 2.5")), "{text}");
        assert!(text.contains(&format!("container_memory_working_set_bytes{{{labels}}} 4096")), "{text}");
        assert!(text.contains(&format!("container_memory_usage_bytes{{{labels}}} 8192")), "{text}");
        assert!(text.contains("# TYPE container_cpu_usage_seconds counter"), "{text}");
    }
}
