//! Reading an object from memory: the watch cache of its resource (started
//! on first use, then kept current by one store watch), with a store read
//! when the cache does not have it. The cache may lag a write by a moment;
//! a miss is never trusted alone, as upstream's cached getters fall back to
//! a live read.
//!
//! Why: authentication and pod admission run per request, and a store
//! read each would cost more than the work they guard.

use std::sync::Arc;

use crate::resources;
use crate::storage::{decode, Storage};
use crate::watch_cache::CachedObject;

/// The object `plural` `ns`/`name` (core group), or None if it does not exist.
pub async fn object(storage: &Storage, plural: &str, ns: Option<&str>, name: &str) -> Option<Arc<CachedObject>> {
    let res = resources::find("", "v1", plural)?;
    let prefix = res.key_prefix();
    let key = match ns {
        Some(ns) => format!("{prefix}{ns}/{name}"),
        None => format!("{prefix}{name}"),
    };
    if let Ok(cacher) = storage.watch_cache.get(storage, &prefix).await {
        // A prefix scan of exactly the key: the object, and any whose name extends it.
        let (objs, _) = cacher.list(key.as_bytes());
        if let Some(o) = objs.into_iter().find(|o| o["metadata"]["name"].as_str() == Some(name)) {
            return Some(o);
        }
    }
    let kv = storage.get(&key).await.ok()??;
    decode(&kv).ok().map(|v| Arc::new(CachedObject::new(v)))
}
