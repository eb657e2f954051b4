//! Resource arithmetic: quantities, and a pod's effective requests computed
//! as upstream's `resourcehelper.PodRequests` does (init containers and
//! sidecars included, plus overhead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Requests counted by the scheduler when a container asks for nothing
/// (upstream's DefaultMilliCPURequest / DefaultMemoryRequest), for scoring only.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// A bundle of resources: cpu in millicores, the rest in base units.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended and hugepage resources, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a resource list (requests, capacity, allocatable).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            match name.as_str() {
                "cpu" => r.milli_cpu = parse_milli(&q.0).unwrap_or(0),
                "memory" => r.memory = parse_value(&q.0).unwrap_or(0),
                "ephemeral-storage" => r.ephemeral_storage = parse_value(&q.0).unwrap_or(0),
                "pods" => r.pods = parse_value(&q.0).unwrap_or(0),
                other => {
                    r.scalar.insert(other.to_string(), parse_value(&q.0).unwrap_or(0));
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Element-wise maximum.
    pub fn max_with(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let res = c.resources.as_ref();
    // Limits stand in for absent requests (the API server defaults them so; do it here too).
    let mut list = res.and_then(|r| r.limits.clone()).unwrap_or_default();
    list.extend(res.and_then(|r| r.requests.clone()).unwrap_or_default());
    let mut r = Resources::from_list(Some(&list));
    if non_zero {
        if !list.contains_key("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !list.contains_key("memory") {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

/// A pod's effective requests: max(sum of regular containers + sidecars,
/// each init container + the sidecars started before it), plus overhead.
/// With `non_zero`, containers without cpu/memory requests count the defaults.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut max_init = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            total.add(&r);
            sidecars.add(&r);
            max_init.max_with(&sidecars);
        } else {
            let mut with = sidecars.clone();
            with.add(&r);
            max_init.max_with(&with);
        }
    }
    total.max_with(&max_init);
    if let Some(overhead) = spec.overhead.as_ref() {
        total.add(&Resources::from_list(Some(overhead)));
    }
    total.pods = 0;
    total
}

/// Splits "123.5Mi" into the decimal number and its multiplier (as 10^e10 * 2^e2).
fn split(s: &str) -> Option<(&str, i32, u32)> {
    let s = s.trim();
    let idx = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suf) = s.split_at(idx);
    let (e10, e2) = match suf {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        e if e.starts_with(['e', 'E']) => (e[1..].parse().ok()?, 0),
        _ => return None,
    };
    Some((num, e10, e2))
}

/// The quantity times 10^scale, rounded up (as Kubernetes' ScaledValue does).
fn scaled(s: &str, scale: i32) -> Option<i64> {
    let (num, e10, e2) = split(s)?;
    let (neg, num) = match num.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let mut v = digits.checked_mul(1i128 << e2)?;
    let exp = e10 + scale - frac.len() as i32;
    if exp >= 0 {
        v = v.checked_mul(10i128.checked_pow(exp as u32)?)?;
    } else {
        let d = 10i128.checked_pow((-exp) as u32)?;
        v = (v + d - 1) / d;
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// A quantity in thousandths (cpu in millicores).
pub fn parse_milli(s: &str) -> Option<i64> {
    scaled(s, 3)
}

/// A quantity in base units, rounded up (memory in bytes).
pub fn parse_value(s: &str) -> Option<i64> {
    scaled(s, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("250m"), Some(250));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_value("1Gi"), Some(1 << 30));
        assert_eq!(parse_value("128974848"), Some(128974848));
        assert_eq!(parse_value("129M"), Some(129_000_000));
        assert_eq!(parse_value("1.5Ki"), Some(1536));
        assert_eq!(parse_value("100m"), Some(1));
        assert_eq!(parse_value("x"), None);
    }

    fn c(name: &str, cpu: &str, always: bool) -> serde_json::Value {
        let mut v = serde_json::json!({"name": name, "image": "x", "resources": {"requests": {"cpu": cpu}}});
        if always {
            v["restartPolicy"] = "Always".into();
        }
        v
    }

    #[test]
    fn init_containers_and_sidecars() {
        // Upstream's example: regular 1 + sidecars 1 = 2, init-2 with sidecar-1 before it = 1+3 = 4 → 4.
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [c("sidecar-1", "1", true), c("init-2", "3", false), c("sidecar-3", "500m", true)],
                "containers": [c("app", "1", false)]
            }
        }))
        .unwrap();
        assert_eq!(pod_requests(&pod, false).milli_cpu, 4000);
        let pod2: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [c("i", "200m", false)], "containers": [c("a", "1", false), c("b", "1", false)]}
        }))
        .unwrap();
        assert_eq!(pod_requests(&pod2, false).milli_cpu, 2000);
        // Non-zero: a container without requests counts 100m / 200Mi for scoring.
        let pod3: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})).unwrap();
        assert_eq!(pod_requests(&pod3, true).milli_cpu, 100);
        assert_eq!(pod_requests(&pod3, false).milli_cpu, 0);
    }
}
