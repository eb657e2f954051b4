//! InterPodAffinity: required pod affinity / anti-affinity of the incoming
//! pod, and required anti-affinity of existing pods, per topology domain;
//! preferred terms (both ways) and existing pods' required affinity
//! (hardPodAffinityWeight 1) score. namespaceSelector other than `{}` (all
//! namespaces) is not supported yet: such terms use their namespaces list.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use super::helpers::selector_matches;
use crate::framework::{CycleState, NodeInfo, Plugin, PodInfo, Snapshot, Status, MAX_NODE_SCORE};
use crate::pod_index::Namespaces;

pub struct InterPodAffinity;

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// The namespaces `term` (declared by a pod in `owner_ns`) applies to: an
/// empty namespaceSelector means all, else its namespaces list, else the
/// owner's namespace.
fn term_namespaces<'a>(term: &'a PodAffinityTerm, owner_ns: &'a str) -> Namespaces<'a> {
    match (&term.namespaces, &term.namespace_selector) {
        (_, Some(sel)) if sel.match_labels.as_ref().is_none_or(|m| m.is_empty()) && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty()) => Namespaces::All,
        (Some(list), _) if !list.is_empty() => Namespaces::List(list),
        _ => Namespaces::One(owner_ns),
    }
}

/// Does `term` (declared by a pod in namespace `owner_ns`) select `target`?
fn term_selects(term: &PodAffinityTerm, owner_ns: &str, target: &PodInfo) -> bool {
    let ns_ok = match term_namespaces(term, owner_ns) {
        Namespaces::All => true,
        Namespaces::List(l) => l.contains(&target.namespace),
        Namespaces::One(n) => target.namespace == n,
    };
    ns_ok && term.label_selector.as_ref().is_some_and(|s| selector_matches(s, &target.labels))
}

/// Calls `f` with the node of every placed pod `term` selects: through the
/// index when the cycle has one (only candidate pods), else by scanning.
fn for_selected<'a>(snap: &Snapshot<'a>, term: &PodAffinityTerm, owner_ns: &str, mut f: impl FnMut(&'a NodeInfo, &PodInfo)) {
    match (snap.index, &term.label_selector) {
        (_, None) => {}
        (Some(ix), Some(sel)) => {
            for p in ix.matching(term_namespaces(term, owner_ns), sel) {
                if let Some(n) = snap.node(&p.node) {
                    f(n, &p.pod);
                }
            }
        }
        (None, Some(_)) => {
            for n in snap.nodes() {
                for e in &n.pods {
                    if term_selects(term, owner_ns, e) {
                        f(n, e);
                    }
                }
            }
        }
    }
}

/// Calls `f` for every placed pod (with its node) that declares terms which
/// may select `pod`: through the term index when the cycle has one (only
/// pods with a term requiring one of `pod`'s labels, or none in particular),
/// else every pod with affinity terms.
fn for_pods_with_terms<'a>(snap: &Snapshot<'a>, pod: &PodInfo, mut f: impl FnMut(&'a NodeInfo, &PodInfo)) {
    match snap.terms {
        Some(ix) => {
            for p in ix.candidates(&pod.labels) {
                if let Some(n) = snap.node(&p.node) {
                    f(n, &p.pod);
                }
            }
        }
        None => {
            for n in snap.nodes() {
                for e in &n.pods_with_affinity {
                    f(n, e);
                }
            }
        }
    }
}

/// Counts per topology domain: topology key → label value → count. Nested
/// (not keyed by the pair) so that a lookup by a node's labels borrows them
/// instead of cloning two strings per node and term.
type Counts = HashMap<String, HashMap<String, i64>>;

fn count_at(m: &Counts, key: &str, value: &str) -> i64 {
    m.get(key).and_then(|d| d.get(value)).copied().unwrap_or(0)
}

/// The count for the node's own domain of `key` (0 without the label).
fn count_on(m: &Counts, node: &NodeInfo, key: &str) -> i64 {
    node.labels.get(key).map_or(0, |v| count_at(m, key, v))
}

fn required_terms(p: &PodInfo) -> (&[PodAffinityTerm], &[PodAffinityTerm]) {
    let a = p.spec().affinity.as_ref();
    let aff = a.and_then(|a| a.pod_affinity.as_ref()).and_then(|x| x.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]);
    let anti = a.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|x| x.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]);
    (aff, anti)
}

fn add(m: &mut Counts, node: &NodeInfo, key: &str, by: i64) {
    if let Some(v) = node.labels.get(key) {
        let domains = match m.get_mut(key) {
            Some(d) => d,
            None => m.entry(key.to_string()).or_default(),
        };
        match domains.get_mut(v) {
            Some(c) => *c += by,
            None => {
                domains.insert(v.clone(), by);
            }
        }
    }
}

pub struct PreFilterState {
    existing_anti: Counts,
    affinity: Counts,
    anti: Counts,
    /// The pod matches all of its own affinity terms (lets the first pod of a group in).
    self_match: bool,
}

pub struct PreScoreState {
    scores: Counts,
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        let (aff, anti) = required_terms(pod);
        let mut s = PreFilterState { existing_anti: Counts::new(), affinity: Counts::new(), anti: Counts::new(), self_match: aff.iter().all(|t| term_selects(t, &pod.namespace, pod)) };
        // Existing pods' required anti-affinity: only pods with terms can have any.
        for_pods_with_terms(snap, pod, |node, e| {
            for t in required_terms(e).1 {
                if term_selects(t, &e.namespace, pod) {
                    add(&mut s.existing_anti, node, &t.topology_key, 1);
                }
            }
        });
        // A pod counts for affinity when it matches every term.
        if let Some((first, rest)) = aff.split_first() {
            for_selected(snap, first, &pod.namespace, |n, e| {
                if rest.iter().all(|t| term_selects(t, &pod.namespace, e)) {
                    for t in aff {
                        add(&mut s.affinity, n, &t.topology_key, 1);
                    }
                }
            });
        }
        for t in anti {
            for_selected(snap, t, &pod.namespace, |n, _| add(&mut s.anti, n, &t.topology_key, 1));
        }
        // No terms of its own and no placed pod's anti-affinity against it:
        // every node passes, so the cycle need not ask.
        let skip = aff.is_empty() && anti.is_empty() && s.existing_anti.is_empty();
        state.inter_pod_affinity = Some(s);
        if skip { Status::skip() } else { Status::success() }
    }
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.inter_pod_affinity else { return Status::success() };
        let (aff, anti) = required_terms(pod);
        let has = |m: &Counts, k: &str| count_on(m, node, k) > 0;
        if !aff.iter().all(|t| has(&s.affinity, &t.topology_key)) {
            // No pod anywhere matches yet: the pod may go first if it matches its own terms.
            let first = s.affinity.is_empty() && s.self_match && aff.iter().all(|t| node.labels.contains_key(&t.topology_key));
            if !first {
                return Status::unresolvable(self.name(), REASON_AFFINITY);
            }
        }
        if anti.iter().any(|t| has(&s.anti, &t.topology_key)) {
            return Status::unschedulable(self.name(), REASON_ANTI);
        }
        if s.existing_anti.keys().any(|k| count_on(&s.existing_anti, node, k) > 0) {
            return Status::unschedulable(self.name(), REASON_EXISTING_ANTI);
        }
        Status::success()
    }
    fn weight(&self) -> i64 {
        2
    }
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _feasible: &[&NodeInfo], snap: &Snapshot) -> Status {
        let a = pod.spec().affinity.as_ref();
        let pref_aff = a.and_then(|a| a.pod_affinity.as_ref()).and_then(|x| x.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]);
        let pref_anti = a.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|x| x.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]);
        let mut scores = Counts::new();
        for w in pref_aff {
            let t = &w.pod_affinity_term;
            for_selected(snap, t, &pod.namespace, |n, _| add(&mut scores, n, &t.topology_key, w.weight as i64));
        }
        for w in pref_anti {
            let t = &w.pod_affinity_term;
            for_selected(snap, t, &pod.namespace, |n, _| add(&mut scores, n, &t.topology_key, -(w.weight as i64)));
        }
        // Existing pods' terms toward this pod (hardPodAffinityWeight 1 for required affinity).
        for_pods_with_terms(snap, pod, |node, e| {
            let ea = e.spec().affinity.as_ref();
            for t in required_terms(e).0 {
                if term_selects(t, &e.namespace, pod) {
                    add(&mut scores, node, &t.topology_key, 1);
                }
            }
            for w in ea.and_then(|a| a.pod_affinity.as_ref()).and_then(|x| x.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]) {
                if term_selects(&w.pod_affinity_term, &e.namespace, pod) {
                    add(&mut scores, node, &w.pod_affinity_term.topology_key, w.weight as i64);
                }
            }
            for w in ea.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|x| x.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or(&[]) {
                if term_selects(&w.pod_affinity_term, &e.namespace, pod) {
                    add(&mut scores, node, &w.pod_affinity_term.topology_key, -(w.weight as i64));
                }
            }
        });
        // Nothing counted anywhere: every node would score the same.
        let skip = scores.is_empty();
        state.inter_pod_affinity_score = Some(PreScoreState { scores });
        if skip { Status::skip() } else { Status::success() }
    }
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = &state.inter_pod_affinity_score else { return 0 };
        s.scores.keys().map(|k| count_on(&s.scores, node, k)).sum()
    }
    fn normalize(&self, _state: &CycleState, scores: &mut [i64]) {
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        for v in scores.iter_mut() {
            *v = if max > min { MAX_NODE_SCORE * (*v - min) / (max - min) } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use serde_json::json;

    fn zoned(name: &str, zone: &str, pods: Vec<PodInfo>) -> NodeInfo {
        with_pods(node(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}}})), pods)
    }
    fn labelled(name: &str, app: &str, affinity: serde_json::Value) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "spec": {"affinity": affinity}}))
    }
    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn run(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Vec<String>> {
        let snap = Snapshot::of(nodes.iter().collect());
        let mut st = CycleState::default();
        InterPodAffinity.pre_filter(&mut st, p, &snap);
        nodes.iter().map(|n| InterPodAffinity.filter(&st, p, n).reasons).collect()
    }

    #[test]
    fn filter_table() {
        let nodes = vec![zoned("a", "z1", vec![labelled("db", "db", json!({}))]), zoned("b", "z1", vec![]), zoned("c", "z2", vec![])];
        let ok: Vec<String> = vec![];
        // Affinity to app=db by zone: z1 nodes only.
        let p = labelled("web", "web", json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "zone")]}}));
        assert_eq!(run(&p, &nodes), vec![ok.clone(), ok.clone(), vec![REASON_AFFINITY.to_string()]]);
        // Anti-affinity to app=db by hostname: everything but a.
        let p = labelled("web", "web", json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db", "kubernetes.io/hostname")]}}));
        assert_eq!(run(&p, &nodes), vec![vec![REASON_ANTI.to_string()], ok.clone(), ok.clone()]);
        // An existing pod's anti-affinity keeps app=web out of its zone.
        let guard = labelled("g", "guard", json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")]}}));
        let nodes2 = vec![zoned("a", "z1", vec![guard]), zoned("c", "z2", vec![])];
        assert_eq!(run(&labelled("web", "web", json!({})), &nodes2), vec![vec![REASON_EXISTING_ANTI.to_string()], ok.clone()]);
        // First pod of a self-affine group may go anywhere.
        let p = labelled("web", "web", json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")]}}));
        assert_eq!(run(&p, &nodes), vec![ok.clone(), ok.clone(), ok.clone()]);
    }

    #[test]
    fn preferred_scores() {
        let nodes = [zoned("a", "z1", vec![labelled("db", "db", json!({}))]), zoned("b", "z2", vec![])];
        let p = labelled("web", "web", json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": term("db", "zone")}]}}));
        let snap = Snapshot::of(nodes.iter().collect());
        let mut st = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        InterPodAffinity.pre_score(&mut st, &p, &feasible, &snap);
        let mut s: Vec<i64> = nodes.iter().map(|n| InterPodAffinity.score(&st, &p, n)).collect();
        assert_eq!(s, vec![50, 0]);
        InterPodAffinity.normalize(&st, &mut s);
        assert_eq!(s, vec![100, 0]);
    }
}
