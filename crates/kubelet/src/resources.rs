//! Resource quantities, QoS classes and the cgroup settings derived from
//! them (upstream's rules: CPU shares from requests, CFS quota and memory
//! limit from limits, the pod's cgroup under kubepods/<qos>/pod<uid>).

use serde_json::Value;

/// A Kubernetes quantity in milli-units (`100m` → 100, `1` → 1000, `64Mi` → 64·2^20·1000).
pub fn milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let suffixes: [(&str, i128); 13] = [
        ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40), ("Pi", 1 << 50), ("Ei", 1 << 60),
        ("k", 1_000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000), ("P", 1_000_000_000_000_000), ("E", 1_000_000_000_000_000_000), ("m", 0),
    ];
    for (s, mult) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            let v: f64 = n.parse().ok()?;
            return Some(if mult == 0 { v.round() as i128 } else { (v * mult as f64 * 1000.0).round() as i128 });
        }
    }
    let v: f64 = q.parse().ok()?;
    Some((v * 1000.0).round() as i128)
}

fn get(c: &Value, kind: &str, res: &str) -> Option<i128> {
    c["resources"][kind][res].as_str().and_then(milli).or_else(|| c["resources"][kind][res].as_i64().map(|v| v as i128 * 1000))
}

/// `Guaranteed`, `Burstable` or `BestEffort` (upstream's GetPodQOS).
pub fn qos_class(pod: &Value) -> &'static str {
    let cs: Vec<&Value> = ["initContainers", "containers"].iter().flat_map(|k| pod["spec"][k].as_array().into_iter().flatten()).collect();
    let any = cs.iter().any(|c| ["requests", "limits"].iter().any(|k| ["cpu", "memory"].iter().any(|r| get(c, k, r).is_some_and(|v| v != 0))));
    if !any {
        return "BestEffort";
    }
    let guaranteed = cs.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let l = get(c, "limits", r);
            let q = get(c, "requests", r).or(l);
            l.is_some() && q == l
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// The pod's cgroup parent (cgroupfs syntax).
pub fn pod_cgroup(pod: &Value) -> String {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// (cpu shares, cpu quota per 100 ms period, memory limit bytes, oom_score_adj) for a container.
pub fn container_limits(pod: &Value, c: &Value) -> (i64, i64, i64, i64) {
    let cpu_req = get(c, "requests", "cpu").or(get(c, "limits", "cpu"));
    let shares = cpu_req.map(|m| (m * 1024 / 1000).max(2) as i64).unwrap_or(2);
    let quota = get(c, "limits", "cpu").map(|m| (m * 100_000 / 1000).max(1000) as i64).unwrap_or(0);
    let mem = get(c, "limits", "memory").map(|m| (m / 1000) as i64).unwrap_or(0);
    let oom = match qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let req = get(c, "requests", "memory").map(|m| m / 1000).unwrap_or(0) as i64;
            let cap = crate::node::memory_bytes().max(1);
            (1000 - 1000 * req / cap).clamp(3, 999)
        }
    };
    (shares, quota, mem, oom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn quantities() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(milli("64Mi"), Some(64 * 1024 * 1024 * 1000));
        assert_eq!(milli("1.5Gi"), Some(1536 * 1024 * 1024 * 1000));
        assert_eq!(milli("1k"), Some(1_000_000));
        assert_eq!(milli("x"), None);
    }
    #[test]
    fn qos_and_limits() {
        let be = json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        assert_eq!(pod_cgroup(&be), "/kubepods/besteffort/podu");
        let g = json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        assert_eq!(container_limits(&g, &g["spec"]["containers"][0]), (512, 50_000, 64 << 20, -997));
        let b = json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
        assert_eq!(pod_cgroup(&b), "/kubepods/burstable/podu");
    }
}
