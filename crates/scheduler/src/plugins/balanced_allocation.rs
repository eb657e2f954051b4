//! NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory
//! utilisation (after placing the pod) are close to each other:
//! score = (1 - std(fractions)) * 100.

use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, MAX_NODE_SCORE};

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        // Best-effort pods are skipped (all nodes equal), as upstream's PreScore does.
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return 0;
        }
        let frac = |req: i64, alloc: i64| if alloc == 0 { 1.0 } else { (req as f64 / alloc as f64).min(1.0) };
        let cpu = frac(node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu);
        let mem = frac(node.requested.memory + pod.requests.memory, node.allocatable.memory);
        let std = ((cpu - mem) / 2.0).abs();
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;

    #[test]
    fn table() {
        let st = CycleState::default();
        // cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5 → std 0.125 → 87.
        assert_eq!(BalancedAllocation.score(&st, &pod_req("p", "3", "5000"), &node_res("n", "4", "10000", "10")), 87);
        // Perfectly balanced.
        assert_eq!(BalancedAllocation.score(&st, &pod_req("p", "2", "5000"), &node_res("n", "4", "10000", "10")), 100);
        // Over capacity is capped at 1: cpu 1.0, memory 0 → 50.
        assert_eq!(BalancedAllocation.score(&st, &pod_req("p", "8", "0"), &node_res("n", "4", "10000", "10")), 50);
    }
}
