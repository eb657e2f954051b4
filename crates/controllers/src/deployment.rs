//! The Deployment controller.
//!
//! Why: a Deployment is a rollout policy over ReplicaSets. This controller
//! keeps one ReplicaSet per distinct pod template (named
//! `<deployment>-<pod-template-hash>`, with the hash as a label and in the
//! selector), moves replicas from old ReplicaSets to the new one as the
//! strategy allows (RollingUpdate bounded by maxSurge/maxUnavailable, or
//! Recreate), numbers revisions in `deployment.kubernetes.io/revision` so
//! `kubectl rollout history|undo` work, scales proportionally when resized
//! mid-rollout, honours pause, prunes old ReplicaSets beyond
//! revisionHistoryLimit, and reports the Progressing and Available
//! conditions `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::deployment_util::*;
use crate::informer::{key_of, split_key};
use crate::util::*;
use crate::Ctx;

pub struct DeploymentController {
    ctx: Arc<Ctx>,
    events: Arc<crate::events::Recorder>,
}

fn deployment_of_rs(rs: &ReplicaSet) -> Option<String> {
    let r = controller_ref(&rs.metadata)?;
    (r.kind == "Deployment").then(|| format!("{}/{}", rs.metadata.namespace.as_deref().unwrap_or(""), r.name))
}

impl DeploymentController {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("deployment", ctx.metrics.clone());
        let qq = q.clone();
        ctx.deploys.on_change(move |d| qq.add(key_of(d)));
        let qq = q.clone();
        let deploys = ctx.deploys.clone();
        ctx.rss.on_change(move |rs| {
            if let Some(k) = deployment_of_rs(rs) {
                qq.add(k);
            } else if controller_ref(&rs.metadata).is_none() {
                for d in deploys.list_ns(rs.metadata.namespace.as_deref().unwrap_or("")) {
                    if selector_matches(d.spec.as_ref().map(|s| &s.selector), rs.metadata.labels.as_ref()) {
                        qq.add(key_of(d.as_ref()));
                    }
                }
            }
        });
        // Recreate waits for old pods to be gone: pod changes wake the deployment.
        let qq = q.clone();
        let rss = ctx.rss.clone();
        ctx.pods.on_change(move |pod| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_ref(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
                && let Some(rs) = rss.get(Some(ns), &r.name)
                    && let Some(k) = deployment_of_rs(&rs) {
                        qq.add(k);
                    }
        });
        let events = crate::events::Recorder::new(ctx.client.clone(), "deployment-controller");
        let c = Arc::new(DeploymentController { ctx, events });
        crate::queue::run_workers(q, 5, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    fn rs_api(&self, ns: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(d) = self.ctx.deploys.get(Some(ns), name) else { return Ok(None) };
        let mut d = (*d).clone();
        let spec = d.spec.clone().unwrap_or_default();
        let empty = spec.selector.match_labels.as_ref().is_none_or(|m| m.is_empty()) && spec.selector.match_expressions.as_ref().is_none_or(|m| m.is_empty());
        if empty {
            tracing::warn!(deployment = %key, "selector selects all pods; refusing to act");
            return Ok(None);
        }
        let rss = self.claim_rss(&d, ns).await?;
        if is_terminating(&d.metadata) {
            let refs: Vec<&ReplicaSet> = rss.iter().collect();
            self.sync_status(&mut d, &refs, None, false).await?;
            return Ok(None);
        }
        self.check_paused_condition(&mut d).await?;
        let paused = spec.paused == Some(true);
        if paused || self.is_scaling_event(&d, &rss) {
            return self.sync_scale(&mut d, rss, paused).await;
        }
        if is_rolling(&d) { self.rollout_rolling(&mut d, rss).await } else { self.rollout_recreate(&mut d, rss).await }
    }

    /// The ReplicaSets this Deployment controls, adopting matching orphans.
    async fn claim_rss(&self, d: &Deployment, ns: &str) -> Result<Vec<ReplicaSet>> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let sel = d.spec.as_ref().map(|s| &s.selector);
        let mut out = Vec::new();
        for rs in self.ctx.rss.list_ns(ns) {
            let matches = selector_matches(sel, rs.metadata.labels.as_ref());
            match controller_ref(&rs.metadata) {
                Some(r) if r.uid == uid => out.push((*rs).clone()),
                None if matches && !is_terminating(&d.metadata) && !is_terminating(&rs.metadata) => {
                    let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner_ref("apps/v1", "Deployment", &d.metadata));
                    let patch = json!({"metadata": {"ownerReferences": refs, "uid": rs.metadata.uid}});
                    let n = rs.metadata.name.clone().unwrap_or_default();
                    match self.rs_api(ns).patch(&n, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(r) => out.push(r),
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn is_scaling_event(&self, d: &Deployment, rss: &[ReplicaSet]) -> bool {
        let want = replicas_of(d).to_string();
        rss.iter().filter(|r| rs_replicas(r) > 0).any(|r| r.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED_REPLICAS)).is_some_and(|v| *v != want))
    }

    /// Split into (new, old): the new ReplicaSet has the Deployment's template (the oldest such, if several).
    fn split(&self, d: &Deployment, rss: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let tmpl = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let mut rss = rss;
        rss.sort_by_key(|r| (creation_secs(&r.metadata), r.metadata.name.clone()));
        let pos = rss.iter().position(|r| r.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &tmpl)));
        let new = pos.map(|i| rss.remove(i));
        (new, rss)
    }

    fn rs_annotations(&self, d: &Deployment, rev: i64, existing: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
        let mut a = existing.cloned().unwrap_or_default();
        for (k, v) in d.metadata.annotations.iter().flatten() {
            if !SKIP_ANNOTATIONS.contains(&k.as_str()) {
                a.insert(k.clone(), v.clone());
            }
        }
        let old = a.get(REVISION).cloned();
        if let Some(old) = old.filter(|o| o.parse::<i64>().unwrap_or(0) < rev && *o != "0") {
            let h = match a.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old,
            };
            a.insert(REVISION_HISTORY.into(), h);
        }
        a.insert(REVISION.into(), rev.to_string());
        a
    }

    /// Find or create the new ReplicaSet and keep revisions in order
    /// (upstream's getAllReplicaSetsAndSyncRevision).
    async fn new_and_old(&self, d: &mut Deployment, rss: Vec<ReplicaSet>, create: bool) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let (new, old) = self.split(d, rss);
        let max_old = old.iter().map(revision).max().unwrap_or(0);
        let new_rev = max_old + 1;
        let (surge, _) = d_fenceposts(d);
        let new = match new {
            Some(mut rs) => {
                if revision(&rs) < new_rev {
                    let ann = self.rs_annotations(d, new_rev, rs.metadata.annotations.as_ref());
                    let patch = json!({"metadata": {"annotations": ann}});
                    rs = self.rs_api(&ns).patch(rs.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await?;
                }
                if progressing(d).is_none() && d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some() {
                    let msg = format!("Found new replica set {:?}", rs.metadata.name.as_deref().unwrap_or(""));
                    set_condition(d, "Progressing", "True", "FoundNewReplicaSet", &msg);
                    self.write_status(d).await?;
                }
                Some(rs)
            }
            None if create => Some(self.create_new_rs(d, &old, new_rev, surge).await?),
            None => None,
        };
        // The Deployment carries the newest revision too.
        let rev = new.as_ref().map(revision).unwrap_or(max_old).to_string();
        if d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)) != Some(&rev) && new.is_some() {
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), &ns);
            let upd = api.patch(d.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            d.metadata = upd.metadata;
        }
        Ok((new, old))
    }

    async fn create_new_rs(&self, d: &mut Deployment, old: &[ReplicaSet], rev: i64, surge: i32) -> Result<ReplicaSet> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let dname = d.metadata.name.clone().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        let tm = template.metadata.get_or_insert_with(Default::default);
        tm.labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
        let all: Vec<&ReplicaSet> = old.iter().collect();
        let replicas = new_rs_new_replicas(d, &all, 0);
        let mut ann = self.rs_annotations(d, rev, None);
        ann.insert(DESIRED_REPLICAS.into(), replicas_of(d).to_string());
        ann.insert(MAX_REPLICAS.into(), (replicas_of(d) + surge).to_string());
        let name = format!("{dname}-{hash}");
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(ann),
                owner_references: Some(vec![owner_ref("apps/v1", "Deployment", &d.metadata)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), min_ready_seconds: spec.min_ready_seconds, selector, template: Some(template) }),
            status: None,
        };
        match self.rs_api(&ns).create(&PostParams::default(), &rs).await {
            Ok(created) => {
                tracing::info!(deployment = %dname, replicaset = %name, replicas, "created new replica set");
                if replicas > 0 {
                    self.events.event("apps/v1", "Deployment", &d.metadata, "Normal", "ScalingReplicaSet", format!("Scaled up replica set {name} from 0 to {replicas}"));
                }
                if spec.progress_deadline_seconds.is_some() {
                    set_condition(d, "Progressing", "True", "NewReplicaSetCreated", &format!("Created new replica set {name:?}"));
                    self.write_status(d).await?;
                }
                Ok(created)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // A ReplicaSet of that name exists: ours if it has our template, else a hash collision.
                let existing = self.rs_api(&ns).get(&name).await?;
                let ours = controller_ref(&existing.metadata).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                let same = existing.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if ours && same {
                    return Ok(existing);
                }
                let st = d.status.get_or_insert_with(Default::default);
                st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                self.write_status(d).await?;
                Err(anyhow!("hash collision on replica set {name}; retrying with collisionCount"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Set a ReplicaSet's size and the desired/max-replicas annotations. Returns whether anything changed.
    async fn scale_rs(&self, rs: &mut ReplicaSet, size: i32, d: &Deployment) -> Result<bool> {
        let (surge, _) = d_fenceposts(d);
        let desired = replicas_of(d).to_string();
        let max = (replicas_of(d) + surge).to_string();
        let ann = rs.metadata.annotations.clone().unwrap_or_default();
        if rs_replicas(rs) == size && ann.get(DESIRED_REPLICAS) == Some(&desired) && ann.get(MAX_REPLICAS) == Some(&max) {
            return Ok(false);
        }
        let grew = rs_replicas(rs) != size;
        let patch = json!({"metadata": {"annotations": {DESIRED_REPLICAS: desired, MAX_REPLICAS: max}}, "spec": {"replicas": size}});
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let from = rs_replicas(rs);
        tracing::info!(replicaset = ?rs.metadata.name, from, to = size, "scaling replica set");
        *rs = self.rs_api(&ns).patch(rs.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        if grew {
            let way = if from < size { "up" } else { "down" };
            self.events.event("apps/v1", "Deployment", &d.metadata, "Normal", "ScalingReplicaSet", format!("Scaled {way} replica set {} from {from} to {size}", rs.metadata.name.as_deref().unwrap_or("")));
        }
        Ok(grew)
    }

    async fn rollout_rolling(&self, d: &mut Deployment, rss: Vec<ReplicaSet>) -> Result<Option<Duration>> {
        let (new, mut old) = self.new_and_old(d, rss, true).await?;
        let mut new = new.expect("created");
        // Scale up the new ReplicaSet as far as maxSurge allows.
        let want = replicas_of(d);
        let cur = rs_replicas(&new);
        let mut acted = false;
        if cur > want {
            acted = self.scale_rs(&mut new, want, d).await?;
        } else if cur < want {
            let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();
            let n = new_rs_new_replicas(d, &all, cur);
            acted = self.scale_rs(&mut new, n, d).await?;
        }
        if !acted {
            acted = self.reconcile_old(d, &mut old, &new).await?;
        }
        let refs: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();
        if !acted && complete(d, &calc_status(d, &refs, Some(&new))) {
            self.cleanup(d, &old).await?;
        }
        self.sync_status(d, &refs, Some(&new), true).await
    }

    /// Scale old ReplicaSets down as far as maxUnavailable allows (upstream's reconcileOldReplicaSets).
    async fn reconcile_old(&self, d: &Deployment, old: &mut [ReplicaSet], new: &ReplicaSet) -> Result<bool> {
        let old_count: i32 = old.iter().map(rs_replicas).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = old_count + rs_replicas(new);
        let (_, max_unavail) = d_fenceposts(d);
        let min_available = replicas_of(d) - max_unavail;
        let avail = |r: &ReplicaSet| r.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
        let new_unavail = rs_replicas(new) - avail(new);
        let max_down = all_count - min_available - new_unavail;
        if max_down <= 0 {
            return Ok(false);
        }
        old.sort_by_key(|r| (creation_secs(&r.metadata), r.metadata.name.clone()));
        // First the unhealthy replicas of old ReplicaSets.
        let mut cleaned = 0;
        for rs in old.iter_mut() {
            if cleaned >= max_down {
                break;
            }
            let spec = rs_replicas(rs);
            if spec == 0 || spec == avail(rs) {
                continue;
            }
            let down = (max_down - cleaned).min(spec - avail(rs));
            self.scale_rs(rs, spec - down, d).await?;
            cleaned += down;
        }
        // Then healthy ones, keeping minAvailable.
        let available: i32 = old.iter().map(|r| avail(r).min(rs_replicas(r))).sum::<i32>() + avail(new);
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in old.iter_mut() {
                if scaled >= total {
                    break;
                }
                let spec = rs_replicas(rs);
                if spec == 0 {
                    continue;
                }
                let down = spec.min(total - scaled);
                self.scale_rs(rs, spec - down, d).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&self, d: &mut Deployment, rss: Vec<ReplicaSet>) -> Result<Option<Duration>> {
        let (new, mut old) = self.new_and_old(d, rss, false).await?;
        let mut acted = false;
        for rs in old.iter_mut() {
            if rs_replicas(rs) != 0 {
                acted |= self.scale_rs(rs, 0, d).await?;
            }
        }
        let refs: Vec<&ReplicaSet> = old.iter().chain(new.iter()).collect();
        if acted {
            return self.sync_status(d, &refs, new.as_ref(), true).await;
        }
        // Wait until no pod of an old ReplicaSet is left running.
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let old_uids: Vec<String> = old.iter().filter_map(|r| r.metadata.uid.clone()).collect();
        let running = self.ctx.pods.list_ns(&ns).iter().any(|p| {
            controller_ref(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid)) && !matches!(pod_phase(p), "Succeeded" | "Failed")
        });
        if running {
            return self.sync_status(d, &refs, new.as_ref(), true).await;
        }
        let (new, old) = match new {
            Some(n) => (n, old),
            None => {
                let rss: Vec<ReplicaSet> = old.into_iter().collect();
                let (n, o) = self.new_and_old(d, rss, true).await?;
                (n.expect("created"), o)
            }
        };
        let mut new = new;
        self.scale_rs(&mut new, replicas_of(d), d).await?;
        let refs: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();
        if complete(d, &calc_status(d, &refs, Some(&new))) {
            self.cleanup(d, &old).await?;
        }
        self.sync_status(d, &refs, Some(&new), true).await
    }

    /// Resize (and pause): proportional scaling across active ReplicaSets (upstream's sync + scale).
    async fn sync_scale(&self, d: &mut Deployment, rss: Vec<ReplicaSet>, paused: bool) -> Result<Option<Duration>> {
        let (new, mut old) = self.new_and_old(d, rss, false).await?;
        let mut new = new;
        let want = replicas_of(d);
        let (surge, _) = d_fenceposts(d);
        let active: Vec<usize> = (0..old.len()).filter(|&i| rs_replicas(&old[i]) > 0).collect();
        let new_active = new.as_ref().is_some_and(|n| rs_replicas(n) > 0);
        let n_active = active.len() + usize::from(new_active);
        if n_active <= 1 {
            // One active (or none: the newest) takes all replicas.
            if new_active || (n_active == 0 && new.is_some()) {
                let n = new.as_mut().unwrap();
                self.scale_rs(n, want, d).await?;
            } else if let Some(&i) = active.first() {
                self.scale_rs(&mut old[i], want, d).await?;
            } else if let Some(latest) = old.iter_mut().max_by_key(|r| creation_secs(&r.metadata)) {
                self.scale_rs(latest, want, d).await?;
            }
        } else if is_rolling(d) {
            let allowed = if want > 0 { want + surge } else { 0 };
            let mut all: Vec<&mut ReplicaSet> = old.iter_mut().filter(|r| rs_replicas(r) > 0).collect();
            if let Some(n) = new.as_mut().filter(|n| rs_replicas(n) > 0) {
                all.push(n);
            }
            let current: i32 = all.iter().map(|r| rs_replicas(r)).sum();
            let to_add = allowed - current;
            if to_add > 0 {
                all.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then(creation_secs(&b.metadata).cmp(&creation_secs(&a.metadata))));
            } else {
                all.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then(creation_secs(&a.metadata).cmp(&creation_secs(&b.metadata))));
            }
            let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let mut added = 0;
            let mut sizes = Vec::new();
            for rs in all.iter() {
                let ann = rs.metadata.annotations.as_ref().and_then(|a| a.get(MAX_REPLICAS)).and_then(|v| v.parse().ok());
                let p = proportion(rs_replicas(rs), ann, want, surge, status_replicas, to_add, added);
                sizes.push(rs_replicas(rs) + p);
                added += p;
            }
            if to_add != added && !sizes.is_empty() {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            for (rs, size) in all.into_iter().zip(sizes) {
                self.scale_rs(rs, size, d).await?;
            }
        }
        let refs: Vec<&ReplicaSet> = old.iter().chain(new.iter()).collect();
        if paused {
            self.cleanup(d, &old).await?;
        }
        self.sync_status(d, &refs, new.as_ref(), !paused).await
    }

    /// Delete old, empty ReplicaSets beyond revisionHistoryLimit, oldest revision first.
    async fn cleanup(&self, d: &Deployment, old: &[ReplicaSet]) -> Result<()> {
        let limit = d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
        let mut cleanable: Vec<&ReplicaSet> = old.iter().filter(|r| !is_terminating(&r.metadata)).collect();
        if cleanable.len() <= limit {
            return Ok(());
        }
        cleanable.sort_by_key(|r| (revision(r), creation_secs(&r.metadata)));
        let diff = cleanable.len() - limit;
        for rs in cleanable.into_iter().take(diff) {
            let st = rs.status.clone().unwrap_or_default();
            if rs_replicas(rs) != 0 || st.replicas != 0 || rs.metadata.generation > st.observed_generation {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            tracing::info!(replicaset = %name, "deleting old replica set beyond revisionHistoryLimit");
            match self.rs_api(rs.metadata.namespace.as_deref().unwrap_or("")).delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn check_paused_condition(&self, d: &mut Deployment) -> Result<()> {
        if d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_none() {
            return Ok(());
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let reason = progressing(d).map(|c| c.reason.clone().unwrap_or_default());
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            set_condition(d, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused");
            self.write_status(d).await?;
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            set_condition(d, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed");
            self.write_status(d).await?;
        }
        Ok(())
    }

    /// Compute status and conditions, write them if changed, and say when to
    /// look again for the progress deadline or minReadySeconds.
    async fn sync_status(&self, d: &mut Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>, rolling: bool) -> Result<Option<Duration>> {
        let old_status = d.status.clone().unwrap_or_default();
        let mut st = calc_status(d, all, new);
        let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).filter(|s| *s != i32::MAX);
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let mut requeue = None;
        if let (Some(secs), true) = (deadline, rolling) {
            let cur = progressing(d).cloned();
            let new_name = new.and_then(|n| n.metadata.name.clone()).unwrap_or_default();
            let done = st.replicas == st.updated_replicas && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some("NewReplicaSetAvailable");
            if !paused && !done {
                let mut probe = d.clone();
                probe.status = Some(st.clone());
                if complete(d, &st) {
                    set_condition(&mut probe, "Progressing", "True", "NewReplicaSetAvailable", &format!("ReplicaSet {new_name:?} has successfully progressed."));
                } else if making_progress(&old_status, &st) {
                    let keep = cur.as_ref().filter(|c| c.status == "True").and_then(|c| c.last_transition_time.clone());
                    set_condition(&mut probe, "Progressing", "True", "ReplicaSetUpdated", &format!("ReplicaSet {new_name:?} is progressing."));
                    if let Some(t) = keep {
                        cond_mut(&mut probe, "Progressing").unwrap().last_transition_time = Some(t);
                    }
                } else if let Some(c) = cur.as_ref().filter(|c| c.reason.as_deref() != Some("ProgressDeadlineExceeded")) {
                    let last = c.last_update_time.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
                    let left = last + i64::from(secs) - Timestamp::now().as_second();
                    if left <= 0 {
                        set_condition(&mut probe, "Progressing", "False", "ProgressDeadlineExceeded", &format!("ReplicaSet {new_name:?} has timed out progressing."));
                    } else {
                        requeue = Some(Duration::from_secs(left as u64 + 1));
                    }
                }
                st.conditions = probe.status.and_then(|s| s.conditions);
            }
        }
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if min_ready > 0 && st.ready_replicas != st.available_replicas {
            requeue = Some(requeue.map_or(Duration::from_secs(min_ready as u64), |r: Duration| r.min(Duration::from_secs(min_ready as u64))));
        }
        if strip_times(&st) != strip_times(&old_status) {
            d.status = Some(st);
            self.write_status(d).await?;
        }
        Ok(requeue)
    }

    async fn write_status(&self, d: &Deployment) -> Result<()> {
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), d.metadata.namespace.as_deref().unwrap_or(""));
        let patch = json!({"status": d.status});
        match api.patch_status(d.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn strip_times(s: &DeploymentStatus) -> DeploymentStatus {
    let mut s = s.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_update_time = None;
        c.last_transition_time = None;
    }
    s
}

fn progressing(d: &Deployment) -> Option<&DeploymentCondition> {
    d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Progressing")
}

fn cond_mut<'a>(d: &'a mut Deployment, t: &str) -> Option<&'a mut DeploymentCondition> {
    d.status.as_mut()?.conditions.as_mut()?.iter_mut().find(|c| c.type_ == t)
}

/// Set a condition; lastTransitionTime moves only when the status changes.
fn set_condition(d: &mut Deployment, t: &str, status: &str, reason: &str, msg: &str) {
    let now = Time(Timestamp::now());
    let conds = d.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    let transition = conds.iter().find(|c| c.type_ == t).filter(|c| c.status == status).and_then(|c| c.last_transition_time.clone()).unwrap_or(now.clone());
    if let Some(c) = conds.iter().find(|c| c.type_ == t)
        && c.status == status && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(msg) {
            return;
        }
    conds.retain(|c| c.type_ != t);
    conds.push(DeploymentCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(msg.into()),
        last_update_time: Some(now),
        last_transition_time: Some(transition),
    });
}

fn avail(r: &ReplicaSet) -> i32 {
    r.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Status from the ReplicaSets (upstream's calculateStatus), with the Available condition.
pub fn calc_status(d: &Deployment, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> DeploymentStatus {
    let available: i32 = all.iter().map(|r| avail(r)).sum();
    let total: i32 = all.iter().map(|r| rs_replicas(r)).sum();
    let mut st = d.status.clone().unwrap_or_default();
    st.observed_generation = d.metadata.generation;
    st.replicas = Some(all.iter().map(|r| r.status.as_ref().map(|s| s.replicas).unwrap_or(0)).sum());
    st.updated_replicas = Some(new.and_then(|n| n.status.as_ref()).map(|s| s.replicas).unwrap_or(0));
    st.ready_replicas = Some(all.iter().map(|r| r.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)).sum());
    st.available_replicas = Some(available);
    st.unavailable_replicas = Some((total - available).max(0));
    let (_, max_unavail) = d_fenceposts(d);
    let mut probe = d.clone();
    probe.status = Some(st);
    if available >= replicas_of(d) - max_unavail {
        set_condition(&mut probe, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.");
    } else {
        set_condition(&mut probe, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.");
    }
    let mut st = probe.status.unwrap();
    // Upstream lists Available before Progressing.
    if let Some(c) = st.conditions.as_mut() {
        c.sort_by_key(|c| if c.type_ == "Available" { 0 } else { 1 });
    }
    st
}

/// All replicas updated and available, and nothing old left (upstream's DeploymentComplete).
pub fn complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let want = replicas_of(d);
    st.updated_replicas == Some(want) && st.replicas == Some(want) && st.available_replicas == Some(want) && st.observed_generation >= d.metadata.generation
}

fn making_progress(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let g = |v: Option<i32>| v.unwrap_or(0);
    let old_old = g(old.replicas) - g(old.updated_replicas);
    let new_old = g(new.replicas) - g(new.updated_replicas);
    g(new.updated_replicas) > g(old.updated_replicas) || new_old < old_old || g(new.ready_replicas) > g(old.ready_replicas) || g(new.available_replicas) > g(old.available_replicas)
}
