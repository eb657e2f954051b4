//! A small Kubernetes API client: JSON requests and watch streams over
//! HTTPS with the kubeconfig's CA and bearer token. The kubelet needs only
//! a handful of verbs, so this stays smaller than a general client.

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
}

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
        Ok(Self { host: host.trim_matches(['[', ']']).to_string(), port: port.parse()?, token, ca_pem: Arc::new(ca), tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)) })
    }

    /// The bearer token this client sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The CA (PEM) this client trusts for the API server: the cluster CA.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    async fn send(&self, method: &str, path: &str, ctype: &str, body: Vec<u8>) -> Result<hyper::Response<Incoming>> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())?;
        let tls = self.tls.connect(name, tcp).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", self.host, self.port))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", ctype)
            .header("accept", "application/json")
            .header("user-agent", "skiff-kubelet")
            .body(Full::new(Bytes::from(body)))?;
        Ok(send.send_request(req).await?)
    }

    /// One request; returns the status code and the JSON body.
    pub async fn call(&self, method: &str, path: &str, ctype: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default()).unwrap_or_default();
        let resp = self.send(method, path, ctype, body).await?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
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
        let resp = self.send("GET", path, "application/json", vec![]).await?;
        if resp.status().as_u16() != 200 {
            bail!("watch {path}: {}", resp.status());
        }
        let (tx, rx) = mpsc::channel(256);
        let mut body = resp.into_body();
        tokio::spawn(async move {
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
