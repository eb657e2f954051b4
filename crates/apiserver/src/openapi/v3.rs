//! OpenAPI v3: the index at `/openapi/v3` names one document per
//! group-version with its hash, and kubectl fetches only the documents it
//! needs (`/openapi/v3/api/v1?hash=…`), caching each by hash forever.
//!
//! As upstream: a request with the current hash gets
//! `Cache-Control: public, immutable` and a one-year `Expires`; a stale hash
//! is redirected (301) to the current URL; no hash means revalidate by ETag.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{accepts_json, serve, v3, Doc, GroupVersion};

pub fn document(gv: &GroupVersion) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::server::KUBE_MINOR)},
        "paths": gv.paths,
        "components": {
            "schemas": gv.schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
    })
}

pub fn index(docs: &BTreeMap<String, Doc>) -> Value {
    let paths: Map<String, Value> =
        docs.iter().map(|(gv, d)| (gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", d.hash)}))).collect();
    json!({"paths": paths})
}

/// `GET /openapi/v3`.
pub fn serve_index(headers: &HeaderMap) -> Response {
    serve(&v3().index, headers, &[("cache-control", "no-cache, private".into())])
}

/// `GET /openapi/v3/<gv>`; `None` when there is no such group-version.
pub fn serve_group_version(gv: &str, hash: Option<&str>, headers: &HeaderMap) -> Option<Response> {
    let doc = v3().docs.get(gv)?;
    if !accepts_json(headers) {
        return Some(StatusCode::NOT_ACCEPTABLE.into_response());
    }
    Some(match hash.filter(|h| !h.is_empty()) {
        Some(h) if h != doc.hash => {
            let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
            r.headers_mut().insert("location", HeaderValue::from_str(&format!("/openapi/v3/{gv}?hash={}", doc.hash)).unwrap());
            r
        }
        Some(_) => {
            let expires = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(365 * 24 * 3600));
            serve(doc, headers, &[("cache-control", "public, immutable".into()), ("expires", expires)])
        }
        None => serve(doc, headers, &[("cache-control", "no-cache, private".into())]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
    }

    #[test]
    fn hash_urls_are_immutable_stale_ones_redirect_and_etags_revalidate() {
        let h = HeaderMap::new();
        let hash = v3().docs["api/v1"].hash.clone();
        let r = serve_group_version("api/v1", Some(&hash), &h).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "cache-control"), "public, immutable");
        assert!(header(&r, "expires").ends_with(" GMT"));
        assert_eq!(header(&r, "etag"), format!("\"{hash}\""));
        let r = serve_group_version("api/v1", Some("stale"), &h).unwrap();
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(header(&r, "location"), format!("/openapi/v3/api/v1?hash={hash}"));
        let mut cond = HeaderMap::new();
        cond.insert("if-none-match", HeaderValue::from_str(&format!("\"{hash}\"")).unwrap());
        assert_eq!(serve_group_version("api/v1", None, &cond).unwrap().status(), StatusCode::NOT_MODIFIED);
        assert!(serve_group_version("apis/nope/v1", None, &h).is_none());
        let mut pb = HeaderMap::new();
        pb.insert("accept", HeaderValue::from_static("application/com.github.proto-openapi.spec.v3@v1.0+protobuf"));
        assert_eq!(serve_group_version("api/v1", None, &pb).unwrap().status(), StatusCode::NOT_ACCEPTABLE);
        assert_eq!(header(&serve_index(&h), "cache-control"), "no-cache, private");
    }
}
