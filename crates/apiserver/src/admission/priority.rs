//! The Priority admission plugin: a pod's `spec.priority` comes from its
//! PriorityClass (or the global default class), never from the client, so
//! the scheduler can trust it for preemption.

use serde_json::{json, Value};

use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, kv_error, Storage};

const PREFIX: &str = "/registry/scheduling.k8s.io/priorityclasses/";

/// The classes every cluster has (upstream creates them at start).
pub fn system_classes() -> [(&'static str, i64, &'static str); 2] {
    [
        ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ]
}

pub async fn resolve(storage: &Storage, pod: &mut Value) -> ApiResult<()> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let forbidden = |why: String| ApiError::forbidden("pods", "", &pod_name, &why);
    let wanted = pod["spec"]["priorityClassName"].as_str().filter(|s| !s.is_empty()).map(str::to_string);
    // PriorityClasses from the watch cache, as upstream's plugin reads its
    // lister; a class the cache has not seen yet is looked up in the store.
    let cache = storage.watch_cache.get(storage, PREFIX).await.ok();
    let class: Option<Value> = match &wanted {
        Some(name) => {
            let key = format!("{PREFIX}{name}");
            match cache.as_ref().and_then(|c| c.get(key.as_bytes())) {
                Some(pc) => Some(pc.value().clone()),
                None => match storage.get(&key).await.map_err(kv_error)? {
                    Some(kv) => Some(decode(&kv)?),
                    None => return Err(forbidden(format!("no PriorityClass with name {name} was found"))),
                },
            }
        }
        None => {
            let is_default = |pc: &Value| pc["globalDefault"] == json!(true);
            match &cache {
                Some(c) => c.list(PREFIX.as_bytes()).0.iter().rfind(|pc| is_default(pc.value())).map(|pc| pc.value().clone()),
                None => storage.list(PREFIX, None, 0, 0).await.map_err(kv_error)?.items.iter().map(decode).collect::<Result<Vec<_>, _>>()?.into_iter().rfind(is_default),
            }
        }
    };
    let (value, policy) = match &class {
        Some(pc) => (pc["value"].as_i64().unwrap_or(0), pc["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority").to_string()),
        None => (0, "PreemptLowerPriority".to_string()),
    };
    if let Some(given) = pod["spec"]["priority"].as_i64() {
        if given != value {
            return Err(forbidden(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name")));
        }
    }
    let spec = &mut pod["spec"];
    spec["priority"] = json!(value);
    if spec["preemptionPolicy"].is_null() {
        spec["preemptionPolicy"] = json!(policy);
    }
    if let (None, Some(pc)) = (&wanted, &class) {
        spec["priorityClassName"] = pc["metadata"]["name"].clone();
    }
    Ok(())
}
