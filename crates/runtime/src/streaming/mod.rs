//! The runtime's streaming server, as CRI runtimes have one: CRI `Exec`,
//! `Attach` and `PortForward` only register the request and answer with a
//! single-use URL on this server; the kubelet proxies the client's upgraded
//! connection there. Both upgrade kinds kubectl uses are served:
//! `SPDY/3.1` (`v4`/`v5.channel.k8s.io`, `portforward.k8s.io`) and
//! WebSocket (`v5`/`v4.channel.k8s.io`, and SPDY tunnelled in binary
//! messages for `SPDY/3.1+portforward.k8s.io`).

pub mod process;
pub mod spdy;
mod session;
pub mod ws;

use crate::Runtime;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long a URL stays valid (upstream's streaming server uses one minute).
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// What a URL was issued for.
#[derive(Debug, Clone)]
pub enum Pending {
    Exec { container_id: String, cmd: Vec<String>, tty: bool, stdin: bool, stdout: bool, stderr: bool },
    Attach { container_id: String, tty: bool, stdin: bool, stdout: bool, stderr: bool },
    PortForward { sandbox_id: String },
}

pub struct Server {
    pub addr: SocketAddr,
    pending: Mutex<HashMap<String, (Instant, Pending)>>,
}

impl Server {
    /// Bind on loopback and serve until the runtime is dropped.
    pub async fn start(rt: Weak<Runtime>) -> anyhow::Result<Arc<Server>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = Arc::new(Server { addr: listener.local_addr()?, pending: Mutex::default() });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let Some(rt) = rt.upgrade() else { return };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (rt, s) = (rt.clone(), s.clone());
                        async move { Ok::<_, Infallible>(s.handle(rt, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).with_upgrades().await;
                });
            }
        });
        tracing::info!(addr = %server.addr, "streaming server listening");
        Ok(server)
    }

    /// A single-use URL for `p`.
    pub fn register(&self, p: Pending) -> String {
        let token = crate::new_id()[..32].to_string();
        let path = match p {
            Pending::Exec { .. } => "exec",
            Pending::Attach { .. } => "attach",
            Pending::PortForward { .. } => "portforward",
        };
        let mut m = self.pending.lock();
        m.retain(|_, (t, _)| t.elapsed() < TOKEN_TTL);
        m.insert(token.clone(), (Instant::now(), p));
        format!("http://{}/{path}/{token}", self.addr)
    }

    fn handle(&self, rt: Arc<Runtime>, mut req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let token = req.uri().path().rsplit('/').next().unwrap_or("").to_string();
        let Some((_, pending)) = self.pending.lock().remove(&token).filter(|(t, _)| t.elapsed() < TOKEN_TTL) else {
            return reply(404, "unknown or expired streaming session");
        };
        let h = req.headers();
        let upgrade = h.get("upgrade").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let values = |name: &str| -> Vec<String> {
            h.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
        };
        let websocket = upgrade == "websocket";
        let (offered, supported): (Vec<String>, &[&str]) = match (&pending, websocket) {
            (Pending::PortForward { .. }, true) => (values("sec-websocket-protocol"), &["SPDY/3.1+portforward.k8s.io"]),
            (Pending::PortForward { .. }, false) => (values("x-stream-protocol-version"), &["portforward.k8s.io"]),
            (_, true) => (values("sec-websocket-protocol"), &["v5.channel.k8s.io", "v4.channel.k8s.io"]),
            (_, false) => (values("x-stream-protocol-version"), &["v5.channel.k8s.io", "v4.channel.k8s.io"]),
        };
        if !websocket && upgrade != "spdy/3.1" {
            return reply(400, "Upgrade request required");
        }
        let Some(proto) = offered.iter().find(|p| supported.contains(&p.as_str())).cloned() else {
            return reply(403, &format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"));
        };
        let mut resp = Response::builder().status(101).header("connection", "Upgrade");
        if websocket {
            let key = h.get("sec-websocket-key").and_then(|v| v.to_str().ok()).unwrap_or("");
            resp = resp.header("upgrade", "websocket").header("sec-websocket-accept", ws::accept_key(key)).header("sec-websocket-protocol", &proto);
        } else {
            resp = resp.header("upgrade", "SPDY/3.1").header("x-stream-protocol-version", &proto);
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(up) => session::run(rt, hyper_util::rt::TokioIo::new(up), websocket, pending).await,
                Err(e) => tracing::debug!("streaming upgrade failed: {e}"),
            }
        });
        resp.body(Full::new(Bytes::new())).unwrap()
    }
}

fn reply(code: u16, msg: &str) -> Response<Full<Bytes>> {
    Response::builder().status(code).header("content-type", "text/plain").body(Full::new(Bytes::from(msg.to_string()))).unwrap()
}
