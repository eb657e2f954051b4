//! PodTopologySpread: spread matching pods over topology domains.
//! DoNotSchedule constraints filter (skew = domain count + self − global
//! minimum must stay ≤ maxSkew); ScheduleAnyway constraints score (fewer
//! matching pods in the node's domain is better, weighted by log(domains+2)).
//! Cluster-level default constraints are not applied (no controllers own pods yet).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::helpers::{selector_matches, tolerated};
use super::node_affinity::required_matches;
use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status, MAX_NODE_SCORE};
use crate::pod_index::Namespaces;

pub struct PodTopologySpread;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

/// A constraint with its effective selector (matchLabelKeys folded in).
#[derive(Clone, Debug)]
pub struct Constraint {
    pub max_skew: i64,
    pub key: String,
    pub min_domains: i64,
    pub selector: Option<LabelSelector>,
    pub honor_affinity: bool,
    pub honor_taints: bool,
    pub self_match: bool,
}

fn constraints(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    let all: &[TopologySpreadConstraint] = pod.spec().topology_spread_constraints.as_deref().unwrap_or(&[]);
    all.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let mut selector = c.label_selector.clone();
            if let Some(sel) = selector.as_mut() {
                for k in c.match_label_keys.iter().flatten() {
                    if let Some(v) = pod.labels.get(k) {
                        sel.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement { key: k.clone(), operator: "In".into(), values: Some(vec![v.clone()]) });
                    }
                }
            }
            let self_match = selector.as_ref().is_some_and(|s| selector_matches(s, &pod.labels));
            Constraint {
                max_skew: c.max_skew as i64,
                key: c.topology_key.clone(),
                min_domains: c.min_domains.unwrap_or(1) as i64,
                selector,
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                self_match,
            }
        })
        .collect()
}

/// Whether a node takes part in counting for these constraints.
fn eligible(pod: &PodInfo, cs: &[Constraint], node: &NodeInfo) -> bool {
    if !cs.iter().all(|c| node.labels.contains_key(&c.key)) {
        return false;
    }
    if cs.iter().any(|c| c.honor_affinity) && !required_matches(pod, node) {
        return false;
    }
    if cs.iter().any(|c| c.honor_taints) {
        let tols = pod.spec().tolerations.as_deref().unwrap_or(&[]);
        if node.taints.iter().any(|t| (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tols, t)) {
            return false;
        }
    }
    true
}

/// Whether a node's eligibility comes down to having the constraints' one
/// topology key: no node selector or required node affinity to honor, no
/// taints to honor, and every constraint on the same key.
fn only_key_matters(pod: &PodInfo, cs: &[Constraint]) -> bool {
    let spec = pod.spec();
    let affinity = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref()).is_some();
    let same_key = cs.windows(2).all(|w| w[0].key == w[1].key);
    same_key && !cs.iter().any(|c| c.honor_taints || (c.honor_affinity && affinity))
}

fn count_matching(pod: &PodInfo, c: &Constraint, node: &NodeInfo) -> i64 {
    let Some(sel) = &c.selector else { return 0 };
    node.pods.iter().filter(|p| p.namespace == pod.namespace && p.pod.metadata.deletion_timestamp.is_none() && selector_matches(sel, &p.labels)).count() as i64
}

/// Per constraint: matching pods per domain value (every eligible domain present).
fn counts(pod: &PodInfo, cs: &[Constraint], snap: &Snapshot) -> Vec<BTreeMap<String, i64>> {
    let mut out = vec![BTreeMap::new(); cs.len()];
    let eligible_nodes = snap.nodes().iter().copied().filter(|n| eligible(pod, cs, n));
    let Some(index) = snap.index else {
        for n in eligible_nodes {
            for (i, c) in cs.iter().enumerate() {
                *domain_entry(&mut out[i], &n.labels[&c.key]) += count_matching(pod, c, n);
            }
        }
        return out;
    };
    // Every eligible domain starts at 0; then only the pods the selector
    // picks (through the index) are counted, on the eligible nodes. When
    // eligibility is just carrying the one topology key, the domains are
    // the key's values across the nodes (kept by the cache), with no walk
    // over every node.
    match snap.domains.filter(|_| only_key_matters(pod, cs)) {
        Some(domains) => {
            for (i, c) in cs.iter().enumerate() {
                for v in domains.values(&c.key) {
                    domain_entry(&mut out[i], v);
                }
            }
        }
        None => {
            for n in eligible_nodes {
                for (i, c) in cs.iter().enumerate() {
                    domain_entry(&mut out[i], &n.labels[&c.key]);
                }
            }
        }
    }
    for (i, c) in cs.iter().enumerate() {
        let Some(sel) = &c.selector else { continue };
        for p in index.matching(Namespaces::One(&pod.namespace), sel) {
            if p.pod.pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(n) = snap.node(&p.node).filter(|n| eligible(pod, cs, n)) {
                *domain_entry(&mut out[i], &n.labels[&c.key]) += 1;
            }
        }
    }
    out
}

/// The count of a domain, created at 0 (cloning the value only when new).
fn domain_entry<'m>(m: &'m mut BTreeMap<String, i64>, domain: &str) -> &'m mut i64 {
    if !m.contains_key(domain) {
        m.insert(domain.to_string(), 0);
    }
    m.get_mut(domain).unwrap()
}

pub struct PreFilterState {
    constraints: Vec<Constraint>,
    counts: Vec<BTreeMap<String, i64>>,
    /// Per constraint: the global minimum the skew is measured from
    /// (computed once per cycle, not once per node).
    minimums: Vec<i64>,
}

pub struct PreScoreState {
    constraints: Vec<Constraint>,
    counts: Vec<BTreeMap<String, i64>>,
    weights: Vec<f64>,
    /// Feasible nodes (by index) lacking a topology key: scored 0.
    ignored: HashSet<usize>,
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        let cs = constraints(pod, "DoNotSchedule");
        if cs.is_empty() {
            return Status::skip();
        }
        {
            let counts = counts(pod, &cs, snap);
            let minimums = cs
                .iter()
                .zip(&counts)
                .map(|(c, domains)| if (domains.len() as i64) < c.min_domains { 0 } else { domains.values().copied().min().unwrap_or(0) })
                .collect();
            state.topology_spread = Some(PreFilterState { constraints: cs, counts, minimums });
        }
        Status::success()
    }
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.topology_spread else { return Status::success() };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels.get(&c.key) else { return Status::unresolvable(self.name(), REASON_MISSING_LABEL) };
            let min = s.minimums[i];
            let here = s.counts[i].get(value).copied().unwrap_or(0) + c.self_match as i64;
            if here - min > c.max_skew {
                return Status::unschedulable(self.name(), REASON);
            }
        }
        Status::success()
    }
    fn weight(&self) -> i64 {
        2
    }
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, feasible: &[&NodeInfo], snap: &Snapshot) -> Status {
        let cs = constraints(pod, "ScheduleAnyway");
        if cs.is_empty() {
            return Status::skip();
        }
        let ignored: HashSet<usize> = feasible.iter().enumerate().filter(|(_, n)| !cs.iter().all(|c| n.labels.contains_key(&c.key))).map(|(i, _)| i).collect();
        let weights = cs
            .iter()
            .map(|c| {
                let domains: HashSet<&String> = feasible.iter().filter_map(|n| n.labels.get(&c.key)).collect();
                ((domains.len() + 2) as f64).ln()
            })
            .collect();
        let counts = counts(pod, &cs, snap);
        state.topology_spread_score = Some(PreScoreState { constraints: cs, counts, weights, ignored });
        Status::success()
    }
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = &state.topology_spread_score else { return 0 };
        let mut total = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.key) else { continue };
            let cnt = s.counts[i].get(v).copied().unwrap_or(0);
            total += cnt as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        total.round() as i64
    }
    fn normalize(&self, state: &CycleState, scores: &mut [i64]) {
        let Some(s) = &state.topology_spread_score else { return };
        let live = || scores.iter().enumerate().filter(|(i, _)| !s.ignored.contains(i)).map(|(_, v)| *v);
        let (min, max) = (live().min().unwrap_or(0), live().max().unwrap_or(0));
        for (i, v) in scores.iter_mut().enumerate() {
            *v = if s.ignored.contains(&i) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *v) / max
            };
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn zoned(name: &str, zone: Option<&str>, pods: usize) -> NodeInfo {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels["zone"] = json!(z);
        }
        let n = node(json!({"metadata": {"name": name, "labels": labels}, "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}));
        with_pods(n, (0..pods).map(|i| pod(json!({"metadata": {"name": format!("{name}-{i}"), "namespace": "default", "labels": {"app": "web"}}, "spec": {}}))).collect())
    }

    fn spread(when: &str, key: &str, skew: i32) -> PodInfo {
        pod(json!({"metadata": {"name": "new", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]}}))
    }

    #[test]
    fn filter_table() {
        // zone a: 2 pods, zone b: 1 pod, node c has no zone label.
        let nodes = [zoned("a1", Some("a"), 1), zoned("a2", Some("a"), 1), zoned("b1", Some("b"), 1), zoned("c1", None, 0)];
        let snap = Snapshot::of(nodes.iter().collect());
        let p = spread("DoNotSchedule", "zone", 1);
        let mut st = CycleState::default();
        assert!(PodTopologySpread.pre_filter(&mut st, &p, &snap).is_success());
        let got: Vec<Vec<String>> = nodes.iter().map(|n| PodTopologySpread.filter(&st, &p, n).reasons).collect();
        assert_eq!(got, vec![vec![REASON.to_string()], vec![REASON.to_string()], vec![], vec![REASON_MISSING_LABEL.to_string()]]);
        // maxSkew 2 admits zone a too.
        let p2 = spread("DoNotSchedule", "zone", 2);
        let mut st2 = CycleState::default();
        PodTopologySpread.pre_filter(&mut st2, &p2, &snap);
        assert!(PodTopologySpread.filter(&st2, &p2, &nodes[0]).is_success());
    }

    #[test]
    fn score_prefers_emptier_domains() {
        let nodes = [zoned("a", Some("a"), 3), zoned("b", Some("b"), 1), zoned("c", Some("c"), 0)];
        let snap = Snapshot::of(nodes.iter().collect());
        let p = spread("ScheduleAnyway", "kubernetes.io/hostname", 1);
        let mut st = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        PodTopologySpread.pre_score(&mut st, &p, &feasible, &snap);
        let mut s: Vec<i64> = nodes.iter().map(|n| PodTopologySpread.score(&st, &p, n)).collect();
        PodTopologySpread.normalize(&st, &mut s);
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        assert_eq!(s[2], 100);
    }
}
