//! DefaultPreemption (PostFilter): when no node fits, find a node where
//! evicting lower-priority pods makes room, evicting as few and as
//! low-priority pods as possible (upstream's reprieve: try to keep the
//! highest-priority victims first). Picks the node by upstream's criteria
//! (lowest highest-victim priority, then lowest priority sum, then fewest
//! victims). PodDisruptionBudgets are not considered yet; the dry run reuses
//! the cycle's PreFilter state (no per-victim AddPod/RemovePod updates).

use std::sync::Arc;

use crate::cache::State;
use crate::framework::{Code, NodeInfo, Plugin, PodInfo};
use crate::schedule::{histogram, pre_filter, run_filters, FitError};

pub struct Preemption {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Ok(plan) or Err(the "preemption: …" message for the FitError).
pub fn preempt(plugins: &[Box<dyn Plugin>], st: &State, pod: &PodInfo, fit: &FitError) -> Result<Preemption, String> {
    if pod.spec().preemption_policy.as_deref() == Some("Never") {
        return Err("preemption: not eligible due to preemptionPolicy=Never.".into());
    }
    // Victims of an earlier preemption still terminating on the nominated node: wait for them.
    if let Some(nom) = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()) {
        if let Some(n) = st.nodes.get(nom) {
            if n.pods.iter().any(|p| p.pod.metadata.deletion_timestamp.is_some() && p.priority < pod.priority) {
                return Err("preemption: not eligible due to a terminating pod on the nominated node.".into());
            }
        }
    }
    let snap = st.snapshot();
    let mut reasons: Vec<String> = Vec::new();
    let mut best: Option<(Preemption, (i32, i64, usize))> = None;
    let state = match pre_filter(plugins, pod, &snap) {
        Ok(s) => s,
        Err(_) => return Err(format!("preemption: 0/{n} nodes are available: {n} {NOT_HELPFUL}.", n = fit.num_nodes)),
    };
    for node in &snap.nodes {
        let helpful = fit.statuses.get(&node.name).is_some_and(|s| s.code == Code::Unschedulable);
        if !helpful {
            reasons.push(NOT_HELPFUL.into());
            continue;
        }
        match victims_on(plugins, &state, pod, node) {
            None => reasons.push(NO_VICTIMS.into()),
            Some(victims) => {
                let rank = (victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN), victims.iter().map(|v| v.priority as i64).sum::<i64>(), victims.len());
                if best.as_ref().is_none_or(|(_, r)| rank < *r) {
                    best = Some((Preemption { node: node.name.clone(), victims }, rank));
                }
            }
        }
    }
    match best {
        Some((p, _)) => Ok(p),
        None => Err(format!("preemption: 0/{} nodes are available: {}.", fit.num_nodes, histogram(reasons.iter()))),
    }
}

/// The smallest set of lower-priority pods whose removal lets `pod` fit on `node`.
fn victims_on(plugins: &[Box<dyn Plugin>], state: &crate::framework::CycleState, pod: &PodInfo, node: &NodeInfo) -> Option<Vec<Arc<PodInfo>>> {
    let mut candidates: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if candidates.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for v in &candidates {
        trial.remove_pod(&v.key);
    }
    if !run_filters(plugins, state, pod, &trial).is_success() {
        return None;
    }
    // Reprieve: put back the most important pods first, keeping each that still leaves room.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let mut victims = Vec::new();
    for v in candidates {
        trial.add_pod(v.clone());
        if !run_filters(plugins, state, pod, &trial).is_success() {
            trial.remove_pod(&v.key);
            victims.push(v);
        }
    }
    Some(victims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_plugins;
    use crate::plugins::testutil::*;
    use crate::schedule::schedule;
    use serde_json::json;

    fn prio_pod(name: &str, cpu: &str, prio: i32) -> Arc<PodInfo> {
        let p = pod_req(name, cpu, "0");
        Arc::new(PodInfo::new(p.pod, prio))
    }

    #[test]
    fn evicts_fewest_lowest_priority() {
        let mut st = State::new("default-scheduler");
        for n in ["a", "b"] {
            st.upsert_node(serde_json::from_value(json!({"metadata": {"name": n}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})).unwrap());
        }
        // a: two 2-cpu pods at priority 10; b: one 4-cpu pod at priority 5 and... it is cheaper to evict from b.
        st.assume(prio_pod("a1", "2", 10), "a");
        st.assume(prio_pod("a2", "2", 10), "a");
        st.assume(prio_pod("b1", "3", 5), "b");
        st.assume(prio_pod("b2", "1", 1), "b");
        let plugins = default_plugins();
        let high = prio_pod("high", "2", 100);
        let fit = schedule(&plugins, &mut st, &high).unwrap_err();
        let plan = preempt(&plugins, &st, &high, &fit).unwrap();
        assert_eq!(plan.node, "b");
        // Evicting b1 (3 cpu) alone leaves 3 free; b2 (priority 1) is reprieved? No: b1 must go; b2 stays.
        let names: Vec<&str> = plan.victims.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(names, vec!["default/b1"]);
        // Nothing of lower priority: no victims.
        let low = prio_pod("low", "2", 0);
        let fit = schedule(&plugins, &mut st, &low).unwrap_err();
        assert_eq!(preempt(&plugins, &st, &low, &fit).err().unwrap(), "preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.");
    }
}
