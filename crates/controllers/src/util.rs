//! Helpers shared by the controllers: owner references, label selectors,
//! pod state, and building pods from templates (upstream's `controller_utils`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

pub fn now() -> Timestamp {
    Timestamp::now()
}

pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true))
}

/// The reference a controller puts on what it owns: controller=true and
/// blockOwnerDeletion=true, so foreground deletion waits for the dependents.
pub fn owner_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Does `selector` select `labels`? An empty selector selects everything (as
/// upstream's LabelSelectorAsSelector); a missing selector selects nothing.
pub fn selector_matches(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = selector else { return false };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    if let Some(ml) = &sel.match_labels
        && ml.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| vals.contains(v)),
            "NotIn" => !have.is_some_and(|v| vals.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// `a=b,c=d` form of a selector's matchLabels, for list calls.
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Active = not being deleted and not finished (upstream's `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    !is_terminating(&pod.metadata) && !matches!(pod_phase(pod), "Succeeded" | "Failed")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready, if it is ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = ready_condition(pod)?;
    if c.status != "True" {
        return None;
    }
    Some(c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(|| Timestamp::UNIX_EPOCH))
}

/// Ready for at least `min_ready_seconds` (upstream's `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(t) => t.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// A pod to create from `template`, named `<prefix>` + random suffix by the API server.
pub fn pod_from_template(template: &PodTemplateSpec, generate_name: &str, owner: OwnerReference) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_owned()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

pub fn creation_secs(meta: &ObjectMeta) -> i64 {
    meta.creation_timestamp.as_ref().map(|t: &Time| t.0.as_second()).unwrap_or(0)
}

/// The generateName prefix upstream uses: `<name>-`, cut so the generated name fits 63 characters.
pub fn generate_prefix(name: &str) -> String {
    let max = 63 - 5;
    let mut p = format!("{name}-");
    if p.len() > max {
        p.truncate(max);
    }
    p
}
