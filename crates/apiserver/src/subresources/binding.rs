//! `POST pods/<name>/binding`: how the scheduler assigns a pod to a node.
//! It only ever sets `spec.nodeName` once; a second binding is a conflict,
//! which is what makes two schedulers racing on one pod safe.

use axum::response::Response;
use serde_json::{json, Value};

use crate::handlers::{current, parse_body, write_error, Request};
use crate::meta;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Storage, WriteError};

pub async fn create(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let body = parse_body(req)?;
    let pod_name = t.name().to_string();
    if let Some(n) = body["metadata"]["name"].as_str().filter(|n| !n.is_empty() && *n != pod_name) {
        return Err(ApiError::bad_request(format!("name in URL does not match name in Binding object (\"{n}\" != \"{pod_name}\")")));
    }
    let kind = body["target"]["kind"].as_str().unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        return Err(ApiError::invalid("Binding", "", &pod_name, vec![("target.kind".into(), format!("Invalid value: {kind:?}: must be empty or 'Node'"))]));
    }
    let node = body["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid("Binding", "", &pod_name, vec![("target.name".into(), "Required value".into())]));
    }
    for _ in 0..16 {
        let (mut pod, rev) = current(storage, t).await?;
        if let Some(uid) = body["metadata"]["uid"].as_str().filter(|u| !u.is_empty()) {
            if pod["metadata"]["uid"].as_str() != Some(uid) {
                return Err(ApiError::conflict("pods", "", &pod_name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", pod["metadata"]["uid"].as_str().unwrap_or(""))));
            }
        }
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            return Err(ApiError::conflict("pods/binding", "", &pod_name, &format!("pod {pod_name} is being deleted, cannot be assigned to a host")));
        }
        if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict("pods/binding", "", &pod_name, &format!("pod {pod_name} is already assigned to node \"{bound}\"")));
        }
        pod["spec"]["nodeName"] = json!(node);
        if let Some(a) = body["metadata"]["annotations"].as_object() {
            for (k, v) in a {
                pod["metadata"]["annotations"][k] = v.clone();
            }
        }
        set_scheduled(&mut pod);
        if req.q("dryRun") == Some("All") {
            return Ok(super::success(201));
        }
        match storage.update(&t.key(), rev, &pod).await {
            Ok(_) => return Ok(super::success(201)),
            Err(WriteError::Conflict) => continue,
            Err(e) => return Err(write_error(e, t, &pod_name)),
        }
    }
    Err(write_error(WriteError::Conflict, t, &pod_name))
}

/// PodScheduled=True, replacing an earlier Unschedulable condition.
fn set_scheduled(pod: &mut Value) {
    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()});
    let conds = &mut pod["status"]["conditions"];
    match conds.as_array_mut() {
        Some(list) => {
            list.retain(|c| c["type"] != "PodScheduled");
            list.insert(0, cond);
        }
        None => *conds = json!([cond]),
    }
}
