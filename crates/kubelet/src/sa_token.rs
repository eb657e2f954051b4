//! Projected `serviceAccountToken` volume sources: the kubelet asks the API
//! server for a token (TokenRequest for the pod's ServiceAccount, bound to
//! the pod) and writes it as a file.
//!
//! Tokens are kept in memory per (pod uid, audience, lifetime) and reused
//! until 80% of their lifetime has passed (upstream's token manager rule;
//! also never older than 24 hours), then requested again, so a running
//! pod always finds a valid token in its file. The cache is not persisted:
//! after an agent restart every pod gets a fresh token at its first sync.
//! If a refresh fails while the old token is still valid, the old one is
//! kept and the failure logged; the next volume sync (seconds later)
//! retries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::client::Api;

/// Upstream's default lifetime of a projected token.
const DEFAULT_EXPIRATION: i64 = 3600;
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
struct Cached {
    token: String,
    issued: SystemTime,
    expires: SystemTime,
}

impl Cached {
    /// Upstream's `requiresRefresh`: 80% of the lifetime gone, or a day old.
    fn needs_refresh(&self, now: SystemTime) -> bool {
        let ttl = self.expires.duration_since(self.issued).unwrap_or_default();
        let age = now.duration_since(self.issued).unwrap_or_default();
        age >= ttl.mul_f64(0.8) || age >= MAX_AGE
    }
    fn valid(&self, now: SystemTime) -> bool {
        now < self.expires
    }
}

type Key = (String, String, i64);

static CACHE: Mutex<Option<HashMap<Key, Cached>>> = Mutex::new(None);

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The token for a `serviceAccountToken` source of `pod`.
pub async fn token(api: &Api, pod: &Value, source: &Value) -> Result<String> {
    let uid = s(&pod["metadata"]["uid"]).to_string();
    let audience = s(&source["audience"]).to_string();
    let expiration = source["expirationSeconds"].as_i64().unwrap_or(DEFAULT_EXPIRATION);
    let key = (uid, audience, expiration);
    let now = SystemTime::now();
    let cached = CACHE.lock().unwrap().get_or_insert_with(HashMap::new).get(&key).cloned();
    if let Some(c) = cached.as_ref().filter(|c| !c.needs_refresh(now)) {
        return Ok(c.token.clone());
    }
    match request(api, pod, &key.1, expiration).await {
        Ok(fresh) => {
            let token = fresh.token.clone();
            let mut cache = CACHE.lock().unwrap();
            let map = cache.get_or_insert_with(HashMap::new);
            // Tokens of pods that are gone expire here too.
            map.retain(|_, c| c.valid(now));
            map.insert(key, fresh);
            Ok(token)
        }
        Err(e) => match cached {
            Some(c) if c.valid(now) => {
                tracing::warn!(pod = s(&pod["metadata"]["name"]), "refreshing the service-account token failed, keeping the current one: {e:#}");
                Ok(c.token)
            }
            _ => Err(e),
        },
    }
}

async fn request(api: &Api, pod: &Value, audience: &str, expiration: i64) -> Result<Cached> {
    let ns = s(&pod["metadata"]["namespace"]);
    let sa = match s(&pod["spec"]["serviceAccountName"]) {
        "" => "default",
        n => n,
    };
    let audiences: Vec<&str> = if audience.is_empty() { vec![] } else { vec![audience] };
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
        },
    });
    let issued = SystemTime::now();
    let resp = api.ok("POST", &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"), "application/json", Some(&body)).await?;
    let token = s(&resp["status"]["token"]).to_string();
    if token.is_empty() {
        bail!("the TokenRequest for serviceaccount {ns}/{sa} returned no token");
    }
    let granted = resp["spec"]["expirationSeconds"].as_i64().unwrap_or(expiration).max(1);
    Ok(Cached { token, issued, expires: issued + Duration::from_secs(granted as u64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_after_eighty_percent() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = Cached { token: "t".into(), issued: t0, expires: t0 + Duration::from_secs(3600) };
        assert!(!c.needs_refresh(t0 + Duration::from_secs(2879)));
        assert!(c.needs_refresh(t0 + Duration::from_secs(2880)));
        assert!(c.valid(t0 + Duration::from_secs(3599)));
        assert!(!c.valid(t0 + Duration::from_secs(3600)));
        let long = Cached { token: "t".into(), issued: t0, expires: t0 + Duration::from_secs(10 * 86400) };
        assert!(long.needs_refresh(t0 + MAX_AGE));
    }
}
