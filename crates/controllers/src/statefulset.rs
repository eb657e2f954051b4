//! The StatefulSet controller (upstream's `statefulset` package, simplified
//! to one pass per sync).
//!
//! Why: a StatefulSet gives each replica a stable identity: the pod
//! `<set>-<ordinal>` with hostname = its name, subdomain = the governing
//! service, and its own PVCs `<claim>-<set>-<ordinal>` that outlive it. With
//! OrderedReady the pods are created 0..n-1, each only once its predecessors
//! are Running and Ready, and removed from the highest ordinal down; Parallel
//! drops the ordering. Template changes are recorded as ControllerRevisions
//! and rolled out from the highest ordinal down to `partition`, one pod at a
//! time, each waiting for the previous to be Running and Ready (OnDelete:
//! only pods the user deletes are recreated at the new revision).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::history;
use crate::informer::{key_of, split_key};
use crate::replicaset::claim_pods;
use crate::util::*;
use crate::Ctx;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub struct StatefulSetController {
    ctx: Arc<Ctx>,
}

impl StatefulSetController {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("statefulset", ctx.metrics.clone());
        let qq = q.clone();
        ctx.statefulsets.on_change(move |s| qq.add(key_of(s)));
        let (qq, sets) = (q.clone(), ctx.statefulsets.clone());
        ctx.pods.on_change(move |pod| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_ref(&pod.metadata) {
                if r.kind == "StatefulSet" {
                    qq.add(format!("{ns}/{}", r.name));
                }
                return;
            }
            for s in sets.list_ns(ns) {
                if selector_matches(s.spec.as_ref().map(|s| &s.selector), pod.metadata.labels.as_ref()) {
                    qq.add(key_of(s.as_ref()));
                }
            }
        });
        let qq = q.clone();
        ctx.revisions.on_change(move |r| {
            if let Some(o) = controller_ref(&r.metadata).filter(|o| o.kind == "StatefulSet") {
                qq.add(format!("{}/{}", r.metadata.namespace.as_deref().unwrap_or(""), o.name));
            }
        });
        let c = Arc::new(StatefulSetController { ctx });
        crate::queue::run_workers(q, 3, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(set) = self.ctx.statefulsets.get(Some(ns), name) else { return Ok(None) };
        if is_terminating(&set.metadata) {
            return Ok(None);
        }
        let spec = set.spec.clone().unwrap_or_default();
        let pods = claim_pods(&self.ctx.client, ns, &set.metadata, "apps/v1", "StatefulSet", Some(&spec.selector), &self.ctx.pods.list_ns(ns)).await?;
        let (current, update) = self.revisions(&set).await?;
        let pods: Vec<Arc<Pod>> = pods.into_iter().filter(|p| ordinal_of(name, p).is_some()).collect();
        let again = self.update(&set, &spec, &current, &update, &pods).await?;
        self.write_status(&set, &spec, &current, &update, &pods).await?;
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let revs = history::owned(&self.ctx.revisions.list_ns(ns), &uid);
        let live: Vec<String> = pods.iter().filter_map(|p| revision_of(p).map(String::from)).collect();
        let (cur, upd) = (current.metadata.name.clone().unwrap_or_default(), update.metadata.name.clone().unwrap_or_default());
        let in_use = |n: &str| n == cur || n == upd || live.iter().any(|l| l == n);
        history::truncate(&self.ctx.client, &revs, &in_use, spec.revision_history_limit.unwrap_or(10)).await?;
        Ok(again)
    }

    /// The current and update revisions (upstream's getStatefulSetRevisions).
    async fn revisions(&self, set: &StatefulSet) -> Result<(ControllerRevision, ControllerRevision)> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("default");
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let revs = history::owned(&self.ctx.revisions.list_ns(ns), &uid);
        let spec = set.spec.clone().unwrap_or_default();
        let status = set.status.clone().unwrap_or_default();
        let collisions = status.collision_count;
        let want = history::new_revision(&set.metadata, owner_ref("apps/v1", "StatefulSet", &set.metadata), &spec.template, history::next_revision(&revs), collisions);
        let update = match history::ensure(&self.ctx.client, &revs, want).await {
            Ok(r) => r,
            Err(e) if e.is::<history::Collision>() => {
                let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), ns);
                let p = json!({"status": {"collisionCount": collisions.unwrap_or(0) + 1}});
                api.patch_status(set.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&p)).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let current = status
            .current_revision
            .as_deref()
            .and_then(|c| revs.iter().find(|r| r.metadata.name.as_deref() == Some(c)))
            .map(|r| r.as_ref().clone())
            .unwrap_or_else(|| update.clone());
        Ok((current, update))
    }

    /// One pass of upstream's updateStatefulSet: replace failed pods, create
    /// missing ones, delete condemned ones, then roll out the update revision.
    async fn update(&self, set: &StatefulSet, spec: &StatefulSetSpec, current: &ControllerRevision, update: &ControllerRevision, pods: &[Arc<Pod>]) -> Result<Option<Duration>> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("default");
        let name = set.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0);
        let n = spec.replicas.unwrap_or(1).max(0);
        let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();
        let healthy = |p: &Pod| !is_terminating(&p.metadata) && pod_phase(p) == "Running" && is_pod_available(p, min_ready, now);
        let by_ord: BTreeMap<i32, &Pod> = pods.iter().filter_map(|p| ordinal_of(name, p).map(|o| (o, p.as_ref()))).collect();
        let rolling = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        let partition = spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0).max(0);
        let mut requeue = None;
        if min_ready > 0 {
            requeue = Some(Duration::from_secs(min_ready as u64));
        }

        // Replicas: [start, start+n).
        let mut unhealthy = false;
        for ord in start..start + n {
            match by_ord.get(&ord) {
                None => {
                    let use_current = rolling && ord < start + partition && current.metadata.name != update.metadata.name;
                    let rev = if use_current { current } else { update };
                    self.create_pod(set, spec, rev, ord).await?;
                    if monotonic {
                        return Ok(requeue);
                    }
                    unhealthy = true;
                }
                Some(p) if matches!(pod_phase(p), "Failed" | "Succeeded") && !is_terminating(&p.metadata) => {
                    tracing::info!(statefulset = %name, pod = ?p.metadata.name, phase = pod_phase(p), "recreating finished pod");
                    delete_pod(&api, p).await?;
                    if monotonic {
                        return Ok(requeue);
                    }
                    unhealthy = true;
                }
                Some(p) if !healthy(p) => {
                    if monotonic {
                        return Ok(requeue);
                    }
                    unhealthy = true;
                }
                Some(_) => {}
            }
        }

        // Condemned: outside the range, highest ordinal first.
        let condemned: Vec<&Pod> = by_ord.iter().rev().filter(|(o, _)| **o < start || **o >= start + n).map(|(_, p)| *p).collect();
        for p in condemned {
            if is_terminating(&p.metadata) {
                if monotonic {
                    return Ok(requeue);
                }
                continue;
            }
            if monotonic && unhealthy {
                return Ok(requeue);
            }
            self.release_claims_on_scale_down(set, spec, p).await?;
            tracing::info!(statefulset = %name, pod = ?p.metadata.name, "scaling down");
            delete_pod(&api, p).await?;
            if monotonic {
                return Ok(requeue);
            }
        }
        if !rolling {
            return Ok(requeue);
        }

        // RollingUpdate: from the highest ordinal down to the partition, one unhealthy pod at a time.
        let upd = update.metadata.name.as_deref();
        for ord in (start + partition..start + n).rev() {
            let Some(p) = by_ord.get(&ord) else { return Ok(requeue) };
            if revision_of(p) != upd && !is_terminating(&p.metadata) {
                tracing::info!(statefulset = %name, pod = ?p.metadata.name, revision = ?upd, "updating pod");
                delete_pod(&api, p).await?;
                return Ok(requeue);
            }
            if !healthy(p) {
                return Ok(requeue);
            }
        }
        Ok(requeue)
    }

    async fn create_pod(&self, set: &StatefulSet, spec: &StatefulSetSpec, rev: &ControllerRevision, ord: i32) -> Result<()> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("default");
        self.ensure_claims(set, spec, ord).await?;
        let template = history::template_of(rev).unwrap_or_else(|| spec.template.clone());
        let pod = identity_pod(set, &template, rev.metadata.name.as_deref().unwrap_or(""), ord);
        tracing::info!(statefulset = ?set.metadata.name, pod = ?pod.metadata.name, "creating pod");
        match Api::<Pod>::namespaced(self.ctx.client.clone(), ns).create(&PostParams::default(), &pod).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Create the pod's PVCs that do not exist yet, owned as the retention policy says.
    async fn ensure_claims(&self, set: &StatefulSet, spec: &StatefulSetSpec, ord: i32) -> Result<()> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), ns);
        let delete_with_set = retention(spec).0 == "Delete";
        for claim in claims(set, spec, ord) {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            if self.ctx.pvcs.get(Some(ns), &cname).is_some() {
                continue;
            }
            let mut claim = claim;
            if delete_with_set {
                claim.metadata.owner_references = Some(vec![owner_ref("apps/v1", "StatefulSet", &set.metadata)]);
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => tracing::info!(statefulset = ?set.metadata.name, pvc = %cname, "created claim"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// whenScaled=Delete: before a condemned pod goes, make it an owner of its
    /// claims so the garbage collector removes them after it.
    async fn release_claims_on_scale_down(&self, set: &StatefulSet, spec: &StatefulSetSpec, pod: &Pod) -> Result<()> {
        if retention(spec).1 != "Delete" {
            return Ok(());
        }
        let ns = set.metadata.namespace.as_deref().unwrap_or("default");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), ns);
        let Some(ord) = ordinal_of(set.metadata.name.as_deref().unwrap_or(""), pod) else { return Ok(()) };
        let pod_ref = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        };
        for claim in claims(set, spec, ord) {
            let cname = claim.metadata.name.clone().unwrap_or_default();
            let Some(have) = self.ctx.pvcs.get(Some(ns), &cname) else { continue };
            let mut refs = have.metadata.owner_references.clone().unwrap_or_default();
            if refs.iter().any(|r| r.uid == pod_ref.uid) {
                continue;
            }
            refs.push(pod_ref.clone());
            let p = json!({"metadata": {"ownerReferences": refs}});
            match api.patch(&cname, &PatchParams::default(), &Patch::Merge(&p)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn write_status(&self, set: &StatefulSet, spec: &StatefulSetSpec, current: &ControllerRevision, update: &ControllerRevision, pods: &[Arc<Pod>]) -> Result<()> {
        let now = Timestamp::now();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let (cur, upd) = (current.metadata.name.clone(), update.metadata.name.clone());
        let (mut replicas, mut ready, mut available, mut current_n, mut updated_n) = (0, 0, 0, 0, 0);
        for p in pods {
            let created = !pod_phase(p).is_empty();
            if created {
                replicas += 1;
            }
            if pod_phase(p) == "Running" && is_pod_ready(p) {
                ready += 1;
                if is_pod_available(p, min_ready, now) {
                    available += 1;
                }
            }
            if created && !is_terminating(&p.metadata) {
                let r = revision_of(p).map(String::from);
                if r == cur {
                    current_n += 1;
                }
                if r == upd {
                    updated_n += 1;
                }
            }
        }
        let (mut cur, mut current_n) = (cur, current_n);
        let rolling = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        // Upstream's completeRollingUpdate: once every pod is updated and ready, the update revision is current.
        if rolling && updated_n == replicas && ready == replicas {
            cur = upd.clone();
            current_n = updated_n;
        }
        let old = set.status.clone().unwrap_or_default();
        let status = json!({
            "observedGeneration": set.metadata.generation, "replicas": replicas, "readyReplicas": ready,
            "availableReplicas": available, "currentReplicas": current_n, "updatedReplicas": updated_n,
            "currentRevision": cur, "updateRevision": upd, "collisionCount": old.collision_count.unwrap_or(0),
        });
        let same = old.observed_generation == set.metadata.generation
            && old.replicas == replicas
            && old.ready_replicas.unwrap_or(0) == ready
            && old.available_replicas.unwrap_or(0) == available
            && old.current_replicas.unwrap_or(0) == current_n
            && old.updated_replicas.unwrap_or(0) == updated_n
            && old.current_revision == cur
            && old.update_revision == upd;
        if same {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), set.metadata.namespace.as_deref().unwrap_or("default"));
        match api.patch_status(set.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await {
            Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

async fn delete_pod(api: &Api<Pod>, p: &Pod) -> Result<()> {
    match api.delete(p.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// (whenDeleted, whenScaled), both defaulting to Retain.
fn retention(spec: &StatefulSetSpec) -> (&str, &str) {
    let p = spec.persistent_volume_claim_retention_policy.as_ref();
    (p.and_then(|p| p.when_deleted.as_deref()).unwrap_or("Retain"), p.and_then(|p| p.when_scaled.as_deref()).unwrap_or("Retain"))
}

/// The ordinal in a pod's name `<set>-<ordinal>`, if it has that form.
pub fn ordinal_of(set: &str, pod: &Pod) -> Option<i32> {
    let n = pod.metadata.name.as_deref()?;
    let rest = n.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || (rest.len() > 1 && rest.starts_with('0')) {
        return None;
    }
    rest.parse().ok()
}

pub fn revision_of(p: &Pod) -> Option<&str> {
    p.metadata.labels.as_ref()?.get(history::HASH_LABEL).map(|s| s.as_str())
}

/// The PVCs of ordinal `ord`: `<template>-<set>-<ord>`, labelled with the set's selector labels.
pub fn claims(set: &StatefulSet, spec: &StatefulSetSpec, ord: i32) -> Vec<PersistentVolumeClaim> {
    let name = set.metadata.name.as_deref().unwrap_or("");
    let sel = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let tname = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(sel.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("{tname}-{name}-{ord}")),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The pod for ordinal `ord` from `template`: stable name, hostname and
/// subdomain, identity and revision labels, and its claims as volumes.
pub fn identity_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ord: i32) -> Pod {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.metadata.name.as_deref().unwrap_or("");
    let pname = format!("{name}-{ord}");
    let mut pod = pod_from_template(template, "", owner_ref("apps/v1", "StatefulSet", &set.metadata));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pname.clone());
    pod.metadata.namespace = set.metadata.namespace.clone();
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), pname.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    labels.insert(history::HASH_LABEL.into(), revision.into());
    let ps = pod.spec.get_or_insert_with(Default::default);
    ps.hostname = Some(pname);
    if !spec.service_name.as_deref().unwrap_or("").is_empty() {
        ps.subdomain = spec.service_name.clone();
    }
    let vols = ps.volumes.get_or_insert_with(Vec::new);
    for (t, c) in spec.volume_claim_templates.iter().flatten().zip(claims(set, &spec, ord)) {
        let vname = t.metadata.name.clone().unwrap_or_default();
        vols.retain(|v| v.name != vname);
        vols.push(Volume {
            name: vname,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: c.metadata.name.unwrap_or_default(), read_only: None }),
            ..Default::default()
        });
    }
    if vols.is_empty() {
        ps.volumes = None;
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> StatefulSet {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
              "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}], "volumes": [{"name": "www", "emptyDir": {}}]}},
              "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}))
        .unwrap()
    }

    #[test]
    fn pods_get_stable_identity_and_their_claims() {
        let s = set();
        let spec = s.spec.clone().unwrap();
        let p = identity_pod(&s, &spec.template, "web-abc", 2);
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!((l[POD_NAME_LABEL].as_str(), l[POD_INDEX_LABEL].as_str(), l[history::HASH_LABEL].as_str(), l["app"].as_str()), ("web-2", "2", "web-abc", "nginx"));
        let ps = p.spec.unwrap();
        assert_eq!((ps.hostname.as_deref(), ps.subdomain.as_deref()), (Some("web-2"), Some("nginx")));
        let vols = ps.volumes.unwrap();
        assert_eq!(vols.len(), 1, "the claim replaces the template volume of the same name");
        assert_eq!(vols[0].persistent_volume_claim.as_ref().unwrap().claim_name, "www-web-2");
        let c = claims(&s, &spec, 2);
        assert_eq!(c[0].metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(c[0].metadata.labels.as_ref().unwrap()["app"], "nginx");
        assert_eq!(identity_pod(&s, &spec.template, "r", 0).metadata.owner_references.unwrap()[0].kind, "StatefulSet");
    }

    #[test]
    fn ordinals_parse_only_canonical_names() {
        let pod = |n: &str| Pod { metadata: ObjectMeta { name: Some(n.into()), ..Default::default() }, ..Default::default() };
        assert_eq!(ordinal_of("web", &pod("web-0")), Some(0));
        assert_eq!(ordinal_of("web", &pod("web-12")), Some(12));
        assert_eq!(ordinal_of("web", &pod("web-01")), None);
        assert_eq!(ordinal_of("web", &pod("web-x")), None);
        assert_eq!(ordinal_of("web", &pod("webby-1")), None);
        assert_eq!(ordinal_of("web", &pod("web-")), None);
    }
}
