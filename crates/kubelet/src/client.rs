//! A small Kubernetes API client: JSON requests and watch streams over
//! HTTPS with the kubeconfig's CA and bearer token. The kubelet needs only
//! a handful of verbs, so this stays smaller than a general client.
//!
//! Connections are kept and reused (HTTP/1.1 keep-alive): a fresh TCP and
//! TLS handshake for every request had cost the agent and the API server a
//! key exchange and a certificate check per status update, token request
//! and volume read (keeping them halved the API server's CPU in a 50-pod
//! burst; docs/benchmarks.md).

use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct Api {
    host: String,
    port: u16,
    token: String,
    /// The kubeconfig's CA (PEM): the cluster CA.
    ca_pem: Arc<Vec<u8>>,
    tls: tokio_rustls::TlsConnector,
    /// Idle connections, most recently used last.
    idle: Arc<parking_lot::Mutex<Vec<Sender>>>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Idle connections kept beyond this are closed.
const MAX_IDLE: usize = 16;

/// The value of `key:` on the first line that has it (the kubeconfigs Skiff
/// writes are flat enough for this; a YAML parser is not needed).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.trim().strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(str::trim))
}

impl Api {
    /// From a kubeconfig with `server`, `certificate-authority-data` and `token`.
    pub fn from_kubeconfig(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let server = field(&text, "server").context("kubeconfig has no server")?;
        let ca = base64::engine::general_purpose::STANDARD.decode(field(&text, "certificate-authority-data").context("kubeconfig has no certificate-authority-data")?)?;
        let token = field(&text, "token").context("kubeconfig has no token")?.to_string();
        let hostport = server.strip_prefix("https://").context("server must be https://")?.trim_end_matches('/');
        let (host, port) = hostport.rsplit_once(':').context("server without port")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut &ca[..]) {
            roots.add(c?)?;
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { host: host.trim_matches(['[', ']']).to_string(), port: port.parse()?, token, ca_pem: Arc::new(ca), tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)), idle: Default::default() })
    }

    /// The bearer token this client sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA (PEM) this client trusts for the API server: the cluster CA.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    async fn connect(&self) -> Result<Sender> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
        let tls = self.tls.connect(name, tcp).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// An idle connection that is still open, if there is one.
    async fn reuse(&self) -> Option<Sender> {
        loop {
            let mut s = self.idle.lock().pop()?;
            if !s.is_closed() && s.ready().await.is_ok() {
                return Some(s);
            }
        }
    }

    /// Give a connection whose last response has been read back for reuse.
    fn release(&self, s: Sender) {
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE && !s.is_closed() {
            idle.push(s);
        }
    }

    /// Send on a kept connection, or a new one. A kept connection the server
    /// has closed meanwhile fails before any response; an idempotent request
    /// is then sent again on a new connection.
    async fn send(&self, method: &str, path: &str, ctype: &str, body: Vec<u8>) -> Result<(hyper::Response<Incoming>, Sender)> {
        let req = |body: Vec<u8>| {
            hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", format!("{}:{}", self.host, self.port))
                .header("authorization", format!("Bearer {}", self.token))
                .header("content-type", ctype)
                .header("accept", "application/json")
                .header("user-agent", "skiff-kubelet")
                .body(Full::new(Bytes::from(body)))
        };
        if let Some(mut s) = self.reuse().await {
            match s.send_request(req(body.clone())?).await {
                Ok(resp) => return Ok((resp, s)),
                Err(e) if !matches!(method, "GET" | "PATCH" | "PUT") => return Err(e.into()),
                Err(e) => tracing::debug!("kept connection failed, sending again on a new one: {e}"),
            }
        }
        let mut s = self.connect().await?;
        let resp = s.send_request(req(body)?).await?;
        Ok((resp, s))
    }

    /// One request; returns the status code and the JSON body.
    pub async fn call(&self, method: &str, path: &str, ctype: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default()).unwrap_or_default();
        let (resp, conn) = self.send(method, path, ctype, body).await?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        self.release(conn);
        Ok((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        self.call("GET", path, "application/json", None).await
    }

    /// A request that must succeed (2xx).
    pub async fn ok(&self, method: &str, path: &str, ctype: &str, body: Option<&Value>) -> Result<Value> {
        let (code, v) = self.call(method, path, ctype, body).await?;
        if !(200..300).contains(&code) {
            bail!("{method} {path}: {code} {}", v["message"].as_str().unwrap_or(""));
        }
        Ok(v)
    }

    /// Watch `path` (which must carry `watch=1`): events arrive on the channel
    /// until the server ends the stream.
    pub async fn watch(&self, path: &str) -> Result<mpsc::Receiver<Value>> {
        // The connection stays with the stream (dropped with it).
        let (resp, conn) = self.send("GET", path, "application/json", vec![]).await?;
        if resp.status().as_u16() != 200 {
            bail!("watch {path}: {}", resp.status());
        }
        let (tx, rx) = mpsc::channel(256);
        let mut body = resp.into_body();
        tokio::spawn(async move {
            let _conn = conn;
            let mut buf: Vec<u8> = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                buf.extend_from_slice(&data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&line)
                        && tx.send(v).await.is_err() {
                            return;
                        }
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Append what the peer sends next to `buf`; false once it is gone.
    async fn read_more(tls: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 4096];
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// A TLS server on loopback that answers every request with `{}` and
    /// counts the connections it accepted; with `close_each` it drops every
    /// connection after one response, without saying so in a header.
    async fn server(dir: &std::path::Path, close_each: bool) -> (std::path::PathBuf, Arc<AtomicUsize>) {
        let serving = crate::pki::self_signed(dir, "localhost", &["127.0.0.1"]).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(serving.chain.clone(), serving.key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = Vec::new();
                    loop {
                        // One request: the head, then content-length bytes of body.
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            if !read_more(&mut tls, &mut buf).await {
                                return;
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                        let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                        while buf.len() < head_end + len {
                            if !read_more(&mut tls, &mut buf).await {
                                return;
                            }
                        }
                        buf.drain(..head_end + len);
                        if tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}").await.is_err() {
                            return;
                        }
                        let _ = tls.flush().await;
                        if close_each {
                            let _ = tls.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        let ca = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&serving.cert_path).unwrap());
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, format!("clusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: https://127.0.0.1:{port}\nusers:\n- user:\n    token: t\n")).unwrap();
        (kubeconfig, accepted)
    }

    #[tokio::test]
    async fn requests_reuse_kept_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (kubeconfig, accepted) = server(dir.path(), false).await;
        let api = Api::from_kubeconfig(&kubeconfig).unwrap();
        for _ in 0..5 {
            assert_eq!(api.get("/api/v1/pods").await.unwrap().0, 200);
        }
        api.ok("PATCH", "/api/v1/namespaces/default/pods/p/status", "application/merge-patch+json", Some(&serde_json::json!({"status": {}}))).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "sequential requests share one connection");
        // Concurrent requests need a connection each; afterwards they are all kept.
        let (a, b, c) = tokio::join!(api.get("/api/v1/nodes"), api.get("/api/v1/nodes"), api.get("/api/v1/nodes"));
        for r in [a, b, c] {
            assert_eq!(r.unwrap().0, 200);
        }
        let after_burst = accepted.load(Ordering::SeqCst);
        assert!((1..=3).contains(&after_burst), "{after_burst} connections for 3 concurrent requests");
        for _ in 0..3 {
            api.get("/api/v1/nodes").await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), after_burst, "kept connections are reused after a burst");
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (kubeconfig, accepted) = server(dir.path(), true).await;
        let api = Api::from_kubeconfig(&kubeconfig).unwrap();
        for _ in 0..4 {
            assert_eq!(api.get("/api/v1/pods").await.unwrap().0, 200);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }
}
