//! Upstream's `ServiceAccount` admission plugin, for pod creates: the pod's
//! ServiceAccount (default: `default`) must exist, and unless automounting
//! is off, every container gets the `kube-api-access-<random>` projected
//! volume (a bound token, the cluster CA, the namespace) mounted read-only
//! at [`MOUNT_PATH`]. The ServiceAccount's imagePullSecrets are copied to
//! a pod that names none.
//!
//! The plugin is on when the server issues tokens and runs the controller
//! manager: without it nothing creates the `default` ServiceAccounts or
//! the `kube-root-ca.crt` ConfigMaps, and every pod would be refused (as
//! upstream with the plugin enabled and the controllers off).
//!
//! ServiceAccounts are read from the watch cache ([`crate::authn::lookup`]):
//! pod creation is a hot path. The `default` ServiceAccount of a namespace
//! created a moment ago may not exist yet; as upstream, the create waits
//! for it a while (here until it reaches the watch cache, at most
//! [`DEFAULT_WAIT`]) before the pod is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::authn::lookup;
use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;
use crate::watch_cache::CachedObject;

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Upstream's token lifetime for the projected volume: an hour plus 7
/// seconds, so a kubelet can tell an admission-made volume apart.
const TOKEN_EXPIRATION: i64 = 3607;
/// How long a create waits for a namespace's `default` ServiceAccount.
/// Upstream tries ten times 100–200 ms apart; Skiff waits longer because
/// its controller manager starts in the same process as the API server,
/// and on a loaded machine its first sync may take a few seconds. The
/// create goes on as soon as the ServiceAccount reaches the watch cache.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Between store reads while waiting, if the cache does not wake us first.
const POLL: Duration = Duration::from_millis(200);

pub fn enabled(storage: &Storage) -> bool {
    storage.service_account_admission && storage.controllers && storage.service_accounts.is_some()
}

/// Admit a pod being created.
pub async fn admit(storage: &Storage, pod: &mut Value) -> ApiResult<()> {
    if !enabled(storage) || pod["metadata"]["annotations"][MIRROR_ANNOTATION].is_string() {
        return Ok(());
    }
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = &mut pod["spec"];
    let name = spec["serviceAccountName"].as_str().filter(|s| !s.is_empty()).unwrap_or("default").to_string();
    spec["serviceAccountName"] = json!(name);
    spec["serviceAccount"] = json!(name);
    let Some(sa) = find(storage, &ns, &name).await else {
        return Err(ApiError::forbidden("pods", "", &pod_name, &format!("error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found")));
    };
    if automount(&sa, spec) {
        mount(spec);
    }
    let pull = &sa["imagePullSecrets"];
    if spec["imagePullSecrets"].as_array().is_none_or(Vec::is_empty) && pull.as_array().is_some_and(|a| !a.is_empty()) {
        spec["imagePullSecrets"] = json!(pull.as_array().unwrap().iter().map(|s| json!({"name": s["name"]})).collect::<Vec<_>>());
    }
    Ok(())
}

/// The ServiceAccount `ns`/`name`; `default` is waited for (see [`DEFAULT_WAIT`]).
async fn find(storage: &Storage, ns: &str, name: &str) -> Option<Arc<CachedObject>> {
    if let Some(sa) = lookup::object(storage, "serviceaccounts", Some(ns), name).await {
        return Some(sa);
    }
    if name != "default" {
        return None;
    }
    let prefix = crate::resources::find("", "v1", "serviceaccounts")?.key_prefix();
    let mut tick = storage.watch_cache.get(storage, &prefix).await.ok()?.subscribe();
    let deadline = Instant::now() + DEFAULT_WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        // Woken by any ServiceAccount change (or the poll interval).
        if let Ok(Err(_)) = tokio::time::timeout(left.min(POLL), tick.changed()).await {
            tokio::time::sleep(left.min(POLL)).await;
        }
        if let Some(sa) = lookup::object(storage, "serviceaccounts", Some(ns), name).await {
            return Some(sa);
        }
    }
    None
}

/// The pod's `automountServiceAccountToken` wins, then the ServiceAccount's; default on.
fn automount(sa: &Value, spec: &Value) -> bool {
    spec["automountServiceAccountToken"].as_bool().or(sa["automountServiceAccountToken"].as_bool()).unwrap_or(true)
}

/// The projected volume upstream's plugin adds.
fn volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Mount the token volume in every (init) container that has nothing at
/// [`MOUNT_PATH`]; add the volume if one does (reusing a
/// `kube-api-access-*` volume the pod already has).
fn mount(spec: &mut Value) {
    let existing = spec["volumes"].as_array().into_iter().flatten().filter_map(|v| v["name"].as_str()).find(|n| n.starts_with(VOLUME_PREFIX)).map(str::to_string);
    let name = existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", crate::meta::random_suffix()));
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == MOUNT_PATH) {
                continue;
            }
            let m = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
            match c["volumeMounts"].as_array_mut() {
                Some(ms) => ms.push(m),
                None => c["volumeMounts"] = json!([m]),
            }
            needed = true;
        }
    }
    if needed && existing.is_none() {
        match spec["volumes"].as_array_mut() {
            Some(vs) => vs.push(volume(&name)),
            None => spec["volumes"] = json!([volume(&name)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_every_container_once() {
        let mut spec = json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {"name": "b", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}], "volumes": [{"name": "x", "emptyDir": {}}]});
        mount(&mut spec);
        let vols = spec["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        let name = vols[1]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(vols[1]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(spec["initContainers"][0]["volumeMounts"][0], json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH}));
        assert_eq!(spec["containers"][0]["volumeMounts"][1]["name"], name);
        // A container with its own mount there is left alone.
        assert_eq!(spec["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn nothing_added_when_every_container_has_a_mount() {
        let mut spec = json!({"containers": [{"name": "a", "volumeMounts": [{"name": "own", "mountPath": MOUNT_PATH}]}]});
        mount(&mut spec);
        assert!(spec["volumes"].is_null());
    }

    #[test]
    fn automount_pod_wins_over_service_account() {
        assert!(automount(&json!({}), &json!({})));
        assert!(!automount(&json!({"automountServiceAccountToken": false}), &json!({})));
        assert!(automount(&json!({"automountServiceAccountToken": false}), &json!({"automountServiceAccountToken": true})));
        assert!(!automount(&json!({}), &json!({"automountServiceAccountToken": false})));
    }
}
