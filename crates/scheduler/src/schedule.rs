//! One scheduling cycle's algorithm (upstream's schedulePod): PreFilter,
//! Filter over an adaptive share of the nodes starting round-robin, then
//! PreScore/Score/Normalize weighted per plugin, and the best node (ties
//! broken at random). Failures become a FitError with upstream's message.

use std::collections::BTreeMap;

use crate::cache::State;
use crate::framework::{Code, CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status};

/// Why no node fits.
#[derive(Debug, Default)]
pub struct FitError {
    pub num_nodes: usize,
    /// The first failing filter's status, per node.
    pub statuses: BTreeMap<String, Status>,
    /// A PreFilter rejection (applies to every node).
    pub pre_filter: Option<Status>,
}

impl FitError {
    /// Plugins that rejected the pod (for queueing on relevant events).
    pub fn plugins(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.statuses.values().chain(self.pre_filter.iter()).map(|s| s.plugin).collect();
        v.sort();
        v.dedup();
        v
    }

    /// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) …." plus the
    /// preemption part, exactly as upstream's FitError.Error() words it.
    pub fn message(&self, post_filter: Option<&str>) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_nodes);
        if let Some(pf) = &self.pre_filter {
            msg += &format!(" {}.", pf.reasons.join(", "));
        } else {
            let reasons: Vec<&String> = self.statuses.values().flat_map(|s| s.reasons.iter()).collect();
            if !reasons.is_empty() {
                msg += &format!(" {}.", histogram(reasons));
            }
        }
        if let Some(p) = post_filter {
            msg += &format!(" {p}");
        }
        msg
    }
}

/// "N reason" per distinct reason, sorted as strings, comma-separated.
pub fn histogram<'a>(reasons: impl IntoIterator<Item = &'a String>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    parts.join(", ")
}

/// Upstream's numFeasibleNodesToFind with percentageOfNodesToScore unset.
pub fn nodes_to_find(all: usize) -> usize {
    const MIN: usize = 100;
    if all < MIN {
        return all;
    }
    let pct = (50i64 - all as i64 / 125).max(5) as usize;
    (all * pct / 100).max(MIN)
}

pub fn run_filters(plugins: &[Box<dyn Plugin>], state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
    for (i, p) in plugins.iter().enumerate() {
        if state.skip_filter & (1 << i) != 0 {
            continue;
        }
        let s = p.filter(state, pod, node);
        if !s.is_success() {
            return s;
        }
    }
    Status::success()
}

pub fn pre_filter(plugins: &[Box<dyn Plugin>], pod: &PodInfo, snap: &Snapshot) -> Result<CycleState, Status> {
    debug_assert!(plugins.len() <= 64, "skip sets are 64-bit masks");
    let mut state = CycleState::default();
    for (i, p) in plugins.iter().enumerate() {
        let s = p.pre_filter(&mut state, pod, snap);
        match s.code {
            Code::Success => {}
            Code::Skip => state.skip_filter |= 1 << i,
            _ => return Err(s),
        }
    }
    Ok(state)
}

/// Picks a node for `pod`, or says why none fits.
pub fn schedule(plugins: &[Box<dyn Plugin>], st: &mut State, pod: &PodInfo) -> Result<String, FitError> {
    let snap = st.snapshot();
    let all = snap.len();
    let mut fit = FitError { num_nodes: all, ..Default::default() };
    if all == 0 {
        return Err(fit);
    }
    let mut state = match pre_filter(plugins, pod, &snap) {
        Ok(s) => s,
        Err(s) => {
            fit.pre_filter = Some(s);
            return Err(fit);
        }
    };
    let want = nodes_to_find(all);
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want);
    // Round robin from where the last cycle stopped; the next starts after
    // the last node this one looked at.
    let mut nodes = snap.round_robin(&st.next_start);
    for node in nodes.by_ref() {
        let s = run_filters(plugins, &state, pod, node);
        if s.is_success() {
            feasible.push(node);
            if feasible.len() >= want {
                break;
            }
        } else {
            fit.statuses.insert(node.name.clone(), s);
        }
    }
    // None: every node was looked at, so the next cycle starts where this one did.
    let next = nodes.next().map(|n| n.name.clone());
    drop(nodes);
    let chosen = match feasible.len() {
        0 => None,
        1 => Some(feasible[0].name.clone()),
        _ => Some(select(plugins, &mut state, pod, &feasible, &snap)),
    };
    drop(feasible);
    drop(snap);
    if let Some(next) = next {
        st.next_start = next;
    }
    chosen.ok_or(fit)
}

/// Weighted, normalized scores; the highest wins, ties at random (reservoir sampling).
fn select(plugins: &[Box<dyn Plugin>], state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], snap: &Snapshot) -> String {
    let scores = score(plugins, state, pod, feasible, snap);
    let mut best = 0;
    let mut ties = 0u32;
    for i in 0..feasible.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rand::random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    feasible[best].name.clone()
}

pub fn score(plugins: &[Box<dyn Plugin>], state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], snap: &Snapshot) -> Vec<i64> {
    let mut total = vec![0i64; feasible.len()];
    for (i, p) in plugins.iter().enumerate().filter(|(_, p)| p.weight() > 0) {
        if p.pre_score(state, pod, feasible, snap).code == Code::Skip {
            state.skip_score |= 1 << i;
        }
    }
    for (_, p) in plugins.iter().enumerate().filter(|(i, p)| p.weight() > 0 && state.skip_score & (1 << i) == 0) {
        let mut s: Vec<i64> = feasible.iter().map(|n| p.score(state, pod, n)).collect();
        p.normalize(state, &mut s);
        for (t, v) in total.iter_mut().zip(s) {
            *t += v * p.weight();
        }
    }
    total
}

/// True if every status is UnschedulableAndUnresolvable-or-success (preemption cannot help).
pub fn unresolvable(s: &Status) -> bool {
    s.code == Code::UnschedulableAndUnresolvable
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_plugins;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn state_with(nodes: Vec<NodeInfo>) -> State {
        let mut st = State::new("default-scheduler");
        for n in nodes {
            st.upsert_node((*n.node.clone().unwrap()).clone());
        }
        st
    }

    #[test]
    fn message_matches_upstream() {
        let cp = node(json!({"metadata": {"name": "cp"}, "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}));
        let cp2 = node(json!({"metadata": {"name": "cp2"}, "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}));
        let small = node_res("w", "1", "8Gi", "110");
        let mut st = state_with(vec![cp, cp2, small]);
        let err = schedule(&default_plugins(), &mut st, &pod_req("big", "2", "1Gi")).unwrap_err();
        assert_eq!(
            err.message(Some("preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        assert_eq!(err.plugins(), vec!["NodeResourcesFit", "TaintToleration"]);
    }

    #[test]
    fn least_allocated_spreads_pods() {
        let mut st = state_with(vec![node_res("a", "4", "8Gi", "110"), node_res("b", "4", "8Gi", "110")]);
        let plugins = default_plugins();
        let mut placed = vec![];
        for i in 0..4 {
            let p = std::sync::Arc::new(pod_req(&format!("p{i}"), "1", "1Gi"));
            let n = schedule(&plugins, &mut st, &p).unwrap();
            st.assume(p, &n);
            placed.push(n);
        }
        placed.sort();
        assert_eq!(placed, vec!["a", "a", "b", "b"]);
    }

    #[test]
    fn plugins_with_nothing_to_check_for_a_pod_are_skipped_and_the_rest_still_filter() {
        let plugins = default_plugins();
        let names = |mask: u64| -> Vec<&str> {
            let mut v: Vec<&str> = plugins.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, p)| p.name()).collect();
            v.sort();
            v
        };
        let mut st = state_with(vec![node_res("a", "4", "8Gi", "110"), node(json!({"metadata": {"name": "b", "labels": {"disk": "ssd"}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))]);
        // A plain pod: four filters and three scores have nothing to check.
        let plain = pod_req("plain", "1", "1Gi");
        let mut cs = pre_filter(&plugins, &plain, &st.snapshot()).unwrap();
        assert_eq!(names(cs.skip_filter), ["InterPodAffinity", "NodeAffinity", "NodePorts", "PodTopologySpread"]);
        let snap = st.snapshot();
        let nodes = snap.nodes().to_vec();
        score(&plugins, &mut cs, &plain, &nodes, &snap);
        assert_eq!(names(cs.skip_score), ["InterPodAffinity", "NodeAffinity", "PodTopologySpread"]);
        drop(snap);
        // A nodeSelector, a host port and a preferred term: those plugins run, and still decide.
        let picky = pod(json!({"metadata": {"name": "picky", "namespace": "default"}, "spec": {"nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}},
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}}));
        let mut cs = pre_filter(&plugins, &picky, &st.snapshot()).unwrap();
        assert_eq!(names(cs.skip_filter), ["InterPodAffinity", "PodTopologySpread"]);
        let snap = st.snapshot();
        let nodes = snap.nodes().to_vec();
        score(&plugins, &mut cs, &picky, &nodes, &snap);
        assert_eq!(names(cs.skip_score), ["InterPodAffinity", "PodTopologySpread"]);
        drop(snap);
        assert_eq!(schedule(&plugins, &mut st, &picky).unwrap(), "b");
        // Empty required terms match no node: not skipped, and nothing fits.
        let none = pod(json!({"metadata": {"name": "none", "namespace": "default"}, "spec": {"affinity": {"nodeAffinity":
            {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}, "containers": [{"name": "c"}]}}));
        assert_eq!(schedule(&plugins, &mut st, &none).unwrap_err().statuses.len(), 2);
    }

    #[test]
    fn each_cycle_starts_after_the_last_node_the_previous_looked_at() {
        // 150 nodes: a cycle stops after 100 feasible ones (upstream's minimum).
        let mut st = state_with((0..150).map(|i| node_res(&format!("n{i:03}"), "4", "8Gi", "110")).collect());
        let plugins = default_plugins();
        schedule(&plugins, &mut st, &pod_req("p0", "1", "1Gi")).unwrap();
        assert_eq!(st.next_start, "n100");
        // The second wraps around: n100..n149, then n000..n049.
        schedule(&plugins, &mut st, &pod_req("p1", "1", "1Gi")).unwrap();
        assert_eq!(st.next_start, "n050");
        // Nodes that do not fit are looked at too, and counted in the message.
        let err = schedule(&plugins, &mut st, &pod_req("big", "8", "1Gi")).unwrap_err();
        assert_eq!(err.num_nodes, 150);
        assert_eq!(err.statuses.len(), 150);
        assert_eq!(st.next_start, "n050", "a cycle that looked at every node leaves the start where it was");
        // A deleted node is no longer counted or visited.
        st.delete_node("n050");
        let err = schedule(&plugins, &mut st, &pod_req("big", "8", "1Gi")).unwrap_err();
        assert_eq!((err.num_nodes, err.statuses.len()), (149, 149));
    }

    #[test]
    fn adaptive_share_of_nodes() {
        assert_eq!(nodes_to_find(50), 50);
        assert_eq!(nodes_to_find(1000), 420);
        assert_eq!(nodes_to_find(5000), 500);
        assert_eq!(nodes_to_find(50000), 2500);
    }
}
