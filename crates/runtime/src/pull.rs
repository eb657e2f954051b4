//! Pulling images from a registry (distribution API v2): the manifest (an
//! index or manifest list resolves to this platform's manifest), the config
//! and layer blobs, then the same store path as imports. Plain HTTP, for
//! registries on loopback (what the tests run); TLS registries and token
//! auth are not written yet, HTTP basic auth is.

use crate::images::{normalize, ImageRecord, Images};
use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `host/repo:tag` or `host/repo@sha256:…` split into (host, repo, reference).
pub fn parse(image: &str) -> (String, String, String) {
    let (name, reference) = match image.split_once('@') {
        Some((n, d)) => (n.to_string(), d.to_string()),
        None => {
            let n = normalize(image);
            let (r, t) = n.rsplit_once(':').map(|(r, t)| (r.to_string(), t.to_string())).unwrap_or((n.clone(), "latest".into()));
            (r, t)
        }
    };
    let name = if name.contains('/') && name.split('/').next().is_some_and(|h| h.contains('.') || h.contains(':') || h == "localhost") { name } else { normalize(&name).rsplit_once(':').map(|(r, _)| r.to_string()).unwrap_or(name) };
    let (host, repo) = name.split_once('/').map(|(h, r)| (h.to_string(), r.to_string())).unwrap_or_default();
    (host, repo, reference)
}

struct Registry {
    host: String,
    auth: Option<String>,
}

impl Registry {
    /// GET `path`; the body goes to `sink`. Returns status and content type.
    async fn get(&self, path: &str, accept: &str, sink: &mut (dyn Write + Send)) -> Result<(u16, String)> {
        let local = self.host.starts_with("127.") || self.host.starts_with("localhost") || self.host.starts_with("[::1]");
        if !local {
            bail!("pulling from {}: only plain-HTTP registries on loopback are supported yet", self.host);
        }
        let addr = if self.host.contains(':') && !self.host.ends_with(']') { self.host.clone() } else { format!("{}:80", self.host) };
        let tcp = tokio::net::TcpStream::connect(&addr).await.with_context(|| format!("connecting to {addr}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder().uri(path).header("host", &self.host).header("accept", accept).header("user-agent", "skiff");
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let resp = send.send_request(req.body(Empty::<Bytes>::new())?).await?;
        let code = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame?.into_data() {
                sink.write_all(&d)?;
            }
        }
        Ok((code, ctype))
    }

    async fn json(&self, path: &str) -> Result<Value> {
        let mut buf = Vec::new();
        let (code, _) = self.get(path, ACCEPT, &mut buf).await?;
        if code != 200 {
            bail!("GET {path}: {code} {}", String::from_utf8_lossy(&buf).trim());
        }
        Ok(serde_json::from_slice(&buf)?)
    }
}

fn platform_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// Pull `image` into the store; `auth` is (username, password).
pub async fn pull(images: &Images, image: &str, auth: Option<(String, String)>) -> Result<ImageRecord> {
    let (host, repo, reference) = parse(image);
    let auth = auth.filter(|(u, _)| !u.is_empty()).map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
    let reg = Registry { host, auth };
    let mut manifest = reg.json(&format!("/v2/{repo}/manifests/{reference}")).await.with_context(|| format!("pulling {image}"))?;
    if manifest["manifests"].is_array() {
        let m = manifest["manifests"].as_array().into_iter().flatten().find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == platform_arch()).or_else(|| manifest["manifests"].get(0)).context("index without manifests")?;
        let digest = m["digest"].as_str().context("manifest without digest")?.to_string();
        manifest = reg.json(&format!("/v2/{repo}/manifests/{digest}")).await?;
    }
    let tmp = images.root.join(format!("pull-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&tmp)?;
    let result = async {
        let fetch = |digest: String| {
            let reg = &reg;
            let repo = &repo;
            let path: PathBuf = tmp.join(digest.replace(':', "_"));
            async move {
                let mut f = std::fs::File::create(&path)?;
                let (code, _) = reg.get(&format!("/v2/{repo}/blobs/{digest}"), "*/*", &mut f).await?;
                if code != 200 {
                    bail!("GET blob {digest}: {code}");
                }
                drop(f);
                crate::layers::verify(&path, &digest)?;
                anyhow::Ok(path)
            }
        };
        let config = fetch(manifest["config"]["digest"].as_str().context("manifest without config")?.to_string()).await?;
        let mut layers = vec![];
        for l in manifest["layers"].as_array().into_iter().flatten() {
            layers.push(fetch(l["digest"].as_str().context("layer without digest")?.to_string()).await?);
        }
        images.store(&config, layers, &[image.to_string()])
    }
    .await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::parse;
    #[test]
    fn references() {
        assert_eq!(parse("127.0.0.1:5000/busybox:1"), ("127.0.0.1:5000".into(), "busybox".into(), "1".into()));
        assert_eq!(parse("localhost:5000/a/b"), ("localhost:5000".into(), "a/b".into(), "latest".into()));
        assert_eq!(parse("busybox"), ("docker.io".into(), "library/busybox".into(), "latest".into()));
        assert_eq!(parse("127.0.0.1:5000/x@sha256:ab"), ("127.0.0.1:5000".into(), "x".into(), "sha256:ab".into()));
    }
}
