//! NodeResourcesFit: the pod's requests (cpu, memory, ephemeral storage,
//! extended resources) and one pod slot must fit in what the node has left;
//! scoring is LeastAllocated over cpu and memory (weight 1 each).

use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, Status, MAX_NODE_SCORE};

pub struct NodeResourcesFit;

/// Every reason the pod does not fit, in upstream's order and wording.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut out = Vec::new();
    if node.requested.pods + 1 > node.allocatable.pods {
        out.push("Too many pods".to_string());
    }
    let (r, a, u) = (&pod.requests, &node.allocatable, &node.requested);
    if r.milli_cpu > 0 && r.milli_cpu > a.milli_cpu - u.milli_cpu {
        out.push("Insufficient cpu".into());
    }
    if r.memory > 0 && r.memory > a.memory - u.memory {
        out.push("Insufficient memory".into());
    }
    if r.ephemeral_storage > 0 && r.ephemeral_storage > a.ephemeral_storage - u.ephemeral_storage {
        out.push("Insufficient ephemeral-storage".into());
    }
    for (name, &q) in &r.scalar {
        if q > 0 && q > a.scalar.get(name).copied().unwrap_or(0) - u.scalar.get(name).copied().unwrap_or(0) {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

/// (allocatable - requested) / allocatable, scaled to 0..=100.
fn least_allocated(requested: i64, allocatable: i64) -> i64 {
    if allocatable == 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() {
            return Status::success();
        }
        Status { code: crate::framework::Code::Unschedulable, reasons, plugin: self.name() }
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let cpu = least_allocated(node.non_zero_requested.milli_cpu + pod.non_zero.milli_cpu, node.allocatable.milli_cpu);
        let mem = least_allocated(node.non_zero_requested.memory + pod.non_zero.memory, node.allocatable.memory);
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn filter_table() {
        let st = CycleState::default();
        let n = with_pods(node_res("n", "4", "8Gi", "3"), vec![pod_req("a", "3", "1Gi"), pod_req("b", "500m", "6Gi")]);
        let cases: Vec<(PodInfo, Vec<&str>)> = vec![
            (pod_req("ok", "500m", "1Gi"), vec![]),
            (pod_req("cpu", "501m", "1Gi"), vec!["Insufficient cpu"]),
            (pod_req("both", "1", "2Gi"), vec!["Insufficient cpu", "Insufficient memory"]),
            (pod(json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"example.com/gpu": "1"}}}]}})), vec!["Insufficient example.com/gpu"]),
            // Init containers count by their maximum, not their sum.
            (pod(json!({"spec": {"initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "500m"}}}],
                "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]}})), vec![]),
            (pod(json!({"spec": {"initContainers": [{"name": "s", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}}],
                "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "300m"}}}]}})), vec!["Insufficient cpu"]),
        ];
        for (p, want) in cases {
            let s = NodeResourcesFit.filter(&st, &p, &n);
            assert_eq!(s.reasons, want, "{}", p.key);
        }
        let full = with_pods(node_res("n", "4", "8Gi", "1"), vec![pod_req("a", "0", "0")]);
        assert_eq!(NodeResourcesFit.filter(&st, &pod_req("p", "1", "1Gi"), &full).reasons, vec!["Too many pods"]);
    }

    #[test]
    fn least_allocated_scores() {
        let st = CycleState::default();
        // Upstream's example: node 4000m/10000 with a 3000m/5000 pod → (25 + 50) / 2 = 37.
        let n = node_res("n", "4", "10000", "10");
        assert_eq!(NodeResourcesFit.score(&st, &pod_req("p", "3", "5000"), &n), 37);
        let busy = with_pods(node_res("m", "4", "10000", "10"), vec![pod_req("x", "1", "5000")]);
        // cpu (4000-2000)/4000 = 50, memory (10000-5000)/10000 = 50 (an explicit 0 request stays 0).
        assert_eq!(NodeResourcesFit.score(&st, &pod_req("p", "1", "0"), &busy), 50);
    }
}
