//! The default profile's plugins, one file each, in upstream's order (filter
//! order matters: a node's reported reason is its first failing filter).

pub mod balanced_allocation;
pub mod helpers;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use crate::framework::Plugin;

/// Upstream's default profile (minus volume and image plugins, which have
/// nothing to act on here). Weights: TaintToleration 3, NodeAffinity 2,
/// PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
/// NodeResourcesBalancedAllocation 1.
pub fn default_plugins() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(pod_topology_spread::PodTopologySpread),
        Box::new(inter_pod_affinity::InterPodAffinity),
        Box::new(balanced_allocation::BalancedAllocation),
    ]
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use crate::framework::{NodeInfo, PodInfo};

    pub fn pod(v: Value) -> PodInfo {
        let mut v = v;
        if v.get("metadata").is_none() {
            v["metadata"] = json!({"name": "p", "namespace": "default"});
        }
        if v["spec"].get("containers").is_none() {
            v["spec"]["containers"] = json!([{"name": "c", "image": "x"}]);
        }
        PodInfo::new(serde_json::from_value(v).unwrap(), 0)
    }

    /// A pod with cpu/memory requests.
    pub fn pod_req(name: &str, cpu: &str, mem: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
    }

    pub fn node(v: Value) -> NodeInfo {
        let mut n = NodeInfo::default();
        n.set_node(serde_json::from_value(v).unwrap());
        n
    }

    pub fn node_res(name: &str, cpu: &str, mem: &str, pods: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods}}}))
    }

    pub fn with_pods(mut n: NodeInfo, pods: Vec<PodInfo>) -> NodeInfo {
        for p in pods {
            n.add_pod(Arc::new(p));
        }
        n
    }
}
