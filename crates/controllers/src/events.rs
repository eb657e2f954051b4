//! Events about the objects controllers act on (upstream's
//! `record.EventRecorder`), so that `kubectl describe deployment` and
//! `kubectl events` tell what happened ("Scaled up replica set web-… from 0
//! to 2", "Created pod: web-…").
//!
//! Why this shape: an event is a side note, never a reason to slow or fail a
//! sync, so it is posted in the background. And as upstream's spam filter
//! does, events are rate limited per (component, object) — a burst of 25,
//! then one per five minutes — so a 1,000-pod ReplicaSet writes 25 events,
//! not 1,000.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;

/// Upstream's defaultSpamBurst and defaultSpamQPS (1/300 s).
const BURST: f64 = 25.0;
const REFILL_PER_SEC: f64 = 1.0 / 300.0;
/// Upstream keeps 4096 objects' buckets in an LRU; this is the same bound.
const MAX_TRACKED: usize = 4096;

pub struct Recorder {
    client: kube::Client,
    component: &'static str,
    /// involved object uid → (tokens, when last refilled).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &'static str) -> Arc<Recorder> {
        Arc::new(Recorder { client, component, buckets: Mutex::new(HashMap::new()) })
    }

    /// Record a `Normal` or `Warning` event about `object` (of `api_version`/`kind`).
    pub fn event(&self, api_version: &str, kind: &str, object: &ObjectMeta, type_: &str, reason: &str, message: String) {
        let uid = object.uid.clone().unwrap_or_default();
        if !self.allow(&uid) {
            return;
        }
        let ns = object.namespace.clone().unwrap_or_else(|| "default".into());
        let name = object.name.clone().unwrap_or_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let ev = Event {
            metadata: ObjectMeta { name: Some(format!("{name}.{nanos:x}")), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: ObjectReference {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
                name: Some(name),
                namespace: object.namespace.clone(),
                uid: object.uid.clone(),
                resource_version: object.resource_version.clone(),
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource { component: Some(self.component.into()), host: None }),
            reporting_component: Some(self.component.into()),
            reporting_instance: Some(self.component.into()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &ev).await {
                tracing::debug!(error = %e, "could not record event");
            }
        });
    }

    /// Take a token from the object's bucket, if one is left.
    fn allow(&self, uid: &str) -> bool {
        let mut b = self.buckets.lock();
        let now = Instant::now();
        if b.len() >= MAX_TRACKED && !b.contains_key(uid) {
            // Forget the objects whose buckets have refilled: they behave as new ones anyway.
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * REFILL_PER_SEC < BURST);
            if b.len() >= MAX_TRACKED {
                b.clear();
            }
        }
        let (tokens, at) = b.entry(uid.to_owned()).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * REFILL_PER_SEC).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_25_per_object_then_nothing() {
        let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let r = Recorder::new(client, "test");
        assert!((0..25).all(|_| r.allow("a")));
        assert!(!r.allow("a"));
        assert!(r.allow("b"), "buckets are per object");
    }
}
