//! `metav1.LabelSelector` objects (`matchLabels` + `matchExpressions`), as
//! workloads, PodDisruptionBudgets and the scale subresource use them.
//! The query-string form (`?labelSelector=`) lives in [`crate::selector`].

use std::collections::BTreeMap;

use serde_json::Value;

/// Labels of an object's metadata (or of a template's metadata).
pub fn labels(meta: &Value) -> BTreeMap<String, String> {
    meta["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Does `sel` select `labels`? Upstream: a null selector selects nothing,
/// an empty one everything.
pub fn matches(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    if !sel.is_object() {
        return false;
    }
    let labels_ok = sel["matchLabels"].as_object().is_none_or(|m| m.iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str()));
    let exprs_ok = sel["matchExpressions"].as_array().is_none_or(|es| {
        es.iter().all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values = strings(&e["values"]);
            let have = labels.get(key);
            match e["operator"].as_str().unwrap_or("") {
                "In" => have.is_some_and(|h| values.contains(h)),
                "NotIn" => have.is_none_or(|h| !values.contains(h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        })
    });
    labels_ok && exprs_ok
}

/// The string form (`app=x,tier in (a,b)`), as in the scale subresource's
/// `status.selector` and kubectl's describe output.
pub fn to_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        let mut kv: Vec<_> = m.iter().collect();
        kv.sort_by(|a, b| a.0.cmp(b.0));
        parts.extend(kv.into_iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    if let Some(es) = sel["matchExpressions"].as_array() {
        for e in es {
            let key = e["key"].as_str().unwrap_or("");
            let mut values = strings(&e["values"]);
            values.sort();
            parts.push(match e["operator"].as_str().unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                _ => format!("!{key}"),
            });
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn match_labels_and_expressions() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert!(matches(&sel, &l(&[("app", "web"), ("tier", "a")])));
        assert!(!matches(&sel, &l(&[("app", "web"), ("tier", "c")])));
        assert!(!matches(&sel, &l(&[("app", "web")])));
        assert!(matches(&json!({}), &l(&[])));
        assert!(!matches(&Value::Null, &l(&[("app", "web")])));
        let not = json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}, {"key": "y", "operator": "NotIn", "values": ["1"]}]});
        assert!(matches(&not, &l(&[("y", "2")])));
        assert!(!matches(&not, &l(&[("x", "")])));
    }

    #[test]
    fn string_form() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]}, {"key": "e", "operator": "Exists"}]});
        assert_eq!(to_string(&sel), "a=1,b=2,t in (x,y),e");
    }
}
