//! Server-side apply (`PATCH` with `application/apply-patch+yaml`): the
//! client sends the fields it wants to own; the server merges them in,
//! records the manager's ownership in managedFields, removes fields the
//! manager applied before but no longer does (if nobody else owns them),
//! and refuses (409) to change fields another manager owns unless
//! `force=true`, which takes them over.

pub mod fieldpath;
pub mod managed;
mod merge;

use std::collections::BTreeMap;

use axum::response::Response;
use serde_json::{json, Value};

use crate::handlers::{create_value, current, finish_update, write_error, Request};
use crate::meta;
use crate::status::{ApiError, ApiResult};
use crate::storage::{Storage, WriteError};
use fieldpath::{Path, Set};
use managed::Entry;

/// Parse an apply body: YAML (JSON is YAML too).
pub fn parse_yaml(body: &[u8]) -> ApiResult<Value> {
    if body.len() > 3 * 1024 * 1024 {
        return Err(ApiError::too_large());
    }
    serde_saphyr::from_slice::<Value>(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {}", e.to_string().lines().next().unwrap_or(""))))
}

pub async fn patch(storage: &Storage, req: &Request) -> ApiResult<Response> {
    let t = &req.target;
    let manager = req.q("fieldManager").map(str::to_string).ok_or_else(|| ApiError::bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set"))?;
    if manager.len() > 128 {
        return Err(ApiError::bad_request("fieldManager: Too long: may not be more than 128 bytes"));
    }
    let force = matches!(req.q("force"), Some("true" | "1"));
    let mut applied = parse_yaml(&req.body)?;
    if !applied.is_object() {
        return Err(ApiError::bad_request("the apply body must be a YAML or JSON object"));
    }
    for (field, want) in [("apiVersion", t.res.api_version()), ("kind", t.res.kind.to_string())] {
        match applied[field].as_str() {
            None | Some("") => return Err(ApiError::bad_request(format!("invalid object type: {field} must be set"))),
            Some(v) if v != want => return Err(ApiError::bad_request(format!("the {field} in the data ({v}) does not match the expected {field} ({want})"))),
            _ => {}
        }
    }
    match applied["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() && n != t.name() => {
            return Err(ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({})", t.name())))
        }
        _ => applied["metadata"]["name"] = json!(t.name()),
    }
    let sub = t.sub.clone().unwrap_or_default();
    let api_version = t.res.api_version();
    let apply_set = fieldpath::set_of(&applied, sub == "status");
    for _ in 0..16 {
        let (live, rev) = match current(storage, t).await {
            Ok(x) => x,
            Err(e) if e.code == 404 && sub.is_empty() => {
                let entry = Entry { manager: manager.clone(), operation: "Apply".into(), api_version: api_version.clone(), subresource: String::new(), time: meta::now_rfc3339(), set: apply_set.clone() };
                match create_value(storage, req, applied.clone(), Some(vec![entry])).await {
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    other => return other,
                }
            }
            Err(e) => return Err(e),
        };
        let mut entries = managed::read(&live);
        let conflicts = conflicts(&entries, &manager, &sub, &apply_set, &live, &applied);
        if !conflicts.is_empty() {
            if !force {
                return Err(conflict_error(&conflicts));
            }
            for e in entries.iter_mut() {
                e.set.retain(|p| !conflicts.iter().any(|(_, c)| c == p));
            }
        }
        let prev: Set = entries.iter().find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == sub).map(|e| e.set.clone()).unwrap_or_default();
        let mut merged = live.clone();
        merge::merge(&mut merged, &applied, &mut Vec::new());
        // Fields this manager stopped applying go, unless someone else owns them.
        let others: Vec<&Set> = entries.iter().filter(|e| !(e.manager == manager && e.operation == "Apply" && e.subresource == sub)).map(|e| &e.set).collect();
        for p in prev.difference(&apply_set) {
            let owned_elsewhere = others.iter().any(|s| s.range(p.clone()..).take_while(|q| q.starts_with(p)).next().is_some());
            if !owned_elsewhere {
                fieldpath::remove(&mut merged, p);
            }
        }
        // A repeated, unchanged apply is a no-op: same object, same resourceVersion.
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            v
        };
        if prev == apply_set && conflicts.is_empty() && strip(&merged) == strip(&live) {
            return Ok(crate::handlers::json_response(axum::http::StatusCode::OK, &live));
        }
        let entry = Entry { manager: manager.clone(), operation: "Apply".into(), api_version: api_version.clone(), subresource: sub.clone(), time: meta::now_rfc3339(), set: apply_set.clone() };
        match entries.iter().position(|e| e.manager == manager && e.operation == "Apply" && e.subresource == sub) {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
        managed::write(&mut merged, &entries);
        // A no-op apply leaves the object (and its resourceVersion) alone, apart from the timestamp.
        if let Some(r) = finish_update(storage, req, &live, rev, merged, None).await? {
            return Ok(r);
        }
    }
    Err(write_error(WriteError::Conflict, t, t.name()))
}

/// (manager as upstream prints it, path) of every field another manager owns
/// that this apply would set to a different value.
fn conflicts(entries: &[Entry], manager: &str, sub: &str, apply_set: &Set, live: &Value, applied: &Value) -> Vec<(String, Path)> {
    let mut out = Vec::new();
    for e in entries {
        if (e.manager == manager && e.operation == "Apply") || e.subresource != sub {
            continue;
        }
        for p in e.set.intersection(apply_set) {
            // Only leaves carry values that can disagree; list elements are shared by key.
            if matches!(p.last(), Some(fieldpath::Elem::Key(_) | fieldpath::Elem::Value(_))) {
                continue;
            }
            if fieldpath::get(live, p) != fieldpath::get(applied, p) {
                out.push((print_manager(e), p.clone()));
            }
        }
    }
    out
}

/// A manager the way upstream's conflict messages name it (fieldmanager's
/// `printManager`): appliers are identified without their apiVersion (an
/// applier keeps one identity whatever version it applies with), updaters
/// with it, and a subresource is named when there is one.
fn print_manager(e: &Entry) -> String {
    let mut s = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        s.push_str(&format!(" with subresource {:?}", e.subresource));
    }
    if e.operation != "Apply" {
        s.push_str(&format!(" using {}", e.api_version));
    }
    s
}

/// 409 in upstream's words, e.g.
/// `Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas`
/// or, against another applier, `... conflict with "kubectl": .data.mode`.
fn conflict_error(conflicts: &[(String, Path)]) -> ApiError {
    let n = conflicts.len();
    let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (m, p) in conflicts {
        by_manager.entry(m.as_str()).or_default().push(fieldpath::display(p));
    }
    let message = if n == 1 {
        let (m, p) = &conflicts[0];
        format!("Apply failed with 1 conflict: conflict with {m}: {}", fieldpath::display(p))
    } else {
        let parts: Vec<String> = by_manager.iter().map(|(m, paths)| format!("conflicts with {m}:\n- {}", paths.join("\n- "))).collect();
        format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
    };
    let causes: Vec<(String, String)> = conflicts.iter().map(|(m, p)| (fieldpath::display(p), format!("conflict with {m}"))).collect();
    ApiError::apply_conflict(message, causes)
}
