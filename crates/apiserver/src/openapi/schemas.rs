//! The component schemas, generated from the upstream types themselves
//! (k8s-openapi's `schemars` impls, which carry upstream's descriptions,
//! formats and names like `io.k8s.api.core.v1.Pod`), then given what
//! those impls leave out: `x-kubernetes-group-version-kind` on the kinds,
//! the `<Kind>List` wrappers, and the patch and list-type extensions
//! ([`super::patch_meta`]).
//!
//! One generator per group-version, so each document holds exactly the
//! schemas its kinds reach, as upstream's per-group-version documents do.

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, policy, rbac, scheduling};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::resources::Resource;

pub const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// A `$ref` to a component schema (OpenAPI v3 form).
pub fn ref_to(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The schema name of a resource's kind: schemars' name for the Rust type.
fn kind_schema(g: &mut SchemaGenerator, r: &Resource) -> Option<String> {
    fn name<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
        g.subschema_for::<T>();
        T::schema_name().into_owned()
    }
    Some(match (r.group, r.kind) {
        ("", "Namespace") => name::<core::v1::Namespace>(g),
        ("", "Pod") => name::<core::v1::Pod>(g),
        ("", "Node") => name::<core::v1::Node>(g),
        ("", "Service") => name::<core::v1::Service>(g),
        ("", "Endpoints") => name::<core::v1::Endpoints>(g),
        ("", "ConfigMap") => name::<core::v1::ConfigMap>(g),
        ("", "Secret") => name::<core::v1::Secret>(g),
        ("", "ServiceAccount") => name::<core::v1::ServiceAccount>(g),
        ("", "Event") => name::<core::v1::Event>(g),
        ("", "PersistentVolume") => name::<core::v1::PersistentVolume>(g),
        ("", "PersistentVolumeClaim") => name::<core::v1::PersistentVolumeClaim>(g),
        ("", "LimitRange") => name::<core::v1::LimitRange>(g),
        ("", "ResourceQuota") => name::<core::v1::ResourceQuota>(g),
        ("", "PodTemplate") => name::<core::v1::PodTemplate>(g),
        ("", "ReplicationController") => name::<core::v1::ReplicationController>(g),
        ("apps", "Deployment") => name::<apps::v1::Deployment>(g),
        ("apps", "ReplicaSet") => name::<apps::v1::ReplicaSet>(g),
        ("apps", "StatefulSet") => name::<apps::v1::StatefulSet>(g),
        ("apps", "DaemonSet") => name::<apps::v1::DaemonSet>(g),
        ("apps", "ControllerRevision") => name::<apps::v1::ControllerRevision>(g),
        ("batch", "Job") => name::<batch::v1::Job>(g),
        ("batch", "CronJob") => name::<batch::v1::CronJob>(g),
        ("coordination.k8s.io", "Lease") => name::<coordination::v1::Lease>(g),
        ("discovery.k8s.io", "EndpointSlice") => name::<discovery::v1::EndpointSlice>(g),
        ("events.k8s.io", "Event") => name::<events::v1::Event>(g),
        ("scheduling.k8s.io", "PriorityClass") => name::<scheduling::v1::PriorityClass>(g),
        ("policy", "PodDisruptionBudget") => name::<policy::v1::PodDisruptionBudget>(g),
        ("rbac.authorization.k8s.io", "Role") => name::<rbac::v1::Role>(g),
        ("rbac.authorization.k8s.io", "RoleBinding") => name::<rbac::v1::RoleBinding>(g),
        ("rbac.authorization.k8s.io", "ClusterRole") => name::<rbac::v1::ClusterRole>(g),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => name::<rbac::v1::ClusterRoleBinding>(g),
        _ => return None,
    })
}

/// Schema names of what subresources answer with, by (group, version, kind).
fn extra_kind(g: &mut SchemaGenerator, group: &str, kind: &str) -> Option<String> {
    fn name<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
        g.subschema_for::<T>();
        T::schema_name().into_owned()
    }
    Some(match (group, kind) {
        ("autoscaling", "Scale") => name::<k8s_openapi::api::autoscaling::v1::Scale>(g),
        ("", "Binding") => name::<core::v1::Binding>(g),
        ("policy", "Eviction") => name::<policy::v1::Eviction>(g),
        ("authentication.k8s.io", "TokenRequest") => name::<k8s_openapi::api::authentication::v1::TokenRequest>(g),
        _ => return None,
    })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "kind": kind, "version": version}])
}

/// One resource's kind as a component schema name, plus its list's name.
pub struct KindNames {
    pub res: &'static Resource,
    pub item: String,
    pub list: String,
}

/// The `<Kind>List` schema k8s-openapi has no type for (it is generic there).
fn list_schema(r: &Resource, item: &str) -> Value {
    let mut items = ref_to(item);
    items = json!({"allOf": [items], "default": {}});
    json!({
        "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources", "type": "string"},
            "items": {"description": format!("List of {}.", r.plural), "type": "array", "items": items},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds", "type": "string"},
            "metadata": {"allOf": [ref_to(&format!("{META}.ListMeta"))], "default": {}, "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
        },
        "x-kubernetes-group-version-kind": gvk(r.group, r.version, &format!("{}List", r.kind)),
    })
}

/// Mark a kind: its GVK, and no `required: [metadata]` (k8s-openapi makes
/// `metadata` required because its structs hold it unconditionally;
/// upstream's schemas never require it).
fn mark_kind(schema: &mut Value, group: &str, version: &str, kind: &str) {
    let Some(obj) = schema.as_object_mut() else { return };
    obj.insert("x-kubernetes-group-version-kind".into(), gvk(group, version, kind));
    if let Some(Value::Array(req)) = obj.get_mut("required") {
        req.retain(|f| f != "metadata");
        if req.is_empty() {
            obj.remove("required");
        }
    }
}

/// All component schemas for one group-version's resources, and the schema
/// names of each resource's kind and list (in resource order).
pub fn generate(group: &str, version: &str, resources: &[&'static Resource]) -> (Map<String, Value>, Vec<KindNames>) {
    let mut settings = SchemaSettings::openapi3();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let mut names = Vec::new();
    let mut kinds = Vec::new();
    let mut extras = Vec::new();
    for &r in resources {
        let Some(item) = kind_schema(&mut g, r) else { continue };
        kinds.push((item.clone(), r.group, r.version, r.kind));
        for s in r.subresources.iter().filter_map(|sub| crate::discovery::subresource(r, sub)) {
            if let Some(n) = extra_kind(&mut g, s.group, s.kind) {
                extras.push((n, s.group, s.version, s.kind));
            }
        }
        names.push(KindNames { res: r, list: format!("{item}List"), item });
    }
    // What every group-version's operations refer to.
    g.subschema_for::<meta::Status>();
    g.subschema_for::<meta::DeleteOptions>();
    g.subschema_for::<meta::ListMeta>();
    let mut defs = g.take_definitions(true);
    for (name, group, version, kind) in kinds.iter().chain(extras.iter()) {
        if let Some(s) = defs.get_mut(name) {
            mark_kind(s, group, version, kind);
        }
    }
    if let Some(s) = defs.get_mut(&format!("{META}.Status")) {
        mark_kind(s, "", "v1", "Status");
    }
    if let Some(s) = defs.get_mut(&format!("{META}.DeleteOptions")) {
        mark_kind(s, group, version, "DeleteOptions");
    }
    defs.insert(
        format!("{META}.Patch"),
        json!({"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.", "type": "object"}),
    );
    for n in &names {
        defs.insert(n.list.clone(), list_schema(n.res, &n.item));
    }
    super::patch_meta::annotate(&mut defs);
    // Stable, name-sorted output (serde_json's map may keep insertion order).
    let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    (sorted.into_iter().collect(), names)
}
