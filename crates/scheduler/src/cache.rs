//! The scheduler's view of the cluster, fed by the informers: NodeInfos with
//! their pods, *assumed* pods (placed by a cycle, binding in flight) so that
//! consecutive cycles see each other's decisions, priority classes, and the
//! queue. One mutex guards it all; a cycle holds it for microseconds to
//! milliseconds and never across an await.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::framework::{NodeInfo, PodInfo, Snapshot};
use crate::queue::{ClusterEvent, Queue};

#[derive(Default)]
pub struct State {
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Pod key → (node, assumed?) for every pod the cache holds.
    pub placed: HashMap<String, (String, bool)>,
    pub priority_classes: HashMap<String, (i32, bool)>,
    /// PodDisruptionBudgets by `namespace/name`, for preemption.
    pub pdbs: BTreeMap<String, Pdb>,
    pub queue: Queue,
    /// Round-robin start of the next filter pass (upstream's nextStartNodeIndex),
    /// as the name of the node to start at: the first node at or after it.
    pub next_start: String,
    /// How many entries of `nodes` have a Node (the rest only hold pods).
    pub node_count: usize,
    pub scheduler_name: String,
    /// Every placed pod by namespace and label, in step with `nodes`.
    pub index: crate::pod_index::PodIndex,
    /// Placed pods with pod (anti-)affinity terms, by the labels their terms require.
    pub terms: crate::pod_index::TermIndex,
    /// The label values of the nodes that exist, in step with `nodes`.
    pub domains: crate::pod_index::Domains,
}

impl State {
    pub fn new(scheduler_name: &str) -> State {
        State { scheduler_name: scheduler_name.into(), ..Default::default() }
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        // Nodes that exist (a NodeInfo may outlive its Node while pods
        // remain), in name order: a stable order for round-robin filtering.
        Snapshot::indexed(&self.nodes, self.node_count, &self.index, &self.domains, &self.terms)
    }

    /// spec.priority, else the PriorityClass's value, else the global default, else 0.
    pub fn priority_of(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        match spec.and_then(|s| s.priority_class_name.as_deref()).filter(|n| !n.is_empty()) {
            Some(name) => self.priority_classes.get(name).map(|c| c.0).unwrap_or(0),
            None => self.priority_classes.values().find(|c| c.1).map(|c| c.0).unwrap_or(0),
        }
    }

    pub fn upsert_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let is_new = self.nodes.get(&name).is_none_or(|n| n.node.is_none());
        let info = self.nodes.entry(name).or_default();
        if is_new {
            self.node_count += 1;
        } else {
            self.domains.remove(&info.labels);
        }
        info.set_node(node);
        self.domains.add(&info.labels);
        self.queue.on_event(if is_new { ClusterEvent::NodeAdd } else { ClusterEvent::NodeUpdate });
    }

    pub fn delete_node(&mut self, name: &str) {
        if let Some(n) = self.nodes.get_mut(name) {
            if n.node.is_some() {
                self.domains.remove(&n.labels);
                self.node_count -= 1;
            }
            n.node = None;
            if n.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }

    fn remove_placed(&mut self, key: &str) -> bool {
        let Some((node, _)) = self.placed.remove(key) else { return false };
        if let Some(n) = self.nodes.get_mut(&node) {
            if let Some(p) = n.remove_pod(key) {
                self.index.remove(&p);
                self.terms.remove(&p);
            }
            if n.node.is_none() && n.pods.is_empty() {
                self.nodes.remove(&node);
            }
        }
        true
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str, assumed: bool) {
        self.placed.insert(info.key.clone(), (node.to_string(), assumed));
        self.index.insert(&info, node);
        self.terms.insert(&info, node);
        self.nodes.entry(node.to_string()).or_insert_with(|| NodeInfo { name: node.to_string(), ..Default::default() }).add_pod(info);
    }

    /// A cycle chose `node`: count the pod there before the binding lands.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_placed(&info.key);
        self.place(info, node, true);
    }

    /// The binding failed: take the assumed pod back out.
    pub fn forget(&mut self, key: &str) {
        if self.placed.get(key).is_some_and(|p| p.1) {
            self.remove_placed(key);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.placed.get(key).is_some_and(|p| p.1)
    }

    /// A pod added or updated in the API.
    pub fn upsert_pod(&mut self, pod: Pod) {
        let priority = self.priority_of(&pod);
        let info = Arc::new(PodInfo::new(pod, priority));
        let key = info.key.clone();
        let phase = info.pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        let terminal = phase == "Succeeded" || phase == "Failed";
        if let Some(node) = info.node_name().map(str::to_string) {
            self.queue.delete(&key);
            if terminal {
                if self.remove_placed(&key) {
                    self.queue.on_event(ClusterEvent::AssignedPodDelete);
                }
                return;
            }
            let known = self.placed.get(&key).is_some_and(|(n, assumed)| n == &node && !assumed);
            self.remove_placed(&key);
            self.place(info, &node, false);
            if !known {
                self.queue.on_event(ClusterEvent::AssignedPodAdd);
            }
            return;
        }
        let name = info.spec().scheduler_name.as_deref().unwrap_or("default-scheduler");
        if name != self.scheduler_name || terminal || info.pod.metadata.deletion_timestamp.is_some() || self.is_assumed(&key) {
            if info.pod.metadata.deletion_timestamp.is_some() {
                self.queue.delete(&key);
            }
            return;
        }
        self.queue.add_or_update(info);
    }

    pub fn delete_pod(&mut self, key: &str) {
        self.queue.delete(key);
        if self.remove_placed(key) {
            self.queue.on_event(ClusterEvent::AssignedPodDelete);
        }
    }
}

/// What preemption needs of a PodDisruptionBudget (policy/v1).
#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
    /// Pods the disruption controller already counts as disrupted.
    pub disrupted: HashSet<String>,
}

impl Pdb {
    /// A nil or empty selector selects nothing (policy/v1's rule for PDBs).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.selector {
            Some(s) if s.match_labels.as_ref().is_some_and(|m| !m.is_empty()) || s.match_expressions.as_ref().is_some_and(|m| !m.is_empty()) => {
                crate::plugins::helpers::selector_matches(s, labels)
            }
            _ => false,
        }
    }
}

impl State {
    pub fn upsert_pdb(&mut self, pdb: PodDisruptionBudget) {
        let namespace = pdb.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let key = format!("{namespace}/{}", pdb.metadata.name.as_deref().unwrap_or(""));
        let status = pdb.status.unwrap_or_default();
        let info = Pdb {
            namespace,
            selector: pdb.spec.and_then(|s| s.selector),
            disruptions_allowed: status.disruptions_allowed,
            disrupted: status.disrupted_pods.unwrap_or_default().into_keys().collect(),
        };
        self.pdbs.insert(key, info);
    }

    pub fn delete_pdb(&mut self, key: &str) {
        self.pdbs.remove(key);
    }
}

pub fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
}
