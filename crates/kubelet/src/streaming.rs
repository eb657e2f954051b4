//! `/exec`, `/attach` and `/portForward` on the kubelet's endpoint (what the
//! API server's pods/exec, pods/attach and pods/portforward proxy to): find
//! the pod's running container or sandbox through the CRI, ask the runtime
//! for a streaming URL (CRI Exec/Attach/PortForward), and splice the
//! client's upgrade onto it, so whichever protocol the client negotiated
//! (SPDY or WebSocket) is spoken end to end by the runtime.

use crate::Ctx;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Request, Response};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Body = BoxBody<Bytes, Infallible>;

fn text(code: u16, s: impl Into<String>) -> Response<Body> {
    Response::builder().status(code).header("content-type", "text/plain").body(Full::new(Bytes::from(s.into())).boxed()).unwrap()
}

/// Percent-decoding of one query component (`+` is a space).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All values of `key` in a query string, in order.
pub fn query_all(query: &str, key: &str) -> Vec<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).filter(|(k, _)| *k == key).map(|(_, v)| unescape(v)).collect()
}

fn flag(query: &str, key: &str) -> bool {
    query_all(query, key).last().is_some_and(|v| v == "true" || v == "1")
}

/// Ready sandboxes of a pod, newest first.
async fn sandboxes(ctx: &Ctx, ns: &str, pod: &str) -> Vec<String> {
    let sel: HashMap<String, String> = [("io.kubernetes.pod.namespace", ns), ("io.kubernetes.pod.name", pod)].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let filter = skiff_cri::PodSandboxFilter { label_selector: sel, state: Some(skiff_cri::PodSandboxStateValue { state: 0 }), ..Default::default() };
    let mut rt = ctx.rt.clone();
    let mut items = rt.list_pod_sandbox(skiff_cri::ListPodSandboxRequest { filter: Some(filter) }).await.map(|r| r.into_inner().items).unwrap_or_default();
    items.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    items.into_iter().map(|s| s.id).collect()
}

/// The running container `name` of a pod.
async fn container(ctx: &Ctx, ns: &str, pod: &str, name: &str) -> Result<String, Response<Body>> {
    let mut rt = ctx.rt.clone();
    for sb in sandboxes(ctx, ns, pod).await {
        let sel: HashMap<String, String> = [("io.kubernetes.container.name".to_string(), name.to_string())].into();
        let filter = skiff_cri::ContainerFilter { pod_sandbox_id: sb, label_selector: sel, state: Some(skiff_cri::ContainerStateValue { state: 1 }), ..Default::default() };
        let mut cs = rt.list_containers(skiff_cri::ListContainersRequest { filter: Some(filter) }).await.map(|r| r.into_inner().containers).unwrap_or_default();
        cs.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        if let Some(c) = cs.into_iter().next() {
            return Ok(c.id);
        }
    }
    Err(text(404, format!("container {name} is not running in pod {ns}/{pod}")))
}

/// Serve one of the streaming paths.
pub async fn handle(ctx: Arc<Ctx>, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let parts: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(unescape).collect();
    let mut rt = ctx.rt.clone();
    let tty = flag(&query, "tty");
    // A terminal merges stderr into stdout: no stderr stream (upstream's NewOptions).
    let (stdin, stdout, stderr) = (flag(&query, "stdin"), flag(&query, "stdout"), flag(&query, "stderr") && !tty);
    let streams = Session::Channels { stdin, stdout, stderr, tty };
    let (url, session) = match parts.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["exec", ns, pod, name] => {
            let id = match container(&ctx, ns, pod, name).await {
                Ok(id) => id,
                Err(r) => return r,
            };
            let r = skiff_cri::ExecRequest { container_id: id, cmd: query_all(&query, "command"), tty, stdin, stdout, stderr };
            (rt.exec(r).await.map(|r| r.into_inner().url), streams)
        }
        ["attach", ns, pod, name] => {
            let id = match container(&ctx, ns, pod, name).await {
                Ok(id) => id,
                Err(r) => return r,
            };
            let r = skiff_cri::AttachRequest { container_id: id, tty, stdin, stdout, stderr };
            (rt.attach(r).await.map(|r| r.into_inner().url), streams)
        }
        ["portForward", ns, pod] => {
            let Some(sb) = sandboxes(&ctx, ns, pod).await.into_iter().next() else {
                return text(404, format!("pod {ns}/{pod} has no running sandbox"));
            };
            (rt.port_forward(skiff_cri::PortForwardRequest { pod_sandbox_id: sb, port: vec![] }).await.map(|r| r.into_inner().url), Session::PortForward)
        }
        _ => return text(404, "not found"),
    };
    let websocket = req.headers().get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    match url {
        Ok(url) if websocket && !runtime_speaks_websocket(&ctx) => crate::translate::websocket_to_spdy(req, &url, session).await,
        Ok(url) => splice(req, &url).await,
        Err(s) => text(500, s.message().to_string()),
    }
}

/// CRI only asks runtimes' streaming servers for SPDY (containerd 1.x
/// answers kubectl's WebSocket upgrade with an error); ours also speaks the
/// WebSocket protocols, so its connections are passed through as they are.
fn runtime_speaks_websocket(ctx: &Ctx) -> bool {
    ctx.runtime_name == "skiff"
}

/// What a streaming connection carries, as the client asked for it.
#[derive(Debug, Clone, Copy)]
pub enum Session {
    /// Exec or attach: which of the channel protocols' streams exist.
    Channels { stdin: bool, stdout: bool, stderr: bool, tty: bool },
    PortForward,
}

/// Headers an upgrade carries to the next hop.
const FORWARDED: [&str; 6] = ["upgrade", "connection", "x-stream-protocol-version", "sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol"];

/// The runtime streaming server's answer to an upgrade request.
pub struct Upstream {
    pub tcp: tokio::net::TcpStream,
    pub code: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    /// Bytes read past the response head: the start of the body or of the upgraded stream.
    pub rest: Vec<u8>,
    pub addr: String,
}

impl Upstream {
    /// A non-101 answer, passed on to the client with its body.
    pub async fn refusal(mut self) -> Response<Body> {
        let len: usize = self.headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = std::mem::take(&mut self.rest);
        let mut chunk = [0u8; 4096];
        while body.len() < len {
            match self.tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        text(self.code, String::from_utf8_lossy(&body).to_string())
    }
}

/// Send an upgrade request for `url` (an `http://` URL from CRI Exec,
/// Attach or PortForward) with `headers`, and read the response head.
pub async fn dial(method: &str, url: &str, headers: &[(&str, String)]) -> Result<Upstream, Response<Body>> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (addr, path) = rest.split_once('/').map(|(a, p)| (a.to_string(), format!("/{p}"))).unwrap_or((rest.to_string(), "/".into()));
    let bad = |e: std::io::Error| text(502, format!("streaming server at {addr}: {e}"));
    let mut up = tokio::net::TcpStream::connect(&addr).await.map_err(bad)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, v) in headers {
        head.push_str(&format!("{name}: {v}\r\n"));
    }
    head.push_str("\r\n");
    up.write_all(head.as_bytes()).await.map_err(bad)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        match up.read(&mut chunk).await {
            Ok(0) => return Err(text(502, "streaming server closed the connection")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(bad(e)),
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let rest = buf.split_off(end);
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let code: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(502);
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    Ok(Upstream { tcp: up, code, headers, rest, addr })
}

/// Send the request's upgrade to `url`; on 101 answer the client the same
/// way and copy bytes both ways until either side closes.
async fn splice(mut req: Request<hyper::body::Incoming>, url: &str) -> Response<Body> {
    let headers: Vec<(&str, String)> = FORWARDED.iter().flat_map(|name| req.headers().get_all(*name).iter().map(move |v| (*name, v.to_str().unwrap_or("").to_string()))).collect();
    let up = match dial(req.method().as_str(), url, &headers).await {
        Ok(u) if u.code == 101 => u,
        Ok(u) => return u.refusal().await,
        Err(r) => return r,
    };
    let mut resp = Response::builder().status(101);
    for (k, v) in &up.headers {
        if k != "content-length" && k != "date" {
            resp = resp.header(k.as_str(), v.as_str());
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let Upstream { tcp: mut up, rest, .. } = up;
    tokio::spawn(async move {
        let Ok(client) = on_upgrade.await else { return };
        let mut client = hyper_util::rt::TokioIo::new(client);
        if !rest.is_empty() && client.write_all(&rest).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    });
    resp.body(Full::new(Bytes::new()).boxed()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn repeated_commands_are_decoded_in_order() {
        let q = "command=sh&command=-c&command=exit%203&container=c&stdout=true";
        assert_eq!(query_all(q, "command"), vec!["sh", "-c", "exit 3"]);
        assert!(flag(q, "stdout"));
        assert!(!flag(q, "stdin"));
        assert_eq!(unescape("a%2Fb+c%"), "a/b c%");
    }
}
