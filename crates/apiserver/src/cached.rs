//! Documents that never change while the server runs (discovery, OpenAPI),
//! kept as bytes with their hash and served with ETag revalidation, so
//! clients that cache them (kubectl does, on disk) get 304s instead of
//! megabytes.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A served document: its bytes and upstream's hash of them (upper-case
/// hex SHA-512), which is its ETag (and, for OpenAPI v3, the `?hash=` of
/// its URL).
pub struct Doc {
    pub body: Bytes,
    pub hash: String,
}

impl Doc {
    pub fn new(v: &Value) -> Doc {
        Doc::from_bytes(serde_json::to_vec(v).expect("serializable"))
    }
    pub fn from_bytes(body: Vec<u8>) -> Doc {
        let digest = ring::digest::digest(&ring::digest::SHA512, &body);
        let hash = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Doc { body: body.into(), hash }
    }
}

/// Answer with `doc` as JSON the way upstream's handlers do: quoted ETag,
/// 304 on a matching `If-None-Match`, and `Vary: Accept` since the same URL
/// may be served in another form.
pub(crate) fn serve(doc: &Doc, req: &HeaderMap, extra: &[(&'static str, String)]) -> Response {
    serve_as(doc, "application/json", req, extra)
}

pub(crate) fn serve_as(doc: &Doc, content_type: &'static str, req: &HeaderMap, extra: &[(&'static str, String)]) -> Response {
    let etag = format!("\"{}\"", doc.hash);
    let matches = req.get("if-none-match").and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches { StatusCode::NOT_MODIFIED.into_response() } else { (StatusCode::OK, doc.body.clone()).into_response() };
    let h = resp.headers_mut();
    if !matches {
        h.insert("content-type", HeaderValue::from_static(content_type));
    }
    h.insert("etag", HeaderValue::from_str(&etag).unwrap());
    h.insert("vary", HeaderValue::from_static("Accept"));
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    resp
}
