//! NodeUnschedulable: cordoned nodes (spec.unschedulable) take no new pods,
//! unless the pod tolerates the node.kubernetes.io/unschedulable:NoSchedule taint.

use k8s_openapi::api::core::v1::Taint;

use super::helpers::tolerated;
use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, Status};

pub struct NodeUnschedulable;

pub const REASON: &str = "node(s) were unschedulable";

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if tolerated(pod.spec().tolerations.as_deref().unwrap_or(&[]), &taint) {
            return Status::success();
        }
        Status::unresolvable(self.name(), REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn table() {
        let cordoned = node(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}}));
        let open = node(json!({"metadata": {"name": "n"}}));
        let plain = pod(json!({"spec": {}}));
        let tol = pod(json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
        let st = CycleState::default();
        assert!(NodeUnschedulable.filter(&st, &plain, &open).is_success());
        assert_eq!(NodeUnschedulable.filter(&st, &plain, &cordoned).reasons, vec![REASON]);
        assert!(NodeUnschedulable.filter(&st, &tol, &cordoned).is_success());
    }
}
