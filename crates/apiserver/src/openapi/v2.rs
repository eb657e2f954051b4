//! OpenAPI v2 (Swagger 2.0) at `/openapi/v2`: the v3 content of every
//! group-version merged into one document and converted mechanically
//! (`#/components/schemas/` refs become `#/definitions/`, request bodies
//! become `in: body` parameters with `consumes`, response content becomes
//! `schema` with `produces`).
//!
//! Served as JSON or as gnostic protobuf ([`super::v2_proto`]), whichever
//! comes first in `Accept`; kubectl asks only for protobuf (`explain` in
//! 1.27/1.28, `apply`'s patch computation when v3 does not settle it,
//! client-side validation). Anything else gets 406, as from kube-openapi.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{serve, serve_as, v2, GroupVersion};

/// Rewrite a v3 schema into v2 form, recursively.
fn schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        out.insert(k.clone(), json!(r.replace("#/components/schemas/", "#/definitions/")));
                    }
                    // A lone `allOf: [{$ref}]` (v3's way to give a ref siblings) is a plain ref in v2.
                    ("allOf", Value::Array(a)) if a.len() == 1 && a[0].get("$ref").is_some() => {
                        out.insert("$ref".into(), schema(&a[0]["$ref"]));
                    }
                    _ => {
                        out.insert(k.clone(), schema(x));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(schema).collect()),
        Value::String(s) if s.starts_with("#/components/schemas/") => json!(s.replace("#/components/schemas/", "#/definitions/")),
        other => other.clone(),
    }
}

fn parameter(p: &Value) -> Value {
    let mut out = p.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(s)) = out.remove("schema") {
        out.extend(s);
    }
    Value::Object(out)
}

fn operation(op: &Value) -> Value {
    let mut out = op.as_object().cloned().unwrap_or_default();
    let mut params: Vec<Value> = out.remove("parameters").and_then(|p| p.as_array().cloned()).unwrap_or_default().iter().map(parameter).collect();
    if let Some(body) = out.remove("requestBody") {
        let content = body["content"].as_object().cloned().unwrap_or_default();
        let s = content.values().next().map(|c| schema(&c["schema"])).unwrap_or(json!({}));
        params.insert(0, json!({"name": "body", "in": "body", "required": true, "schema": s}));
        out.insert("consumes".into(), json!(content.keys().collect::<Vec<_>>()));
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    let mut produces = Vec::new();
    if let Some(Value::Object(rs)) = out.remove("responses") {
        let mut converted = Map::new();
        for (code, r) in rs {
            let mut c = json!({"description": r["description"]});
            if let Some(content) = r["content"].as_object() {
                for t in content.keys() {
                    if !produces.contains(t) {
                        produces.push(t.clone());
                    }
                }
                if let Some(first) = content.values().next() {
                    c["schema"] = schema(&first["schema"]);
                }
            }
            converted.insert(code, c);
        }
        out.insert("responses".into(), Value::Object(converted));
    }
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}

pub fn document(gvs: impl Iterator<Item = GroupVersion>) -> Value {
    let mut definitions = Map::new();
    let mut paths = Map::new();
    for gv in gvs {
        for (name, s) in gv.schemas {
            definitions.entry(name).or_insert_with(|| schema(&s));
        }
        for (path, item) in gv.paths {
            let item: Map<String, Value> = item
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| match k.as_str() {
                    "parameters" => (k.clone(), Value::Array(v.as_array().into_iter().flatten().map(parameter).collect())),
                    _ => (k.clone(), operation(v)),
                })
                .collect();
            paths.insert(path, Value::Object(item));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::server::KUBE_MINOR)},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}],
    })
}

/// The protobuf media type; kubectl asks with the older `@v1.0` spelling,
/// which Go's mime parser cannot read back, so answers always use this one.
const PROTO: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
const PROTO_OLD: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// `GET /openapi/v2`: the first of JSON or protobuf that `Accept` lists.
pub fn serve_v2(headers: &HeaderMap) -> Response {
    let cache = [("cache-control", "no-cache, private".to_string())];
    let accept = headers.get("accept").and_then(|a| a.to_str().ok()).unwrap_or("*/*");
    for media in accept.split(',').map(|m| m.split(';').next().unwrap_or("").trim()) {
        match media {
            PROTO | PROTO_OLD => return serve_as(&v2().proto, PROTO, headers, &cache),
            "application/json" | "application/*" | "*/*" => return serve(&v2().json, headers, &cache),
            _ => {}
        }
    }
    StatusCode::NOT_ACCEPTABLE.into_response()
}
