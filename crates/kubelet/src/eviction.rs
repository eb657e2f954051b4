//! Node-pressure eviction, as the kubelet's eviction manager does it with
//! hard thresholds (`--eviction-hard`, default
//! `memory.available<100Mi,nodefs.available<10%`): every monitoring period,
//! observe the signals; under pressure set the node's MemoryPressure /
//! DiskPressure condition and evict one pod, ranked as upstream does
//! ([`rank`]: BestEffort, then Burstable over their requests, then the
//! rest). The evicted pod's worker kills it at once (hard
//! thresholds have no grace) and reports phase Failed, reason Evicted.

use crate::Ctx;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A threshold: an absolute quantity in bytes, or a percentage of capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(i64),
    Percent(f64),
}

impl Threshold {
    fn bytes(&self, capacity: i64) -> i64 {
        match *self {
            Threshold::Bytes(b) => b,
            Threshold::Percent(p) => (capacity as f64 * p / 100.0) as i64,
        }
    }
}

/// Parsed `--eviction-hard`, keeping the flag's spelling for messages.
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    pub memory: Option<(Threshold, String)>,
    pub nodefs: Option<(Threshold, String)>,
}

/// `memory.available<100Mi,nodefs.available<10%`.
pub fn parse(flag: &str) -> anyhow::Result<Thresholds> {
    let mut t = Thresholds::default();
    for part in flag.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (signal, q) = part.split_once('<').ok_or_else(|| anyhow::anyhow!("eviction threshold {part:?}: want signal<quantity"))?;
        let v = match q.strip_suffix('%') {
            Some(p) => Threshold::Percent(p.parse()?),
            None => Threshold::Bytes((crate::resources::milli(q).ok_or_else(|| anyhow::anyhow!("bad quantity {q:?}"))? / 1000) as i64),
        };
        match signal {
            "memory.available" => t.memory = Some((v, q.to_string())),
            "nodefs.available" => t.nodefs = Some((v, q.to_string())),
            s => anyhow::bail!("unsupported eviction signal {s:?}"),
        }
    }
    Ok(t)
}

/// One observation: available and capacity, memory and the node filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observation {
    pub mem_available: i64,
    pub mem_capacity: i64,
    pub fs_available: i64,
    pub fs_capacity: i64,
}

/// Where signals come from; `override_file` (a hidden flag) replaces
/// memory.available with the bytes it holds, so a test can make pressure.
pub struct Observer {
    pub fs_path: PathBuf,
    pub override_file: Option<PathBuf>,
}

impl Observer {
    pub fn observe(&self) -> Observation {
        let (fs_capacity, fs_available) = crate::node::fs_stats(&self.fs_path.display().to_string());
        let mut o = Observation { mem_available: crate::node::meminfo("MemAvailable:"), mem_capacity: crate::node::memory_bytes(), fs_available, fs_capacity };
        if let Some(v) = self.override_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|s| crate::resources::milli(s.trim())) {
            o.mem_available = (v / 1000) as i64;
        }
        o
    }
}

/// Which resources are under pressure, with the message upstream gives evicted pods.
pub fn pressure(t: &Thresholds, o: &Observation) -> (Option<String>, Option<String>) {
    let msg = |res: &str, th: &(Threshold, String), avail: i64| {
        format!("The node was low on resource: {res}. Threshold quantity: {}, available: {}Ki. ", th.1, avail / 1024)
    };
    let mem = t.memory.as_ref().filter(|th| o.mem_capacity > 0 && o.mem_available < th.0.bytes(o.mem_capacity)).map(|th| msg("memory", th, o.mem_available));
    let disk = t.nodefs.as_ref().filter(|th| o.fs_capacity > 0 && o.fs_available < th.0.bytes(o.fs_capacity)).map(|th| msg("ephemeral-storage", th, o.fs_available));
    (mem, disk)
}

/// Memory a pod's cgroup is using (v1 `memory.usage_in_bytes`, v2
/// `memory.current`); 0 when unknown.
pub fn usage(pod: &Value) -> i128 {
    let cg = crate::resources::pod_cgroup(pod);
    let v1 = format!("/sys/fs/cgroup/memory{cg}/memory.usage_in_bytes");
    let v2 = format!("/sys/fs/cgroup{cg}/memory.current");
    std::fs::read_to_string(v1).or_else(|_| std::fs::read_to_string(v2)).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

fn memory_request(p: &Value) -> i128 {
    p["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["resources"]["requests"]["memory"].as_str().and_then(crate::resources::milli)).sum::<i128>() / 1000
}

/// Upstream's order under memory pressure: pods whose usage exceeds their
/// requests first, then lower priority, then most usage over requests
/// (QoS class breaks ties). So BestEffort goes first, then Burstable pods
/// over their requests, and Guaranteed pods (never over) last; with usage
/// unknown, the smallest requests go first.
pub fn rank(pods: &mut [Value], usage: impl Fn(&Value) -> i128) {
    let class = |p: &Value| match crate::resources::qos_class(p) {
        "BestEffort" => 0,
        "Burstable" => 1,
        _ => 2,
    };
    pods.sort_by_cached_key(|p| {
        let over = usage(p) - memory_request(p);
        (over <= 0, p["spec"]["priority"].as_i64().unwrap_or(0), -over, class(p))
    });
}

/// Run the eviction manager until the process ends.
pub async fn run(ctx: Arc<Ctx>, node: String, thresholds: Thresholds, observer: Observer, period: Duration) {
    let mut last: (bool, bool) = (false, false);
    loop {
        tokio::time::sleep(period).await;
        let o = observer.observe();
        let (mem, disk) = pressure(&thresholds, &o);
        let now = (mem.is_some(), disk.is_some());
        if now != last {
            tracing::info!(memory = now.0, disk = now.1, "node pressure changed");
            let patch = json!({"status": {"conditions": crate::node::conditions_with(&skiff_runtime::timefmt::rfc3339(skiff_runtime::timefmt::now_nanos()), now)}});
            if let Err(e) = ctx.api.ok("PATCH", &format!("/api/v1/nodes/{node}/status"), "application/merge-patch+json", Some(&patch)).await {
                tracing::warn!("node pressure condition: {e:#}");
            }
            *ctx.pressure.lock() = now;
            last = now;
        }
        let Some(message) = mem.or(disk) else { continue };
        let mut pods: Vec<Value> = ctx.live_pods.lock().values().cloned().collect();
        pods.retain(|p| !ctx.evictions.lock().contains_key(p["metadata"]["uid"].as_str().unwrap_or("")) && p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null());
        rank(&mut pods, usage);
        if let Some(p) = pods.first() {
            let uid = p["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            tracing::info!(pod = %p["metadata"]["name"], "evicting pod under node pressure");
            ctx.evictions.lock().insert(uid, message);
        }
    }
}

/// Pods a worker runs, by uid (kept by the workers; read by the eviction manager).
pub type LivePods = parking_lot::Mutex<HashMap<String, Value>>;

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn thresholds_and_ranking() {
        let t = parse("memory.available<100Mi,nodefs.available<10%").unwrap();
        assert_eq!(t.memory.as_ref().unwrap().0, Threshold::Bytes(100 << 20));
        assert_eq!(t.nodefs.as_ref().unwrap().0, Threshold::Percent(10.0));
        let o = Observation { mem_available: 50 << 20, mem_capacity: 1 << 30, fs_available: 50, fs_capacity: 100 };
        let (m, d) = pressure(&t, &o);
        assert_eq!(m.unwrap(), "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. ");
        assert!(d.is_none());
        let pod = |name: &str, res: Value| json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "resources": res}]}});
        let mut pods = vec![
            pod("g", json!({"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"memory": "1Gi", "cpu": "1"}})),
            pod("b", json!({"requests": {"memory": "1Mi"}})),
            pod("be", json!({})),
        ];
        let names = |pods: &[Value]| pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        // Usage unknown: by QoS class.
        rank(&mut pods, |_| 0);
        assert_eq!(names(&pods), ["be", "b", "g"]);
        // A Burstable pod far over its request goes before a small BestEffort one;
        // one under its request goes after it.
        let used = |mi: i128| move |p: &Value| if p["metadata"]["name"] == "b" { mi << 20 } else { 1 << 20 };
        rank(&mut pods, used(500));
        assert_eq!(names(&pods), ["b", "be", "g"]);
        rank(&mut pods, |p: &Value| if p["metadata"]["name"] == "b" { 1 << 19 } else { 1 << 20 });
        assert_eq!(names(&pods), ["be", "b", "g"]);
        assert!(parse("pid.available<1").is_err());
    }
}
