//! OpenAPI: what kubectl reads to validate, explain and compute client-side
//! apply patches.
//!
//! - [`schemas`]: component schemas generated from the upstream types
//!   (k8s-openapi + schemars), plus GVKs, lists and [`patch_meta`].
//! - [`paths`]: the operations of each resource.
//! - [`v3`]: `/openapi/v3` (index) and `/openapi/v3/<gv>` documents.
//! - [`v2`]: `/openapi/v2`, the same content as one Swagger 2.0 document,
//!   as JSON or ([`v2_proto`]) gnostic protobuf.
//!
//! Everything is built once, on first use, and kept as serialized bytes with
//! its hash: the resource table is static, so the documents never change
//! while the server runs, and clients cache them by that hash.

pub mod patch_meta;
pub mod paths;
pub mod schemas;
pub mod v2;
pub mod v2_proto;
pub mod v3;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

pub(crate) use crate::cached::{serve, serve_as, Doc};

use crate::resources::{self, Resource};

/// One group-version's v3 document content, before serialization.
pub struct GroupVersion {
    /// `api/v1` or `apis/<group>/<version>`.
    pub path: String,
    pub schemas: Map<String, Value>,
    pub paths: Map<String, Value>,
}

/// Each group-version's content, generated as it is iterated, so only one
/// group-version's JSON values are alive at a time.
fn group_versions() -> impl Iterator<Item = GroupVersion> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in resources::RESOURCES {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    gvs.into_iter()
        .map(|(group, version)| {
            let rs: Vec<&'static Resource> = resources::in_group_version(group, version).collect();
            let (schemas, names) = schemas::generate(group, version, &rs);
            // The schema answering for a (group, kind), found by its GVK.
            let schema_of = |g: &str, k: &str| -> Option<String> {
                let is = |s: &Value| s["x-kubernetes-group-version-kind"][0]["group"] == g && s["x-kubernetes-group-version-kind"][0]["kind"] == k;
                schemas.iter().find(|(_, s)| is(s)).map(|(n, _)| n.clone())
            };
            let mut paths = Map::new();
            for n in &names {
                paths::add(&mut paths, n, &schema_of);
            }
            let path = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
            GroupVersion { path, schemas, paths }
        })
}

/// The v3 documents, built on first use.
pub struct V3 {
    pub docs: BTreeMap<String, Doc>,
    pub index: Doc,
}

/// The v2 document in both encodings.
pub struct V2 {
    pub json: Doc,
    pub proto: Doc,
}

/// v3 and v2 are built separately, each on its first request, so a client
/// that reads only v3 (kubectl 1.29+) never pays for v2. Only the bytes are
/// kept; the JSON values are dropped as soon as they are serialized.
pub fn v3() -> &'static V3 {
    static V3: OnceLock<V3> = OnceLock::new();
    V3.get_or_init(|| {
        let started = std::time::Instant::now();
        let docs: BTreeMap<String, Doc> = group_versions().map(|gv| (gv.path.clone(), Doc::new(&v3::document(&gv)))).collect();
        let index = Doc::new(&v3::index(&docs));
        tracing::info!(elapsed = ?started.elapsed(), "OpenAPI v3 documents built");
        V3 { docs, index }
    })
}

pub fn v2() -> &'static V2 {
    static V2: OnceLock<V2> = OnceLock::new();
    V2.get_or_init(|| {
        let started = std::time::Instant::now();
        let doc = v2::document(group_versions());
        let v2 = V2 { proto: Doc::from_bytes(v2_proto::encode(&doc)), json: Doc::new(&doc) };
        tracing::info!(elapsed = ?started.elapsed(), "OpenAPI v2 document built");
        v2
    })
}

/// Whether an `Accept` header admits JSON (absent means anything).
pub(crate) fn accepts_json(req: &HeaderMap) -> bool {
    let Some(accept) = req.get("accept").and_then(|v| v.to_str().ok()) else { return true };
    accept.split(',').map(|m| m.split(';').next().unwrap_or("").trim()).any(|m| matches!(m, "application/json" | "application/*" | "*/*" | ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gv(path: &str) -> Value {
        serde_json::from_slice(&v3().docs[path].body).unwrap()
    }

    #[test]
    fn v3_documents_have_kinds_patch_keys_and_operations() {
        let core = gv("api/v1");
        let pod = &core["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"], serde_json::json!([{"group": "", "kind": "Pod", "version": "v1"}]));
        assert!(pod.get("required").is_none(), "{pod}");
        let containers = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-map-keys"], serde_json::json!(["name"]));
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some());
        let pods = &core["paths"]["/api/v1/namespaces/{namespace}/pods"];
        assert_eq!(pods["get"]["operationId"], "listCoreV1NamespacedPod");
        assert_eq!(pods["delete"]["operationId"], "deleteCoreV1CollectionNamespacedPod");
        assert_eq!(core["paths"]["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
        assert_eq!(core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"], "patchCoreV1NamespacedPodStatus");
        let apps = gv("apis/apps/v1");
        assert!(apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"].is_object());
        assert!(apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["get"]["responses"]["200"].is_object());
        // Every ref resolves within its own document.
        for path in v3().docs.keys() {
            let doc = gv(path);
            let text = doc.to_string();
            for r in text.split("\"#/components/schemas/").skip(1) {
                let name = &r[..r.find('"').unwrap()];
                assert!(doc["components"]["schemas"].get(name).is_some(), "{path}: dangling ref {name}");
            }
        }
    }

    #[test]
    fn index_names_each_document_by_hash_and_v2_uses_definitions() {
        let index: Value = serde_json::from_slice(&v3().index.body).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={}", v3().docs["apis/apps/v1"].hash));
        assert_eq!(v3().docs["api/v1"].hash.len(), 128);
        let v2: Value = serde_json::from_slice(&v2().json.body).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert!(!v2.to_string().contains("#/components/"));
        let body = &v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["parameters"][0];
        assert_eq!(body["in"], "body");
    }
}
