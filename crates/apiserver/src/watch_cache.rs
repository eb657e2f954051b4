//! The watch cache (upstream's "cacher"): one store watch per resource
//! feeds a ring of decoded events and a copy of the current objects, and
//! every API watch of that resource is served from it. A thousand
//! `kubectl get pods -w` cost the store one watcher, and each event is
//! decoded once (and, for the common case, serialized once).
//!
//! A watch whose resourceVersion is older than the ring falls back to a
//! direct store watch, which answers 410 Gone if the store has compacted
//! it; a watcher that falls behind the ring is closed, so its client
//! re-watches from the last version it saw, as with upstream.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::storage::{decode, Storage};

/// One version of an object: serialized with its resourceVersion once, so
/// lists and watch events are written by copying bytes, and decoded only
/// when something needs the value (a selector, a Table, an old-style
/// metadata view) — once, however many watchers ask; for selectors only
/// what they read is kept ([`Selectable`]). Most events of a busy
/// resource (pod creates under load) are never decoded here. Derefs to the
/// decoded value.
pub struct CachedObject {
    value: OnceLock<Value>,
    /// What selectors read of it, for the resource (group, kind) that asked
    /// first: kept instead of the decoded object, which for a pod is several
    /// times its JSON in memory, and the watch cache holds every object.
    selectable: OnceLock<((&'static str, &'static str), Selectable)>,
    json: Bytes,
    /// Where the resourceVersion's digits are in `json`, if it has one.
    rv_at: Option<usize>,
}

/// An object's labels and the selectable fields of its resource, as label
/// and field selectors match them.
#[derive(Clone, Debug, Default)]
pub struct Selectable {
    pub labels: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
}

impl Selectable {
    /// Whether the object passes a label and a field selector (empty ones pass all).
    pub fn passes(&self, labels: &crate::selector::Selector, fields: &crate::selector::Selector) -> bool {
        (labels.is_empty() || labels.matches(&self.labels)) && (fields.is_empty() || fields.matches_fields(&self.fields))
    }
}

impl CachedObject {
    /// From a stored object: its bytes with the resourceVersion spliced in
    /// (no decoding; objects not in the stored form are decoded now).
    fn from_kv(kv: &etcdpb::KeyValue) -> Option<CachedObject> {
        match crate::rawjson::with_resource_version_at(&kv.value, kv.mod_revision) {
            Some((json, rv_at)) => Some(CachedObject { value: OnceLock::new(), selectable: OnceLock::new(), json: Bytes::from(json), rv_at }),
            None => Some(CachedObject::new(decode(kv).ok()?)),
        }
    }

    pub fn new(value: Value) -> CachedObject {
        let json = Bytes::from(serde_json::to_vec(&value).expect("JSON values always serialize"));
        CachedObject { value: OnceLock::from(value), selectable: OnceLock::new(), json, rv_at: None }
    }

    /// This object as the last state of a deletion at `rev`.
    fn deleted_at(&self, rev: i64) -> CachedObject {
        if let Some(json) = self.rv_at.and_then(|at| crate::rawjson::replace_resource_version(&self.json, at, rev)) {
            return CachedObject { value: OnceLock::new(), selectable: OnceLock::new(), json: Bytes::from(json), rv_at: self.rv_at };
        }
        let mut gone = self.value().clone();
        gone["metadata"]["resourceVersion"] = json!(rev.to_string());
        CachedObject::new(gone)
    }

    /// The object as JSON, resourceVersion included.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The labels and selectable fields of this object as resource `of`
    /// (group, kind) sees them, computed by `read` from the value. Decodes
    /// the bytes once but keeps only what `read` returns (unless the value
    /// was decoded for another reason). Another resource sharing this
    /// storage gets its own, uncached.
    pub fn selectable(&self, of: (&'static str, &'static str), read: impl Fn(&Value) -> Selectable) -> std::borrow::Cow<'_, Selectable> {
        let compute = || match self.value.get() {
            Some(v) => read(v),
            None => read(&serde_json::from_slice(&self.json).unwrap_or(Value::Null)),
        };
        let (who, s) = self.selectable.get_or_init(|| (of, compute()));
        if *who == of { std::borrow::Cow::Borrowed(s) } else { std::borrow::Cow::Owned(compute()) }
    }

    pub fn value(&self) -> &Value {
        // The bytes were written from a Value (or spliced, byte for byte the same), so they decode.
        self.value.get_or_init(|| serde_json::from_slice(&self.json).unwrap_or(Value::Null))
    }

    /// `{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":…}`
    /// from the bytes, as serializing the decoded partial object would give.
    pub fn partial_json(&self) -> Option<Vec<u8>> {
        let meta = crate::rawjson::metadata_bytes(&self.json)?;
        let mut b = Vec::with_capacity(meta.len() + 80);
        b.extend_from_slice(br#"{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":"#);
        b.extend_from_slice(meta);
        b.push(b'}');
        Some(b)
    }
}

impl std::ops::Deref for CachedObject {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

/// One change, decoded once.
pub struct CachedEvent {
    pub revision: i64,
    pub key: Bytes,
    /// The new object; for a deletion, the last state with the deletion's resourceVersion.
    pub obj: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
    pub deleted: bool,
    /// `{"type":…,"object":…}\n` for watchers that see the natural type.
    line: OnceLock<Bytes>,
}

impl CachedEvent {
    pub fn natural_type(&self) -> &'static str {
        if self.deleted {
            "DELETED"
        } else if self.prev.is_none() {
            "ADDED"
        } else {
            "MODIFIED"
        }
    }
    /// The serialized event, shared by every watcher that sends it as is.
    pub fn line(&self) -> Bytes {
        self.line.get_or_init(|| event_line_raw(self.natural_type(), self.obj.json())).clone()
    }
}

/// One line of a JSON watch stream: `{"type":…,"object":…}`.
///
/// `type` comes first, as upstream writes it. A client that decodes the
/// event as a tagged enum (kube-rs's `WatchEvent`, client-go's decoder) can
/// then decode the object straight from the bytes; with `object` first,
/// serde must buffer the whole object before it knows which variant it is.
pub fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut b, kind).expect("strings serialize");
    b.extend_from_slice(b",\"object\":");
    serde_json::to_writer(&mut b, obj).expect("values serialize");
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

/// [`event_line`] for an object that is already serialized (same bytes).
pub fn event_line_raw(kind: &str, obj_json: &[u8]) -> Bytes {
    let mut b = Vec::with_capacity(obj_json.len() + 40);
    b.extend_from_slice(b"{\"type\":");
    serde_json::to_writer(&mut b, kind).expect("strings serialize");
    b.extend_from_slice(b",\"object\":");
    b.extend_from_slice(obj_json);
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

struct State {
    objects: BTreeMap<Bytes, Arc<CachedObject>>,
    events: VecDeque<Arc<CachedEvent>>,
    /// Everything up to this revision is reflected.
    revision: i64,
    /// Every event after this revision is in `events`.
    oldest: i64,
    dead: bool,
}

pub struct Cacher {
    state: RwLock<State>,
    tick: tokio::sync::watch::Sender<i64>,
}

/// Where a cached watch starts.
pub enum Start {
    /// The current objects as ADDED (for this revision), then changes.
    Snapshot(Vec<Arc<CachedObject>>, i64),
    /// Changes after this revision.
    After(i64),
}

impl Cacher {
    /// The cache's revision (all changes up to it are in).
    pub fn revision(&self) -> i64 {
        self.state.read().unwrap().revision
    }

    pub fn is_dead(&self) -> bool {
        self.state.read().unwrap().dead
    }

    /// Plan a watch under `prefix`: None if `after` is older than the ring.
    pub fn start(&self, prefix: &[u8], after: Option<i64>) -> Option<Start> {
        let st = self.state.read().unwrap();
        match after {
            None => {
                let objs = st.objects.range(Bytes::copy_from_slice(prefix)..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect();
                Some(Start::Snapshot(objs, st.revision))
            }
            Some(r) if r >= st.oldest => Some(Start::After(r)),
            Some(_) => None,
        }
    }

    /// Events after `cursor` under `prefix`; Err if the ring has moved past `cursor`.
    pub fn since(&self, prefix: &[u8], cursor: i64) -> Result<(Vec<Arc<CachedEvent>>, i64), ()> {
        let st = self.state.read().unwrap();
        if cursor < st.oldest || st.dead {
            return Err(());
        }
        // Events are in revision order; find the first after the cursor from the back.
        let first = st.events.partition_point(|e| e.revision <= cursor);
        let evs = st.events.range(first..).filter(|e| e.key.starts_with(prefix)).cloned().collect();
        Ok((evs, st.revision))
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.tick.subscribe()
    }

    /// The object at `key` as the cache has it (possibly a little behind the store).
    pub fn get(&self, key: &[u8]) -> Option<Arc<CachedObject>> {
        self.state.read().unwrap().objects.get(key).cloned()
    }

    /// Objects under `prefix` at the cache's revision (a list with resourceVersion=0).
    pub fn list(&self, prefix: &[u8]) -> (Vec<Arc<CachedObject>>, i64) {
        let st = self.state.read().unwrap();
        let objs = st.objects.range(Bytes::copy_from_slice(prefix)..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect();
        (objs, st.revision)
    }
}

/// All cachers, one per resource, started on first use.
pub struct WatchCache {
    cachers: Mutex<HashMap<String, Arc<Cacher>>>,
    capacity: usize,
}

impl WatchCache {
    pub fn new(capacity: usize) -> WatchCache {
        WatchCache { cachers: Mutex::new(HashMap::new()), capacity: capacity.max(16) }
    }

    /// How many resources have a live cacher.
    pub fn resources(&self) -> usize {
        self.cachers.lock().unwrap().values().filter(|c| !c.is_dead()).count()
    }

    /// The cacher for a resource's key prefix, started (list + watch) if needed.
    pub async fn get(&self, storage: &Storage, resource_prefix: &str) -> Result<Arc<Cacher>, crate::kv::KvError> {
        self.get_from(storage, resource_prefix, None).await
    }

    /// [`WatchCache::get`] for a watch from revision `at`: a new cacher
    /// starts at that revision if the store still has it, so the watch is
    /// served from the cache. (Clients list, then watch from the list's
    /// revision; a cacher started at the latest revision would not hold the
    /// writes in between, and every such watch would go to the store.)
    pub async fn get_from(&self, storage: &Storage, resource_prefix: &str, at: Option<i64>) -> Result<Arc<Cacher>, crate::kv::KvError> {
        if let Some(c) = self.cachers.lock().unwrap().get(resource_prefix).filter(|c| !c.is_dead()) {
            return Ok(c.clone());
        }
        let at_rev = match at {
            // Compacted or in the future: start at the latest; the watch then goes to the store.
            Some(r) if r > 0 => storage.list(resource_prefix, None, r, 0).await.ok(),
            _ => None,
        };
        let listed = match at_rev {
            Some(l) => l,
            None => storage.list(resource_prefix, None, 0, 0).await?,
        };
        let mut objects = BTreeMap::new();
        for kv in &listed.items {
            if let Some(o) = CachedObject::from_kv(kv) {
                objects.insert(kv.key.clone(), Arc::new(o));
            }
        }
        let rev = listed.revision;
        let (tick, _) = tokio::sync::watch::channel(rev);
        let cacher = Arc::new(Cacher { state: RwLock::new(State { objects, events: VecDeque::new(), revision: rev, oldest: rev, dead: false }), tick });
        {
            let mut map = self.cachers.lock().unwrap();
            // Another request may have started one meanwhile; keep the first.
            if let Some(c) = map.get(resource_prefix).filter(|c| !c.is_dead()) {
                return Ok(c.clone());
            }
            map.insert(resource_prefix.to_string(), cacher.clone());
        }
        let stream = storage.watch(resource_prefix, rev, Some(Duration::from_millis(500)));
        tokio::spawn(feed(cacher.clone(), stream, self.capacity));
        metrics_started(resource_prefix);
        Ok(cacher)
    }
}

fn metrics_started(prefix: &str) {
    tracing::debug!(prefix, "watch cache started");
}

/// Apply store events to the cache until the store watch ends.
async fn feed(cacher: Arc<Cacher>, mut stream: crate::kv::WatchStream, capacity: usize) {
    while let Some(batch) = stream.next().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache lost its store watch");
                break;
            }
        };
        // Decode outside the lock: readers (lists, watchers) are not held up by it.
        let decoded: Vec<Option<Arc<CachedObject>>> =
            batch.events.iter().map(|e| e.kv.as_ref().filter(|_| e.r#type != 1).and_then(CachedObject::from_kv).map(Arc::new)).collect();
        let revision = {
            let mut st = cacher.state.write().unwrap();
            for (e, new) in batch.events.iter().zip(decoded) {
                let Some(kv) = e.kv.as_ref() else { continue };
                let prev = st.objects.get(&kv.key).cloned();
                let ev = if e.r#type == 1 {
                    let Some(p) = st.objects.remove(&kv.key) else { continue };
                    let gone = p.deleted_at(kv.mod_revision);
                    CachedEvent { revision: kv.mod_revision, key: kv.key.clone(), obj: Arc::new(gone), prev: Some(p), deleted: true, line: OnceLock::new() }
                } else {
                    let Some(v) = new else { continue };
                    st.objects.insert(kv.key.clone(), v.clone());
                    CachedEvent { revision: kv.mod_revision, key: kv.key.clone(), obj: v, prev, deleted: false, line: OnceLock::new() }
                };
                st.events.push_back(Arc::new(ev));
                while st.events.len() > capacity {
                    if let Some(old) = st.events.pop_front() {
                        st.oldest = old.revision;
                    }
                }
            }
            st.revision = st.revision.max(batch.revision);
            st.revision
        };
        cacher.tick.send_replace(revision);
    }
    cacher.state.write().unwrap().dead = true;
    cacher.tick.send_replace(i64::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_keep_what_they_read_not_the_decoded_object() {
        let kv = etcdpb::KeyValue { key: "/registry/pods/default/a".into(), value: br#"{"kind":"Pod","metadata":{"name":"a","labels":{"app":"web"}},"spec":{"nodeName":"n1"}}"#.to_vec().into(), mod_revision: 7, ..Default::default() };
        let obj = CachedObject::from_kv(&kv).unwrap();
        let calls = std::cell::Cell::new(0);
        let read = |v: &Value| {
            calls.set(calls.get() + 1);
            Selectable { labels: [("app".to_string(), v["metadata"]["labels"]["app"].as_str().unwrap().to_string())].into(), fields: [("spec.nodeName".to_string(), v["spec"]["nodeName"].as_str().unwrap().to_string())].into() }
        };
        let s = obj.selectable(("", "Pod"), read);
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.fields["spec.nodeName"], "n1");
        let _ = obj.selectable(("", "Pod"), read);
        assert_eq!(calls.get(), 1, "read once, then kept");
        assert!(obj.value.get().is_none(), "the decoded object is not kept");
        let _ = obj.selectable(("events.k8s.io", "Event"), read);
        assert_eq!(calls.get(), 2, "another resource reads for itself");
    }

    #[test]
    fn watch_lines_put_the_type_first_as_upstream_does() {
        let line = event_line("ADDED", &json!({"kind": "Pod", "metadata": {"name": "a"}}));
        assert_eq!(&line[..], b"{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}}\n");
        let raw = event_line_raw("DELETED", br#"{"kind":"Pod"}"#);
        assert_eq!(&raw[..], b"{\"type\":\"DELETED\",\"object\":{\"kind\":\"Pod\"}}\n");
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v, json!({"type": "DELETED", "object": {"kind": "Pod"}}));
    }
}
