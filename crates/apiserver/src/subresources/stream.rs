//! `pods/exec`, `pods/attach` and `pods/portforward`: connection upgrades
//! (SPDY/3.1 from older kubectl, WebSocket from newer) passed through to the
//! kubelet of the pod's node, which hands them on to its runtime's streaming
//! server. The API server checks the pod and container and then only
//! copies bytes (over TLS to the kubelet, see `kubelet_client.rs`), so
//! every protocol the runtime speaks works unchanged.
//!
//! These requests need the connection itself, so they are taken out of the
//! router in a middleware ([`intercept`]) before the body is read.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::AppState;
use crate::status::{ApiError, ApiResult};

/// Headers an upgrade carries to the kubelet.
const FORWARDED: [&str; 6] = ["upgrade", "connection", "x-stream-protocol-version", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol"];

/// Serve the three streaming subresources of pods; pass everything else on.
pub async fn intercept(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let segs: Vec<String> = req.uri().path().split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let (ns, pod, sub) = match segs.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["api", "v1", "namespaces", ns, "pods", pod, sub @ ("exec" | "attach" | "portforward")] => (ns.to_string(), pod.to_string(), sub.to_string()),
        _ => return next.run(req).await,
    };
    if crate::authn::authenticate(&st.storage, &st.token, req.headers()).await.is_none() {
        return ApiError::unauthorized().into_response();
    }
    match stream(&st, req, &ns, &pod, &sub).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn query_values(query: &str, key: &str) -> Vec<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()).collect()
}

async fn stream(st: &AppState, req: Request, ns: &str, name: &str, sub: &str) -> ApiResult<Response> {
    let target = crate::handlers::route("", "v1", &["namespaces", ns, "pods", name])?;
    let (pod, _) = crate::handlers::current(&st.storage, &target).await?;
    let query = req.uri().query().unwrap_or("").to_string();
    let upgrade = req.headers().get("upgrade").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if upgrade.is_empty() {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        let verb = if sub == "portforward" { "forward ports to" } else { &format!("{sub} into a container in") };
        return Err(ApiError::bad_request(format!("cannot {verb} a completed pod; current phase is {phase}")));
    }
    let path = if sub == "portforward" {
        format!("/portForward/{ns}/{name}")
    } else {
        let names: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| pod["spec"][k].as_array().into_iter().flatten())
            .filter_map(|c| c["name"].as_str())
            .collect();
        let regular: Vec<&str> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
        let container = match query_values(&query, "container").pop().filter(|c| !c.is_empty()) {
            Some(c) if names.contains(&c.as_str()) => c,
            Some(c) => return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
            None if regular.len() == 1 => regular[0].to_string(),
            None => return Err(ApiError::bad_request(format!("a container name must be specified for pod {name}, choose one of: [{}]", regular.join(" ")))),
        };
        if sub == "exec" && query_values(&query, "command").is_empty() {
            return Err(ApiError::bad_request("you must specify at least 1 command"));
        }
        format!("/{sub}/{ns}/{name}/{container}?{query}")
    };
    let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty());
    let Some(node) = node else {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    };
    let Some(addr) = super::log::kubelet_addr(&st.storage, node).await else {
        return Err(ApiError::bad_request(format!("no kubelet serves node {node} yet")));
    };
    splice(&st.storage.kubelet, req, &addr, &path).await
}

/// Send the upgrade to the kubelet; on 101 answer the client the same and
/// copy bytes both ways until either side closes.
async fn splice(kubelet: &crate::kubelet_client::KubeletClient, mut req: Request, addr: &str, path: &str) -> ApiResult<Response> {
    let unreachable = |e: std::io::Error| ApiError::internal(format!("error dialing backend: {e}"));
    let mut up = kubelet.connect(addr).await.map_err(unreachable)?;
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {addr}\r\n", req.method());
    for name in FORWARDED {
        for v in req.headers().get_all(name) {
            head.push_str(&format!("{name}: {}\r\n", v.to_str().unwrap_or("")));
        }
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes()).await.map_err(unreachable)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = up.read(&mut chunk).await.map_err(unreachable)?;
        if n == 0 {
            return Err(ApiError::internal(format!("kubelet at {addr} closed the connection")));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let rest = buf.split_off(end);
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let code: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(502);
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    if code != 101 {
        let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = rest;
        while body.len() < len {
            match up.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match code {
            400..=499 => ApiError::bad_request(msg),
            _ => ApiError::internal(msg),
        });
    }
    let mut resp = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in &headers {
        if k != "content-length" && k != "date" {
            resp = resp.header(k.as_str(), v.as_str());
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(client) = on_upgrade.await else { return };
        let mut client = hyper_util::rt::TokioIo::new(client);
        if !rest.is_empty() && client.write_all(&rest).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    });
    Ok(resp.body(Body::empty()).unwrap())
}
