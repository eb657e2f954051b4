//! NodeName: a pod naming a node (spec.nodeName) fits only that node.
//! (Pods with nodeName set are bound already and never queued; the plugin
//! matters for preemption checks and completeness.)

use crate::framework::{NodeInfo, Plugin, PodInfo, Status, CycleState};

pub struct NodeName;

pub const REASON: &str = "node(s) didn't match the requested node name";

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(n) if n != node.name => Status::unresolvable(self.name(), REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    #[test]
    fn table() {
        let n = node_res("n1", "1", "1Gi", "10");
        for (pod_node, ok) in [(None, true), (Some("n1"), true), (Some("n2"), false)] {
            let p = pod(json!({"spec": {"nodeName": pod_node}}));
            let s = NodeName.filter(&CycleState::default(), &p, &n);
            assert_eq!(s.is_success(), ok, "{pod_node:?}");
            if !ok {
                assert_eq!(s.reasons, vec![REASON]);
            }
        }
    }
}
