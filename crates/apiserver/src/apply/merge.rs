//! Merging an applied configuration into the live object: maps merge by
//! field, associative lists by key, set-like lists by value, and atomic
//! lists and scalars are replaced.

use serde_json::{Map, Value};

use super::fieldpath::{item_key, list_kind, ListKind};

pub fn merge(live: &mut Value, applied: &Value, names: &mut Vec<String>) {
    match applied {
        Value::Object(a) => {
            if !live.is_object() {
                *live = Value::Object(Map::new());
            }
            let l = live.as_object_mut().expect("made an object above");
            for (k, v) in a {
                if v.is_null() {
                    l.remove(k);
                    continue;
                }
                names.push(k.clone());
                match l.get_mut(k) {
                    Some(existing) => merge(existing, v, names),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
                names.pop();
            }
        }
        Value::Array(items) => match (list_kind(names), live.as_array_mut()) {
            (ListKind::Map(keys), Some(current)) => {
                // Applied elements first, in the applied order; then the others.
                let mut rest: Vec<Value> = std::mem::take(current);
                let mut out = Vec::with_capacity(items.len() + rest.len());
                for item in items {
                    let key = item_key(item, &keys);
                    match key.as_ref().and_then(|k| rest.iter().position(|r| item_key(r, &keys).as_ref() == Some(k))) {
                        Some(i) => {
                            let mut existing = rest.remove(i);
                            merge(&mut existing, item, names);
                            out.push(existing);
                        }
                        None => out.push(item.clone()),
                    }
                }
                out.extend(rest);
                *current = out;
            }
            (ListKind::Set, Some(current)) => {
                for item in items {
                    if !current.contains(item) {
                        current.push(item.clone());
                    }
                }
            }
            _ => *live = applied.clone(),
        },
        _ => *live = applied.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_merge_by_their_kind() {
        let mut live = json!({"spec": {"containers": [{"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]}, {"name": "b", "image": "1"}],
            "args": ["x"]}, "metadata": {"finalizers": ["f"]}});
        let applied = json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "env": [{"name": "Y", "value": "2"}]}], "args": ["y"]},
            "metadata": {"finalizers": ["g"]}});
        merge(&mut live, &applied, &mut Vec::new());
        assert_eq!(live["spec"]["containers"][0], json!({"name": "b", "image": "2"}));
        assert_eq!(live["spec"]["containers"][1]["env"], json!([{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]));
        assert_eq!(live["spec"]["args"], json!(["y"]), "atomic lists are replaced");
        assert_eq!(live["metadata"]["finalizers"], json!(["f", "g"]), "set lists are unions");
    }
}
