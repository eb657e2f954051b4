//! `*/scale`: an autoscaling/v1 Scale view of a workload's replica count,
//! used by `kubectl scale` and autoscalers. Writing it changes only
//! `spec.replicas` of the underlying object.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::handlers::{current, json_response, parse_body, write_error, Request};
use crate::label_selector;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Storage, WriteError};

/// The Scale for a workload object.
fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let sel = &obj["spec"]["selector"];
    // ReplicationControllers have a plain label map; the others a LabelSelector.
    let selector = if obj["kind"] == "ReplicationController" {
        label_selector::to_string(&json!({"matchLabels": sel}))
    } else {
        label_selector::to_string(sel)
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                      "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

pub async fn get(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let (obj, _) = current(storage, &req.target).await?;
    Ok(json_response(StatusCode::OK, &scale_of(&obj)))
}

pub async fn update(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let body = parse_body(req)?;
    let ct = req.headers.get("content-type").and_then(|c| c.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
    for _ in 0..16 {
        let (mut obj, rev) = current(storage, t).await?;
        let mut scale = scale_of(&obj);
        match (req.method.as_str(), ct.as_str()) {
            ("PUT", _) => scale = body.clone(),
            (_, "application/json-patch+json") => crate::patch::json_patch(&mut scale, &body).map_err(ApiError::bad_request)?,
            (_, "application/merge-patch+json") => crate::patch::merge(&mut scale, &body),
            (_, "application/strategic-merge-patch+json") => crate::smp::apply(&mut scale, &body).map_err(ApiError::bad_request)?,
            (_, other) => return Err(ApiError::unsupported_media_type(other)),
        }
        if let Some(want) = scale["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
            if want != rev.to_string() {
                return Err(write_error(WriteError::Conflict, t, t.name()));
            }
        }
        let replicas = match &scale["spec"]["replicas"] {
            Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0 && n <= i32::MAX as i64) => n.as_i64().unwrap(),
            Value::Null => 0,
            other => {
                return Err(ApiError::invalid("Scale", "autoscaling", t.name(), vec![("spec.replicas".into(), format!("Invalid value: {other}: must be greater than or equal to 0"))]));
            }
        };
        if obj["spec"]["replicas"].as_i64() != Some(replicas) {
            obj["spec"]["replicas"] = json!(replicas);
            let g = obj["metadata"]["generation"].as_i64().unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        if req.q("dryRun") == Some("All") {
            return Ok(json_response(StatusCode::OK, &scale_of(&obj)));
        }
        match storage.update(&t.key(), rev, &obj).await {
            Ok(new_rev) => {
                obj["metadata"]["resourceVersion"] = json!(new_rev.to_string());
                return Ok(json_response(StatusCode::OK, &scale_of(&obj)));
            }
            Err(WriteError::Conflict) => continue,
            Err(e) => return Err(write_error(e, t, t.name())),
        }
    }
    Err(write_error(WriteError::Conflict, t, t.name()))
}
