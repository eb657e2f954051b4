//! Strategic merge patch: a merge patch that knows how the built-in types'
//! lists merge. Lists of objects with a merge key (containers by `name`,
//! ports by `containerPort`, …) merge element by element; lists of
//! primitives with the merge strategy (finalizers) are unions; every other
//! list is replaced. Directives: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>`.
//!
//! The merge keys follow the `patchMergeKey`/`patchStrategy` tags of the
//! upstream API types, looked up by the field's path.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum ListStrategy {
    /// Objects merged by this key.
    MergeKey(&'static str),
    /// A set of primitives.
    Union,
    /// Replaced whole (no merge strategy).
    Replace,
}

/// The merge strategy of the list at `path` (field names, list indices left out).
pub(crate) fn strategy(path: &[String]) -> ListStrategy {
    use ListStrategy::*;
    let n = path.len();
    let last = path.last().map(String::as_str).unwrap_or("");
    let parent = if n >= 2 { path[n - 2].as_str() } else { "" };
    let in_container = matches!(parent, "containers" | "initContainers" | "ephemeralContainers");
    match last {
        "containers" | "initContainers" | "ephemeralContainers" | "imagePullSecrets" | "resourceClaims" => MergeKey("name"),
        "env" if in_container => MergeKey("name"),
        "ports" if in_container => MergeKey("containerPort"),
        "ports" if parent == "spec" => MergeKey("port"),
        "volumeMounts" if in_container => MergeKey("mountPath"),
        "volumeDevices" if in_container => MergeKey("devicePath"),
        "volumes" if parent == "spec" => MergeKey("name"),
        "hostAliases" => MergeKey("ip"),
        "topologySpreadConstraints" => MergeKey("topologyKey"),
        "ownerReferences" if parent == "metadata" => MergeKey("uid"),
        "finalizers" if parent == "metadata" => Union,
        "conditions" => MergeKey("type"),
        "addresses" if parent == "status" => MergeKey("type"),
        "podCIDRs" => Union,
        _ => Replace,
    }
}

fn directive<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// Apply a strategic merge patch to `target`.
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), String> {
    merge_value(target, patch, &mut Vec::new())
}

fn merge_value(target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), String> {
    match patch {
        Value::Object(p) => {
            match directive(p, "$patch") {
                Some("replace") => {
                    let mut clean = p.clone();
                    clean.remove("$patch");
                    *target = Value::Object(clean);
                    return Ok(());
                }
                Some("delete") => {
                    *target = Value::Null;
                    return Ok(());
                }
                Some("merge") | None => {}
                Some(other) => return Err(format!("unknown patch type: {other}")),
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().unwrap();
            if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
                let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
                t.retain(|k, _| keep.contains(&k.as_str()));
            }
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                path.push(k.clone());
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                match v {
                    Value::Array(items) => merge_list(entry, items, path)?,
                    _ => merge_value(entry, v, path)?,
                }
                if entry.is_null() {
                    t.remove(k);
                }
                path.pop();
            }
            for (k, v) in p {
                if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), v.as_array()) {
                        list.retain(|x| !del.contains(x));
                    }
                }
            }
            // Reorder after merging, as the patch's $setElementOrder says.
            for (k, order) in p {
                if let (Some(field), Some(order)) = (k.strip_prefix("$setElementOrder/"), order.as_array()) {
                    path.push(field.to_string());
                    let s = strategy(path);
                    path.pop();
                    if let Some(Value::Array(list)) = t.get_mut(field) {
                        reorder(list, order, s);
                    }
                }
            }
            Ok(())
        }
        other => {
            *target = other.clone();
            Ok(())
        }
    }
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.get(key)
}

fn merge_list(target: &mut Value, items: &[Value], path: &mut Vec<String>) -> Result<(), String> {
    let s = strategy(path);
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    let replace_all = items.iter().any(|i| i.as_object().and_then(|m| directive(m, "$patch")) == Some("replace"));
    if s == ListStrategy::Replace || replace_all || !target.is_array() {
        let kept: Vec<Value> = items.iter().filter(|i| i.as_object().and_then(|m| directive(m, "$patch")).is_none()).cloned().collect();
        *target = Value::Array(kept);
        return Ok(());
    }
    let list = target.as_array_mut().unwrap();
    match s {
        ListStrategy::Union => {
            for i in items {
                if !list.contains(i) {
                    list.push(i.clone());
                }
            }
        }
        ListStrategy::MergeKey(key) => {
            for item in items {
                let Some(k) = key_of(item, key) else {
                    return Err(format!("map: {item} does not contain declared merge key: {key}"));
                };
                let pos = list.iter().position(|o| key_of(o, key) == Some(k));
                let delete = item.as_object().and_then(|m| directive(m, "$patch")) == Some("delete");
                match (pos, delete) {
                    (Some(p), true) => {
                        list.remove(p);
                    }
                    (None, true) => {}
                    (Some(p), false) => merge_value(&mut list[p], item, path)?,
                    (None, false) => {
                        let mut fresh = Value::Null;
                        merge_value(&mut fresh, item, path)?;
                        list.push(fresh);
                    }
                }
            }
        }
        ListStrategy::Replace => unreachable!(),
    }
    Ok(())
}

/// Put the elements named in `order` first, in that order; others keep their relative order after them.
fn reorder(list: &mut Vec<Value>, order: &[Value], s: ListStrategy) {
    let rank = |v: &Value| -> usize {
        let id = match s {
            ListStrategy::MergeKey(k) => key_of(v, k),
            _ => Some(v),
        };
        order
            .iter()
            .position(|o| match s {
                ListStrategy::MergeKey(k) => key_of(o, k) == id,
                _ => Some(o) == id,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|v| rank(v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(mut t: Value, p: Value) -> Value {
        apply(&mut t, &p).unwrap();
        t
    }

    #[test]
    fn containers_merge_by_name() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let got = smp(pod, json!({"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}}));
        assert_eq!(got, json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}}));
    }

    #[test]
    fn nested_env_and_ports_and_delete_directive() {
        let dep = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}], "ports": [{"containerPort": 80}]}
        ]}}}});
        let got = smp(dep, json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "env": [{"name": "Y", "$patch": "delete"}, {"name": "Z", "value": "3"}], "ports": [{"containerPort": 80, "name": "http"}]}
        ]}}}}));
        assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["env"], json!([{"name": "X", "value": "1"}, {"name": "Z", "value": "3"}]));
        assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80, "name": "http"}]));
    }

    #[test]
    fn lists_without_strategy_are_replaced_and_finalizers_unite() {
        let t = json!({"spec": {"tolerations": [{"key": "a"}]}, "metadata": {"finalizers": ["x"]}});
        let got = smp(t, json!({"spec": {"tolerations": [{"key": "b"}]}, "metadata": {"finalizers": ["y", "x"], "$deleteFromPrimitiveList/finalizers": ["x"]}}));
        assert_eq!(got["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(got["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn replace_and_retain_keys_and_order() {
        let t = json!({"data": {"a": "1", "b": "2"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let got = smp(t.clone(), json!({"data": {"$patch": "replace", "c": "3"}}));
        assert_eq!(got["data"], json!({"c": "3"}));
        let got = smp(t.clone(), json!({"data": {"$retainKeys": ["a"], "a": "9"}}));
        assert_eq!(got["data"], json!({"a": "9"}));
        let got = smp(t, json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "containers": [{"name": "a", "image": "i"}]}}));
        assert_eq!(got["spec"]["containers"], json!([{"name": "b"}, {"name": "a", "image": "i"}]));
    }
}
