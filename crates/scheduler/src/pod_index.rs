//! Placed pods (bound and assumed) indexed by namespace and label, so that
//! PodTopologySpread and InterPodAffinity count the pods a selector picks by
//! visiting only the pods that carry one of its required labels, instead of
//! every pod on every node each cycle.
//!
//! Upstream scans all pods in PreFilter/PreScore and hides the cost behind
//! 16 goroutines; on two cores the scan was 30× a basic cycle (see
//! docs/benchmarks.md). The index is kept in step with the cache's
//! NodeInfos (`State::place` / `remove_placed`), so counting through it gives
//! exactly what the per-node scan gave.

use std::collections::HashMap;
use std::sync::Arc;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::PodInfo;
use crate::plugins::helpers::selector_matches;

/// A placed pod and the node it is on.
#[derive(Clone, Debug)]
pub struct Placed {
    pub pod: Arc<PodInfo>,
    pub node: Arc<str>,
}

type ByKey = HashMap<String, Placed>;

#[derive(Default, Debug)]
struct Namespace {
    all: ByKey,
    /// label key → label value → pods.
    labels: HashMap<String, HashMap<String, ByKey>>,
}

/// Which namespaces a selector applies to.
#[derive(Clone, Copy, Debug)]
pub enum Namespaces<'a> {
    One(&'a str),
    List(&'a [String]),
    All,
}

#[derive(Default, Debug)]
pub struct PodIndex {
    namespaces: HashMap<String, Namespace>,
}

impl PodIndex {
    pub fn insert(&mut self, pod: &Arc<PodInfo>, node: &str) {
        let placed = Placed { pod: pod.clone(), node: node.into() };
        let ns = self.namespaces.entry(pod.namespace.clone()).or_default();
        for (k, v) in &pod.labels {
            ns.labels.entry(k.clone()).or_default().entry(v.clone()).or_default().insert(pod.key.clone(), placed.clone());
        }
        ns.all.insert(pod.key.clone(), placed);
    }

    pub fn remove(&mut self, pod: &PodInfo) {
        let Some(ns) = self.namespaces.get_mut(&pod.namespace) else { return };
        ns.all.remove(&pod.key);
        for (k, v) in &pod.labels {
            if let Some(values) = ns.labels.get_mut(k) {
                if let Some(pods) = values.get_mut(v) {
                    pods.remove(&pod.key);
                    if pods.is_empty() {
                        values.remove(v);
                    }
                }
                if values.is_empty() {
                    ns.labels.remove(k);
                }
            }
        }
        if ns.all.is_empty() {
            self.namespaces.remove(&pod.namespace);
        }
    }

    /// The pods in `namespaces` that `sel` selects (not deleting ones: the
    /// plugins' callers filter those as they need).
    pub fn matching<'a>(&'a self, namespaces: Namespaces<'a>, sel: &'a LabelSelector) -> impl Iterator<Item = &'a Placed> + 'a {
        let spaces: Vec<&'a Namespace> = match namespaces {
            Namespaces::One(n) => self.namespaces.get(n).into_iter().collect(),
            Namespaces::List(l) => l.iter().filter_map(|n| self.namespaces.get(n)).collect(),
            Namespaces::All => self.namespaces.values().collect(),
        };
        spaces.into_iter().flat_map(move |ns| candidates(ns, sel).filter(move |p| selector_matches(sel, &p.pod.labels)))
    }
}

/// How many nodes (with a Node object) carry each label key and value: the
/// topology domains that exist, without visiting every node each cycle.
#[derive(Default, Debug)]
pub struct Domains(HashMap<String, HashMap<String, usize>>);

impl Domains {
    pub fn add(&mut self, labels: &std::collections::BTreeMap<String, String>) {
        for (k, v) in labels {
            *self.0.entry(k.clone()).or_default().entry(v.clone()).or_default() += 1;
        }
    }

    pub fn remove(&mut self, labels: &std::collections::BTreeMap<String, String>) {
        for (k, v) in labels {
            let Some(values) = self.0.get_mut(k) else { continue };
            if let Some(n) = values.get_mut(v) {
                *n -= 1;
                if *n == 0 {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.0.remove(k);
            }
        }
    }

    /// The values `key` takes across the nodes.
    pub fn values<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a String> + 'a {
        self.0.get(key).into_iter().flat_map(|v| v.keys())
    }
}

/// Placed pods that declare pod (anti-)affinity terms, filed under a label
/// each of their terms requires, so that the terms able to select an
/// incoming pod are found from that pod's own labels instead of checking
/// every such pod each cycle (InterPodAffinity's "existing pods" direction).
#[derive(Default, Debug)]
pub struct TermIndex {
    /// (label key, value) a term requires → pods with such a term.
    by_label: HashMap<(String, String), ByKey>,
    /// Pods with a term that requires no particular label value.
    any: ByKey,
}

/// The label a term's selector requires (`key=value` from matchLabels or a
/// one-value `In`), if it requires one: any pod it selects carries it.
fn required_label(term: &PodAffinityTerm) -> Option<(String, String)> {
    let sel = term.label_selector.as_ref()?;
    if let Some((k, v)) = sel.match_labels.iter().flatten().next() {
        return Some((k.clone(), v.clone()));
    }
    sel.match_expressions.iter().flatten().find(|e| e.operator == "In" && e.values.as_ref().is_some_and(|v| v.len() == 1)).map(|e| (e.key.clone(), e.values.as_ref().unwrap()[0].clone()))
}

/// Every pod (anti-)affinity term a pod declares, required and preferred.
pub fn all_terms(p: &PodInfo) -> Vec<&PodAffinityTerm> {
    let Some(a) = p.spec().affinity.as_ref() else { return vec![] };
    let mut out: Vec<&PodAffinityTerm> = vec![];
    if let Some(pa) = &a.pod_affinity {
        out.extend(pa.required_during_scheduling_ignored_during_execution.iter().flatten());
        out.extend(pa.preferred_during_scheduling_ignored_during_execution.iter().flatten().map(|w| &w.pod_affinity_term));
    }
    if let Some(pa) = &a.pod_anti_affinity {
        out.extend(pa.required_during_scheduling_ignored_during_execution.iter().flatten());
        out.extend(pa.preferred_during_scheduling_ignored_during_execution.iter().flatten().map(|w| &w.pod_affinity_term));
    }
    out
}

impl TermIndex {
    fn buckets(pod: &PodInfo) -> (Vec<(String, String)>, bool) {
        let mut labels = vec![];
        let mut any = false;
        for t in all_terms(pod) {
            match required_label(t) {
                Some(l) if !labels.contains(&l) => labels.push(l),
                Some(_) => {}
                None => any = true,
            }
        }
        (labels, any)
    }

    pub fn insert(&mut self, pod: &Arc<PodInfo>, node: &str) {
        if !pod.has_pod_affinity {
            return;
        }
        let placed = Placed { pod: pod.clone(), node: node.into() };
        let (labels, any) = Self::buckets(pod);
        for l in labels {
            self.by_label.entry(l).or_default().insert(pod.key.clone(), placed.clone());
        }
        if any {
            self.any.insert(pod.key.clone(), placed);
        }
    }

    pub fn remove(&mut self, pod: &PodInfo) {
        if !pod.has_pod_affinity {
            return;
        }
        let (labels, _) = Self::buckets(pod);
        for l in labels {
            if let Some(pods) = self.by_label.get_mut(&l) {
                pods.remove(&pod.key);
                if pods.is_empty() {
                    self.by_label.remove(&l);
                }
            }
        }
        self.any.remove(&pod.key);
    }

    /// Each pod with a term that may select a pod labelled `labels`, once.
    pub fn candidates<'a>(&'a self, labels: &BTreeMap<String, String>) -> Vec<&'a Placed> {
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut out = vec![];
        let buckets = labels.iter().filter_map(|(k, v)| self.by_label.get(&(k.clone(), v.clone())));
        for pods in buckets.chain(std::iter::once(&self.any)) {
            for (key, p) in pods {
                if seen.insert(key.as_str()) {
                    out.push(p);
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.by_label.is_empty() && self.any.is_empty()
    }
}

/// The smallest set of pods that can contain every match: those carrying the
/// selector's most selective required `key=value`, else all of them.
fn candidates<'a>(ns: &'a Namespace, sel: &LabelSelector) -> Box<dyn Iterator<Item = &'a Placed> + 'a> {
    let required = sel.match_labels.iter().flatten().chain(
        sel.match_expressions.iter().flatten().filter(|e| e.operator == "In" && e.values.as_ref().is_some_and(|v| v.len() == 1)).map(|e| (&e.key, &e.values.as_ref().unwrap()[0])),
    );
    let mut best: Option<&ByKey> = None;
    for (k, v) in required {
        let Some(set) = ns.labels.get(k).and_then(|vs| vs.get(v)) else { return Box::new(std::iter::empty()) };
        if best.is_none_or(|b| set.len() < b.len()) {
            best = Some(set);
        }
    }
    Box::new(best.unwrap_or(&ns.all).values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use serde_json::json;

    fn labelled(ns: &str, name: &str, labels: serde_json::Value) -> Arc<PodInfo> {
        Arc::new(pod(json!({"metadata": {"name": name, "namespace": ns, "labels": labels}})))
    }

    fn sel(v: serde_json::Value) -> LabelSelector {
        serde_json::from_value(v).unwrap()
    }

    fn names(ix: &PodIndex, ns: Namespaces, s: &LabelSelector) -> Vec<String> {
        let mut v: Vec<String> = ix.matching(ns, s).map(|p| format!("{}@{}", p.pod.key, p.node)).collect();
        v.sort();
        v
    }

    #[test]
    fn matching_agrees_with_the_selector_and_follows_removals() {
        let mut ix = PodIndex::default();
        let a = labelled("default", "a", json!({"app": "web", "tier": "fe"}));
        let b = labelled("default", "b", json!({"app": "web", "tier": "be"}));
        let c = labelled("default", "c", json!({"app": "db"}));
        let d = labelled("other", "d", json!({"app": "web"}));
        for (p, n) in [(&a, "n1"), (&b, "n2"), (&c, "n1"), (&d, "n3")] {
            ix.insert(p, n);
        }
        let web = sel(json!({"matchLabels": {"app": "web"}}));
        assert_eq!(names(&ix, Namespaces::One("default"), &web), ["default/a@n1", "default/b@n2"]);
        assert_eq!(names(&ix, Namespaces::All, &web), ["default/a@n1", "default/b@n2", "other/d@n3"]);
        assert_eq!(names(&ix, Namespaces::List(&["other".into()]), &web), ["other/d@n3"]);
        // Equality narrows, the rest of the selector still applies.
        let fe = sel(json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["be"]}]}));
        assert_eq!(names(&ix, Namespaces::One("default"), &fe), ["default/a@n1"]);
        let in_one = sel(json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["be"]}]}));
        assert_eq!(names(&ix, Namespaces::One("default"), &in_one), ["default/b@n2"]);
        // No equality requirement: every pod of the namespace is a candidate.
        let exists = sel(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}));
        assert_eq!(names(&ix, Namespaces::One("default"), &exists), ["default/a@n1", "default/b@n2", "default/c@n1"]);
        let none = sel(json!({"matchLabels": {"app": "cache"}}));
        assert!(names(&ix, Namespaces::All, &none).is_empty());
        // Removal, and a pod moving (assumed, then bound elsewhere).
        ix.remove(&a);
        ix.remove(&b);
        ix.insert(&b, "n4");
        assert_eq!(names(&ix, Namespaces::One("default"), &web), ["default/b@n4"]);
        ix.remove(&b);
        ix.remove(&c);
        ix.remove(&d);
        assert!(ix.namespaces.is_empty(), "nothing left behind: {ix:?}");
    }

    /// The plugins give the same answers through the index as by scanning
    /// every node's pods, over random clusters with adds, moves and removals.
    #[test]
    fn plugins_agree_with_and_without_the_index() {
        use crate::cache::State;
        use crate::framework::{CycleState, Plugin, Snapshot};
        use crate::plugins::inter_pod_affinity::InterPodAffinity;
        use crate::plugins::pod_topology_spread::PodTopologySpread;

        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        // The random clusters must exercise both outcomes, or agreement means little.
        let (mut rejected, mut scored) = (0, 0);
        for round in 0..20 {
            let mut st = State::new("default-scheduler");
            let node = |i: u64, zone: Option<String>| {
                let mut labels = json!({"kubernetes.io/hostname": format!("n{i}")});
                if let Some(z) = zone {
                    labels["zone"] = json!(z);
                }
                serde_json::from_value(json!({"metadata": {"name": format!("n{i}"), "labels": labels}})).unwrap()
            };
            // n11 has no zone: not eligible for zone constraints.
            for i in 0..12 {
                st.upsert_node(node(i, (i != 11).then(|| format!("z{}", i % 3))));
            }
            let apps = ["a", "b", "c"];
            for i in 0..60 {
                let ns = if next(4) == 0 { "other" } else { "default" };
                let mut meta = json!({"name": format!("p{i}"), "namespace": ns, "labels": {"app": apps[next(3) as usize]}});
                if next(2) == 0 {
                    meta["labels"]["tier"] = json!(if next(2) == 0 { "x" } else { "y" });
                }
                if next(10) == 0 {
                    meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                }
                let mut spec = json!({"nodeName": format!("n{}", next(12)), "containers": [{"name": "c", "image": "x"}]});
                if next(3) == 0 {
                    spec["affinity"] = json!({
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": apps[next(3) as usize]}}, "topologyKey": "kubernetes.io/hostname"}]},
                        "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["b"]}]}, "topologyKey": "zone", "namespaces": ["default", "other"]}}]}});
                    if next(2) == 0 {
                        // A term that requires no particular value (the term index's catch-all).
                        spec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"] = json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]});
                    }
                }
                st.upsert_pod(serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap());
            }
            // Some pods go away, some move (an assumed pod then bound elsewhere).
            for i in 0..10 {
                let key = format!("default/p{}", next(60));
                if i % 2 == 0 {
                    st.delete_pod(&key);
                } else if let Some(p) = st.nodes.values().flat_map(|n| n.pods.iter()).find(|p| p.key == key).cloned() {
                    st.assume(p, &format!("n{}", next(12)));
                }
            }
            // All of z2's nodes move to z9 (z2 is gone as a domain), and a
            // node goes away (its pods stay in the cache).
            for i in [2, 5, 8] {
                st.upsert_node(node(i, Some("z9".into())));
            }
            st.delete_node(&format!("n{}", 4 + next(2)));
            for k in 0..6 {
                let app = apps[next(3) as usize];
                let incoming = crate::plugins::testutil::pod(json!({
                    "metadata": {"name": format!("new{round}-{k}"), "namespace": "default", "labels": {"app": app, "tier": "x"}},
                    "spec": {
                        "topologySpreadConstraints": [
                            {"maxSkew": 1 + next(2) as i32, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": app}}},
                            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}],
                        "affinity": {
                            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": apps[next(3) as usize]}}, "topologyKey": "zone"}]},
                            "podAntiAffinity": {
                                "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": apps[next(3) as usize]}}, "topologyKey": "kubernetes.io/hostname"}],
                                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname", "namespaceSelector": {}}}]}}}}));
                let mut incoming = incoming;
                if next(3) == 0 {
                    // A node selector: eligibility is no longer just the key.
                    incoming = crate::plugins::testutil::pod({
                        let mut v = serde_json::to_value(&incoming.pod).unwrap();
                        v["spec"]["nodeSelector"] = json!({"zone": "z1"});
                        v
                    });
                }
                let indexed = st.snapshot();
                assert!(indexed.index.is_some());
                let scanned = Snapshot::of(indexed.nodes().to_vec());
                let plugins: [&dyn Plugin; 2] = [&PodTopologySpread, &InterPodAffinity];
                for plugin in plugins {
                    let run = |snap: &Snapshot| {
                        let mut cs = CycleState::default();
                        plugin.pre_filter(&mut cs, &incoming, snap);
                        let _ = plugin.pre_score(&mut cs, &incoming, snap.nodes(), snap);
                        snap.nodes().iter().map(|n| (plugin.filter(&cs, &incoming, n).reasons, plugin.score(&cs, &incoming, n))).collect::<Vec<_>>()
                    };
                    let got = run(&indexed);
                    assert_eq!(got, run(&scanned), "{} disagrees in round {round}, pod {k}", plugin.name());
                    rejected += got.iter().filter(|(reasons, _)| !reasons.is_empty()).count();
                    scored += got.iter().filter(|(_, score)| *score != 0).count();
                }
            }
        }
        assert!(rejected > 0 && scored > 0, "rejected {rejected}, scored {scored}");
    }
}
