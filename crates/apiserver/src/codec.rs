//! Content negotiation for Kubernetes' protobuf encoding: request bodies in
//! `application/vnd.kubernetes.protobuf` become JSON values (the handlers
//! only see JSON), and responses are re-encoded as protobuf when the
//! client's `Accept` prefers it. The transcoding is `skiff_k8sproto`'s.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::Value;
use skiff_k8sproto::MEDIA_TYPE;

use crate::status::ApiError;

/// The base media type of a content-type header value.
fn base(ct: &str) -> &str {
    ct.split(';').next().unwrap_or("").trim()
}

pub fn is_protobuf(content_type: &str) -> bool {
    base(content_type).eq_ignore_ascii_case(MEDIA_TYPE)
}

/// Decode a protobuf request body to the object's JSON; damage is a 400.
pub fn decode_body(bytes: &[u8]) -> Result<Value, ApiError> {
    skiff_k8sproto::decode(bytes).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as protobuf: {e}")))
}

/// Whether the client's `Accept` prefers protobuf: the media range with the
/// highest q (the first on ties) is ours, without `as=` (Tables are JSON).
pub fn wants_protobuf(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get("accept").and_then(|a| a.to_str().ok()) else {
        return false;
    };
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let mut q = 1.0f32;
        let mut converted = false;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k.trim() {
                "q" => q = v.trim().parse().unwrap_or(0.0),
                "as" => converted = true,
                _ => {}
            }
        }
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, media.eq_ignore_ascii_case(MEDIA_TYPE) && !converted));
        }
    }
    best.is_some_and(|(q, pb)| pb && q > 0.0)
}

/// `code` and `v` as a protobuf response, or `None` if `v` has no protobuf
/// type (a Table, a kind we have no message for): then JSON it stays.
pub fn protobuf_response(code: StatusCode, v: &Value) -> Option<Response> {
    let bytes = skiff_k8sproto::encode(v).ok()?;
    Some((code, [("content-type", MEDIA_TYPE)], bytes).into_response())
}

/// An error as a protobuf Status.
fn error_response(e: ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    protobuf_response(code, &e.to_status()).unwrap_or_else(|| e.into_response())
}

/// Re-encode a finished JSON response (or an error) as protobuf, keeping
/// its status and other headers. Streams (watch) and non-JSON responses
/// pass through untouched, as does anything the protobuf types cannot hold.
pub async fn to_protobuf(result: Result<Response, ApiError>) -> Response {
    let resp = match result {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let json = resp.headers().get("content-type").is_some_and(|c| c.to_str().is_ok_and(|c| base(c) == "application/json"));
    if !json || resp.headers().contains_key("transfer-encoding") {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("reading response: {e}")).into_response(),
    };
    let encoded = serde_json::from_slice::<Value>(&bytes).ok().and_then(|v| skiff_k8sproto::encode(&v).ok());
    match encoded {
        Some(pb) => {
            parts.headers.insert("content-type", HeaderValue::from_static(MEDIA_TYPE));
            parts.headers.remove("content-length");
            Response::from_parts(parts, Body::from(pb))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

/// Turn a JSON watch stream (one `{"type","object"}` per line) into a
/// protobuf one: each event a length-prefixed `WatchEvent` whose object is
/// the protobuf body. An event whose object the protos cannot hold becomes
/// an ERROR event with a Status, and the stream ends there.
pub fn watch_to_protobuf(result: Result<Response, ApiError>) -> Response {
    let resp = match result {
        Ok(r) => r,
        Err(e) => return error_response(e),
    };
    let json = resp.headers().get("content-type").is_some_and(|c| c.to_str().is_ok_and(|c| base(c) == "application/json"));
    if !json || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let frames = body.into_data_stream().scan((Vec::new(), false), |(buf, done), chunk| {
        let Ok(chunk) = chunk else { return futures::future::ready(None) };
        if *done {
            return futures::future::ready(None);
        }
        buf.extend_from_slice(&chunk);
        let mut out = Vec::new();
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(ev) = serde_json::from_slice::<Value>(&line) else { continue };
            let kind = ev["type"].as_str().unwrap_or("");
            match skiff_k8sproto::encode_watch_event(kind, &ev["object"]) {
                Ok(frame) => out.extend(frame),
                Err(e) => {
                    let st = ApiError::internal(format!("the object cannot be encoded as protobuf: {e}")).to_status();
                    out.extend(skiff_k8sproto::encode_watch_event("ERROR", &st).expect("Status encodes"));
                    *done = true;
                    break;
                }
            }
        }
        futures::future::ready(Some(Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(out))))
    });
    parts.headers.insert("content-type", HeaderValue::from_static("application/vnd.kubernetes.protobuf;stream=watch"));
    parts.headers.remove("content-length");
    Response::from_parts(parts, Body::from_stream(frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn negotiation() {
        assert!(wants_protobuf(&accept("application/vnd.kubernetes.protobuf,application/json")));
        assert!(wants_protobuf(&accept("application/json;q=0.5, application/vnd.kubernetes.protobuf")));
        assert!(!wants_protobuf(&accept("application/json, application/vnd.kubernetes.protobuf")));
        assert!(!wants_protobuf(&accept("application/json")));
        assert!(!wants_protobuf(&accept("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json")));
        assert!(!wants_protobuf(&HeaderMap::new()));
        assert!(is_protobuf("application/vnd.kubernetes.protobuf; charset=x"));
        assert!(!is_protobuf("application/json"));
    }

    #[tokio::test]
    async fn responses_and_errors_become_protobuf() {
        let obj = serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let resp = (StatusCode::CREATED, [("content-type", "application/json"), ("warning", "299 - \"x\"")], obj.to_string()).into_response();
        let resp = to_protobuf(Ok(resp)).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()["content-type"], MEDIA_TYPE);
        assert_eq!(resp.headers()["warning"], "299 - \"x\"");
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        assert_eq!(skiff_k8sproto::decode(&body).unwrap(), obj);

        let resp = to_protobuf(Err(ApiError::not_found("pods", "", "x"))).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let st = skiff_k8sproto::decode(&body).unwrap();
        assert_eq!((st["kind"].as_str(), st["reason"].as_str(), st["code"].as_i64()), (Some("Status"), Some("NotFound"), Some(404)));

        // A Table has no protobuf type: it stays JSON.
        let table = serde_json::json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": []});
        let resp = to_protobuf(Ok((StatusCode::OK, [("content-type", "application/json")], table.to_string()).into_response())).await;
        assert_eq!(resp.headers()["content-type"], "application/json");
    }
}
