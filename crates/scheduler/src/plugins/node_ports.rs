//! NodePorts: a hostPort can be used once per node, per protocol and host IP
//! (0.0.0.0 conflicts with every IP).

use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status};

pub struct NodePorts;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

fn conflicts(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.2 == b.2 && a.1 == b.1 && (a.0 == b.0 || a.0 == "0.0.0.0" || b.0 == "0.0.0.0")
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    /// Skip a pod without host ports: it conflicts with nothing.
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> Status {
        if pod.host_ports.is_empty() { Status::skip() } else { Status::success() }
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.host_ports.is_empty() {
            return Status::success();
        }
        let used = node.pods.iter().flat_map(|p| p.host_ports.iter());
        for u in used {
            if pod.host_ports.iter().any(|w| conflicts(w, u)) {
                return Status::unschedulable(self.name(), REASON);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn port_pod(name: &str, ip: &str, proto: &str, port: i32) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": proto}]}]}}))
    }

    #[test]
    fn table() {
        let st = CycleState::default();
        let cases = [
            (("0.0.0.0", "TCP", 80), ("127.0.0.1", "TCP", 80), false),
            (("10.0.0.1", "TCP", 80), ("10.0.0.2", "TCP", 80), true),
            (("10.0.0.1", "TCP", 80), ("10.0.0.1", "UDP", 80), true),
            (("10.0.0.1", "TCP", 80), ("10.0.0.1", "TCP", 81), true),
            (("", "TCP", 8080), ("10.0.0.1", "TCP", 8080), false),
        ];
        for (i, (existing, wanted, ok)) in cases.into_iter().enumerate() {
            let n = with_pods(node_res("n", "1", "1Gi", "10"), vec![port_pod("e", existing.0, existing.1, existing.2)]);
            let s = NodePorts.filter(&st, &port_pod("w", wanted.0, wanted.1, wanted.2), &n);
            assert_eq!(s.is_success(), ok, "case {i}");
        }
    }
}
