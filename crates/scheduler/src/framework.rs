//! The scheduling framework: per-pod and per-node views, statuses, and the
//! plugin trait (PreFilter / Filter / PreScore / Score / NormalizeScore), as
//! upstream's framework defines them, minus the extension points we don't use.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{pod_requests, Resources};

/// Highest score a plugin may give a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// A pod with what the plugins need precomputed once.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Pod,
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    /// Requests with upstream's defaults for containers asking nothing (scoring).
    pub non_zero: Resources,
    pub priority: i32,
    /// (hostIP, protocol, hostPort) of every container port with a hostPort.
    pub host_ports: Vec<(String, String, i32)>,
    /// Has pod affinity or anti-affinity terms (indexed per node, so the
    /// common pod without them need not scan every pod each cycle).
    pub has_pod_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Pod, priority: i32) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or(""));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let host_ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let hp = p.host_port.filter(|&p| p > 0)?;
                Some((p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into()), p.protocol.clone().unwrap_or_else(|| "TCP".into()), hp))
            })
            .collect();
        let has_pod_affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        PodInfo { has_pod_affinity, requests: pod_requests(&pod, false), non_zero: pod_requests(&pod, true), key, namespace, labels, priority, host_ports, pod }
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
    }

    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
        self.pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }
}

/// A node with the pods on it (bound and assumed) and their totals.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Option<Arc<Node>>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    /// The subset of `pods` with pod (anti-)affinity terms.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
}

impl NodeInfo {
    pub fn set_node(&mut self, node: Node) {
        self.name = node.metadata.name.clone().unwrap_or_default();
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        self.taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        self.allocatable = Resources::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        self.node = Some(Arc::new(node));
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.requested.pods += 1;
        self.non_zero_requested.add(&p.non_zero);
        if p.has_pod_affinity {
            self.pods_with_affinity.push(p.clone());
        }
        self.pods.push(p);
    }

    /// Removes the pod with this key, returning it (None if it was not here).
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.key == key)?;
        let p = self.pods.swap_remove(i);
        self.pods_with_affinity.retain(|q| q.key != key);
        self.requested.sub(&p.requests);
        self.requested.pods -= 1;
        self.non_zero_requested.sub(&p.non_zero);
        Some(p)
    }
}

/// How a plugin judged a pod against a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Success,
    /// Might fit after preemption or cluster changes.
    Unschedulable,
    /// Preemption cannot help on this node.
    UnschedulableAndUnresolvable,
    /// From PreFilter or PreScore: this plugin has nothing to say about this
    /// pod, so the cycle skips its Filter or Score on every node (upstream's
    /// `Skip`). A plugin returns it only when running would pass every node,
    /// or give every node the same score, so skipping changes no outcome.
    Skip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status { code: Code::Success, reasons: vec![], plugin: "" }
    }
    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status { code: Code::Unschedulable, reasons: vec![reason.into()], plugin }
    }
    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Status {
        Status { code: Code::UnschedulableAndUnresolvable, reasons: vec![reason.into()], plugin }
    }
    pub fn skip() -> Status {
        Status { code: Code::Skip, reasons: vec![], plugin: "" }
    }
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}

/// Data PreFilter/PreScore computed for one scheduling cycle, read by
/// Filter/Score. One slot per plugin that needs one.
#[derive(Default)]
pub struct CycleState {
    pub topology_spread: Option<crate::plugins::pod_topology_spread::PreFilterState>,
    pub topology_spread_score: Option<crate::plugins::pod_topology_spread::PreScoreState>,
    pub inter_pod_affinity: Option<crate::plugins::inter_pod_affinity::PreFilterState>,
    pub inter_pod_affinity_score: Option<crate::plugins::inter_pod_affinity::PreScoreState>,
    /// Plugins (by index in the profile) whose PreFilter said Skip.
    pub skip_filter: u64,
    /// Plugins (by index in the profile) whose PreScore said Skip.
    pub skip_score: u64,
}

/// All nodes of the cluster as one cycle sees them.
///
/// The list of every node is built only when something asks for it
/// (topology spread, inter-pod affinity, preemption): a plain cycle walks the
/// cache's map from its round-robin start and stops after the share of nodes
/// it needs, and collecting 5,000 node references per cycle had been a sixth
/// of the scheduler's CPU.
pub struct Snapshot<'a> {
    all: std::cell::OnceCell<Vec<&'a NodeInfo>>,
    /// How many nodes exist (the cache keeps this count).
    count: usize,
    /// The same pods by namespace and label (None: plugins scan `nodes`).
    pub index: Option<&'a crate::pod_index::PodIndex>,
    /// The cache's nodes by name, to find an indexed pod's node without
    /// building a map each cycle.
    pub by_name: Option<&'a BTreeMap<String, NodeInfo>>,
    /// The nodes' label values, for topology domains (None: from `nodes`).
    pub domains: Option<&'a crate::pod_index::Domains>,
    /// Placed pods with affinity terms by the labels those require (None: scan `nodes`).
    pub terms: Option<&'a crate::pod_index::TermIndex>,
}

impl<'a> Snapshot<'a> {
    /// A snapshot without an index (tests, trial views).
    pub fn of(nodes: Vec<&'a NodeInfo>) -> Snapshot<'a> {
        Snapshot { count: nodes.len(), all: nodes.into(), index: None, by_name: None, domains: None, terms: None }
    }

    /// A view of the cache's nodes, `count` of which exist, with its indexes.
    pub fn indexed(by_name: &'a BTreeMap<String, NodeInfo>, count: usize, index: &'a crate::pod_index::PodIndex, domains: &'a crate::pod_index::Domains, terms: &'a crate::pod_index::TermIndex) -> Snapshot<'a> {
        Snapshot { all: std::cell::OnceCell::new(), count, index: Some(index), by_name: Some(by_name), domains: Some(domains), terms: Some(terms) }
    }

    /// How many nodes exist.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every node that exists, in name order (built on first use).
    pub fn nodes(&self) -> &[&'a NodeInfo] {
        self.all.get_or_init(|| self.by_name.map(|m| m.values().filter(|n| n.node.is_some()).collect()).unwrap_or_default())
    }

    /// The nodes in name order starting at the first named `start` or after
    /// (wrapping around), without building the whole list when it is not built.
    pub fn round_robin(&self, start: &str) -> Box<dyn Iterator<Item = &'a NodeInfo> + '_> {
        match (self.all.get(), self.by_name) {
            (None, Some(m)) => {
                let tail = m.range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded));
                let head = m.range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Excluded(start)));
                Box::new(tail.chain(head).map(|(_, n)| n).filter(|n| n.node.is_some()))
            }
            _ => {
                let all = self.nodes();
                let at = all.partition_point(|n| n.name.as_str() < start);
                Box::new(all[at..].iter().chain(all[..at].iter()).copied())
            }
        }
    }

    /// The node called `name`, if this view has it.
    pub fn node(&self, name: &str) -> Option<&'a NodeInfo> {
        match self.by_name {
            Some(m) => m.get(name).filter(|n| n.node.is_some()),
            None => self.nodes().iter().copied().find(|n| n.name == name),
        }
    }
}

/// A scheduler plugin. Every method has a neutral default, so a plugin
/// implements only its extension points.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// Computes cycle state; [`Status::skip`] leaves the plugin's Filter out of
    /// this cycle, any other non-success status rejects the pod for all nodes.
    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _snap: &Snapshot) -> Status {
        Status::success()
    }
    fn filter(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> Status {
        Status::success()
    }
    /// Weight in the default profile; 0 means "not a score plugin".
    fn weight(&self) -> i64 {
        0
    }
    /// Computes score state; [`Status::skip`] leaves the plugin out of this cycle's scoring.
    fn pre_score(&self, _state: &mut CycleState, _pod: &PodInfo, _feasible: &[&NodeInfo], _snap: &Snapshot) -> Status {
        Status::success()
    }
    fn score(&self, _state: &CycleState, _pod: &PodInfo, _node: &NodeInfo) -> i64 {
        0
    }
    /// Scales raw scores to 0..=MAX_NODE_SCORE (default: they already are).
    fn normalize(&self, _state: &CycleState, _scores: &mut [i64]) {}
}

/// Upstream's helper: scale to 0..=max by the largest score, optionally reversed.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}
