//! The DaemonSet controller (upstream's `daemon` package).
//!
//! Why: some pods belong on every node (log shippers, CNI agents). For each
//! node the controller decides whether the daemon pod should run there
//! (nodeSelector, required node affinity, NoSchedule/NoExecute taints the
//! pod does not tolerate), creates one pod pinned to the node with a
//! `metadata.name` node-affinity term (the scheduler binds it, as upstream),
//! and deletes pods from nodes where they no longer belong, duplicates and
//! failed pods. Every daemon pod tolerates the not-ready/unreachable/pressure
//! taints so daemons survive node trouble. Template changes roll out node by
//! node within maxUnavailable, or with maxSurge a new pod starts beside the
//! old one first; OnDelete waits for the user to delete old pods.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::daemonset_util::*;
use crate::deployment_util::scaled;
use crate::expectations::{Expectations, Seen};
use crate::history;
use crate::informer::{key_of, split_key};
use crate::replicaset::claim_pods;
use crate::util::*;
use crate::Ctx;

pub const TEMPLATE_GENERATION: &str = "pod-template-generation";

pub struct DaemonSetController {
    ctx: Arc<Ctx>,
    expectations: Expectations,
}

impl DaemonSetController {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("daemonset", ctx.metrics.clone());
        let qq = q.clone();
        ctx.daemonsets.on_change(move |d| qq.add(key_of(d)));
        let (qq, dss) = (q.clone(), ctx.daemonsets.clone());
        ctx.pods.on_change(move |pod| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_ref(&pod.metadata) {
                if r.kind == "DaemonSet" {
                    qq.add(format!("{ns}/{}", r.name));
                }
                return;
            }
            for d in dss.list_ns(ns) {
                if selector_matches(d.spec.as_ref().map(|s| &s.selector), pod.metadata.labels.as_ref()) {
                    qq.add(key_of(d.as_ref()));
                }
            }
        });
        // Any node change can change where daemons belong.
        let (qq, dss) = (q.clone(), ctx.daemonsets.clone());
        ctx.nodes.on_change(move |_| {
            for d in dss.list() {
                qq.add(key_of(d.as_ref()));
            }
        });
        let qq = q.clone();
        ctx.revisions.on_change(move |r| {
            if let Some(o) = controller_ref(&r.metadata).filter(|o| o.kind == "DaemonSet") {
                qq.add(format!("{}/{}", r.metadata.namespace.as_deref().unwrap_or(""), o.name));
            }
        });
        let c = Arc::new(DaemonSetController { ctx, expectations: Expectations::default() });
        crate::queue::run_workers(q, 2, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(ds) = self.ctx.daemonsets.get(Some(ns), name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        if is_terminating(&ds.metadata) {
            return Ok(None);
        }
        let spec = ds.spec.clone().unwrap_or_default();
        // Expectations first, then the pods: checked the other way round, a pod
        // created by the previous sync could reach the cache in between, satisfy
        // the expectation and still be missing from the list (a second create).
        let satisfied = self.expectations.satisfied(key, |n| match self.ctx.pods.get(Some(ns), n) {
            None => Seen::Absent,
            Some(p) if is_terminating(&p.metadata) => Seen::Terminating,
            Some(_) => Seen::Present,
        });
        let pods = claim_pods(&self.ctx.client, ns, &ds.metadata, "apps/v1", "DaemonSet", Some(&spec.selector), &self.ctx.pods.list_ns(ns)).await?;
        let (hash, revname) = self.revision(&ds, &spec).await?;
        let nodes = self.ctx.nodes.list();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        for p in &pods {
            if let Some(n) = p.spec.as_ref().and_then(pod_node) {
                by_node.entry(n).or_default().push(p.clone());
            }
        }
        let now = Timestamp::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let mut requeue = (min_ready > 0).then(|| Duration::from_secs(min_ready as u64));
        if satisfied && let Some(d) = self.manage(&ds, &spec, key, &hash, &nodes, &by_node, now).await? {
            requeue = Some(requeue.map_or(d, |r| r.min(d)));
        }
        self.write_status(&ds, &spec, &hash, &nodes, &by_node, now).await?;
        // Revisions no live pod uses beyond the history limit go.
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let revs = history::owned(&self.ctx.revisions.list_ns(ns), &uid);
        let live: Vec<String> = pods.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(history::HASH_LABEL).cloned()).collect();
        let in_use = |n: &str| n == revname || revs.iter().any(|r| r.metadata.name.as_deref() == Some(n) && r.metadata.labels.as_ref().and_then(|l| l.get(history::HASH_LABEL)).is_some_and(|h| live.contains(h)));
        history::truncate(&self.ctx.client, &revs, &in_use, spec.revision_history_limit.unwrap_or(10)).await?;
        Ok(requeue)
    }

    /// The hash (pod label value) and name of the revision of the current template.
    async fn revision(&self, ds: &DaemonSet, spec: &DaemonSetSpec) -> Result<(String, String)> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or("default");
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let revs = history::owned(&self.ctx.revisions.list_ns(ns), &uid);
        let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
        let want = history::new_revision(&ds.metadata, owner_ref("apps/v1", "DaemonSet", &ds.metadata), &spec.template, history::next_revision(&revs), collisions);
        let rev = match history::ensure(&self.ctx.client, &revs, want).await {
            Ok(r) => r,
            Err(e) if e.is::<history::Collision>() => {
                let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), ns);
                let p = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
                api.patch_status(ds.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&p)).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let hash = rev.metadata.labels.as_ref().and_then(|l| l.get(history::HASH_LABEL)).cloned().unwrap_or_default();
        Ok((hash, rev.metadata.name.unwrap_or_default()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn manage(&self, ds: &DaemonSet, spec: &DaemonSetSpec, key: &str, hash: &str, nodes: &[Arc<Node>], by_node: &BTreeMap<String, Vec<Arc<Pod>>>, now: Timestamp) -> Result<Option<Duration>> {
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let mut create: Vec<String> = Vec::new();
        let mut delete: Vec<Arc<Pod>> = Vec::new();
        let is_new = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get(history::HASH_LABEL)).map(|s| s.as_str()) == Some(hash);
        let template_spec = spec.template.spec.clone().unwrap_or_default();
        let rolling = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        let ru = spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref());
        let want_nodes: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).filter(|n| should_run(&template_spec, n).0).collect();
        let desired = want_nodes.len() as i32;
        let surge = if rolling { ru.and_then(|r| r.max_surge.as_ref()).map(|v| scaled(v, desired, true).unwrap_or(0)).unwrap_or(0) } else { 0 };
        let max_unavail = if rolling { ru.and_then(|r| r.max_unavailable.as_ref()).map(|v| scaled(v, desired, false).unwrap_or(1)).unwrap_or(1) } else { 0 };
        let max_unavail = if surge == 0 && max_unavail == 0 { 1 } else { max_unavail };
        let mut unavailable = 0;
        let mut surging = 0;
        let mut candidates: Vec<(Arc<Pod>, Option<Arc<Pod>>)> = Vec::new();
        for node in nodes {
            let nname = node.metadata.name.clone().unwrap_or_default();
            let (run, keep) = should_run(&template_spec, node);
            let pods: Vec<Arc<Pod>> = by_node.get(&nname).cloned().unwrap_or_default();
            let live: Vec<Arc<Pod>> = pods.iter().filter(|p| !is_terminating(&p.metadata)).cloned().collect();
            if !keep {
                delete.extend(live);
                continue;
            }
            if !run {
                continue;
            }
            // Failed pods are replaced.
            let (failed, ok): (Vec<_>, Vec<_>) = live.into_iter().partition(|p| pod_phase(p) == "Failed");
            delete.extend(failed.iter().cloned());
            if ok.is_empty() {
                // As upstream: a pod being deleted does not hold back its replacement.
                create.push(nname.clone());
                unavailable += 1;
                continue;
            }
            let (new, old): (Vec<_>, Vec<_>) = ok.into_iter().partition(|p| is_new(p));
            // Duplicates: keep the oldest of each kind.
            let oldest = |mut v: Vec<Arc<Pod>>, delete: &mut Vec<Arc<Pod>>| -> Option<Arc<Pod>> {
                v.sort_by_key(|p| creation_secs(&p.metadata));
                let first = v.first().cloned();
                delete.extend(v.into_iter().skip(1));
                first
            };
            let new = oldest(new, &mut delete);
            let old = oldest(old, &mut delete);
            match (old, new) {
                (None, Some(n)) if !is_pod_available(&n, min_ready, now) => unavailable += 1,
                (Some(o), None) if rolling => {
                    if !is_pod_available(&o, min_ready, now) {
                        // An unavailable old pod costs nothing to replace.
                        delete.push(o);
                        unavailable += 1;
                    } else {
                        candidates.push((o, None));
                    }
                }
                (Some(o), Some(n)) if rolling => {
                    surging += 1;
                    if is_pod_available(&n, min_ready, now) {
                        delete.push(o);
                    } else {
                        candidates.push((o, Some(n)));
                    }
                }
                _ => {}
            }
        }
        if rolling {
            if surge > 0 {
                // maxSurge: start a new pod beside an old one, within the budget.
                let mut budget = (surge - surging).max(0);
                for (o, n) in &candidates {
                    if n.is_none() && budget > 0 && let Some(node) = o.spec.as_ref().and_then(pod_node) {
                        create.push(node);
                        budget -= 1;
                    }
                }
            } else {
                let mut budget = (max_unavail - unavailable).max(0);
                for (o, _) in candidates {
                    if budget == 0 {
                        break;
                    }
                    delete.push(o);
                    budget -= 1;
                }
            }
        }
        let ns = ds.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        if !delete.is_empty() {
            let names: Vec<String> = delete.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
            tracing::info!(daemonset = %key, pods = ?names, "deleting daemon pods");
            self.expectations.expect_dels(key, names.clone());
            for n in names {
                match api.delete(&n, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if !create.is_empty() {
            tracing::info!(daemonset = %key, nodes = ?create, "creating daemon pods");
            let mut created = Vec::new();
            let mut err = None;
            for node in &create {
                let pod = daemon_pod(ds, spec, hash, node);
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => created.push(p.metadata.name.unwrap_or_default()),
                    Err(e) => err = Some(e),
                }
            }
            self.expectations.expect_adds(key, created);
            if let Some(e) = err {
                return Err(e.into());
            }
        }
        Ok(None)
    }

    async fn write_status(&self, ds: &DaemonSet, spec: &DaemonSetSpec, hash: &str, nodes: &[Arc<Node>], by_node: &BTreeMap<String, Vec<Arc<Pod>>>, now: Timestamp) -> Result<()> {
        let template_spec = spec.template.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let (mut desired, mut current, mut mis, mut ready, mut avail, mut updated) = (0, 0, 0, 0, 0, 0);
        for node in nodes {
            let nname = node.metadata.name.clone().unwrap_or_default();
            let (run, _) = should_run(&template_spec, node);
            let pods: Vec<&Arc<Pod>> = by_node.get(&nname).map(|v| v.iter().filter(|p| !is_terminating(&p.metadata)).collect()).unwrap_or_default();
            if run {
                desired += 1;
                if !pods.is_empty() {
                    current += 1;
                    let mut sorted = pods.clone();
                    sorted.sort_by_key(|p| creation_secs(&p.metadata));
                    let p = sorted[0];
                    if is_pod_ready(p) {
                        ready += 1;
                        if is_pod_available(p, min_ready, now) {
                            avail += 1;
                        }
                    }
                    if pods.iter().any(|p| p.metadata.labels.as_ref().and_then(|l| l.get(history::HASH_LABEL)).map(|s| s.as_str()) == Some(hash)) {
                        updated += 1;
                    }
                }
            } else if !pods.is_empty() {
                mis += 1;
            }
        }
        let old = ds.status.clone().unwrap_or_default();
        let st = json!({
            "desiredNumberScheduled": desired, "currentNumberScheduled": current, "numberMisscheduled": mis,
            "numberReady": ready, "numberAvailable": avail, "numberUnavailable": desired - avail,
            "updatedNumberScheduled": updated, "observedGeneration": ds.metadata.generation,
        });
        let same = old.desired_number_scheduled == desired
            && old.current_number_scheduled == current
            && old.number_misscheduled == mis
            && old.number_ready == ready
            && old.number_available.unwrap_or(0) == avail
            && old.number_unavailable.unwrap_or(0) == desired - avail
            && old.updated_number_scheduled.unwrap_or(0) == updated
            && old.observed_generation == ds.metadata.generation;
        if same {
            return Ok(());
        }
        let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), ds.metadata.namespace.as_deref().unwrap_or("default"));
        match api.patch_status(ds.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&json!({ "status": st }))).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The daemon pod for `node`: template + revision labels, default tolerations, pinned to the node.
pub fn daemon_pod(ds: &DaemonSet, spec: &DaemonSetSpec, hash: &str, node: &str) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let mut pod = pod_from_template(&spec.template, &generate_prefix(&name), owner_ref("apps/v1", "DaemonSet", &ds.metadata));
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(history::HASH_LABEL.into(), hash.into());
    labels.insert(TEMPLATE_GENERATION.into(), ds.metadata.generation.unwrap_or(0).to_string());
    let ps = pod.spec.get_or_insert_with(Default::default);
    add_default_tolerations(ps);
    pin_to_node(ps, node);
    pod
}
