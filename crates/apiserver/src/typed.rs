//! Typed decoding of request bodies with the upstream API types
//! (k8s-openapi): type errors become 400s as upstream words them, and
//! fields the type does not have are found by a decode/encode round trip,
//! for `fieldValidation=Strict|Warn|Ignore`.

use k8s_openapi::api::{apps, authentication, batch, coordination, core, discovery, events, policy, rbac, scheduling};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::resources::Resource;

/// Fields of `sent` that did not survive the round trip (nulls don't count).
fn dropped(sent: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(bv) => dropped(v, bv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                dropped(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<(Value, Vec<String>), String> {
    // Deserialize from the borrowed value: no copy of the whole object first.
    let t = T::deserialize(obj).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    dropped(obj, &back, "", &mut out);
    Ok((back, out))
}

/// Decode `obj` as its kind. Returns the object as the type holds it (unknown
/// fields and nulls gone, as upstream stores it) with the unknown field
/// paths, or the decode error.
pub fn check(res: &Resource, obj: &Value) -> Result<(Value, Vec<String>), String> {
    match (res.group, res.kind) {
        ("", "Namespace") => round_trip::<core::v1::Namespace>(obj),
        ("", "Pod") => round_trip::<core::v1::Pod>(obj),
        ("", "Node") => round_trip::<core::v1::Node>(obj),
        ("", "Service") => round_trip::<core::v1::Service>(obj),
        ("", "Endpoints") => round_trip::<core::v1::Endpoints>(obj),
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(obj),
        ("", "Secret") => round_trip::<core::v1::Secret>(obj),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(obj),
        ("", "Event") => round_trip::<core::v1::Event>(obj),
        ("", "PersistentVolume") => round_trip::<core::v1::PersistentVolume>(obj),
        ("", "PersistentVolumeClaim") => round_trip::<core::v1::PersistentVolumeClaim>(obj),
        ("", "LimitRange") => round_trip::<core::v1::LimitRange>(obj),
        ("", "ResourceQuota") => round_trip::<core::v1::ResourceQuota>(obj),
        ("", "PodTemplate") => round_trip::<core::v1::PodTemplate>(obj),
        ("", "ReplicationController") => round_trip::<core::v1::ReplicationController>(obj),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(obj),
        ("apps", "ReplicaSet") => round_trip::<apps::v1::ReplicaSet>(obj),
        ("apps", "StatefulSet") => round_trip::<apps::v1::StatefulSet>(obj),
        ("apps", "DaemonSet") => round_trip::<apps::v1::DaemonSet>(obj),
        ("apps", "ControllerRevision") => round_trip::<apps::v1::ControllerRevision>(obj),
        ("batch", "Job") => round_trip::<batch::v1::Job>(obj),
        ("batch", "CronJob") => round_trip::<batch::v1::CronJob>(obj),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(obj),
        ("discovery.k8s.io", "EndpointSlice") => round_trip::<discovery::v1::EndpointSlice>(obj),
        ("events.k8s.io", "Event") => round_trip::<events::v1::Event>(obj),
        ("scheduling.k8s.io", "PriorityClass") => round_trip::<scheduling::v1::PriorityClass>(obj),
        ("policy", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>(obj),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => round_trip::<rbac::v1::ClusterRoleBinding>(obj),
        ("authentication.k8s.io", "TokenReview") => round_trip::<authentication::v1::TokenReview>(obj),
        _ => Ok((obj.clone(), vec![])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_and_type_errors() {
        let cm = crate::resources::find("", "v1", "configmaps").unwrap();
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "creationTimestamp": null}, "data": {"k": "v"}});
        assert_eq!(check(cm, &ok).unwrap().1, Vec::<String>::new());
        let extra = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1}, "dta": {}});
        assert_eq!(check(cm, &extra).unwrap().1, vec!["dta".to_string(), "metadata.bogus".to_string()]);
        let deploy = crate::resources::find("apps", "v1", "deployments").unwrap();
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!(check(deploy, &bad).is_err());
        let pod = crate::resources::find("", "v1", "pods").unwrap();
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "x", "resources": {}}]}});
        assert_eq!(check(pod, &p).unwrap().1, vec!["spec.containers[0].imagePullPolcy".to_string()]);
    }
}
