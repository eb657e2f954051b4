//! `POST /apis/authentication.k8s.io/v1/tokenreviews`: an authenticated
//! caller (a webhook, an aggregated server, a workload checking a peer's
//! service-account token) asks who a bearer token belongs to.
//!
//! Upstream's semantics (pkg/registry/authentication/tokenreview): the
//! review itself always succeeds (201) once the body is a TokenReview with
//! a token; whether the *token* authenticated is in `status`. With no
//! `spec.audiences` the API server's own audiences are checked and
//! reported; otherwise the token must be valid for one of them and
//! `status.audiences` is the intersection. Nothing is stored, so
//! `dryRun` changes nothing. The token is echoed back in `spec` as
//! upstream does, but never logged.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::handlers::{check_type, json_response, parse_body, typed, with_warnings, Request};
use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;

pub async fn create(storage: &Storage, admin_token: &str, req: &Request) -> ApiResult<Response> {
    let res = req.target.res;
    let mut obj = parse_body(req)?;
    check_type(res, &mut obj)?;
    let (mut review, warnings) = typed(req, res, obj, true)?;
    if let Some(m) = review["metadata"].as_object_mut() {
        // Cluster-scoped: a namespace in the body is dropped, as on create.
        m.remove("namespace");
    }
    let token = review["spec"]["token"].as_str().unwrap_or("").to_string();
    if token.is_empty() {
        return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
    }
    let requested: Vec<String> = review["spec"]["audiences"].as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
    let audiences = if requested.is_empty() { super::api_audiences(storage) } else { requested };
    review["status"] = match super::review_token(storage, admin_token, &token, &audiences).await {
        Ok((user, auds)) => json!({"authenticated": true, "user": user.user_info(), "audiences": auds}),
        Err(why) => {
            tracing::debug!(%why, "TokenReview: token not authenticated");
            json!({"user": {}, "error": why})
        }
    };
    Ok(with_warnings(json_response(StatusCode::CREATED, &review), &warnings))
}
