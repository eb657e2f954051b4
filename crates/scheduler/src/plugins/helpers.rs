//! Matching shared by several plugins: label selectors, node selector
//! terms, tolerations — with upstream's semantics for each operator.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// metav1.LabelSelector: empty selects everything; absent is handled by callers.
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let val = labels.get(&e.key);
        let vals = e.values.as_deref().unwrap_or(&[]);
        let ok = match e.operator.as_str() {
            "In" => val.is_some_and(|v| vals.contains(v)),
            "NotIn" => !val.is_some_and(|v| vals.contains(v)),
            "Exists" => val.is_some(),
            "DoesNotExist" => val.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn requirement_matches(r: &NodeSelectorRequirement, val: Option<&String>) -> bool {
    let vals = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => val.is_some_and(|v| vals.contains(v)),
        "NotIn" => !val.is_some_and(|v| vals.contains(v)),
        "Exists" => val.is_some(),
        "DoesNotExist" => val.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (val.and_then(|v| v.parse::<i64>().ok()), vals.first().and_then(|b| b.parse::<i64>().ok())) else { return false };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// One NodeSelectorTerm: all its expressions and fields must match; an empty term matches nothing.
pub fn term_matches(t: &NodeSelectorTerm, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_string();
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// Tolerations match a taint as upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect {
            return false;
        }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}
