//! DefaultPreemption (PostFilter): when no node fits, find a node where
//! evicting lower-priority pods makes room, evicting as few and as
//! low-priority pods as possible (upstream's reprieve: try to keep the
//! highest-priority victims first). Picks the node by upstream's criteria
//! (lowest highest-victim priority, then lowest priority sum, then fewest
//! victims). PodDisruptionBudgets count as upstream counts them: victims
//! whose eviction a PDB would not allow are reprieved first, and the node
//! with the fewest such violations wins before any other criterion. The dry
//! run reuses the cycle's PreFilter state (no per-victim AddPod/RemovePod
//! updates).

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
    if let Some(nom) = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref())
        && let Some(n) = st.nodes.get(nom)
            && n.pods.iter().any(|p| p.pod.metadata.deletion_timestamp.is_some() && p.priority < pod.priority) {
                return Err("preemption: not eligible due to a terminating pod on the nominated node.".into());
            }
    let snap = st.snapshot();
    let mut reasons: Vec<String> = Vec::new();
    let mut best: Option<(Preemption, (usize, i32, i64, usize))> = None;
    let state = match pre_filter(plugins, pod, &snap) {
        Ok(s) => s,
        Err(_) => return Err(format!("preemption: 0/{n} nodes are available: {n} {NOT_HELPFUL}.", n = fit.num_nodes)),
    };
    for node in snap.nodes() {
        let helpful = fit.statuses.get(&node.name).is_some_and(|s| s.code == Code::Unschedulable);
        if !helpful {
            reasons.push(NOT_HELPFUL.into());
            continue;
        }
        match victims_on(plugins, &state, pod, node, st) {
            None => reasons.push(NO_VICTIMS.into()),
            Some((victims, violations)) => {
                let rank = (violations, victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN), victims.iter().map(|v| v.priority as i64).sum::<i64>(), victims.len());
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

/// Splits `pods` (most important first) into those whose eviction some PDB
/// would refuse and the rest, spending each PDB's disruptionsAllowed as it
/// goes (upstream's filterPodsWithPDBViolation).
fn split_by_pdb(pods: Vec<Arc<PodInfo>>, st: &State) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i32> = st.pdbs.values().map(|b| b.disruptions_allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let name = p.pod.metadata.name.as_deref().unwrap_or("");
        let mut violates = false;
        for (i, b) in st.pdbs.values().enumerate() {
            if b.namespace != p.namespace || !b.selects(&p.labels) || b.disrupted.contains(name) {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates { violating.push(p) } else { fine.push(p) }
    }
    (violating, fine)
}

/// The smallest set of lower-priority pods whose removal lets `pod` fit on
/// `node`, with how many of them a PDB would not allow to go.
fn victims_on(plugins: &[Box<dyn Plugin>], state: &crate::framework::CycleState, pod: &PodInfo, node: &NodeInfo, st: &State) -> Option<(Vec<Arc<PodInfo>>, usize)> {
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
    // Reprieve: put back the pods a PDB protects first, then the rest, the
    // most important first within each, keeping each that still leaves room.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let (violating, fine) = split_by_pdb(candidates, st);
    let mut victims = Vec::new();
    let mut violations = 0;
    for (v, protected) in violating.into_iter().map(|v| (v, true)).chain(fine.into_iter().map(|v| (v, false))) {
        trial.add_pod(v.clone());
        if !run_filters(plugins, state, pod, &trial).is_success() {
            trial.remove_pod(&v.key);
            violations += protected as usize;
            victims.push(v);
        }
    }
    Some((victims, violations))
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

    #[test]
    fn a_pdb_steers_preemption_to_unprotected_pods() {
        let mut st = State::new("default-scheduler");
        for n in ["a", "b"] {
            st.upsert_node(serde_json::from_value(json!({"metadata": {"name": n}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})).unwrap());
        }
        let labelled = |name: &str, app: &str, prio: i32| {
            let p = pod(json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "4"}}}]}}));
            Arc::new(PodInfo::new(p.pod, prio))
        };
        // Without a PDB, the lower-priority pod on a goes.
        st.assume(labelled("db", "db", 1), "a");
        st.assume(labelled("web", "web", 5), "b");
        let plugins = default_plugins();
        let high = prio_pod("high", "2", 100);
        let fit = schedule(&plugins, &mut st, &high).unwrap_err();
        assert_eq!(preempt(&plugins, &st, &high, &fit).unwrap().node, "a");
        // A PDB that allows no disruption of app=db: preemption takes web on b instead.
        st.upsert_pdb(serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "db"}}}, "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}})).unwrap());
        let plan = preempt(&plugins, &st, &high, &fit).unwrap();
        assert_eq!(plan.node, "b");
        assert_eq!(plan.victims.iter().map(|v| v.key.as_str()).collect::<Vec<_>>(), vec!["default/web"]);
        // When every candidate is protected, preemption still proceeds (PDBs are best effort), fewest violations first.
        st.upsert_pdb(serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}}, "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}})).unwrap());
        assert_eq!(preempt(&plugins, &st, &high, &fit).unwrap().victims.len(), 1);
        st.delete_pdb("default/db");
        assert_eq!(preempt(&plugins, &st, &high, &fit).unwrap().node, "a");
    }
}
