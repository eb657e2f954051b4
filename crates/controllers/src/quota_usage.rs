//! What one object charges against a ResourceQuota (upstream's quota
//! evaluators for pods, services, PVCs and plain object counts).
//!
//! Pure functions over JSON objects so they are easy to test; the controller
//! in `resourcequota.rs` lists objects and sums these charges.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::{parse, Qty};

/// Resource name -> quantity charged.
pub type Usage = BTreeMap<String, Qty>;

/// Add `b` into `a`; the first quantity seen for a name keeps its format.
pub fn add_usage(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        a.entry(k.clone()).and_modify(|q| q.add(*v)).or_insert(*v);
    }
}

fn resources(list: &Value) -> Usage {
    list.as_object().into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), parse(v.as_str()?)?))).collect()
}

fn max_into(a: &mut Usage, b: &Usage) {
    for (k, v) in b {
        match a.get_mut(k) {
            Some(q) if q.milli >= v.milli => {}
            Some(q) => q.milli = v.milli,
            None => {
                a.insert(k.clone(), *v);
            }
        }
    }
}

/// The pod's effective requests or limits (`which`): upstream's PodRequests /
/// PodLimits: the sum over containers (and sidecars), at least the largest
/// init container (plus sidecars started before it), plus pod overhead.
pub fn pod_resources(pod: &Value, which: &str) -> Usage {
    let spec = &pod["spec"];
    let mut sum = Usage::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        add_usage(&mut sum, &resources(&c["resources"][which]));
    }
    let (mut sidecars, mut init_max) = (Usage::new(), Usage::new());
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = resources(&c["resources"][which]);
        let effective = if c["restartPolicy"] == "Always" {
            add_usage(&mut sum, &own);
            add_usage(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut t = own;
            add_usage(&mut t, &sidecars);
            t
        };
        max_into(&mut init_max, &effective);
    }
    max_into(&mut sum, &init_max);
    add_usage(&mut sum, &resources(&spec["overhead"]));
    sum
}

/// Upstream's QuotaV1Pod: terminal pods, and pods past their deletion grace
/// period, no longer consume quota.
pub fn pod_counts(pod: &Value, now_secs: i64) -> bool {
    if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return false;
    }
    let Some(ts) = pod["metadata"]["deletionTimestamp"].as_str() else { return true };
    let Ok(t) = ts.parse::<jiff::Timestamp>() else { return true };
    let Some(grace) = pod["metadata"]["deletionGracePeriodSeconds"].as_i64() else { return true };
    now_secs <= t.as_second() + grace
}

/// `BestEffort` when no container requests or limits cpu or memory.
pub fn best_effort(pod: &Value) -> bool {
    let cs = ["initContainers", "containers"].into_iter().flat_map(|k| pod["spec"][k].as_array().into_iter().flatten());
    !cs.into_iter().any(|c| ["requests", "limits"].iter().any(|w| ["cpu", "memory"].iter().any(|r| !c["resources"][w][r].is_null())))
}

/// Whether `pod` is in every scope of the quota (upstream's pod scope matching).
pub fn pod_in_scopes(pod: &Value, scopes: &[String]) -> bool {
    scopes.iter().all(|s| match s.as_str() {
        "Terminating" => !pod["spec"]["activeDeadlineSeconds"].is_null(),
        "NotTerminating" => pod["spec"]["activeDeadlineSeconds"].is_null(),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        _ => true,
    })
}

/// What a pod charges: `count/pods` always, the rest only while it counts.
pub fn pod_usage(pod: &Value, now_secs: i64) -> Usage {
    let mut u = Usage::from([("count/pods".to_string(), Qty::count(1))]);
    if !pod_counts(pod, now_secs) {
        return u;
    }
    u.insert("pods".into(), Qty::count(1));
    for (name, q) in pod_resources(pod, "requests") {
        if name == "cpu" || name == "memory" || name == "ephemeral-storage" {
            u.insert(name.clone(), q);
        }
        u.insert(format!("requests.{name}"), q);
    }
    for (name, q) in pod_resources(pod, "limits") {
        u.insert(format!("limits.{name}"), q);
    }
    u
}

/// What a Service charges: itself, its node ports and its load balancer.
pub fn service_usage(svc: &Value) -> Usage {
    let mut u = Usage::from([("services".to_string(), Qty::count(1))]);
    let ports = svc["spec"]["ports"].as_array().map(|p| p.as_slice()).unwrap_or(&[]);
    match svc["spec"]["type"].as_str() {
        Some("NodePort") => {
            u.insert("services.nodeports".into(), Qty::count(ports.len() as i128));
        }
        Some("LoadBalancer") => {
            let n = if svc["spec"]["allocateLoadBalancerNodePorts"] == false {
                ports.iter().filter(|p| p["nodePort"].as_i64().unwrap_or(0) != 0).count()
            } else {
                ports.len()
            };
            u.insert("services.nodeports".into(), Qty::count(n as i128));
            u.insert("services.loadbalancers".into(), Qty::count(1));
        }
        _ => {}
    }
    u
}

/// What a PVC charges: itself and its requested storage.
pub fn pvc_usage(pvc: &Value) -> Usage {
    let mut u = Usage::from([("persistentvolumeclaims".to_string(), Qty::count(1))]);
    if let Some(q) = pvc["spec"]["resources"]["requests"]["storage"].as_str().and_then(parse) {
        u.insert("requests.storage".into(), q);
        if let Some(sc) = pvc["spec"]["storageClassName"].as_str() {
            u.insert(format!("{sc}.storageclass.storage.k8s.io/requests.storage"), q);
            u.insert(format!("{sc}.storageclass.storage.k8s.io/persistentvolumeclaims"), Qty::count(1));
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::format;
    use serde_json::json;

    fn f(u: &Usage, k: &str) -> String {
        u.get(k).map(|q| format(*q)).unwrap_or_default()
    }

    #[test]
    fn pod_sums_containers_and_takes_max_of_init() {
        let pod = json!({"spec": {
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}],
            "containers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}},
                {"resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi", "cpu": "1"}}}
            ],
            "overhead": {"cpu": "100m"}
        }});
        let u = pod_usage(&pod, 0);
        assert_eq!(f(&u, "requests.cpu"), "2100m");
        assert_eq!(f(&u, "cpu"), "2100m");
        assert_eq!(f(&u, "requests.memory"), "1536Mi");
        assert_eq!(f(&u, "limits.memory"), "3Gi");
        assert_eq!(f(&u, "limits.cpu"), "1100m");
        assert_eq!(f(&u, "pods"), "1");
    }

    #[test]
    fn sidecars_add_to_containers() {
        let pod = json!({"spec": {
            "initContainers": [
                {"restartPolicy": "Always", "resources": {"requests": {"cpu": "1"}}},
                {"resources": {"requests": {"cpu": "3"}}}
            ],
            "containers": [{"resources": {"requests": {"cpu": "1"}}}]
        }});
        // max(1 + 1 sidecar, 3 + 1 sidecar) = 4
        assert_eq!(f(&pod_resources(&pod, "requests"), "cpu"), "4");
    }

    #[test]
    fn terminal_and_expired_pods_only_count_as_objects() {
        let done = json!({"status": {"phase": "Succeeded"}, "spec": {"containers": []}});
        let u = pod_usage(&done, 0);
        assert_eq!(f(&u, "count/pods"), "1");
        assert!(!u.contains_key("pods"));
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30}});
        let t = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert!(pod_counts(&deleting, t + 10));
        assert!(!pod_counts(&deleting, t + 31));
        // Upstream needs both fields to stop charging a terminating pod.
        assert!(pod_counts(&json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}), t + 31));
    }

    #[test]
    fn scopes() {
        let be = json!({"spec": {"containers": [{}]}});
        let burst = json!({"spec": {"activeDeadlineSeconds": 5, "containers": [{"resources": {"limits": {"cpu": "1"}}}]}});
        assert!(pod_in_scopes(&be, &["BestEffort".into(), "NotTerminating".into()]));
        assert!(!pod_in_scopes(&be, &["NotBestEffort".into()]));
        assert!(pod_in_scopes(&burst, &["NotBestEffort".into(), "Terminating".into()]));
    }

    #[test]
    fn services_charge_node_ports_and_lbs() {
        let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(f(&service_usage(&np), "services.nodeports"), "2");
        let lb = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}]}});
        let u = service_usage(&lb);
        assert_eq!((f(&u, "services.nodeports"), f(&u, "services.loadbalancers")), ("1".into(), "1".into()));
    }
}
