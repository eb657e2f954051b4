//! `POST pods/<name>/eviction`: a delete that respects
//! PodDisruptionBudgets. Upstream's rules: pods that are not running
//! (Pending, Succeeded, Failed) or already terminating are deleted freely;
//! otherwise the one PDB selecting the pod must allow a disruption, which
//! is consumed (recorded in `status.disruptedPods`) before the delete.

use axum::response::Response;
use serde_json::{json, Value};

use crate::delete_options::DeleteOptions;
use crate::handlers::{current, delete_one, parse_body, Request};
use crate::label_selector;
use crate::meta;
use crate::resources;
use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, kv_error, Storage, WriteError};

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

pub async fn create(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let body = parse_body(req)?;
    let name = t.name().to_string();
    if let Some(n) = body["metadata"]["name"].as_str().filter(|n| !n.is_empty() && *n != name) {
        return Err(ApiError::bad_request(format!("name in URL does not match name in Eviction object (\"{n}\" != \"{name}\")")));
    }
    let opts = DeleteOptions::parse(&body["deleteOptions"], &|k| req.q(k).map(str::to_string))?;
    for _ in 0..16 {
        let (pod, _) = current(storage, t).await?;
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        let exempt = matches!(phase, "Pending" | "Succeeded" | "Failed") || !pod["metadata"]["deletionTimestamp"].is_null();
        if !exempt {
            match take_disruption(storage, &pod, opts.dry_run).await? {
                Taken::Yes => {}
                Taken::Retry => continue,
            }
        }
        delete_one(storage, t, &opts).await?;
        return Ok(super::success(201));
    }
    Err(ApiError::conflict("pods", "", &name, "too many concurrent changes to the pod's disruption budget; try again"))
}

enum Taken {
    Yes,
    Retry,
}

/// Consume one allowed disruption from the PDB selecting `pod`, if any.
async fn take_disruption(storage: &Storage, pod: &Value, dry_run: bool) -> ApiResult<Taken> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let res = resources::find("policy", "v1", "poddisruptionbudgets").expect("PDBs are a built-in resource");
    let prefix = format!("{}{ns}/", res.key_prefix());
    let listed = storage.list(&prefix, None, 0, 0).await.map_err(kv_error)?;
    let labels = label_selector::labels(&pod["metadata"]);
    let mut matching: Vec<(Value, i64)> = Vec::new();
    for kv in &listed.items {
        let pdb = decode(kv)?;
        if label_selector::matches(&pdb["spec"]["selector"], &labels) {
            matching.push((pdb, kv.mod_revision));
        }
    }
    let (mut pdb, rev) = match matching.len() {
        0 => return Ok(Taken::Yes),
        1 => matching.pop().unwrap(),
        _ => return Err(ApiError::internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")),
    };
    let pdb_name = pdb["metadata"]["name"].as_str().unwrap_or("").to_string();
    let status = &pdb["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if observed < pdb["metadata"]["generation"].as_i64().unwrap_or(1) {
        return Err(ApiError::too_many_requests(VIOLATION, vec![("DisruptionBudget", format!("The disruption budget {pdb_name} is still being processed by the server."))]));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    if allowed <= 0 {
        let (want, have) = (status["desiredHealthy"].as_i64().unwrap_or(0), status["currentHealthy"].as_i64().unwrap_or(0));
        return Err(ApiError::too_many_requests(VIOLATION, vec![("DisruptionBudget", format!("The disruption budget {pdb_name} needs {want} healthy pods and has {have} currently"))]));
    }
    if dry_run {
        return Ok(Taken::Yes);
    }
    pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    pdb["status"]["disruptedPods"][pod_name] = json!(meta::now_rfc3339());
    match storage.update(&format!("{prefix}{pdb_name}"), rev, &pdb).await {
        Ok(_) => Ok(Taken::Yes),
        Err(WriteError::Conflict) => Ok(Taken::Retry),
        Err(WriteError::Kv(e)) => Err(kv_error(e)),
        Err(_) => Ok(Taken::Retry),
    }
}
