//! The kubelet's HTTPS endpoint: `/containerLogs`, which the API server's
//! pods/log proxies to, `/exec`, `/attach` and `/portForward` (see
//! `streaming.rs`), `/healthz`, `/metrics`, and resource usage at
//! `/metrics/cadvisor`, `/metrics/resource` and `/stats/summary` (`stats.rs`). Every path but `/healthz`
//! needs a credential that `auth.rs` accepts: 401 without one, 403 for an
//! identity that is not allowed.

use crate::auth::Authenticator;
use crate::subject::Name;
use crate::Ctx;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

type Body = BoxBody<Bytes, Infallible>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn text(code: u16, s: impl Into<String>) -> Response<Body> {
    Response::builder().status(code).header("content-type", "text/plain").body(Full::new(Bytes::from(s.into())).boxed()).unwrap()
}

/// A container's log files, by instance number, newest last.
pub fn log_files(root: &Path, ns: &str, pod: &str, container: &str) -> Vec<PathBuf> {
    let prefix = format!("{ns}_{pod}_");
    let Ok(rd) = std::fs::read_dir(root) else { return vec![] };
    let mut dirs: Vec<PathBuf> = rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect();
    dirs.sort_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
    let Some(dir) = dirs.last() else { return vec![] };
    let Ok(rd) = std::fs::read_dir(dir.join(container)) else { return vec![] };
    let mut files: Vec<(u64, PathBuf)> = rd.flatten().filter_map(|e| Some((e.file_name().to_string_lossy().strip_suffix(".log")?.parse().ok()?, e.path()))).collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

fn container_logs(ctx: &Arc<Ctx>, path: &str, query: &HashMap<String, String>) -> Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches("/containerLogs/").split('/').collect();
    let [ns, pod, container] = parts[..] else { return text(400, "want /containerLogs/<namespace>/<pod>/<container>") };
    let files = log_files(&ctx.log_root, ns, pod, container);
    let previous = query.get("previous").is_some_and(|v| v == "true" || v == "1");
    let file = if previous { files.len().checked_sub(2).map(|i| files[i].clone()) } else { files.last().cloned() };
    let Some(file) = file else {
        let what = if previous { "previous terminated container" } else { "container" };
        return text(400, format!("{what} \"{container}\" in pod \"{pod}\" not found"));
    };
    let tail = query.get("tailLines").and_then(|t| t.parse().ok());
    let content = std::fs::read_to_string(&file).unwrap_or_default();
    let first = crate::crilog::render(&content, tail);
    if query.get("follow").is_none_or(|v| v != "true" && v != "1") {
        return text(200, first);
    }
    // Follow: send what is there, then poll the file for new complete lines
    // until a newer instance replaces it or the client goes away.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    let root = ctx.log_root.clone();
    let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
    tokio::spawn(async move {
        let mut offset = content.rfind('\n').map(|i| i + 1).unwrap_or(0);
        if tx.send(Ok(Frame::data(Bytes::from(first)))).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(now) = std::fs::read_to_string(&file) else { return };
            if let Some(end) = now[offset.min(now.len())..].rfind('\n') {
                let chunk = crate::crilog::render(&now[offset..offset + end + 1], None);
                offset += end + 1;
                if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                    return;
                }
            }
            if log_files(&root, &ns, &pod, &container).last() != Some(&file) {
                return;
            }
        }
    });
    Response::builder().header("content-type", "text/plain").body(BodyExt::boxed(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)))).unwrap()
}

async fn handle(ctx: Arc<Ctx>, auth: Arc<Authenticator>, conn_user: Option<Name>, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if path != "/healthz" {
        match auth.authenticate(conn_user.as_ref(), req.headers()) {
            // Upstream: http.Error(w, "Unauthorized", 401).
            None => return Ok(text(401, "Unauthorized\n")),
            Some(user) if !crate::auth::authorize(&user) => return Ok(text(403, format!("{}\n", crate::auth::forbidden_message(&user, req.method(), &path)))),
            Some(_) => {}
        }
    }
    let query: HashMap<String, String> = req.uri().query().unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Ok(match path.as_str() {
        "/healthz" => text(200, "ok"),
        "/metrics" => text(200, ctx.metrics.encode()),
        "/metrics/cadvisor" => match crate::stats::collect(&ctx).await {
            Ok(snap) => text(200, crate::cadvisor::text(&snap)),
            Err(e) => text(500, format!("container stats from the runtime: {}", e.message())),
        },
        // Upstream answers 200 even when the stats fail: the failure is the scrape_error gauge.
        "/metrics/resource" => {
            let snap = crate::stats::collect(&ctx).await;
            if let Err(e) = &snap {
                tracing::warn!("resource metrics: container stats from the runtime: {}", e.message());
            }
            let body = crate::resource_metrics::text(snap.as_ref().map_err(|_| ()));
            Response::builder().header("content-type", "text/plain; version=0.0.4; charset=utf-8").body(Full::new(Bytes::from(body)).boxed()).unwrap()
        }
        "/stats/summary" | "/stats/summary/" => match crate::stats::collect(&ctx).await {
            Ok(snap) => Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(crate::stats::summary(&ctx.node_name, &snap).to_string())).boxed()).unwrap(),
            Err(e) => text(500, format!("container stats from the runtime: {}", e.message())),
        },
        p if p.starts_with("/containerLogs/") => container_logs(&ctx, p, &query),
        p if p.starts_with("/exec/") || p.starts_with("/attach/") || p.starts_with("/portForward/") => return Ok(crate::streaming::handle(ctx, req).await),
        _ => text(404, "not found"),
    })
}

/// Serve HTTPS on `listener` with `tls` until the task is dropped. A
/// connection's client certificate is checked once, after the handshake.
pub async fn serve(ctx: Arc<Ctx>, listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, auth: Arc<Authenticator>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else { continue };
        let (ctx, auth, acceptor) = (ctx.clone(), auth.clone(), acceptor.clone());
        tokio::spawn(async move {
            // A client that never finishes its handshake must not hold a task forever (Go's http.Server has the same guard).
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, "kubelet API: TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!(%peer, "kubelet API: TLS handshake timed out"),
            };
            let user = auth.from_certs(stream.get_ref().1.peer_certificates());
            let svc = hyper::service::service_fn(move |req| handle(ctx.clone(), auth.clone(), user.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).with_upgrades().await;
        });
    }
}
