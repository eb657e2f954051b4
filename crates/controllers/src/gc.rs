//! The garbage collector, for every resource type the API server serves.
//!
//! Why: deleting an owner must clean up what it owns, whatever the kinds
//! (a Deployment's ReplicaSets, a Service's EndpointSlices, a ConfigMap a
//! user made the owner of a Secret). Dependents point at owners through
//! `metadata.ownerReferences`. At start the collector discovers every type
//! that can be listed, watched and deleted (except events, as upstream),
//! watches them all and keeps a graph: uid → object (kind, name, owners,
//! deletion state) and owner uid → dependents. From it, as upstream:
//! - a dependent whose owners are all gone is deleted (background; or
//!   foreground if an owner is being deleted in the foreground and the
//!   dependent has dependents itself); one with a live owner left only loses
//!   the references to the gone ones. An owner absent from the graph is
//!   checked with a live GET (matching uid), so a lagging watch never gets
//!   a live object deleted;
//! - foreground (`foregroundDeletion` finalizer on an owner being deleted):
//!   its dependents are deleted, and the finalizer is removed once no
//!   dependent with `blockOwnerDeletion` is left;
//! - orphan (`orphan` finalizer): the references to the owner are removed
//!   from its dependents, then the finalizer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use parking_lot::Mutex;
use serde_json::json;

use crate::queue::Queue;
use crate::Ctx;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// A watched type: how to reach it.
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

/// One object of the graph.
#[derive(Clone, Debug)]
struct Obj {
    kind: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
    resource_version: Option<String>,
}

impl Obj {
    fn has(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

#[derive(Default)]
struct Graph {
    objs: HashMap<String, Obj>,
    dependents: HashMap<String, HashSet<String>>,
}

pub struct GarbageCollector {
    ctx: Arc<Ctx>,
    kinds: Vec<Kind>,
    /// (apiVersion, kind) → index into `kinds`.
    by_gvk: HashMap<(String, String), usize>,
    graph: Mutex<Graph>,
    queue: Arc<Queue>,
}

/// Upstream's ignoredResources: never collected, never owners worth tracking.
fn ignored(ar: &ApiResource) -> bool {
    ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io")
}

impl GarbageCollector {
    pub fn start(ctx: Arc<Ctx>) {
        tokio::spawn(async move {
            let discovery = loop {
                match Discovery::new(ctx.client.clone()).run().await {
                    Ok(d) => break d,
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collector: discovery failed, retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            };
            let mut kinds = Vec::new();
            let mut by_gvk = HashMap::new();
            for group in discovery.groups() {
                for (ar, caps) in group.recommended_resources() {
                    if ignored(&ar) || !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::WATCH) || !caps.supports_operation(verbs::DELETE) {
                        continue;
                    }
                    by_gvk.insert((ar.api_version.clone(), ar.kind.clone()), kinds.len());
                    kinds.push(Kind { ar, namespaced: matches!(caps.scope, Scope::Namespaced) });
                }
            }
            tracing::info!(types = kinds.len(), "garbage collector watching every deletable type");
            let queue = Queue::new("garbage_collector", ctx.metrics.clone());
            let gc = Arc::new(GarbageCollector { ctx, kinds, by_gvk, graph: Mutex::default(), queue: queue.clone() });
            let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(gc.kinds.len().max(1));
            for i in 0..gc.kinds.len() {
                tokio::spawn(gc.clone().watch(i, tx.clone()));
            }
            // Act only on a complete graph (or after a while, if some type cannot be listed).
            let n = gc.kinds.len();
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                for _ in 0..n {
                    rx.recv().await;
                }
            })
            .await;
            crate::queue::run_workers(queue, 2, move |key| {
                let gc = gc.clone();
                async move { gc.sync(&key).await }
            });
        });
    }

    async fn watch(self: Arc<Self>, kind: usize, synced: tokio::sync::mpsc::Sender<()>) {
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.ctx.client.clone(), &self.kinds[kind].ar);
        // The graph needs only metadata (owners, finalizers, deletion): as
        // upstream's collector does, watch PartialObjectMetadata, so neither
        // the API server nor we serialize and parse whole objects — pods
        // included — for it.
        let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
        let mut listing: Option<HashSet<String>> = None;
        let mut first = true;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => listing = Some(HashSet::new()),
                Ok(Event::InitApply(o)) => {
                    if let (Some(l), Some(uid)) = (listing.as_mut(), o.metadata.uid.clone()) {
                        l.insert(uid);
                    }
                    self.upsert(kind, &o.metadata);
                }
                Ok(Event::InitDone) => {
                    // Objects that vanished while we were not watching.
                    let seen = listing.take().unwrap_or_default();
                    let gone: Vec<String> = self.graph.lock().objs.iter().filter(|(u, o)| o.kind == kind && !seen.contains(*u)).map(|(u, _)| u.clone()).collect();
                    for uid in gone {
                        self.remove(&uid);
                    }
                    if first {
                        first = false;
                        let _ = synced.send(()).await;
                    }
                }
                Ok(Event::Apply(o)) => self.upsert(kind, &o.metadata),
                Ok(Event::Delete(o)) => {
                    if let Some(uid) = &o.metadata.uid {
                        self.remove(uid);
                    }
                }
                Err(e) => tracing::debug!(resource = %self.kinds[kind].ar.plural, error = %e, "garbage collector watch failed, retrying"),
            }
        }
    }

    fn upsert(&self, kind: usize, m: &ObjectMeta) {
        let Some(uid) = m.uid.clone() else { return };
        let obj = Obj {
            kind,
            namespace: m.namespace.clone(),
            name: m.name.clone().unwrap_or_default(),
            owners: m.owner_references.clone().unwrap_or_default(),
            deleting: m.deletion_timestamp.is_some(),
            finalizers: m.finalizers.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone(),
        };
        let mut g = self.graph.lock();
        if let Some(old) = g.objs.get(&uid).cloned() {
            for r in &old.owners {
                if let Some(d) = g.dependents.get_mut(&r.uid) {
                    d.remove(&uid);
                }
            }
        }
        for r in &obj.owners {
            g.dependents.entry(r.uid.clone()).or_default().insert(uid.clone());
        }
        if !obj.owners.is_empty() {
            self.queue.add(format!("dep/{uid}"));
        }
        if obj.deleting && (obj.has(ORPHAN) || obj.has(FOREGROUND)) {
            self.queue.add(format!("own/{uid}"));
            if obj.has(FOREGROUND) {
                for d in g.dependents.get(&uid).into_iter().flatten() {
                    self.queue.add(format!("dep/{d}"));
                }
            }
        }
        g.objs.insert(uid, obj);
    }

    fn remove(&self, uid: &str) {
        let mut g = self.graph.lock();
        let Some(obj) = g.objs.remove(uid) else { return };
        for r in &obj.owners {
            if let Some(d) = g.dependents.get_mut(&r.uid) {
                d.remove(uid);
            }
            // An owner waiting for its dependents may be done now.
            if g.objs.get(&r.uid).is_some_and(|o| o.deleting && o.has(FOREGROUND)) {
                self.queue.add(format!("own/{}", r.uid));
            }
        }
        // Its dependents lost an owner.
        for d in g.dependents.get(uid).into_iter().flatten() {
            self.queue.add(format!("dep/{d}"));
        }
        if g.dependents.get(uid).is_some_and(|d| d.is_empty()) {
            g.dependents.remove(uid);
        }
    }

    fn api(&self, o: &Obj) -> Api<DynamicObject> {
        let k = &self.kinds[o.kind];
        match (&o.namespace, k.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.ctx.client.clone(), ns, &k.ar),
            _ => Api::all_with(self.ctx.client.clone(), &k.ar),
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (what, uid) = key.split_once('/').unwrap_or(("", key));
        let Some(obj) = self.graph.lock().objs.get(uid).cloned() else { return Ok(None) };
        match what {
            "dep" => self.attempt_to_delete(uid, &obj).await,
            "own" => self.process_owner(uid, &obj).await,
            _ => Ok(None),
        }
    }

    /// The owner a reference names, if it exists: from the graph, else a live GET (uid must match).
    async fn owner_state(&self, dependent_ns: Option<&str>, r: &OwnerReference) -> Result<Option<(bool, bool)>> {
        if let Some(o) = self.graph.lock().objs.get(&r.uid) {
            return Ok(Some((o.deleting, o.has(FOREGROUND))));
        }
        let Some(&k) = self.by_gvk.get(&(r.api_version.clone(), r.kind.clone())) else {
            // A kind we cannot look up: never delete on a guess.
            return Ok(Some((false, false)));
        };
        let kind = &self.kinds[k];
        let api: Api<DynamicObject> = match (kind.namespaced, dependent_ns) {
            (true, Some(ns)) => Api::namespaced_with(self.ctx.client.clone(), ns, &kind.ar),
            // A cluster-scoped dependent cannot have a namespaced owner: that reference dangles.
            (true, None) => return Ok(None),
            (false, _) => Api::all_with(self.ctx.client.clone(), &kind.ar),
        };
        Ok(api.get_opt(&r.name).await?.filter(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str())).map(|o| {
            let f = o.metadata.finalizers.unwrap_or_default();
            (o.metadata.deletion_timestamp.is_some(), f.iter().any(|x| x == FOREGROUND))
        }))
    }

    /// Upstream's attemptToDeleteItem.
    async fn attempt_to_delete(&self, uid: &str, obj: &Obj) -> Result<Option<Duration>> {
        if obj.deleting || obj.owners.is_empty() {
            return Ok(None);
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &obj.owners {
            match self.owner_state(obj.namespace.as_deref(), r).await? {
                None => dangling.push(r.clone()),
                Some((true, true)) => waiting.push(r.clone()),
                Some(_) => solid.push(r.clone()),
            }
        }
        let api = self.api(obj);
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(None);
            }
            tracing::info!(kind = %self.kinds[obj.kind].ar.kind, name = %obj.name, dropped = dangling.len() + waiting.len(), "removing references to owners that are gone or being deleted");
            let patch = json!({"metadata": {"ownerReferences": solid, "resourceVersion": obj.resource_version}});
            return self.patch(&api, obj, &patch).await;
        }
        let (has_dependents, dependent_waiting) = {
            let g = self.graph.lock();
            let deps = g.dependents.get(uid);
            (deps.is_some_and(|d| !d.is_empty()), deps.into_iter().flatten().filter_map(|d| g.objs.get(d)).any(|d| d.deleting && d.has(FOREGROUND)))
        };
        let policy = if !waiting.is_empty() && has_dependents {
            // A dependent of ours waiting on us in the foreground too may be a cycle: unblock our
            // references first, so the owner does not wait on us while we wait on ours (upstream's
            // deadlock guard). Otherwise the owner keeps waiting until we, and ours, are gone.
            let refs: Vec<OwnerReference> = obj.owners.iter().map(|r| OwnerReference { block_owner_deletion: if waiting.iter().any(|w| w.uid == r.uid) { Some(false) } else { r.block_owner_deletion }, ..r.clone() }).collect();
            if dependent_waiting && refs != obj.owners {
                return self.patch(&api, obj, &json!({"metadata": {"ownerReferences": refs, "resourceVersion": obj.resource_version}})).await;
            }
            PropagationPolicy::Foreground
        } else if obj.has(ORPHAN) {
            PropagationPolicy::Orphan
        } else if obj.has(FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(kind = %self.kinds[obj.kind].ar.kind, namespace = ?obj.namespace, name = %obj.name, ?policy, "deleting object whose owners are gone or being deleted");
        let dp = DeleteParams { propagation_policy: Some(policy), preconditions: Some(Preconditions { uid: Some(uid.to_owned()), resource_version: None }), ..Default::default() };
        match api.delete(&obj.name, &dp).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An owner being deleted with the orphan or foregroundDeletion finalizer.
    async fn process_owner(&self, uid: &str, obj: &Obj) -> Result<Option<Duration>> {
        if !obj.deleting {
            return Ok(None);
        }
        let deps: Vec<(String, Obj)> = {
            let g = self.graph.lock();
            g.dependents.get(uid).into_iter().flatten().filter_map(|d| g.objs.get(d).map(|o| (d.clone(), o.clone()))).collect()
        };
        if obj.has(ORPHAN) {
            for (_, d) in &deps {
                let refs: Vec<&OwnerReference> = d.owners.iter().filter(|r| r.uid != uid).collect();
                let patch = json!({"metadata": {"ownerReferences": if refs.is_empty() { serde_json::Value::Null } else { json!(refs) }, "resourceVersion": d.resource_version}});
                if let Some(again) = self.patch(&self.api(d), d, &patch).await? {
                    return Ok(Some(again));
                }
            }
            tracing::info!(kind = %self.kinds[obj.kind].ar.kind, name = %obj.name, dependents = deps.len(), "orphaned dependents");
            return self.remove_finalizer(obj, ORPHAN).await;
        }
        if obj.has(FOREGROUND) {
            let blocking: Vec<&(String, Obj)> = deps.iter().filter(|(_, d)| d.owners.iter().any(|r| r.uid == uid && r.block_owner_deletion == Some(true))).collect();
            if blocking.is_empty() {
                return self.remove_finalizer(obj, FOREGROUND).await;
            }
            for (d, _) in &deps {
                self.queue.add(format!("dep/{d}"));
            }
            // Dependents disappearing requeue us through the watches; this is a safety net.
            return Ok(Some(Duration::from_secs(5)));
        }
        Ok(None)
    }

    async fn remove_finalizer(&self, obj: &Obj, f: &str) -> Result<Option<Duration>> {
        let rest: Vec<&String> = obj.finalizers.iter().filter(|x| *x != f).collect();
        let patch = json!({"metadata": {"finalizers": if rest.is_empty() { serde_json::Value::Null } else { json!(rest) }, "resourceVersion": obj.resource_version}});
        tracing::info!(kind = %self.kinds[obj.kind].ar.kind, name = %obj.name, finalizer = %f, "removing finalizer");
        self.patch(&self.api(obj), obj, &patch).await
    }

    /// A merge patch guarded by the resourceVersion in it; a conflict retries
    /// once the watch has shown the newer object (which requeues us anyway).
    async fn patch(&self, api: &Api<DynamicObject>, obj: &Obj, patch: &serde_json::Value) -> Result<Option<Duration>> {
        match api.patch(&obj.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Some(Duration::from_millis(200))),
            Err(e) => Err(e.into()),
        }
    }
}
