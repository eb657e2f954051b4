//! NodeAffinity (with NodeSelector): spec.nodeSelector and required node
//! affinity filter; preferred terms score by the sum of matching weights.

use super::helpers::term_matches;
use crate::framework::{default_normalize, CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status};

pub struct NodeAffinity;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// True if the node satisfies the pod's nodeSelector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let spec = pod.spec();
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| node.labels.get(k) != Some(v)) {
            return false;
        }
    let req = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match req {
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, &node.name, &node.labels)),
        None => true,
    }
}

/// The pod's preferred node affinity terms.
fn preferred(pod: &PodInfo) -> &[k8s_openapi::api::core::v1::PreferredSchedulingTerm] {
    let na = pod.spec().affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
    na.and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[])
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    /// Skip when the pod has no nodeSelector and no required terms: every
    /// node passes. (Required terms that are present but empty match no
    /// node, so they are not skipped.)
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> Status {
        let spec = pod.spec();
        let selector = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty());
        let required = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).is_some_and(|na| na.required_during_scheduling_ignored_during_execution.is_some());
        if selector || required { Status::success() } else { Status::skip() }
    }
    /// Skip without weighted preferred terms: every node scores 0.
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &[&NodeInfo], _: &Snapshot) -> Status {
        if preferred(pod).iter().any(|p| p.weight != 0) { Status::success() } else { Status::skip() }
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if required_matches(pod, node) { Status::success() } else { Status::unresolvable(self.name(), REASON) }
    }
    fn weight(&self) -> i64 {
        2
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        preferred(pod).iter().filter(|p| p.weight != 0 && term_matches(&p.preference, &node.name, &node.labels)).map(|p| p.weight as i64).sum()
    }
    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn labelled(name: &str, labels: serde_json::Value) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": labels}}))
    }

    #[test]
    fn filter_table() {
        let ssd = labelled("a", json!({"disk": "ssd", "gen": "5"}));
        let hdd = labelled("b", json!({"disk": "hdd"}));
        let req = |exprs: serde_json::Value| pod(json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}}));
        let cases = [(pod(json!({"spec": {"nodeSelector": {"disk": "ssd"}}})), true, false),
            (req(json!([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}])), true, false),
            (req(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])), false, true),
            (req(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])), true, false),
            (req(json!([{"key": "gen", "operator": "DoesNotExist"}])), false, true),
            (pod(json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}})), false, true),
            (pod(json!({"spec": {}})), true, true)];
        let st = CycleState::default();
        for (i, (p, on_ssd, on_hdd)) in cases.iter().enumerate() {
            assert_eq!(NodeAffinity.filter(&st, p, &ssd).is_success(), *on_ssd, "case {i} ssd");
            let s = NodeAffinity.filter(&st, p, &hdd);
            assert_eq!(s.is_success(), *on_hdd, "case {i} hdd");
            if !on_hdd {
                assert_eq!(s.reasons, vec![REASON]);
            }
        }
    }

    #[test]
    fn preferred_scores() {
        let nodes = [labelled("a", json!({"zone": "z1", "disk": "ssd"})), labelled("b", json!({"zone": "z1"})), labelled("c", json!({}))];
        let p = pod(json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}}));
        let st = CycleState::default();
        let mut s: Vec<i64> = nodes.iter().map(|n| NodeAffinity.score(&st, &p, n)).collect();
        assert_eq!(s, vec![40, 10, 0]);
        NodeAffinity.normalize(&st, &mut s);
        assert_eq!(s, vec![100, 25, 0]);
    }
}
