//! The HTTPS listener, authentication, and routing of paths to handlers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::certs::Pki;
use crate::discovery;
use crate::openapi;
use crate::handlers::{self, dispatch};
use crate::status::ApiError;
use crate::storage::Storage;

/// The Kubernetes version whose API types Skiff serves.
pub const KUBE_MINOR: &str = "33";

#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub token: Arc<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub inflight: crate::inflight::Inflight,
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], v.to_string()).into_response()
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// Paths anyone may read, as upstream's system:public-info-viewer allows.
fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz") || path.starts_with("/healthz/") || path.starts_with("/livez/") || path.starts_with("/readyz/")
}

async fn handle(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let path = if path.is_empty() { "/".to_string() } else { path };
    // Authorization is allow-all for any authenticated user (RBAC is a later issue).
    let user = if is_public(&path) {
        None
    } else {
        match crate::authn::authenticate(&st.storage, &st.token, &headers).await {
            Some(u) => Some(u),
            None => return ApiError::unauthorized().into_response(),
        }
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let started = std::time::Instant::now();
    let resource_label = match segs.as_slice() {
        ["api", "v1", "namespaces", _, r, ..] | ["apis", _, _, "namespaces", _, r, ..] => r.to_string(),
        ["api", "v1", r, ..] | ["apis", _, _, r, ..] => r.to_string(),
        _ => String::new(),
    };
    let verb = match method {
        Method::GET if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "WATCH",
        ref m => m.as_str(),
    }
    .to_string();
    let long_running = verb == "WATCH" || matches!(segs.last(), Some(&("log" | "exec" | "attach" | "portforward" | "proxy")));
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let _slot = if long_running || is_public(&path) {
        None
    } else {
        match st.inflight.try_acquire(mutating) {
            Some(slot) => Some(slot),
            None => {
                let mut r = ApiError::too_many_requests("Too many requests, please try again later.", vec![]).into_response();
                r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
                st.metrics.requests.get_or_create(&crate::metrics::RequestLabels { verb, resource: resource_label, code: 429 }).inc();
                return r;
            }
        }
    };
    let result = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["metrics"]) => Ok((StatusCode::OK, [("content-type", "text/plain; version=0.0.4")], st.metrics.render()).into_response()),
        (Method::GET, ["version"]) => Ok(json_ok(version())),
        (Method::GET, ["healthz" | "livez" | "readyz", ..]) => Ok((StatusCode::OK, "ok").into_response()),
        (Method::GET, ["api"]) => Ok(discovery_root(&headers, false)),
        (Method::GET, ["apis"]) => Ok(discovery_root(&headers, true)),
        (Method::GET, ["openapi", "v2"]) => Ok(openapi::v2::serve_v2(&headers)),
        (Method::GET, ["openapi", "v3"]) => Ok(openapi::v3::serve_index(&headers)),
        (Method::GET, ["openapi", "v3", gv @ ..]) => {
            openapi::v3::serve_group_version(&gv.join("/"), query.get("hash").map(String::as_str), &headers).ok_or_else(ApiError::no_route)
        }
        (Method::GET, ["api", "v1"]) => discovery::resource_list("", "v1").map(json_ok).ok_or_else(ApiError::no_route),
        (Method::GET, ["apis", g]) => discovery::api_group(g).map(json_ok).ok_or_else(ApiError::no_route),
        (Method::GET, ["apis", g, v]) => discovery::resource_list(g, v).map(json_ok).ok_or_else(ApiError::no_route),
        (Method::POST, ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"]) => match &user {
            Some(u) => Ok(crate::authn::review::self_subject_review(u)),
            None => Err(ApiError::unauthorized()),
        },
        (Method::POST, ["apis", g @ "authentication.k8s.io", v @ "v1", r @ "tokenreviews"]) => {
            let res = crate::resources::find_create_only(g, v, r).expect("tokenreviews is a create-only resource");
            let target = handlers::Target { res, namespace: None, name: None, sub: None };
            let req = handlers::Request { method: method.clone(), target, query, headers, body };
            crate::authn::token_review::create(&st.storage, &st.token, &req).await
        }
        // The review resources take only create, as upstream (405 on the collection).
        (_, ["apis", g, v, r]) if crate::resources::find_create_only(g, v, r).is_some() => {
            Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"))
        }
        (Method::GET, [".well-known", "openid-configuration"]) => crate::authn::discovery::openid_configuration(&st.storage),
        (Method::GET, ["openid", "v1", "jwks"]) => crate::authn::discovery::jwks(&st.storage),
        (_, ["api", "v1", rest @ ..]) => resource(&st, "", "v1", rest, method, query, headers, body).await,
        (_, ["apis", g, v, rest @ ..]) => resource(&st, g, v, rest, method, query, headers, body).await,
        _ => Err(ApiError::no_route()),
    };
    let response = result.unwrap_or_else(|e| e.into_response());
    st.metrics.requests.get_or_create(&crate::metrics::RequestLabels { verb, resource: resource_label, code: response.status().as_u16() }).inc();
    st.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    response
}

/// `/api` or `/apis`: aggregated discovery when the client asks for it.
fn discovery_root(headers: &HeaderMap, apis: bool) -> Response {
    use discovery::aggregated;
    match aggregated::negotiate(headers.get("accept").and_then(|a| a.to_str().ok())) {
        Some(v) => aggregated::serve(v, apis, headers),
        None => {
            let mut r = json_ok(if apis { discovery::api_group_list() } else { discovery::api_versions() });
            r.headers_mut().insert("vary", axum::http::HeaderValue::from_static("Accept"));
            r
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn resource(
    st: &AppState,
    group: &str,
    version: &str,
    rest: &[&str],
    method: Method,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let target = handlers::route(group, version, rest)?;
    // Protobuf responses (and watch streams) for clients that prefer them.
    let protobuf = crate::codec::wants_protobuf(&headers);
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let result = dispatch(&st.storage, handlers::Request { method, target, query, headers, body }).await;
    match (protobuf, watch) {
        (true, true) => Ok(crate::codec::watch_to_protobuf(result)),
        (true, false) => Ok(crate::codec::to_protobuf(result).await),
        _ => result,
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .fallback(handle)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::subresources::stream::intercept))
        .with_state(state)
}

fn tls_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut pki.server_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut pki.server_key_pem.as_bytes())?.context("no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve HTTPS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pki: &Pki,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(pki)?);
    let app = router(state);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => { tracing::warn!("accept: {e}"); continue; }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    use tower::ServiceExt;
                    app.oneshot(req.map(Body::new)).await
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
