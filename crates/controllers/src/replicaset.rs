//! The ReplicaSet controller.
//!
//! Why: a ReplicaSet promises "N pods like this template exist". This
//! controller keeps that promise: it adopts matching orphan pods and releases
//! owned pods that no longer match (ownerReferences with controller=true),
//! creates pods from the template (generateName `<rs>-`) in slow-start
//! batches, deletes the least valuable pods first when scaling down, guards
//! against over-creating with expectations, and reports replicas /
//! fullyLabeledReplicas / readyReplicas / availableReplicas /
//! observedGeneration in status.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::expectations::{Expectations, Seen};
use crate::informer::{key_of, split_key};
use crate::util::*;
use crate::Ctx;

/// Upstream's `BurstReplicas`: at most this many creations/deletions per sync.
pub const BURST_REPLICAS: usize = 500;

pub struct ReplicaSetController {
    ctx: Arc<Ctx>,
    pub expectations: Expectations,
    flavor: &'static Flavor,
    events: Arc<crate::events::Recorder>,
}

/// What differs between the ReplicaSet and the ReplicationController
/// controllers, which otherwise share this code: the kind, its cache (seen
/// as ReplicaSets) and how its status is written.
/// Writes a status merge patch: (client, namespace, name, patch).
pub type PatchStatus = for<'a> fn(&'a kube::Client, &'a str, &'a str, &'a serde_json::Value) -> futures::future::BoxFuture<'a, Result<(), kube::Error>>;

pub struct Flavor {
    pub queue: &'static str,
    /// The event source, as upstream names the controller.
    pub component: &'static str,
    pub api_version: &'static str,
    pub kind: &'static str,
    pub get: fn(&Ctx, &str, &str) -> Option<Arc<ReplicaSet>>,
    pub list_ns: fn(&Ctx, &str) -> Vec<Arc<ReplicaSet>>,
    pub patch_status: PatchStatus,
}

pub static REPLICA_SET: Flavor = Flavor {
    queue: "replicaset",
    component: "replicaset-controller",
    api_version: "apps/v1",
    kind: "ReplicaSet",
    get: |ctx, ns, name| ctx.rss.get(Some(ns), name),
    list_ns: |ctx, ns| ctx.rss.list_ns(ns),
    patch_status: |client, ns, name, patch| {
        Box::pin(async move { Api::<ReplicaSet>::namespaced(client.clone(), ns).patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()) })
    },
};

impl ReplicaSetController {
    pub fn start(ctx: Arc<Ctx>) {
        Self::start_flavor(ctx.clone(), &REPLICA_SET, |f| ctx.rss.on_change(move |rs| f(key_of(rs))));
    }

    /// Start a controller of `flavor`; `watch_owners` registers a handler on
    /// the owners' informer that calls the given function with changed keys.
    pub fn start_flavor(ctx: Arc<Ctx>, flavor: &'static Flavor, watch_owners: impl FnOnce(Box<dyn Fn(String) + Send + Sync>)) {
        let q = crate::queue::Queue::new(flavor.queue, ctx.metrics.clone());
        let qq = q.clone();
        watch_owners(Box::new(move |k| qq.add(k)));
        let qq = q.clone();
        let c2 = ctx.clone();
        ctx.pods.on_change(move |pod| {
            // The owner, or (for an orphan) every ReplicaSet that might adopt it.
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_ref(&pod.metadata) {
                if r.kind == flavor.kind {
                    qq.add(format!("{ns}/{}", r.name));
                }
                return;
            }
            for rs in (flavor.list_ns)(&c2, ns) {
                if selector_matches(Some(&rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default()), pod.metadata.labels.as_ref()) {
                    qq.add(key_of(rs.as_ref()));
                }
            }
        });
        let events = crate::events::Recorder::new(ctx.client.clone(), flavor.component);
        let c = Arc::new(ReplicaSetController { ctx, expectations: Expectations::default(), flavor, events });
        crate::queue::run_workers(q, 5, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(rs) = (self.flavor.get)(&self.ctx, ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        // Expectations first, then the pods: checked the other way round, a pod
        // created by the previous sync could reach the cache in between, satisfy
        // the expectation and still be missing from the list (a second create).
        let satisfied = self.expectations.satisfied(key, |n| match self.ctx.pods.get(Some(ns), n) {
            None => Seen::Absent,
            Some(p) if is_terminating(&p.metadata) => Seen::Terminating,
            Some(_) => Seen::Present,
        });
        let pods = self.ctx.pods.list_ns(ns);
        let spec = rs.spec.clone().unwrap_or_default();
        let owned = claim_pods(&self.ctx.client, ns, &rs.metadata, self.flavor.api_version, self.flavor.kind, Some(&spec.selector), &pods).await?;
        let active: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).filter(|p| is_pod_active(p)).collect();
        let mut result = Ok(());
        if satisfied && !is_terminating(&rs.metadata) {
            result = self.manage(&rs, ns, key, &active).await;
        }
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let requeue = update_status(&self.ctx.client, self.flavor, &rs, &active, min_ready).await?;
        result?;
        Ok(requeue)
    }

    async fn manage(&self, rs: &ReplicaSet, ns: &str, key: &str, active: &[&Pod]) -> Result<()> {
        let spec = rs.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        let have = active.len();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let name = rs.metadata.name.clone().unwrap_or_default();
        if have < want {
            let n = (want - have).min(BURST_REPLICAS);
            let Some(template) = spec.template.as_ref() else { return Ok(()) };
            let owner = owner_ref(self.flavor.api_version, self.flavor.kind, &rs.metadata);
            let pod = pod_from_template(template, &generate_prefix(&name), owner);
            tracing::info!(replicaset = %key, need = want, have, creating = n, "too few replicas");
            let (created, err) = slow_start(n, || {
                let api = api.clone();
                let pod = pod.clone();
                async move { api.create(&PostParams::default(), &pod).await.map(|p| p.metadata.name.unwrap_or_default()) }
            })
            .await;
            for p in &created {
                self.event(rs, "Normal", "SuccessfulCreate", format!("Created pod: {p}"));
            }
            self.expectations.expect_adds(key, created);
            if let Some(e) = err {
                self.event(rs, "Warning", "FailedCreate", format!("Error creating: {e}"));
                return Err(e.into());
            }
        } else if have > want {
            let n = (have - want).min(BURST_REPLICAS);
            let mut victims = active.to_vec();
            rank_for_deletion(&mut victims, Timestamp::now());
            let names: Vec<String> = victims[..n].iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
            tracing::info!(replicaset = %key, need = want, have, deleting = n, "too many replicas");
            self.expectations.expect_dels(key, names.clone());
            for n in names {
                match api.delete(&n, &DeleteParams::default()).await {
                    Ok(_) => self.event(rs, "Normal", "SuccessfulDelete", format!("Deleted pod: {n}")),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

impl ReplicaSetController {
    fn event(&self, rs: &ReplicaSet, type_: &str, reason: &str, message: String) {
        self.events.event(self.flavor.api_version, self.flavor.kind, &rs.metadata, type_, reason, message);
    }
}

/// Create `n` objects in batches of 1, 2, 4, … (upstream's slowStartBatch),
/// stopping at the first batch with an error. Returns the names created.
pub async fn slow_start<F, Fut>(n: usize, create: F) -> (Vec<String>, Option<kube::Error>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, kube::Error>>,
{
    let mut done = Vec::new();
    let mut batch = 1;
    while done.len() < n {
        let size = batch.min(n - done.len());
        let results = futures::future::join_all((0..size).map(|_| create())).await;
        let mut err = None;
        for r in results {
            match r {
                Ok(name) => done.push(name),
                Err(e) => err = Some(e),
            }
        }
        if err.is_some() {
            return (done, err);
        }
        batch *= 2;
    }
    (done, None)
}

/// Adopt orphans that match the selector, release owned pods that do not
/// (upstream's PodControllerRefManager). Returns the pods this owner controls.
pub async fn claim_pods(
    client: &kube::Client,
    ns: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    api_version: &str,
    kind: &str,
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    pods: &[Arc<Pod>],
) -> Result<Vec<Arc<Pod>>> {
    let uid = owner.uid.as_deref().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut owned = Vec::new();
    for pod in pods {
        let matches = selector_matches(selector, pod.metadata.labels.as_ref());
        let pname = pod.metadata.name.clone().unwrap_or_default();
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches || is_terminating(owner) {
                    owned.push(pod.clone());
                } else if !is_terminating(&pod.metadata) {
                    let refs: Vec<_> = pod.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    // An empty list would stay as `[]`; null removes the field, as upstream's release patch does.
                    let refs = if refs.is_empty() { serde_json::Value::Null } else { json!(refs) };
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
                    match api.patch(&pname, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => tracing::info!(pod = %pname, owner = ?owner.name, "released pod"),
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Some(_) => {}
            None => {
                if matches && !is_terminating(&pod.metadata) && !is_terminating(owner) {
                    let mut refs: Vec<_> = pod.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner_ref(api_version, kind, owner));
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.metadata.uid}});
                    match api.patch(&pname, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(p) => {
                            tracing::info!(pod = %pname, owner = ?owner.name, "adopted pod");
                            owned.push(Arc::new(p));
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }
    Ok(owned)
}

fn phase_rank(p: &Pod) -> u8 {
    match pod_phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0)).unwrap_or(0)
}

/// Sort `pods` so the first are the ones to delete first, as upstream's
/// `ActivePodsWithRanks`: unscheduled before scheduled; Pending before
/// Unknown before Running; not ready before ready; more sibling pods on the
/// same node first; ready for less time first; more restarts first; newest
/// first.
pub fn rank_for_deletion(pods: &mut [&Pod], _now: Timestamp) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods.iter() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let node_rank = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).map(|n| per_node[n]).unwrap_or(0);
    pods.sort_by(|a, b| {
        let assigned = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| !n.is_empty());
        assigned(a)
            .cmp(&assigned(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(is_pod_ready(a).cmp(&is_pod_ready(b)))
            .then(node_rank(b).cmp(&node_rank(a)))
            .then_with(|| match (ready_since(a), ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => Ordering::Equal,
            })
            .then(restarts(b).cmp(&restarts(a)))
            .then(creation_secs(&b.metadata).cmp(&creation_secs(&a.metadata)))
    });
}

/// The status counts of a ReplicaSet's active pods: (replicas, fullyLabeled, ready, available).
pub fn counts(active: &[&Pod], template_labels: Option<&std::collections::BTreeMap<String, String>>, min_ready: i32, now: Timestamp) -> (i32, i32, i32, i32) {
    let full = active
        .iter()
        .filter(|p| template_labels.is_none_or(|tl| tl.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))))
        .count();
    let ready = active.iter().filter(|p| is_pod_ready(p)).count();
    let avail = active.iter().filter(|p| is_pod_available(p, min_ready, now)).count();
    (active.len() as i32, full as i32, ready as i32, avail as i32)
}

/// Write the ReplicaSet's status if it changed; returns when to look again
/// for pods that will become available after minReadySeconds.
async fn update_status(client: &kube::Client, flavor: &Flavor, rs: &ReplicaSet, active: &[&Pod], min_ready: i32) -> Result<Option<Duration>> {
    let now = Timestamp::now();
    let tl = rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let (replicas, full, ready, avail) = counts(active, tl, min_ready, now);
    let cur = rs.status.clone().unwrap_or_default();
    let generation = rs.metadata.generation;
    let changed = cur.replicas != replicas
        || cur.fully_labeled_replicas.unwrap_or(0) != full
        || cur.ready_replicas.unwrap_or(0) != ready
        || cur.available_replicas.unwrap_or(0) != avail
        || cur.observed_generation != generation;
    if changed {
        let patch = json!({"status": {
            "replicas": replicas, "fullyLabeledReplicas": full, "readyReplicas": ready,
            "availableReplicas": avail, "observedGeneration": generation,
        }});
        match (flavor.patch_status)(client, rs.metadata.namespace.as_deref().unwrap_or("default"), rs.metadata.name.as_deref().unwrap_or(""), &patch).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if min_ready > 0 && ready != avail {
        return Ok(Some(Duration::from_secs(min_ready as u64)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(Into::into), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(Timestamp::from_second(created + 10).unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn victims_unscheduled_then_pending_then_not_ready_then_newest() {
        let a = pod("running-ready-old", Some("n1"), "Running", true, 100);
        let b = pod("running-ready-new", Some("n2"), "Running", true, 200);
        let c = pod("running-notready", Some("n3"), "Running", false, 50);
        let d = pod("pending", Some("n4"), "Pending", false, 10);
        let e = pod("unscheduled", None, "Pending", false, 5);
        let mut v = vec![&a, &b, &c, &d, &e];
        rank_for_deletion(&mut v, Timestamp::from_second(1000).unwrap());
        let names: Vec<_> = v.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["unscheduled", "pending", "running-notready", "running-ready-new", "running-ready-old"]);
    }

    #[test]
    fn counts_respect_min_ready_seconds() {
        let a = pod("a", None, "Running", true, 100); // ready since 110
        let b = pod("b", None, "Running", false, 100);
        let v = vec![&a, &b];
        assert_eq!(counts(&v, None, 0, Timestamp::from_second(111).unwrap()), (2, 2, 1, 1));
        assert_eq!(counts(&v, None, 30, Timestamp::from_second(120).unwrap()), (2, 2, 1, 0));
        assert_eq!(counts(&v, None, 30, Timestamp::from_second(140).unwrap()), (2, 2, 1, 1));
    }
}
