//! `pods/log`, proxied to the kubelet of the pod's node: its address is the
//! Node's InternalIP (else Hostname) and `daemonEndpoints.kubeletEndpoint`
//! port; the kubelet serves `/containerLogs/<ns>/<pod>/<container>`. One
//! HTTP/1.0 request per call over TLS with the API server's kubelet client
//! certificate (see `kubelet_client.rs`); the response is streamed back as
//! it arrives, so `kubectl logs -f` follows.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::status::{ApiError, ApiResult};
use crate::storage::{decode, Storage};

/// Options passed through to the kubelet.
const PASSED: [&str; 6] = ["follow", "tailLines", "previous", "timestamps", "sinceSeconds", "limitBytes"];

/// `host:port` of the kubelet on `node`, if it has registered one.
pub(super) async fn kubelet_addr(storage: &Storage, node: &str) -> Option<String> {
    let obj: Value = decode(&storage.get(&format!("/registry/nodes/{node}")).await.ok()??).ok()?;
    let port = obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().filter(|p| *p > 0)?;
    let addrs = obj["status"]["addresses"].as_array()?;
    let pick = |t: &str| addrs.iter().find(|a| a["type"] == t).and_then(|a| a["address"].as_str()).map(str::to_string);
    let host = pick("InternalIP").or_else(|| pick("Hostname"))?;
    Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// Proxy the log request; `Ok(None)` when the node has no kubelet endpoint.
pub async fn proxy(storage: &Storage, node: &str, ns: &str, pod: &str, container: &str, q: impl Fn(&str) -> Option<String>) -> ApiResult<Option<Response>> {
    let Some(addr) = kubelet_addr(storage, node).await else { return Ok(None) };
    let query: Vec<String> = PASSED.iter().filter_map(|k| q(k).map(|v| format!("{k}={v}"))).collect();
    let path = format!("/containerLogs/{ns}/{pod}/{container}?{}", query.join("&"));
    let unreachable = |e: std::io::Error| ApiError::internal(format!("Get \"https://{addr}{path}\": {e}"));
    let mut conn = storage.kubelet.connect(&addr).await.map_err(unreachable)?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.map_err(unreachable)?;
    // Read the head, then hand the rest of the connection over as the body.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = conn.read(&mut buf).await.map_err(unreachable)?;
        if n == 0 {
            return Err(ApiError::internal(format!("kubelet at {addr} closed the connection")));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let code: u16 = String::from_utf8_lossy(&head).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(502);
    let rest = head.split_off(end);
    if code != 200 {
        let mut body = rest;
        let _ = conn.read_to_end(&mut body).await;
        return Err(ApiError::bad_request(String::from_utf8_lossy(&body).trim().to_string()));
    }
    let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(rest))]);
    let more = futures::stream::unfold(conn, |mut c| async move {
        let mut b = vec![0u8; 8192];
        match c.read(&mut b).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                b.truncate(n);
                Some((Ok(Bytes::from(b)), c))
            }
        }
    });
    use futures::StreamExt;
    Ok(Some((StatusCode::OK, [("content-type", "text/plain")], Body::from_stream(first.chain(more))).into_response()))
}
