//! `as=Table` responses, which `kubectl get` prints. Every kind gets NAME and
//! AGE; a few get their upstream columns (more come with their controllers).

use serde_json::{json, Value};

use crate::meta;
use crate::resources::Resource;

struct Column {
    name: &'static str,
    kind: &'static str,
    description: &'static str,
}

fn columns(res: &Resource) -> Vec<Column> {
    let c = |name, kind, description| Column { name, kind, description };
    let mut cols = vec![c("Name", "string", "Name must be unique within a namespace.")];
    match res.kind {
        "Namespace" => cols.push(c("Status", "string", "The status of the namespace")),
        "ConfigMap" => cols.push(c("Data", "string", "Number of entries in data")),
        "Secret" => {
            cols.push(c("Type", "string", "The type of the secret"));
            cols.push(c("Data", "string", "Number of entries in data"));
        }
        "Pod" => {
            cols.push(c("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."));
            cols.push(c("Status", "string", "The aggregate status of the containers in this pod."));
            cols.push(c("Restarts", "string", "The number of times the containers in this pod have been restarted."));
        }
        _ => {}
    }
    cols.push(c("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created."));
    cols
}

fn cells(res: &Resource, obj: &Value) -> Vec<Value> {
    let name = obj["metadata"]["name"].clone();
    let age = Value::String(meta::human_age(obj["metadata"]["creationTimestamp"].as_str().unwrap_or("")));
    let count = |v: &Value| json!(v.as_object().map(|m| m.len()).unwrap_or(0) + v.as_array().map(|a| a.len()).unwrap_or(0));
    let mut out = vec![name];
    match res.kind {
        "Namespace" => out.push(obj["status"]["phase"].clone()),
        "ConfigMap" => out.push(json!(count(&obj["data"]).as_u64().unwrap_or(0) + count(&obj["binaryData"]).as_u64().unwrap_or(0))),
        "Secret" => {
            out.push(obj.get("type").cloned().unwrap_or(json!("Opaque")));
            out.push(count(&obj["data"]));
        }
        "Pod" => {
            let total = obj["spec"]["containers"].as_array().map(|a| a.len()).unwrap_or(0);
            let statuses = obj["status"]["containerStatuses"].as_array().cloned().unwrap_or_default();
            let ready = statuses.iter().filter(|s| s["ready"].as_bool() == Some(true)).count();
            let restarts: i64 = statuses.iter().filter_map(|s| s["restartCount"].as_i64()).sum();
            let phase = if obj["metadata"]["deletionTimestamp"].is_string() { json!("Terminating") } else { obj["status"]["phase"].clone() };
            out.push(json!(format!("{ready}/{total}")));
            out.push(if phase.is_null() { json!("Pending") } else { phase });
            out.push(json!(restarts.to_string()));
        }
        _ => {}
    }
    out.push(age);
    out
}

/// A meta.k8s.io/v1 Table of `items`. For lists, `list` carries the
/// revision and continue token.
pub fn table(res: &Resource, items: &[Value], list: Option<(i64, Option<String>)>) -> Value {
    let defs: Vec<Value> = columns(res)
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let format = if c.name == "Name" { "name" } else { "" };
            json!({"name": c.name, "type": c.kind, "format": format, "description": c.description, "priority": if i == 0 { 0 } else { 0 }})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cells(res, o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    let mut metadata = json!({});
    if let Some((rev, cont)) = list {
        metadata["resourceVersion"] = json!(rev.to_string());
        if let Some(c) = cont {
            metadata["continue"] = json!(c);
        }
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": defs, "rows": rows})
}
