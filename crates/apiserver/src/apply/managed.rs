//! `metadata.managedFields`: which manager owns which fields, updated on
//! every write. Updates (create, PUT, patches) take ownership of what they
//! change without conflicts; applies own exactly what they apply and
//! conflict with other owners of a field they would change.

use serde_json::{Map, Value};

use super::fieldpath::{self, Set};
use crate::meta;

#[derive(Debug, Clone)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
    pub set: Set,
}

impl Entry {
    fn same_slot(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

pub fn read(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or("").into(),
            operation: e["operation"].as_str().unwrap_or("Update").into(),
            api_version: e["apiVersion"].as_str().unwrap_or("").into(),
            subresource: e["subresource"].as_str().unwrap_or("").into(),
            time: e["time"].as_str().unwrap_or("").into(),
            set: fieldpath::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// One managedFields entry, built field by field so the fields tree is moved
/// in: `json!` would serialize it into a new tree, and that copy was a third
/// of what recording a pod create's managedFields cost.
fn entry_value(manager: &str, operation: &str, api_version: &str, time: &str, fields: Value, subresource: &str) -> Value {
    let mut e = Map::new();
    e.insert("manager".into(), manager.into());
    e.insert("operation".into(), operation.into());
    e.insert("apiVersion".into(), api_version.into());
    e.insert("time".into(), time.into());
    e.insert("fieldsType".into(), "FieldsV1".into());
    e.insert("fieldsV1".into(), fields);
    if !subresource.is_empty() {
        e.insert("subresource".into(), subresource.into());
    }
    Value::Object(e)
}

pub fn write(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| entry_value(&e.manager, &e.operation, &e.api_version, &e.time, fieldpath::to_fields_v1(&e.set), &e.subresource))
        .collect();
    if let Some(m) = obj["metadata"].as_object_mut() {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Record an update by `manager`: it takes the fields that changed from
/// `old` (None: created), and fields that disappeared leave every set.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str, subresource: &str) {
    let status_only = subresource == "status";
    let Some(old) = old else {
        // A create: the creator owns every field (written in one walk, as pod creates are a hot path).
        let fields = fieldpath::fields_v1_of(new, status_only);
        let empty = fields.as_object().is_none_or(|m| m.is_empty());
        if let Some(m) = new["metadata"].as_object_mut() {
            if empty {
                m.remove("managedFields");
            } else {
                m.insert("managedFields".into(), Value::Array(vec![entry_value(manager, "Update", api_version, &meta::now_rfc3339(), fields, subresource)]));
            }
        }
        return;
    };
    let old = Some(old);
    let mut entries = old.map(read).unwrap_or_default();
    let new_set = fieldpath::set_of(new, status_only);
    let old_set = old.map(|o| fieldpath::set_of(o, status_only)).unwrap_or_default();
    let removed: Set = old_set.difference(&new_set).cloned().collect();
    let changed: Set = match old {
        // A create changes every field: no need to compare (or copy the set).
        None => new_set,
        Some(o) => new_set.iter().filter(|p| !old_set.contains(*p) || fieldpath::get(o, p) != fieldpath::get(new, p)).cloned().collect(),
    };
    for e in entries.iter_mut() {
        e.set.retain(|p| !changed.contains(p) && !removed.contains(p));
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.same_slot(manager, "Update", subresource)) {
            Some(e) => {
                e.set.extend(changed);
                e.time = meta::now_rfc3339();
                e.api_version = api_version.into();
            }
            None => entries.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                api_version: api_version.into(),
                subresource: subresource.into(),
                time: meta::now_rfc3339(),
                set: changed,
            }),
        }
    }
    write(new, &entries);
}

/// The manager name of a request: `?fieldManager=`, else the user agent's
/// program name (upstream's default, e.g. `kubectl` or `kube-scheduler`).
pub fn manager_of(field_manager: Option<&str>, user_agent: Option<&str>) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = user_agent.unwrap_or("unknown");
    ua.split('/').next().unwrap_or(ua).chars().filter(|c| !c.is_control()).take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn updates_take_what_they_change() {
        let mut created = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}});
        record_update(None, &mut created, "kubectl-create", "v1", "");
        let e = read(&created);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].manager, "kubectl-create");
        assert_eq!(e[0].set.len(), 2);
        let mut edited = created.clone();
        edited["data"]["k"] = json!("w");
        record_update(Some(&created), &mut edited, "kubectl-edit", "v1", "");
        let e = read(&edited);
        assert_eq!(e.iter().map(|e| (e.manager.as_str(), e.set.len())).collect::<Vec<_>>(), vec![("kubectl-create", 1), ("kubectl-edit", 1)]);
        // Removing the last field a manager owns removes its entry.
        let mut pruned = edited.clone();
        pruned["metadata"].as_object_mut().unwrap().remove("labels");
        record_update(Some(&edited), &mut pruned, "kubectl-edit", "v1", "");
        assert_eq!(read(&pruned).iter().map(|e| e.manager.as_str()).collect::<Vec<_>>(), vec!["kubectl-edit"]);
    }

    #[test]
    fn manager_names() {
        assert_eq!(manager_of(Some("m"), Some("kubectl/v1.33")), "m");
        assert_eq!(manager_of(None, Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc")), "kubectl");
    }
}
