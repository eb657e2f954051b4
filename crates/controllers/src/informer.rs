//! Shared informers: one list+watch per resource type, a local cache
//! (kube-runtime's reflector store), and handlers called for every object
//! added, changed or deleted.
//!
//! Why: controllers read from the cache, never from the API server, so a sync
//! costs no requests; and every controller that cares about a type shares the
//! one watch of it. Handlers only enqueue keys; the work happens in queues.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

type Handler<K> = Box<dyn Fn(&K) + Send + Sync>;

pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    writer: Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Arc<Mutex<Vec<Handler<K>>>>,
    api: Api<K>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        let (store, writer) = reflector::store();
        Arc::new(Informer { store, writer: Mutex::new(Some(writer)), handlers: Default::default(), api })
    }

    /// Call `f` for every object the watch adds, changes or deletes, once the
    /// cache has it (objects of a list: when the whole list is in).
    pub fn on_change(&self, f: impl Fn(&K) + Send + Sync + 'static) {
        self.handlers.lock().push(Box::new(f));
    }

    /// Start the list+watch (once).
    pub fn start(&self) {
        let Some(writer) = self.writer.lock().take() else { return };
        let handlers = self.handlers.clone();
        // The cache drops managedFields, as upstream's controller-manager
        // and scheduler do (client-go's TransformStripManagedFields): no
        // controller reads them, and they are often the largest part of a
        // pod's metadata. An update sent without them keeps the stored ones.
        let stream = watcher(self.api.clone(), watcher::Config::default()).default_backoff().modify(|o| o.meta_mut().managed_fields = None).reflect(writer);
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            // The reflector swaps a (re)list into the store only at InitDone:
            // objects of the list are announced then, not as they arrive, or a
            // worker could look for them in a store that does not have them
            // yet and drop the key (the namespace of a brand-new cluster
            // would never get its default ServiceAccount).
            let mut listed: Vec<K> = Vec::new();
            while let Some(item) = stream.next().await {
                let notify = |obj: &K| {
                    for h in handlers.lock().iter() {
                        h(obj);
                    }
                };
                match item {
                    Ok(watcher::Event::Init) => listed.clear(),
                    Ok(watcher::Event::InitApply(obj)) => listed.push(obj),
                    Ok(watcher::Event::InitDone) => listed.drain(..).for_each(|o| notify(&o)),
                    Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => notify(&obj),
                    Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed, retrying"),
                }
            }
        });
    }

    /// Wait for the initial list. kube's readiness signal wakes only the
    /// last task waiting on it (a oneshot underneath), and several
    /// controllers wait on one informer, so each waiter re-polls briefly.
    pub async fn wait_ready(&self) {
        while tokio::time::timeout(std::time::Duration::from_millis(100), self.store.wait_until_ready()).await.is_err() {}
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    pub fn list_ns(&self, ns: &str) -> Vec<Arc<K>> {
        self.store.state_filter(|o| o.meta().namespace.as_deref() == Some(ns))
    }

    pub fn get(&self, ns: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut r = reflector::ObjectRef::new(name);
        if let Some(ns) = ns {
            r = r.within(ns);
        }
        self.store.get(&r)
    }
}

/// `namespace/name`, upstream's cache key.
pub fn key_of<K: Resource>(o: &K) -> String {
    let m = o.meta();
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        None => m.name.clone().unwrap_or_default(),
    }
}

pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, key),
    }
}
