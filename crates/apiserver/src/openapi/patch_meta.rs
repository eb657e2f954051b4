//! How lists and maps merge, as schema extensions: upstream's
//! `patchStrategy`/`patchMergeKey` struct tags become
//! `x-kubernetes-patch-strategy`/`x-kubernetes-patch-merge-key`, and its
//! `+listType`/`+listMapKey` markers become `x-kubernetes-list-type` and
//! `x-kubernetes-list-map-keys`.
//!
//! k8s-openapi's schemas do not carry these, so they are listed here per
//! (schema, property), transcribed from the upstream API types of the kinds
//! we serve. Client-side `kubectl apply` reads the patch extensions from the
//! OpenAPI v3 document to compute a strategic merge patch (containers merged
//! by `name` rather than replaced), so they must match what `smp.rs` does on
//! the server.

use serde_json::{json, Map, Value};

/// (schema, property, patch strategy, patch merge key, list type, list map keys)
type Entry = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static [&'static str]);

#[rustfmt::skip]
static TABLE: &[Entry] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", "", "set", &[]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", "uid", "map", &["uid"]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", "", "", "atomic", &[]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", "ip", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", "topologyKey", "map", &["topologyKey", "whenUnsatisfiable"]),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.Container", "env", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", "mountPath", "map", &["mountPath"]),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", "devicePath", "map", &["devicePath"]),
    ("io.k8s.api.core.v1.Container", "envFrom", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "args", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.Container", "command", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", "containerPort", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", "mountPath", "map", &["mountPath"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", "devicePath", "map", &["devicePath"]),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", "type", "map", &["type"]),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", "ip", "map", &["ip"]),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", "ip", "atomic", &[]),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", "name", "map", &["name"]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", "port", "map", &["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "", "", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", "type", "map", &["type"]),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", "", "set", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", "type", "", &[]),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", "", "", &[]),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", "type", "", &[]),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", "type", "atomic", &[]),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", "", "", "atomic", &[]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", "type", "map", &["type"]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", "", "", "atomic", &[]),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", "", "", "atomic", &[]),
];

/// Put the extensions on the properties. Entries are per schema, so the
/// PodSpec inside every workload template is covered by its one entry.
pub fn annotate(defs: &mut Map<String, Value>) {
    for (schema, prop, strategy, key, list_type, map_keys) in TABLE {
        let Some(p) = defs.get_mut(*schema).and_then(|s| s.get_mut("properties")).and_then(|p| p.get_mut(*prop)) else { continue };
        let Some(p) = p.as_object_mut() else { continue };
        if !strategy.is_empty() {
            p.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        if !key.is_empty() {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        if !list_type.is_empty() {
            p.insert("x-kubernetes-list-type".into(), json!(list_type));
        }
        if !map_keys.is_empty() {
            p.insert("x-kubernetes-list-map-keys".into(), json!(map_keys));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TABLE;

    /// Every entry names a property that exists in a served schema, so a typo
    /// or an upstream rename cannot silently drop an extension.
    #[test]
    fn every_entry_lands_on_a_served_property() {
        let docs: Vec<serde_json::Value> = super::super::v3().docs.values().map(|d| serde_json::from_slice(&d.body).unwrap()).collect();
        for (schema, prop, ..) in TABLE {
            let found = docs.iter().any(|d| d["components"]["schemas"][schema]["properties"].get(prop).is_some());
            assert!(found, "{schema}.{prop} is not in any served schema");
        }
    }
}
