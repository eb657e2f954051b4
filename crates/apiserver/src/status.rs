//! API errors as `metav1.Status`, with upstream's reasons and codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }
    fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", msg)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn not_found(resource: &str, group: &str, name: &str) -> ApiError {
        let what = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
            .with_details(json!({"name": name, "group": group, "kind": resource}))
    }
    /// A path that names no resource at all.
    pub fn no_route() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }
    pub fn already_exists(resource: &str, group: &str, name: &str) -> ApiError {
        let what = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        ApiError::new(409, "AlreadyExists", format!("{what} \"{name}\" already exists"))
            .with_details(json!({"name": name, "group": group, "kind": resource}))
    }
    pub fn conflict(resource: &str, group: &str, name: &str, why: &str) -> ApiError {
        let what = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"))
            .with_details(json!({"name": name, "group": group, "kind": resource}))
    }
    pub fn gone(msg: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", msg)
    }
    pub fn method_not_allowed(msg: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", msg)
    }
    pub fn not_acceptable(msg: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", msg)
    }
    pub fn unsupported_media_type(ct: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"))
            .with_details(json!({"causes": [{"message": format!("unsupported content type {ct:?}")}]}))
    }
    /// 422 with field causes: `(field, message)`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<(String, String)>) -> ApiError {
        let summary: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let what = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let message = format!("{what} \"{name}\" is invalid: {}", if summary.len() == 1 { summary[0].clone() } else { format!("[{}]", summary.join(", ")) });
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(field, message)| {
                // Upstream's cause reasons follow the error type the message starts with.
                let reason = match message.split(':').next().unwrap_or("") {
                    "Required value" => "FieldValueRequired",
                    "Duplicate value" => "FieldValueDuplicate",
                    "Unsupported value" => "FieldValueNotSupported",
                    "Forbidden" => "FieldValueForbidden",
                    "Not found" => "FieldValueNotFound",
                    "Too long" => "FieldValueTooLong",
                    _ => "FieldValueInvalid",
                };
                json!({"reason": reason, "message": message, "field": field})
            })
            .collect();
        ApiError::new(422, "Invalid", message).with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }
    pub fn forbidden(resource: &str, group: &str, name: &str, why: &str) -> ApiError {
        let what = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
        ApiError::new(403, "Forbidden", format!("{what} \"{name}\" is forbidden: {why}"))
            .with_details(json!({"name": name, "group": group, "kind": resource}))
    }
    pub fn namespace_terminating(ns: &str) -> ApiError {
        ApiError::new(403, "Forbidden", format!("unable to create new content in namespace {ns} because it is being terminated"))
            .with_details(json!({"name": ns, "kind": "namespaces", "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}))
    }
    /// 504: the request could not be served in time (e.g. a resourceVersion the store has not reached).
    pub fn timeout(msg: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", msg).with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
    }
    /// 409 for server-side apply conflicts: causes name the fields.
    pub fn apply_conflict(message: String, causes: Vec<(String, String)>) -> ApiError {
        let causes: Vec<Value> = causes.into_iter().map(|(field, message)| json!({"reason": "FieldManagerConflict", "message": message, "field": field})).collect();
        ApiError::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }
    /// 429: a PodDisruptionBudget (or load) says not now.
    pub fn too_many_requests(msg: impl Into<String>, causes: Vec<(&str, String)>) -> ApiError {
        let causes: Vec<Value> = causes.into_iter().map(|(reason, message)| json!({"reason": reason, "message": message})).collect();
        ApiError::new(429, "TooManyRequests", msg).with_details(json!({"causes": causes}))
    }
    /// 413: the object is over the store's request limit.
    pub fn too_large() -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 1572864")
    }
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", msg)
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, [("content-type", "application/json")], self.to_status().to_string()).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
