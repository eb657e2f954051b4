//! Aggregated discovery (`apidiscovery.k8s.io`): `/api` and `/apis` answer
//! with every group, version and resource in one `APIGroupDiscoveryList`
//! when the client asks for it in `Accept`, so kubectl needs two requests
//! instead of one per group-version.
//!
//! kubectl 1.27–1.29 ask for `v2beta1`, 1.30+ for `v2` first; both have the
//! same shape, only `apiVersion` and the negotiated Content-Type differ.
//! Without such a media type in `Accept` the legacy documents are served.

use std::sync::OnceLock;

use serde_json::{json, Value};

use axum::http::HeaderMap;
use axum::response::Response;

use super::{subresource, verbs};
use crate::cached::Doc;
use crate::resources::{self, Resource};

/// The aggregated discovery versions we serve, in our order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V2beta1,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V2 => "v2",
            Version::V2beta1 => "v2beta1",
        }
    }
    /// The Content-Type of the answer, echoing the negotiated g/v/as.
    pub fn content_type(self) -> &'static str {
        match self {
            Version::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            Version::V2beta1 => "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        }
    }
}

/// Pick the aggregated format from an `Accept` header, honouring the
/// client's order (and `q` weights); `None` means serve legacy discovery.
pub fn negotiate(accept: Option<&str>) -> Option<Version> {
    let mut offers: Vec<(f32, usize, Option<Version>)> = Vec::new();
    for (i, range) in accept.unwrap_or("").split(',').enumerate() {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let (mut g, mut v, mut as_, mut q) = ("", "", "", 1.0f32);
        for p in parts {
            match p.split_once('=') {
                Some(("g", x)) => g = x,
                Some(("v", x)) => v = x,
                Some(("as", x)) => as_ = x,
                Some(("q", x)) => q = x.parse().unwrap_or(1.0),
                _ => {}
            }
        }
        if media != "application/json" && media != "*/*" && media != "application/*" {
            continue;
        }
        let version = match (g, v, as_) {
            ("apidiscovery.k8s.io", "v2", "APIGroupDiscoveryList") => Some(Version::V2),
            ("apidiscovery.k8s.io", "v2beta1", "APIGroupDiscoveryList") => Some(Version::V2beta1),
            ("", "", "") => None,
            _ => continue, // some other typed form we do not serve
        };
        offers.push((q, i, version));
    }
    offers.into_iter().filter(|o| o.0 > 0.0).max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1))).and_then(|o| o.2)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn resource(r: &Resource) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": gvk(r.group, r.version, r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": verbs(r),
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .filter_map(|sub| {
            let s = subresource(r, sub)?;
            Some(json!({"subresource": sub, "responseKind": gvk(s.group, s.version, s.kind), "verbs": s.verbs}))
        })
        .collect();
    if !subs.is_empty() {
        entry["subresources"] = Value::Array(subs);
    }
    entry
}

/// One `APIGroupDiscovery`: the core group has no name, as upstream sends it.
fn group(name: &str) -> Value {
    let resources: Vec<Value> = resources::discoverable(name, "v1").map(resource).collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !name.is_empty() {
        metadata["name"] = json!(name);
    }
    json!({"metadata": metadata, "versions": [{"version": "v1", "resources": resources, "freshness": "Current"}]})
}

fn list(version: Version, items: Vec<Value>) -> Value {
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{}", version.name()), "metadata": {}, "items": items})
}

/// The document for `/api` (`apis == false`) or `/apis`, built once per
/// format: the resource table is static, so the documents are too, and
/// they carry an ETag as upstream's do.
pub fn document(version: Version, apis: bool) -> &'static Doc {
    static DOCS: OnceLock<[Doc; 4]> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        let core = |v| Doc::new(&list(v, vec![group("")]));
        let named = |v| Doc::new(&list(v, resources::groups().into_iter().map(group).collect()));
        [core(Version::V2), named(Version::V2), core(Version::V2beta1), named(Version::V2beta1)]
    });
    let i = match version {
        Version::V2 => 0,
        Version::V2beta1 => 2,
    };
    &docs[i + apis as usize]
}

/// Answer `/api` or `/apis` in the negotiated format.
pub fn serve(version: Version, apis: bool, headers: &HeaderMap) -> Response {
    crate::cached::serve_as(document(version, apis), version.content_type(), headers, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_kubectl_accept_headers() {
        let k130 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let k127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(k130)), Some(Version::V2));
        assert_eq!(negotiate(Some(k127)), Some(Version::V2beta1));
        assert_eq!(negotiate(Some("application/json, */*")), None);
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,application/json")), None);
    }

    #[test]
    fn documents_carry_resources_scopes_and_subresources() {
        let core: Value = serde_json::from_slice(&document(Version::V2, false).body).unwrap();
        assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
        let pods = core["items"][0]["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["categories"], json!(["all"]));
        let apps: Value = serde_json::from_slice(&document(Version::V2beta1, true).body).unwrap();
        assert_eq!(apps["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let deploy = &apps["items"][0]["versions"][0]["resources"][0];
        assert_eq!(deploy["resource"], "deployments");
        let scale = deploy["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
    }

    #[test]
    fn served_with_negotiated_type_and_etag() {
        let r = serve(Version::V2beta1, true, &HeaderMap::new());
        assert_eq!(r.headers()["content-type"], "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList");
        let etag = r.headers()["etag"].clone();
        let mut h = HeaderMap::new();
        h.insert("if-none-match", etag);
        assert_eq!(serve(Version::V2beta1, true, &h).status(), axum::http::StatusCode::NOT_MODIFIED);
    }
}
