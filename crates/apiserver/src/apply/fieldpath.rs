//! Field paths and field sets: who owns which part of an object, in the
//! `FieldsV1` form `metadata.managedFields` carries
//! (`{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:image":{}}}}}`).
//!
//! A path names a field (`f:`), an element of an associative list by its
//! keys (`k:`), or a member of a set-like list (`v:`). How a list is keyed
//! follows the built-in types' merge keys ([`crate::smp`]), with the
//! multi-key lists (ports) keyed as upstream's `x-kubernetes-list-map-keys`.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::smp::{strategy, ListStrategy};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Elem {
    Field(String),
    /// Canonical JSON of the key fields, e.g. `{"name":"c"}`.
    Key(String),
    /// JSON of a set member.
    Value(String),
}

pub type Path = Vec<Elem>;
pub type Set = BTreeSet<Path>;

/// How the list at `names` (field names from the root) is keyed.
pub enum ListKind {
    Map(Vec<&'static str>),
    Set,
    Atomic,
}

pub fn list_kind(names: &[String]) -> ListKind {
    let n = names.len();
    let parent = if n >= 2 { names[n - 2].as_str() } else { "" };
    match strategy(names) {
        ListStrategy::MergeKey("containerPort") => ListKind::Map(vec!["containerPort", "protocol"]),
        ListStrategy::MergeKey("port") if parent == "spec" => ListKind::Map(vec!["port", "protocol"]),
        ListStrategy::MergeKey(k) => ListKind::Map(vec![k]),
        ListStrategy::Union => ListKind::Set,
        ListStrategy::Replace => ListKind::Atomic,
    }
}

/// The key of a list element, as canonical JSON. Missing `protocol` is
/// its default, TCP, so `{port: 80}` and `{port: 80, protocol: TCP}` are
/// the same element.
pub fn item_key(item: &Value, keys: &[&str]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        match item.get(*k) {
            Some(v) if !v.is_null() => {
                m.insert(k.to_string(), v.clone());
            }
            _ if *k == "protocol" => {
                m.insert(k.to_string(), json!("TCP"));
            }
            _ => return None,
        }
    }
    Some(Value::Object(m).to_string())
}

/// Fields no manager owns: identity, system metadata, and (for the main
/// resource) status.
fn ignored(names: &[String], field: &str, with_status: bool) -> bool {
    match names.len() {
        0 => matches!(field, "apiVersion" | "kind") || (field == "status" && !with_status),
        1 if names[0] == "metadata" => matches!(
            field,
            "name" | "namespace" | "uid" | "resourceVersion" | "generation" | "creationTimestamp" | "managedFields" | "deletionTimestamp" | "deletionGracePeriodSeconds" | "selfLink" | "generateName"
        ),
        _ => false,
    }
}

/// Every leaf path of `obj` (and every associative-list element).
/// `status_only` restricts to status (for the status subresource).
pub fn set_of(obj: &Value, status_only: bool) -> Set {
    let mut out = Set::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if ignored(&[], k, status_only) || (status_only && k != "status") {
                continue;
            }
            walk(v, &mut vec![k.clone()], &mut vec![Elem::Field(k.clone())], &mut out);
        }
    }
    out
}

fn walk(v: &Value, names: &mut Vec<String>, path: &mut Path, out: &mut Set) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if ignored(names, k, true) {
                    continue;
                }
                names.push(k.clone());
                path.push(Elem::Field(k.clone()));
                walk(child, names, path, out);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) => match list_kind(names) {
            ListKind::Map(keys) => {
                for item in items {
                    let Some(key) = item_key(item, &keys) else {
                        out.insert(path.clone());
                        continue;
                    };
                    path.push(Elem::Key(key));
                    out.insert(path.clone());
                    walk(item, names, path, out);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(Elem::Value(item.to_string()));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`, if present.
pub fn get<'a>(obj: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut cur = obj;
    let mut names: Vec<String> = Vec::new();
    for e in path {
        cur = match e {
            Elem::Field(f) => {
                names.push(f.clone());
                cur.get(f)?
            }
            Elem::Key(k) => {
                let ListKind::Map(keys) = list_kind(&names) else { return None };
                cur.as_array()?.iter().find(|it| item_key(it, &keys).as_deref() == Some(k))?
            }
            Elem::Value(v) => cur.as_array()?.iter().find(|it| it.to_string() == *v)?,
        };
    }
    Some(cur)
}

/// Remove what `path` names from `obj`.
pub fn remove(obj: &mut Value, path: &[Elem]) {
    let Some((last, parent)) = path.split_last() else { return };
    let names: Vec<String> = parent.iter().filter_map(|e| if let Elem::Field(f) = e { Some(f.clone()) } else { None }).collect();
    let Some(p) = get_mut(obj, parent) else { return };
    match last {
        Elem::Field(f) => {
            if let Some(m) = p.as_object_mut() {
                m.remove(f);
            }
        }
        Elem::Key(k) => {
            if let (ListKind::Map(keys), Some(a)) = (list_kind(&names), p.as_array_mut()) {
                a.retain(|it| item_key(it, &keys).as_deref() != Some(k));
            }
        }
        Elem::Value(v) => {
            if let Some(a) = p.as_array_mut() {
                a.retain(|it| it.to_string() != *v);
            }
        }
    }
}

fn get_mut<'a>(obj: &'a mut Value, path: &[Elem]) -> Option<&'a mut Value> {
    let mut cur = obj;
    let mut names: Vec<String> = Vec::new();
    for e in path {
        cur = match e {
            Elem::Field(f) => {
                names.push(f.clone());
                cur.get_mut(f)?
            }
            Elem::Key(k) => {
                let ListKind::Map(keys) = list_kind(&names) else { return None };
                cur.as_array_mut()?.iter_mut().find(|it| item_key(it, &keys).as_deref() == Some(k))?
            }
            Elem::Value(v) => cur.as_array_mut()?.iter_mut().find(|it| it.to_string() == *v)?,
        };
    }
    Some(cur)
}

/// `to_fields_v1(&set_of(obj, status_only))` in one walk, without building
/// the paths: what a create records for its manager, on every create.
pub fn fields_v1_of(obj: &Value, status_only: bool) -> Value {
    let mut root = Map::new();
    if let Some(m) = obj.as_object() {
        let mut names = Vec::new();
        for (k, v) in m {
            if ignored(&[], k, status_only) || (status_only && k != "status") {
                continue;
            }
            names.push(k.clone());
            child(&mut root, format!("f:{k}"), v, &mut names, false);
            names.pop();
        }
    }
    Value::Object(root)
}

/// Add the node for `v` under `key` in `parent`, if `v` contributes any
/// path. `keyed`: `v` is an associative-list element, always a member.
fn child(parent: &mut Map<String, Value>, key: String, v: &Value, names: &mut Vec<String>, keyed: bool) {
    let mut n = match parent.remove(&key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let member = fill(v, names, &mut n) || keyed;
    if member && (keyed || !n.is_empty()) {
        n.insert(".".into(), json!({}));
    }
    if member || !n.is_empty() {
        parent.insert(key, Value::Object(n));
    }
}

/// Put `v`'s descendants into `node`; returns whether `v`'s own path is in
/// the set (as [`walk`] would have inserted it).
fn fill(v: &Value, names: &mut Vec<String>, node: &mut Map<String, Value>) -> bool {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                if ignored(names, k, true) {
                    continue;
                }
                names.push(k.clone());
                child(node, format!("f:{k}"), c, names, false);
                names.pop();
            }
            false
        }
        Value::Array(items) => match list_kind(names) {
            ListKind::Map(keys) => {
                let mut member = false;
                for item in items {
                    match item_key(item, &keys) {
                        None => member = true,
                        Some(key) => child(node, format!("k:{key}"), item, names, true),
                    }
                }
                member
            }
            ListKind::Set => {
                for item in items {
                    node.insert(format!("v:{item}"), json!({}));
                }
                false
            }
            ListKind::Atomic => true,
        },
        _ => true,
    }
}

/// Encode a set as FieldsV1.
pub fn to_fields_v1(set: &Set) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for e in path {
            let k = match e {
                Elem::Field(f) => format!("f:{f}"),
                Elem::Key(k) => format!("k:{k}"),
                Elem::Value(v) => format!("v:{v}"),
            };
            node = node.entry(k).or_insert_with(|| json!({})).as_object_mut().expect("nodes are objects");
        }
        // A member that also has members below it is marked with ".".
        if !node.is_empty() || matches!(path.last(), Some(Elem::Key(_))) {
            node.insert(".".into(), json!({}));
        }
    }
    // Leaves stored before their children were added need the marker too.
    fn mark(set: &Set, prefix: &mut Path, node: &mut Map<String, Value>) {
        for (k, v) in node.iter_mut() {
            if k == "." {
                continue;
            }
            let e = match k.split_at(2) {
                ("f:", f) => Elem::Field(f.into()),
                ("k:", x) => Elem::Key(x.into()),
                (_, x) => Elem::Value(x.into()),
            };
            prefix.push(e);
            if let Some(m) = v.as_object_mut() {
                if !m.is_empty() && set.contains(prefix) {
                    m.insert(".".into(), json!({}));
                }
                mark(set, prefix, m);
            }
            prefix.pop();
        }
    }
    mark(set, &mut Vec::new(), &mut root);
    Value::Object(root)
}

/// Decode FieldsV1 (unknown forms are skipped, never fatal).
pub fn from_fields_v1(v: &Value) -> Set {
    fn go(node: &Map<String, Value>, prefix: &mut Path, out: &mut Set) {
        for (k, child) in node {
            if k == "." {
                out.insert(prefix.clone());
                continue;
            }
            if k.len() < 2 {
                continue;
            }
            let e = match k.split_at(2) {
                ("f:", f) => Elem::Field(f.into()),
                ("k:", x) => match serde_json::from_str::<Value>(x) {
                    Ok(v) => Elem::Key(v.to_string()),
                    Err(_) => continue,
                },
                ("v:", x) => Elem::Value(x.into()),
                _ => continue,
            };
            prefix.push(e);
            match child.as_object() {
                Some(m) if !m.is_empty() => go(m, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = Set::new();
    if let Some(m) = v.as_object() {
        go(m, &mut Vec::new(), &mut out);
    }
    out
}

/// A path as upstream prints it in conflict messages: `.spec.containers[name="c"].image`.
pub fn display(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let v: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = v.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            Elem::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Elem {
        Elem::Field(s.into())
    }

    #[test]
    fn one_walk_gives_the_same_fields_v1_as_the_set() {
        let objs = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "1"}, "finalizers": ["f1", "f2"], "annotations": {}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "1"}}, "template": {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [
                    {"name": "c", "image": "i", "args": ["a", "b"], "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}], "env": [{"name": "E", "value": "v"}, {"value": "no name"}], "resources": {}},
                    {"name": "d", "image": "j", "volumeMounts": [{"name": "v", "mountPath": "/m"}]}],
                    "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "k", "operator": "Exists"}]}}},
                "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "only-ignored", "namespace": "n", "uid": "u"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 80, "protocol": "UDP"}], "clusterIPs": [], "selector": {"a": "b"}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v", "e": ""}}),
        ];
        for obj in objs {
            for status_only in [false, true] {
                assert_eq!(fields_v1_of(&obj, status_only), to_fields_v1(&set_of(&obj, status_only)), "{obj} status_only={status_only}");
            }
        }
    }

    #[test]
    fn sets_round_trip_through_fields_v1() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "1"}, "finalizers": ["f1"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}},
            "status": {"replicas": 1}});
        let set = set_of(&obj, false);
        assert!(set.contains(&vec![f("spec"), f("replicas")]));
        assert!(set.contains(&vec![f("metadata"), f("labels"), f("a")]));
        assert!(set.contains(&vec![f("metadata"), f("finalizers"), Elem::Value("\"f1\"".into())]));
        let c = Elem::Key(r#"{"name":"c"}"#.into());
        assert!(set.contains(&vec![f("spec"), f("template"), f("spec"), f("containers"), c.clone()]));
        let port = Elem::Key(r#"{"containerPort":80,"protocol":"TCP"}"#.into());
        assert!(set.contains(&vec![f("spec"), f("template"), f("spec"), f("containers"), c.clone(), f("ports"), port]));
        assert!(!set.iter().any(|p| p[0] == f("status") || p == &vec![f("metadata"), f("name")]));
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"c"}"#]["."], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
        assert_eq!(set_of(&obj, true), Set::from([vec![f("status"), f("replicas")]]));
    }

    #[test]
    fn get_and_remove_follow_keys() {
        let mut obj = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}, "metadata": {"finalizers": ["x", "y"]}});
        let b = vec![f("spec"), f("containers"), Elem::Key(r#"{"name":"b"}"#.into()), f("image")];
        assert_eq!(get(&obj, &b), Some(&json!("2")));
        remove(&mut obj, &b[..3]);
        assert_eq!(obj["spec"]["containers"].as_array().unwrap().len(), 1);
        remove(&mut obj, &[f("metadata"), f("finalizers"), Elem::Value("\"x\"".into())]);
        assert_eq!(obj["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(display(&b), ".spec.containers[name=\"b\"].image");
    }
}
