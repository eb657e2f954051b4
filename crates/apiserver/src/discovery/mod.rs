//! Discovery documents: `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`.
//!
//! This module serves the legacy (unaggregated) documents, one request per
//! group-version; [`aggregated`] serves everything in the two requests
//! kubectl 1.27+ asks for first, and kubectl falls back to the legacy
//! documents only when it is not offered.

pub mod aggregated;

use serde_json::{json, Value};

use crate::resources::{self, Resource};

/// The verbs a resource supports (the same in both discovery formats).
pub(crate) fn verbs(r: &Resource) -> Vec<&'static str> {
    if resources::is_create_only(r) {
        return vec!["create"];
    }
    vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        .into_iter()
        .filter(|v| r.kind != "Namespace" || *v != "deletecollection")
        .collect()
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|g| {
            let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    resources::groups().contains(&group).then(|| {
        let gv = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [gv.clone()], "preferredVersion": gv})
    })
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources::discoverable(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs(r),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in r.subresources {
            let Some(s) = subresource(r, sub) else { continue };
            list.push(json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": s.kind, "verbs": s.verbs}));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
}

/// What a subresource answers with and which verbs it takes.
pub(crate) struct Subresource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// Upstream's response kinds for the subresources we serve
/// (`scale` is `autoscaling/v1` Scale, `eviction` is `policy/v1` Eviction).
pub(crate) fn subresource(r: &Resource, sub: &str) -> Option<Subresource> {
    let (group, version, kind, verbs): (&str, &str, &str, &'static [&'static str]) = match sub {
        "status" => (r.group, r.version, r.kind, &["get", "patch", "update"]),
        "scale" => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        "binding" => ("", "v1", "Binding", &["create"]),
        "eviction" => ("policy", "v1", "Eviction", &["create"]),
        "log" => ("", "v1", "Pod", &["get"]),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest", &["create"]),
        "finalize" => ("", "v1", "Namespace", &["update"]),
        "ephemeralcontainers" => ("", "v1", "Pod", &["get", "patch", "update"]),
        "exec" => ("", "v1", "PodExecOptions", &["create", "get"]),
        "attach" => ("", "v1", "PodAttachOptions", &["create", "get"]),
        "portforward" => ("", "v1", "PodPortForwardOptions", &["create", "get"]),
        _ => return None,
    };
    Some(Subresource { group, version, kind, verbs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_resources_are_create_only_and_cluster_scoped() {
        let list = resource_list("authentication.k8s.io", "v1").unwrap();
        let rs = list["resources"].as_array().unwrap();
        let names: Vec<&str> = rs.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["selfsubjectreviews", "tokenreviews"]);
        for r in rs {
            assert_eq!(r["verbs"], json!(["create"]), "{r}");
            assert_eq!(r["namespaced"], false);
        }
        assert!(api_group_list()["groups"].as_array().unwrap().iter().any(|g| g["name"] == "authentication.k8s.io"));
        assert!(api_group("authentication.k8s.io").is_some());
        // Stored resources keep every verb; the review kinds are no stored resource.
        assert_eq!(verbs(resources::find("apps", "v1", "deployments").unwrap()).len(), 8);
        assert!(resources::find("authentication.k8s.io", "v1", "tokenreviews").is_none());
    }
}
