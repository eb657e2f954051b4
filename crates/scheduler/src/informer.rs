//! Informers: one watch each for nodes, pods, priority classes and PodDisruptionBudgets (list,
//! then watch, relisting on expiry — kube-runtime's watcher), applied to the
//! shared cache. A relist replaces the cache's contents: objects not seen
//! again are deleted.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::cache::{pod_key, State};
use crate::Shared;

/// Runs a watch forever, calling `apply(state, Some(obj))` on add/update and
/// `delete(state, key)` on delete; on relist, deletes what disappeared.
async fn run<K, A, D, F>(api: Api<K>, shared: Arc<Shared>, key: F, apply: A, delete: D, synced: tokio::sync::oneshot::Sender<()>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    A: Fn(&mut State, K),
    D: Fn(&mut State, &str),
    F: Fn(&K) -> String,
{
    // managedFields are dropped before caching, as upstream's scheduler
    // does: nothing here reads them, and 50,000 cached pods carried them.
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().modify(|o| o.meta_mut().managed_fields = None).boxed();
    let mut known: HashSet<String> = HashSet::new();
    let mut relist: Option<HashSet<String>> = None;
    let mut synced = Some(synced);
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watch");
                continue;
            }
        };
        let mut st = shared.state.lock();
        match ev {
            Event::Init => relist = Some(HashSet::new()),
            Event::InitApply(o) => {
                let k = key(&o);
                relist.get_or_insert_with(HashSet::new).insert(k.clone());
                known.insert(k);
                apply(&mut st, o);
            }
            Event::InitDone => {
                let seen = relist.take().unwrap_or_default();
                for gone in known.difference(&seen).cloned().collect::<Vec<_>>() {
                    delete(&mut st, &gone);
                    known.remove(&gone);
                }
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            Event::Apply(o) => {
                known.insert(key(&o));
                apply(&mut st, o);
            }
            Event::Delete(o) => {
                let k = key(&o);
                known.remove(&k);
                delete(&mut st, &k);
            }
        }
        drop(st);
        shared.wake.notify_one();
    }
}

/// Starts the four informers; resolves once each has listed once.
pub async fn start(client: kube::Client, shared: Arc<Shared>) {
    let (t1, r1) = tokio::sync::oneshot::channel();
    let (t2, r2) = tokio::sync::oneshot::channel();
    let (t3, r3) = tokio::sync::oneshot::channel();
    let name = |o: &PriorityClass| o.metadata.name.clone().unwrap_or_default();
    tokio::spawn(run(
        Api::<PriorityClass>::all(client.clone()),
        shared.clone(),
        name,
        |st, pc| {
            st.priority_classes.insert(pc.metadata.name.clone().unwrap_or_default(), (pc.value, pc.global_default.unwrap_or(false)));
        },
        |st, k| {
            st.priority_classes.remove(k);
        },
        t1,
    ));
    let _ = r1.await;
    tokio::spawn(run(Api::<Node>::all(client.clone()), shared.clone(), |n: &Node| n.metadata.name.clone().unwrap_or_default(), |st, n| st.upsert_node(n), |st, k| st.delete_node(k), t2));
    tokio::spawn(run(Api::<Pod>::all(client.clone()), shared.clone(), pod_key, |st, p| st.upsert_pod(p), |st, k| st.delete_pod(k), t3));
    let (t4, r4) = tokio::sync::oneshot::channel();
    let pdb_key = |b: &PodDisruptionBudget| format!("{}/{}", b.metadata.namespace.as_deref().unwrap_or("default"), b.metadata.name.as_deref().unwrap_or(""));
    tokio::spawn(run(Api::<PodDisruptionBudget>::all(client), shared.clone(), pdb_key, |st, b| st.upsert_pdb(b), |st, k| st.delete_pdb(k), t4));
    let _ = r2.await;
    let _ = r3.await;
    let _ = r4.await;
}
