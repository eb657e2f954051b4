//! `as=Table` responses, which `kubectl get` prints: upstream's columns and
//! cells for every built-in kind (pkg/printers/internalversion). The server
//! always fills every cell, wide ones included; kubectl hides priority-1
//! columns unless `-o wide`.
//!
//! One file per API group; each kind is a [`Printer`]: its columns and a
//! function from the object (and the current time) to its cells.

mod apps;
mod batch;
mod core;
mod other;
mod pod;
mod rbac;

use serde_json::{json, Value};

use crate::meta;
use crate::resources::Resource;
use crate::status::ApiError;

/// One column definition (metav1.TableColumnDefinition).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: u8,
}

/// A column shown by plain `kubectl get`.
pub(crate) const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 0 }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 1 }
}

pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(crate) const CONTAINERS_DOC: &str = "Names of each container in the template.";
pub(crate) const IMAGES_DOC: &str = "Images referenced by each container in the template.";

pub(crate) const NAME: Column = Column { name: "Name", kind: "string", format: "name", description: NAME_DOC, priority: 0 };
pub(crate) const AGE: Column = col("Age", "string", AGE_DOC);

/// Cells of one object, given the current time (seconds since the epoch).
pub(crate) type Cells = fn(&Value, i64) -> Vec<Value>;

pub(crate) struct Printer {
    pub columns: Vec<Column>,
    pub cells: Cells,
}

/// The printer for a resource type.
pub(crate) fn printer(res: &Resource) -> Printer {
    let found = match res.group {
        "" => core::printer(res.kind).or_else(|| pod::printer(res.kind)),
        "apps" => apps::printer(res.kind),
        "batch" => batch::printer(res.kind),
        "rbac.authorization.k8s.io" => rbac::printer(res.kind),
        group => other::printer(group, res.kind),
    };
    found.unwrap_or_else(default_printer)
}

/// Upstream's default table convertor, for kinds without a printer (Role,
/// ClusterRole, LimitRange): the name and the creation time.
pub(crate) fn default_printer() -> Printer {
    Printer { columns: vec![NAME, col("Created At", "date", AGE_DOC)], cells: |o, _| vec![name(o), o["metadata"]["creationTimestamp"].clone()] }
}

/// What each row's `object` holds (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

/// Table options from the query (metav1.TableOptions).
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub include: Include,
    pub no_headers: bool,
}

impl Options {
    pub fn parse(include_object: Option<&str>, no_headers: Option<&str>) -> Result<Options, ApiError> {
        let include = match include_object.unwrap_or("") {
            "" | "Metadata" => Include::Metadata,
            "Object" => Include::Object,
            "None" => Include::None,
            other => {
                return Err(ApiError::not_acceptable(format!(
                    "unsupported includeObject value {other:?}, expected one of None, Metadata, Object"
                )))
            }
        };
        Ok(Options { include, no_headers: no_headers == Some("true") })
    }
}

impl Default for Options {
    fn default() -> Options {
        Options { include: Include::Metadata, no_headers: false }
    }
}

/// The list metadata a Table of a list carries.
pub struct ListMeta {
    pub revision: i64,
    pub cont: Option<String>,
    pub remaining: Option<i64>,
}

/// A meta.k8s.io/v1 Table of `items`: of a list when `list` is given, else
/// of one object (whose resourceVersion it carries).
pub fn table(res: &Resource, items: &[Value], list: Option<ListMeta>, opts: Options) -> Value {
    table_at(res, items, list, opts, meta::now_secs())
}

pub(crate) fn table_at(res: &Resource, items: &[Value], list: Option<ListMeta>, opts: Options, now: i64) -> Value {
    let p = printer(res);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let object = match opts.include {
                Include::None => Value::Null,
                Include::Object => o.clone(),
                Include::Metadata => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            let mut row = json!({"cells": (p.cells)(o, now), "object": object});
            if let Some(conds) = row_conditions(res, o) {
                row["conditions"] = conds;
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    match list {
        Some(l) => {
            metadata["resourceVersion"] = json!(l.revision.to_string());
            if let Some(c) = l.cont {
                metadata["continue"] = json!(c);
            }
            if let Some(r) = l.remaining {
                metadata["remainingItemCount"] = json!(r);
            }
        }
        None => {
            if let Some(rv) = items.first().and_then(|o| o["metadata"]["resourceVersion"].as_str()) {
                metadata["resourceVersion"] = json!(rv);
            }
        }
    }
    let mut t = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "rows": rows});
    if !opts.no_headers {
        t["columnDefinitions"] = p
            .columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
            .collect();
    }
    t
}

/// Pods that have finished carry a `Completed` row condition.
fn row_conditions(res: &Resource, o: &Value) -> Option<Value> {
    if res.kind != "Pod" || !res.group.is_empty() {
        return None;
    }
    let (reason, message) = match o["status"]["phase"].as_str() {
        Some("Succeeded") => ("Succeeded", "The pod has completed successfully."),
        Some("Failed") => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

// ---- helpers shared by the printers ----

pub(crate) fn name(o: &Value) -> Value {
    o["metadata"]["name"].clone()
}

pub(crate) fn age(o: &Value, now: i64) -> Value {
    json!(since(&o["metadata"]["creationTimestamp"], now))
}

/// upstream's translateTimestampSince: `<unknown>` for a missing time.
pub(crate) fn since(t: &Value, now: i64) -> String {
    match t.as_str().and_then(meta::parse_rfc3339) {
        Some(t) => meta::human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// The age of a time given in seconds since the epoch.
pub(crate) fn meta_since(t: i64, now: i64) -> String {
    meta::human_duration(now - t)
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(crate) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub(crate) fn len(v: &Value) -> usize {
    v.as_array().map(|a| a.len()).or_else(|| v.as_object().map(|m| m.len())).unwrap_or(0)
}

pub(crate) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(|a| a.as_slice()).unwrap_or(&[])
}

pub(crate) fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}

/// labels.FormatLabels: `k=v,…` sorted by key, `<none>` when empty.
pub(crate) fn format_labels(m: &Value) -> String {
    let mut kv: Vec<(String, String)> =
        m.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), s(v).to_string())).collect()).unwrap_or_default();
    if kv.is_empty() {
        return "<none>".into();
    }
    kv.sort();
    kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A metav1.LabelSelector as labels.Selector.String(): requirements sorted
/// by key; "" for a missing or empty one.
pub(crate) fn selector_string(sel: &Value) -> String {
    if sel.is_null() {
        return String::new();
    }
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", s(v))));
        }
    }
    for e in arr(&sel["matchExpressions"]) {
        let key = s(&e["key"]);
        let mut values: Vec<&str> = arr(&e["values"]).iter().map(s).collect();
        values.sort();
        values.dedup();
        let r = match s(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<invalid>".into(),
        };
        reqs.push((key.to_string(), r));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(",")
}

/// metav1.FormatLabelSelector: the selector's string, `<none>` when empty.
pub(crate) fn format_label_selector(sel: &Value) -> String {
    let s = selector_string(sel);
    if s.is_empty() { "<none>".into() } else { s }
}

/// layoutContainerCells: container names and images, comma-separated.
pub(crate) fn containers_images(pod_spec: &Value) -> (Value, Value) {
    let cs = arr(&pod_spec["containers"]);
    let names: Vec<&str> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(&c["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z
    pub const NOW: i64 = 1_704_067_200;

    pub fn ago(secs: i64) -> String {
        meta::rfc3339(NOW - secs)
    }

    pub fn res(group: &str, kind: &str) -> &'static Resource {
        crate::resources::RESOURCES.iter().find(|r| r.group == group && r.kind == kind).unwrap()
    }

    pub fn cells(group: &str, kind: &str, o: &Value) -> Vec<Value> {
        (printer(res(group, kind)).cells)(o, NOW)
    }

    pub fn headers(group: &str, kind: &str) -> Vec<(String, u8)> {
        printer(res(group, kind)).columns.iter().map(|c| (c.name.to_uppercase(), c.priority)).collect()
    }

    #[test]
    fn every_kind_has_name_first_and_cells_match_columns() {
        let empty = json!({"metadata": {"name": "x", "creationTimestamp": ago(5)}});
        for r in crate::resources::RESOURCES {
            let p = printer(r);
            let c = (p.cells)(&empty, NOW);
            assert_eq!(c.len(), p.columns.len(), "{}", r.kind);
            assert!(p.columns.iter().any(|c| c.format == "name"), "{}", r.kind);
        }
    }

    #[test]
    fn include_object_and_headers() {
        let o = json!({"metadata": {"name": "a", "resourceVersion": "7", "creationTimestamp": ago(5)}, "data": {"k": "v"}});
        let r = res("", "ConfigMap");
        let t = table_at(r, std::slice::from_ref(&o), None, Options::default(), NOW);
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "5s"]));
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        let full = table_at(r, std::slice::from_ref(&o), Some(ListMeta { revision: 9, cont: Some("c".into()), remaining: Some(2) }), Options::parse(Some("Object"), None).unwrap(), NOW);
        assert_eq!(full["rows"][0]["object"], o);
        assert_eq!(full["metadata"], json!({"resourceVersion": "9", "continue": "c", "remainingItemCount": 2}));
        let none = table_at(r, &[o], None, Options::parse(Some("None"), Some("true")).unwrap(), NOW);
        assert!(none["rows"][0]["object"].is_null());
        assert!(none.get("columnDefinitions").is_none());
        assert!(Options::parse(Some("All"), None).is_err());
    }

    #[test]
    fn selectors_and_labels() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}, {"key": "aa", "operator": "Exists"}]});
        assert_eq!(selector_string(&sel), "a=1,aa,b=2,t in (x,y)");
        assert_eq!(selector_string(&json!({})), "");
        assert_eq!(format_labels(&json!({"z": "1", "a": "2"})), "a=2,z=1");
        assert_eq!(format_labels(&Value::Null), "<none>");
    }
}
