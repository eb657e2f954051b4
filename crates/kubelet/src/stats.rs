//! Resource usage, gathered once per scrape into a [`Snapshot`] that every
//! stats endpoint renders: `/stats/summary` here (the Summary API's JSON,
//! which `kubectl top` sits on), `/metrics/cadvisor` (`cadvisor.rs`) and
//! `/metrics/resource` (`resource_metrics.rs`, what metrics-server scrapes).
//!
//! Container numbers come from the runtime through CRI `ListContainerStats`
//! — so they work on the embedded runtime and on containerd alike — joined
//! with `ListContainers` (image) and `ListPodSandbox` (pod name, namespace,
//! uid). Pod numbers come from the pod's own cgroup, as upstream's (cAdvisor
//! reads `kubepods/<qos>/pod<uid>`), so they include what the containers'
//! sum misses: the sandbox, and memory charged by containers that have
//! exited (a tmpfs file an init container wrote). Node numbers come from
//! /proc, as cAdvisor's root container does.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::{json, Value};
use skiff_cri as cri;
use skiff_runtime::stats::CpuRates;

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

/// A pod's own usage and its containers'.
pub struct PodStats {
    pub meta: cri::PodSandboxMetadata,
    /// The pod cgroup the pod-level numbers were read from; None when they
    /// are the sum of the containers' (see [`pod_usage`]).
    pub cgroup: Option<String>,
    pub containers: Vec<Sample>,
    pub cpu: Option<cri::CpuUsage>,
    pub memory: Option<cri::MemoryUsage>,
}

pub struct NodeStats {
    pub cpu: cri::CpuUsage,
    pub memory: cri::MemoryUsage,
}

/// Everything one scrape reports.
pub struct Snapshot {
    pub time: i64,
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

/// The previous CPU samples the rates (usageNanoCores) are computed
/// against: the node's, and each pod cgroup's by pod uid.
#[derive(Default)]
pub struct Rates {
    node: Mutex<Option<(i64, u64)>>,
    pods: CpuRates,
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

/// Ask the runtime, read the pod cgroups and /proc: one scrape's numbers.
pub async fn collect(ctx: &Ctx) -> Result<Snapshot, tonic::Status> {
    let samples = containers(ctx).await?;
    let now = now_nanos();
    let mut pods: Vec<PodStats> = vec![];
    for s in samples {
        let Some(meta) = s.pod.clone() else { continue };
        match pods.iter_mut().find(|p| p.meta.uid == meta.uid) {
            Some(p) => p.containers.push(s),
            None => pods.push(PodStats { meta, cgroup: None, containers: vec![s], cpu: None, memory: None }),
        }
    }
    for p in &mut pods {
        let cgroup = crate::pod_cgroups::find(&p.meta.uid);
        (p.cgroup, p.cpu, p.memory) = pod_usage(&ctx.rates.pods, &p.meta.uid, cgroup, &p.containers, now);
    }
    ctx.rates.pods.retain(|uid| pods.iter().any(|p| p.meta.uid == uid));
    Ok(Snapshot { time: now, node: node(&ctx.rates, now), pods })
}

/// A pod's cpu and memory from its cgroup. Where that cannot be read — a
/// runtime that lays cgroups out its own way (a systemd driver's slices),
/// or a cgroup removed mid-scrape — the sum of its running containers'
/// stands in, which misses the sandbox and exited containers' charges.
fn pod_usage(rates: &CpuRates, uid: &str, cgroup: Option<String>, containers: &[Sample], now: i64) -> (Option<String>, Option<cri::CpuUsage>, Option<cri::MemoryUsage>) {
    if let Some(cg) = cgroup
        && let (Some(ns), Some(m)) = (skiff_runtime::stats::cpu_ns(&cg), skiff_runtime::stats::memory(&cg))
    {
        let cpu = cri::CpuUsage { timestamp: now, usage_core_nano_seconds: value(ns), usage_nano_cores: rates.observe(uid, now, ns).and_then(value) };
        return (Some(cg), Some(cpu), Some(m.to_cri(now)));
    }
    let (cpu, memory) = summed(containers, now);
    (None, Some(cpu), Some(memory))
}

/// The containers' usage added up, field by field (absent where none has it).
fn summed(containers: &[Sample], now: i64) -> (cri::CpuUsage, cri::MemoryUsage) {
    fn total<T>(xs: &[&T], field: impl Fn(&T) -> &Option<cri::UInt64Value>) -> Option<cri::UInt64Value> {
        let vals: Vec<u64> = xs.iter().filter_map(|x| v(field(x))).collect();
        (!vals.is_empty()).then(|| cri::UInt64Value { value: vals.iter().sum() })
    }
    let cpus: Vec<&cri::CpuUsage> = containers.iter().filter_map(|c| c.stats.cpu.as_ref()).collect();
    let mems: Vec<&cri::MemoryUsage> = containers.iter().filter_map(|c| c.stats.memory.as_ref()).collect();
    let cpu = cri::CpuUsage { timestamp: now, usage_core_nano_seconds: total(&cpus, |c| &c.usage_core_nano_seconds), usage_nano_cores: total(&cpus, |c| &c.usage_nano_cores) };
    let memory = cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: total(&mems, |m| &m.working_set_bytes),
        available_bytes: None,
        usage_bytes: total(&mems, |m| &m.usage_bytes),
        rss_bytes: total(&mems, |m| &m.rss_bytes),
        page_faults: total(&mems, |m| &m.page_faults),
        major_page_faults: total(&mems, |m| &m.major_page_faults),
    };
    (cpu, memory)
}

/// Cumulative non-idle CPU time of the machine from /proc/stat, in ns.
fn node_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(busy * (1_000_000_000 / hz))
}

fn node(rates: &Rates, now: i64) -> NodeStats {
    let mut cpu = cri::CpuUsage { timestamp: now, ..Default::default() };
    if let Some(ns) = node_cpu_ns() {
        cpu.usage_core_nano_seconds = value(ns);
        let prev = rates.node.lock().replace((now, ns));
        if let Some((t0, u0)) = prev.filter(|(t0, _)| now > *t0) {
            cpu.usage_nano_cores = value((ns.saturating_sub(u0) as u128 * 1_000_000_000 / (now - t0) as u128) as u64);
        }
    }
    let (total, free, available) = (crate::node::meminfo("MemTotal:"), crate::node::meminfo("MemFree:"), crate::node::meminfo("MemAvailable:"));
    let usage = (total - free).max(0);
    let working_set = (usage - crate::node::meminfo("Inactive(file):")).max(0);
    let memory = cri::MemoryUsage { timestamp: now, available_bytes: value(available as u64), usage_bytes: value(usage as u64), working_set_bytes: value(working_set as u64), ..Default::default() };
    NodeStats { cpu, memory }
}

pub(crate) fn v(x: &Option<cri::UInt64Value>) -> Option<u64> {
    x.as_ref().map(|v| v.value)
}

fn value(x: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: x })
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

/// `/stats/summary`: the Summary API (stats/v1alpha1) for this node.
pub fn summary(node_name: &str, snap: &Snapshot) -> Value {
    let time = rfc3339(snap.time);
    let (capacity, fs_available) = crate::node::fs_stats("/");
    let node = json!({
        "nodeName": node_name,
        "cpu": cpu_json(&snap.node.cpu),
        "memory": memory_json(&snap.node.memory),
        "fs": {"time": time, "availableBytes": fs_available, "capacityBytes": capacity, "usedBytes": (capacity - fs_available).max(0)},
    });
    let pods: Vec<Value> = snap
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<Value> = p
                .containers
                .iter()
                .map(|s| {
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
                    c
                })
                .collect();
            let mut pod = json!({"podRef": {"name": p.meta.name, "namespace": p.meta.namespace, "uid": p.meta.uid}, "containers": containers});
            if let Some(cpu) = &p.cpu {
                pod["cpu"] = cpu_json(cpu);
            }
            if let Some(m) = &p.memory {
                pod["memory"] = memory_json(m);
            }
            pod
        })
        .collect();
    json!({"node": node, "pods": pods})
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(pod: &str, container: &str, cpu_ns: u64, ws: u64) -> Sample {
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
    fn without_a_pod_cgroup_the_pod_is_the_sum_of_its_containers() {
        let rates = CpuRates::default();
        let cs = [sample("web", "a", 2_000, 100), sample("web", "b", 3_000, 50)];
        let (cg, cpu, mem) = pod_usage(&rates, "uid-web", None, &cs, 7);
        assert_eq!(cg, None);
        let (cpu, mem) = (cpu.unwrap(), mem.unwrap());
        assert_eq!((v(&cpu.usage_core_nano_seconds), v(&cpu.usage_nano_cores)), (Some(5_000), Some(2_000)));
        assert_eq!((v(&mem.working_set_bytes), v(&mem.usage_bytes), v(&mem.rss_bytes)), (Some(150), Some(300), None));
        assert_eq!(cpu.timestamp, 7);
    }

    #[test]
    fn a_readable_cgroup_gives_the_pod_its_own_numbers() {
        // One of this process's own cgroups stands in for a pod's: the first
        // (v1: memory or cpuacct path, "/" being the root; v2: the unified
        // one) where both cpu and memory can be read.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let cg = own
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .map(|p| if p == "/" { String::new() } else { p.to_string() })
            .find(|cg| skiff_runtime::stats::cpu_ns(cg).is_some() && skiff_runtime::stats::memory(cg).is_some());
        let Some(cg) = cg else { return eprintln!("skipping: none of this process's cgroups has both cpu and memory accounting") };
        let rates = CpuRates::default();
        let cs = [sample("web", "a", 1, 1)];
        let (got, cpu, mem) = pod_usage(&rates, "u", Some(cg.clone()), &cs, 1);
        assert_eq!(got.as_deref(), Some(cg.as_str()));
        assert!(v(&cpu.unwrap().usage_core_nano_seconds).unwrap() > 1, "not the container's 1 ns");
        let mem = mem.unwrap();
        assert!(v(&mem.usage_bytes).unwrap() > 4096 && v(&mem.working_set_bytes) <= v(&mem.usage_bytes));
        let (_, cpu, _) = pod_usage(&rates, "u", Some(cg), &cs, 1_000_000_001);
        assert!(v(&cpu.unwrap().usage_nano_cores).is_some(), "a second sample gives a rate");
    }

    #[test]
    fn summary_has_node_pod_and_container_sections() {
        let node = NodeStats { cpu: cri::CpuUsage { timestamp: 1, usage_core_nano_seconds: value(9), usage_nano_cores: None }, memory: cri::MemoryUsage { timestamp: 1, working_set_bytes: value(5), ..Default::default() } };
        let rates = CpuRates::default();
        let cs = vec![sample("web", "a", 2_000, 100)];
        let (cgroup, cpu, memory) = pod_usage(&rates, "uid-web", None, &cs, 1);
        let meta = cs[0].pod.clone().unwrap();
        let snap = Snapshot { time: 1, node, pods: vec![PodStats { meta, cgroup, containers: cs, cpu, memory }] };
        let s = summary("n1", &snap);
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["cpu"]["usageCoreNanoSeconds"], 9);
        assert!(s["node"]["cpu"].get("usageNanoCores").is_none(), "no rate from one sample: {s}");
        assert_eq!(s["pods"][0]["podRef"]["uid"], "uid-web");
        assert_eq!(s["pods"][0]["memory"]["workingSetBytes"], 100);
        assert_eq!(s["pods"][0]["containers"][0]["name"], "a");
        assert_eq!(s["pods"][0]["containers"][0]["startTime"], "2023-11-14T22:13:20Z");
    }
}
