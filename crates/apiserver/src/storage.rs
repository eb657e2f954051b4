//! Kubernetes objects over the key-value store, as upstream's storage layer
//! keeps them in etcd: one key per object, `resourceVersion` = the key's
//! mod_revision, optimistic concurrency through txn compares on it.
//!
//! Objects are stored as JSON without `metadata.resourceVersion` (it is
//! filled in from the revision on every read).

use std::sync::Arc;

use bytes::Bytes;
use etcdpb::{compare, request_op, response_op, Compare, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RequestOp, TxnRequest};
use futures::StreamExt;
use serde_json::Value;

use crate::kv::{Kv, KvError, WatchStream};
use crate::status::ApiError;

#[derive(Clone)]
pub struct Storage {
    kv: Arc<dyn Kv>,
    /// How often a quiet watch that allows bookmarks gets one (upstream: about a minute).
    pub bookmark_interval: std::time::Duration,
    /// Where Services get their cluster IPs and node ports.
    pub service_ranges: crate::admission::service_alloc::ServiceRanges,
    /// A controller manager runs (garbage collector, namespace controller):
    /// deletions may then wait for it through finalizers, as upstream.
    /// Without one, a namespace's contents are deleted with it and
    /// Foreground/Orphan propagation are accepted but need no finalizer.
    pub controllers: bool,
    /// Namespaces this server deleted lately, looked up in the store rather
    /// than the watch cache until the cache has surely caught up (upstream's
    /// NamespaceLifecycle keeps the same "force live lookup" list), so a
    /// create right after a namespace's deletion is refused here.
    pub recently_deleted_namespaces: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// The ServiceAccount admission plugin runs (`--disable-admission-plugins=ServiceAccount` turns it off).
    pub service_account_admission: bool,
    /// Shared by every clone: one store watch per resource for all API watches.
    pub watch_cache: Arc<crate::watch_cache::WatchCache>,
    /// TLS to kubelets, for the subresources they serve (pods/log, exec, …).
    pub kubelet: crate::kubelet_client::KubeletClient,
    /// Service-account token issuing and checking; None: no key configured
    /// (no TokenRequest, no ServiceAccount admission).
    pub service_accounts: Option<Arc<crate::authn::Tokens>>,
}

/// Why a conditional write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// The key exists (create) or changed since it was read (update/delete).
    Conflict,
    NotFound,
    /// The object was as expected, but a key it claims (a cluster IP, a
    /// node port) is held by another object.
    Claimed,
    Kv(KvError),
}

impl From<KvError> for WriteError {
    fn from(e: KvError) -> Self {
        WriteError::Kv(e)
    }
}

pub fn kv_error(e: KvError) -> ApiError {
    match e {
        KvError::Compacted(_) => ApiError::gone("The resourceVersion for the provided list is too old."),
        KvError::FutureRevision => ApiError::internal("Too large resource version"),
        KvError::TooLarge => ApiError::too_large(),
        KvError::Other(m) => ApiError::internal(m),
    }
}

/// Decode a stored object and stamp its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("corrupt object at {:?}: {e}", String::from_utf8_lossy(&kv.key))))?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(kv.mod_revision.to_string()));
    }
    Ok(v)
}

/// An object in its stored form: compact JSON without
/// `metadata.resourceVersion`, serialized straight from `obj` (no copy of
/// it is made to drop the field).
pub fn encode(obj: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&WithoutResourceVersion(obj)).expect("JSON values always serialize"))
}

struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.0 else { return self.0.serialize(s) };
        let mut map = s.serialize_map(None)?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &MetadataWithout(meta))?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct MetadataWithout<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for MetadataWithout<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter().filter(|(k, _)| *k != "resourceVersion") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn put_op(key: &str, value: Bytes) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(PutRequest { key: Bytes::from(key.to_owned()), value, ..Default::default() })) }
}

fn mod_is(key: &str, rev: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: Bytes::from(key.to_owned()),
        target_union: Some(compare::TargetUnion::ModRevision(rev)),
        range_end: Bytes::new(),
    }
}

pub fn prefix_end(prefix: &str) -> Bytes {
    skiff_store::prefix_end(prefix.as_bytes())
}

pub struct Listed {
    pub items: Vec<KeyValue>,
    pub revision: i64,
    pub more: bool,
    pub remaining: i64,
}

impl Storage {
    pub fn new(kv: Arc<dyn Kv>) -> Storage {
        Storage { kv, bookmark_interval: std::time::Duration::from_secs(60), service_ranges: Default::default(), controllers: false, recently_deleted_namespaces: Default::default(), service_account_admission: true, watch_cache: Arc::new(crate::watch_cache::WatchCache::new(10_000)), kubelet: Default::default(), service_accounts: None }
    }

    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>, KvError> {
        let r = self.kv.range(RangeRequest { key: Bytes::from(key.to_owned()), ..Default::default() }).await?;
        Ok(r.kvs.into_iter().next())
    }

    /// Keys under `prefix` from `start` (inclusive), at `revision` (0: latest), at most `limit` (0: all).
    pub async fn list(&self, prefix: &str, start: Option<&str>, revision: i64, limit: i64) -> Result<Listed, KvError> {
        let key = Bytes::from(start.unwrap_or(prefix).to_owned());
        let r = self.kv.range(RangeRequest { key, range_end: prefix_end(prefix), revision, limit, ..Default::default() }).await?;
        let revision = if revision > 0 { revision } else { r.header.map(|h| h.revision).unwrap_or(0) };
        let remaining = r.count - r.kvs.len() as i64;
        Ok(Listed { more: r.more, items: r.kvs, revision, remaining })
    }

    /// Create `key` if it does not exist. Returns the new revision.
    pub async fn create(&self, key: &str, obj: &Value) -> Result<i64, WriteError> {
        self.write(key, 0, Some(obj), &[], &[]).await
    }

    /// Replace `key` if its mod_revision is still `expected`. Returns the new revision.
    pub async fn update(&self, key: &str, expected: i64, obj: &Value) -> Result<i64, WriteError> {
        self.write(key, expected, Some(obj), &[], &[]).await
    }

    /// Delete `key` if its mod_revision is still `expected`. Returns the deletion revision.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<i64, WriteError> {
        self.write(key, expected, None, &[], &[]).await
    }

    /// One conditional write of an object together with the exclusive keys it
    /// claims and releases, in a single txn, so an allocation (a Service's
    /// cluster IP or node port) can never leak or be handed out twice, even
    /// if the server dies between steps: there are no steps.
    ///
    /// `expected` is the object's mod_revision (0: it must not exist);
    /// `obj` None deletes it. Claimed keys must be absent.
    pub async fn write(&self, key: &str, expected: i64, obj: Option<&Value>, claim: &[String], release: &[String]) -> Result<i64, WriteError> {
        self.write_encoded(key, expected, obj.map(encode), claim, release).await
    }

    /// [`Storage::write`] of an object already in its stored form ([`encode`]),
    /// for callers that answer with those bytes too.
    pub async fn write_encoded(&self, key: &str, expected: i64, value: Option<Bytes>, claim: &[String], release: &[String]) -> Result<i64, WriteError> {
        let mut compare = vec![mod_is(key, expected)];
        let mut success = vec![match value {
            Some(v) => put_op(key, v),
            None => RequestOp { request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest { key: Bytes::from(key.to_owned()), ..Default::default() })) },
        }];
        for c in claim {
            compare.push(mod_is(c, 0));
            success.push(RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest { key: Bytes::from(c.clone()), value: Bytes::from(key.to_owned()), ..Default::default() })),
            });
        }
        for r in release {
            success.push(RequestOp { request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest { key: Bytes::from(r.clone()), ..Default::default() })) });
        }
        // On failure, read the object back to tell a stale write from a taken claim.
        let failure = if claim.is_empty() {
            vec![]
        } else {
            vec![RequestOp { request: Some(request_op::Request::RequestRange(RangeRequest { key: Bytes::from(key.to_owned()), ..Default::default() })) }]
        };
        let r = self.kv.txn(TxnRequest { compare, success, failure }).await?;
        if r.succeeded {
            return Ok(r.header.map(|h| h.revision).unwrap_or(0));
        }
        let current = r.responses.into_iter().find_map(|op| match op.response {
            Some(response_op::Response::ResponseRange(rr)) => Some(rr.kvs.first().map(|kv| kv.mod_revision).unwrap_or(0)),
            _ => None,
        });
        match current {
            Some(rev) if rev == expected => Err(WriteError::Claimed),
            _ => Err(WriteError::Conflict),
        }
    }

    /// Changes under `prefix` after `revision`; with `progress`, empty batches when quiet.
    pub fn watch(&self, prefix: &str, after: i64, progress: Option<std::time::Duration>) -> WatchStream {
        self.kv.watch(Bytes::from(prefix.to_owned()), prefix_end(prefix), after + 1, progress).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_form_drops_only_the_resource_version() {
        let obj = json!({"kind": "Pod", "metadata": {"name": "p", "resourceVersion": "5", "uid": "u"}, "spec": {"resourceVersion": "kept"}});
        let mut want = obj.clone();
        want["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert_eq!(encode(&obj), serde_json::to_vec(&want).unwrap());
        // A read splices it back: the object as it was.
        assert_eq!(crate::rawjson::with_resource_version(&encode(&obj), 5).unwrap(), serde_json::to_vec(&obj).unwrap());
        assert_eq!(encode(&json!([1])), b"[1]".as_slice());
    }
}
