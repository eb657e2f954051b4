//! Pure DaemonSet rules (upstream's `daemon/util` and `nodeShouldRunDaemonPod`):
//! which nodes a daemon pod belongs on, the tolerations every daemon pod
//! gets, and pinning a pod to its node with node affinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration};

/// (should run, should continue running) on `node`, as upstream's NodeShouldRunDaemonPod.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != name) {
        return (false, false);
    }
    if !fits_affinity(spec, &name, labels) {
        return (false, false);
    }
    let tol = spec.tolerations.clone().unwrap_or_default();
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let untolerated = |effect: &str| taints.iter().any(|t| t.effect == effect && !tol.iter().any(|x| tolerates(x, t)));
    let no_execute = untolerated("NoExecute");
    (!no_execute && !untolerated("NoSchedule"), !no_execute)
}

fn fits_affinity(spec: &PodSpec, node: &str, labels: &BTreeMap<String, String>) -> bool {
    if let Some(sel) = &spec.node_selector && sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
        return false;
    }
    let req = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match req {
        None => true,
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node, labels)),
    }
}

fn requirement(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let vals = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| vals.contains(v)),
        "NotIn" => !value.is_some_and(|v| vals.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(b)) = (value.and_then(|v| v.parse::<i64>().ok()), vals.first().and_then(|b| b.parse::<i64>().ok())) else { return false };
            if r.operator == "Gt" { v > b } else { v < b }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node.to_string();
    exprs.iter().all(|r| requirement(r, labels.get(&r.key))) && fields.iter().all(|r| r.key == "metadata.name" && requirement(r, Some(&name)))
}

/// Upstream's ToleratesTaint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The tolerations upstream adds to every daemon pod, so daemons keep
/// running on (and get onto) nodes that are not ready, unreachable, under
/// pressure or cordoned.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let mut add = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tol = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in add {
        if !tol.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect) && t.operator.as_deref() == Some("Exists")) {
            tol.push(Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some(effect.into()), ..Default::default() });
        }
    }
}

/// Pin a pod to `node` the way upstream does: the required node affinity
/// becomes the single term `metadata.name In [node]`; the scheduler binds it.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement { key: "metadata.name".into(), operator: "In".into(), values: Some(vec![node.into()]) }]),
        match_expressions: None,
    };
    let aff = spec.affinity.get_or_insert_with(Affinity::default);
    let na = aff.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: vec![term] });
}

/// The node a daemon pod is for: its nodeName, else its pinned affinity.
pub fn pod_node(spec: &PodSpec) -> Option<String> {
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find(|r| r.key == "metadata.name" && r.operator == "In").and_then(|r| r.values.as_ref()?.first().cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn taints_selectors_and_affinity_decide() {
        let plain = node(json!({"metadata": {"name": "a", "labels": {"disk": "ssd"}}}));
        let tainted = node(json!({"metadata": {"name": "t"}, "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}}));
        let evicting = node(json!({"metadata": {"name": "e"}, "spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}));
        let mut spec = PodSpec::default();
        assert_eq!(should_run(&spec, &plain), (true, true));
        assert_eq!(should_run(&spec, &tainted), (false, true));
        assert_eq!(should_run(&spec, &evicting), (false, false));
        spec.tolerations = Some(vec![Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), ..Default::default() }]);
        assert_eq!(should_run(&spec, &tainted), (true, true));
        spec.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert_eq!(should_run(&spec, &plain), (true, true));
        assert_eq!(should_run(&spec, &tainted), (false, false));
        let mut s2 = PodSpec::default();
        pin_to_node(&mut s2, "a");
        assert_eq!(pod_node(&s2).as_deref(), Some("a"));
        assert!(should_run(&s2, &plain).0);
        let other = node(json!({"metadata": {"name": "b"}}));
        assert!(!should_run(&s2, &other).0);
    }

    #[test]
    fn default_tolerations_once() {
        let mut s = PodSpec { host_network: Some(true), ..Default::default() };
        add_default_tolerations(&mut s);
        add_default_tolerations(&mut s);
        let t = s.tolerations.unwrap();
        assert_eq!(t.len(), 7);
        assert!(t.iter().any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable") && t.effect.as_deref() == Some("NoExecute")));
    }
}
