//! Subresources that are not just "the object, restricted to a part":
//! `pods/binding` (the scheduler's write), `pods/eviction` (the
//! disruption-budget-aware delete), `*/scale` (autoscaling/v1 Scale) and
//! `pods/log`, `serviceaccounts/token` (TokenRequest), and the upgraded `pods/exec`, `pods/attach` and
//! `pods/portforward` (`stream.rs`). `status` and `ephemeralcontainers` are ordinary updates of
//! part of the object and are handled in [`crate::handlers`].

mod binding;
mod eviction;
mod log;
mod scale;
mod token;
pub mod stream;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::handlers::{json_response, Request};
use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;

/// Serve `req` if it names one of these subresources.
pub async fn dispatch(storage: &Storage, req: &Request) -> Option<ApiResult<Response>> {
    let sub = req.target.sub.as_deref()?;
    Some(match (sub, &req.method) {
        ("binding", &Method::POST) => binding::create(storage, req).await,
        ("eviction", &Method::POST) => eviction::create(storage, req).await,
        ("scale", &Method::GET) => scale::get(storage, req).await,
        ("scale", &Method::PUT | &Method::PATCH) => scale::update(storage, req).await,
        ("log", &Method::GET) => log(storage, req).await,
        ("token", &Method::POST) => token::create(storage, req).await,
        ("binding" | "eviction" | "scale" | "log" | "token", m) => {
            Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({m})")))
        }
        _ => return None,
    })
}

/// The Status a successful subresource POST returns.
fn success(code: u16) -> Response {
    json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::OK), &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}))
}

/// `pods/log`: served by the node's kubelet. Until a kubelet runs the
/// pod, answer as upstream does for a pod whose containers never started.
async fn log(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let (pod, _) = crate::handlers::current(storage, t).await?;
    let containers: Vec<String> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect();
    let container = match req.q("container") {
        Some(c) => {
            let init = pod["spec"]["initContainers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str());
            if !containers.iter().any(|n| n == c) && !init.into_iter().any(|n| n == c) {
                return Err(ApiError::bad_request(format!("container {c} is not valid for pod {}", t.name())));
            }
            c.to_string()
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                t.name(),
                containers.join(" ")
            )))
        }
    };
    if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        if let Some(r) = log::proxy(storage, node, t.namespace.as_deref().unwrap_or("default"), t.name(), &container, |k| req.q(k).map(str::to_string)).await? {
            return Ok(r);
        }
    }
    let why = if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty) { "ContainerCreating" } else { "no kubelet serves this node yet" };
    Err(ApiError::bad_request(format!("container \"{container}\" in pod \"{}\" is waiting to start: {why}", t.name())))
}
