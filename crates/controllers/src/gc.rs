//! The garbage collector, for the Deployment → ReplicaSet → Pod graph.
//!
//! Why: deleting an owner must clean up what it owns. Dependents point at
//! owners through ownerReferences; this controller walks that graph from the
//! informer caches and:
//! - background: deletes a dependent once none of its owners exists (checked
//!   with a live GET, so a stale cache never deletes a live object);
//! - foreground: for an owner being deleted with the `foregroundDeletion`
//!   finalizer, deletes its dependents (foreground too) and removes the
//!   finalizer once no dependent with blockOwnerDeletion is left;
//! - orphan: for an owner being deleted with the `orphan` finalizer, removes
//!   the ownerReferences to it from its dependents, then the finalizer.
//!
//! Scope today: owners Deployment and ReplicaSet, dependents ReplicaSet and
//! Pod (the graph the workload controllers build). Upstream's collector
//! discovers every resource type; that comes later.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Resource;
use serde_json::json;

use crate::informer::split_key;
use crate::Ctx;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

pub struct GarbageCollector {
    ctx: Arc<Ctx>,
}

/// Queue keys: `dep/<Kind>/<ns>/<name>` (check a dependent) or `own/<Kind>/<ns>/<name>` (an owner being deleted).
fn dep_key(kind: &str, m: &ObjectMeta) -> String {
    format!("dep/{kind}/{}/{}", m.namespace.as_deref().unwrap_or(""), m.name.as_deref().unwrap_or(""))
}

impl GarbageCollector {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("garbage_collector", ctx.metrics.clone());
        // Any change to a potential owner: look at it (finalizers) and at its dependents.
        let (qq, pods, rss) = (q.clone(), ctx.pods.clone(), ctx.rss.clone());
        ctx.deploys.on_change(move |d| {
            let uid = d.metadata.uid.clone().unwrap_or_default();
            qq.add(format!("own/Deployment/{}", &dep_key("", &d.metadata)[5..]));
            for rs in rss.list_ns(d.metadata.namespace.as_deref().unwrap_or("")) {
                if owned_by(&rs.metadata, &uid) {
                    qq.add(dep_key("ReplicaSet", &rs.metadata));
                }
            }
            let _ = &pods;
        });
        let (qq, pods) = (q.clone(), ctx.pods.clone());
        ctx.rss.on_change(move |rs| {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            if rs.metadata.owner_references.as_ref().is_some_and(|r| !r.is_empty()) {
                qq.add(dep_key("ReplicaSet", &rs.metadata));
            }
            qq.add(format!("own/ReplicaSet/{}", &dep_key("", &rs.metadata)[5..]));
            for p in pods.list_ns(rs.metadata.namespace.as_deref().unwrap_or("")) {
                if owned_by(&p.metadata, &uid) {
                    qq.add(dep_key("Pod", &p.metadata));
                }
            }
        });
        let qq = q.clone();
        ctx.pods.on_change(move |p| {
            if p.metadata.owner_references.as_ref().is_some_and(|r| !r.is_empty()) {
                qq.add(dep_key("Pod", &p.metadata));
            }
        });
        let gc = Arc::new(GarbageCollector { ctx });
        crate::queue::run_workers(q, 2, move |key| {
            let gc = gc.clone();
            async move { gc.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let mut parts = key.splitn(3, '/');
        let (what, kind, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (ns, name) = split_key(rest);
        let ns = ns.unwrap_or("");
        match (what, kind) {
            ("dep", "Pod") => match self.ctx.pods.get(Some(ns), name) {
                Some(p) => self.check_dependent::<Pod>(&p.metadata).await,
                None => Ok(None),
            },
            ("dep", "ReplicaSet") => match self.ctx.rss.get(Some(ns), name) {
                Some(r) => self.check_dependent::<ReplicaSet>(&r.metadata).await,
                None => Ok(None),
            },
            ("own", "Deployment") => match self.ctx.deploys.get(Some(ns), name) {
                Some(d) => self.check_owner::<Deployment>(&d.metadata).await,
                None => Ok(None),
            },
            ("own", "ReplicaSet") => match self.ctx.rss.get(Some(ns), name) {
                Some(r) => self.check_owner::<ReplicaSet>(&r.metadata).await,
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Does the owner a reference names still exist (live read, matching uid)?
    async fn owner_exists(&self, ns: &str, r: &OwnerReference) -> Result<Option<ObjectMeta>> {
        let meta = match (r.api_version.as_str(), r.kind.as_str()) {
            ("apps/v1", "Deployment") => Api::<Deployment>::namespaced(self.ctx.client.clone(), ns).get_opt(&r.name).await?.map(|o| o.metadata),
            ("apps/v1", "ReplicaSet") => Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), ns).get_opt(&r.name).await?.map(|o| o.metadata),
            // Owners of kinds we do not watch are assumed present.
            _ => return Ok(Some(ObjectMeta { uid: Some(r.uid.clone()), ..Default::default() })),
        };
        Ok(meta.filter(|m| m.uid.as_deref() == Some(r.uid.as_str())))
    }

    async fn check_dependent<K>(&self, m: &ObjectMeta) -> Result<Option<Duration>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let refs = m.owner_references.clone().unwrap_or_default();
        if refs.is_empty() || m.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let ns = m.namespace.as_deref().unwrap_or("");
        let mut live = 0;
        let mut foreground_owner = false;
        for r in &refs {
            match self.owner_exists(ns, r).await? {
                None => {}
                Some(om) => {
                    live += 1;
                    let fin = om.finalizers.unwrap_or_default();
                    if om.deletion_timestamp.is_some() && fin.iter().any(|f| f == FOREGROUND) {
                        foreground_owner = true;
                    }
                }
            }
        }
        let name = m.name.as_deref().unwrap_or("");
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), ns);
        // Foreground cascades, except for pods, which own nothing in this graph (no finalizer left waiting).
        let dp = if foreground_owner && K::kind(&()) != "Pod" { DeleteParams::foreground() } else { DeleteParams::background() };
        if live == 0 || (foreground_owner && live == 1) {
            tracing::info!(kind = %K::kind(&()), namespace = %ns, %name, foreground = foreground_owner, "deleting object whose owners are gone or being deleted");
            let mut dp = dp;
            dp.preconditions = Some(kube::api::Preconditions { uid: m.uid.clone(), resource_version: None });
            match api.delete(name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn check_owner<K>(&self, m: &ObjectMeta) -> Result<Option<Duration>>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        if m.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let fin = m.finalizers.clone().unwrap_or_default();
        let uid = m.uid.clone().unwrap_or_default();
        let ns = m.namespace.as_deref().unwrap_or("");
        let deps = self.dependents(ns, &uid);
        if fin.iter().any(|f| f == ORPHAN) {
            for (kind, dm) in &deps {
                let refs: Vec<OwnerReference> = dm.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                let refs = if refs.is_empty() { serde_json::Value::Null } else { json!(refs) };
                let patch = json!({"metadata": {"ownerReferences": refs, "uid": dm.uid}});
                let n = dm.name.as_deref().unwrap_or("");
                let r = match *kind {
                    "Pod" => Api::<Pod>::namespaced(self.ctx.client.clone(), ns).patch(n, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
                    _ => Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), ns).patch(n, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
                };
                match r {
                    Ok(()) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.remove_finalizer::<K>(m, ORPHAN).await?;
            return Ok(None);
        }
        if fin.iter().any(|f| f == FOREGROUND) {
            let blocking = deps.iter().filter(|(_, dm)| dm.owner_references.iter().flatten().any(|r| r.uid == uid && r.block_owner_deletion == Some(true))).count();
            if blocking == 0 {
                self.remove_finalizer::<K>(m, FOREGROUND).await?;
                return Ok(None);
            }
            for (kind, dm) in &deps {
                if dm.deletion_timestamp.is_some() {
                    continue;
                }
                let n = dm.name.as_deref().unwrap_or("");
                let r = match *kind {
                    // Pods own nothing here: background, so no finalizer is left waiting on them.
                    "Pod" => Api::<Pod>::namespaced(self.ctx.client.clone(), ns).delete(n, &DeleteParams::background()).await.map(|_| ()),
                    _ => Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), ns).delete(n, &DeleteParams::foreground()).await.map(|_| ()),
                };
                match r {
                    Ok(()) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            // Dependents disappearing re-trigger us through the informers; poll as a safety net.
            return Ok(Some(Duration::from_secs(2)));
        }
        Ok(None)
    }

    fn dependents(&self, ns: &str, uid: &str) -> Vec<(&'static str, ObjectMeta)> {
        let mut out: Vec<(&'static str, ObjectMeta)> = Vec::new();
        for rs in self.ctx.rss.list_ns(ns) {
            if owned_by(&rs.metadata, uid) {
                out.push(("ReplicaSet", rs.metadata.clone()));
            }
        }
        for p in self.ctx.pods.list_ns(ns) {
            if owned_by(&p.metadata, uid) {
                out.push(("Pod", p.metadata.clone()));
            }
        }
        out
    }

    async fn remove_finalizer<K>(&self, m: &ObjectMeta, f: &str) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let rest: Vec<String> = m.finalizers.iter().flatten().filter(|x| *x != f).cloned().collect();
        let patch = json!({"metadata": {"finalizers": if rest.is_empty() { serde_json::Value::Null } else { json!(rest) }, "resourceVersion": m.resource_version}});
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), m.namespace.as_deref().unwrap_or(""));
        tracing::info!(kind = %K::kind(&()), name = ?m.name, finalizer = %f, "removing finalizer");
        match api.patch(m.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn owned_by(m: &ObjectMeta, uid: &str) -> bool {
    m.owner_references.iter().flatten().any(|r| r.uid == uid)
}
