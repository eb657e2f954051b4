//! WebSocket from the client, SPDY towards the runtime. kubectl 1.30+
//! upgrades exec/attach to WebSocket (`v5.channel.k8s.io`) and, from 1.31,
//! tunnels port-forward's SPDY inside WebSocket messages
//! (`SPDY/3.1+portforward.k8s.io`); a CRI runtime's streaming server need
//! only speak SPDY (containerd 1.x refuses the WebSocket upgrade, and
//! kubectl would fall back to a second, SPDY, request). So the kubelet
//! answers the WebSocket upgrade itself and speaks SPDY to the runtime, as
//! upstream's stream translator does:
//!
//! - exec/attach: each channel becomes a SPDY stream of the `v4.channel.k8s.io`
//!   protocol (the same streams and the same Status on the error stream);
//!   v5's "close stdin" message becomes a FIN on the stdin stream;
//! - port-forward: the bytes inside the binary messages already are SPDY,
//!   so they are copied to the runtime's `portforward.k8s.io` upgrade.

use crate::spdy_client::{Client, Event};
use crate::streaming::{dial, Session};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{Request, Response};
use skiff_runtime::streaming::ws;
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type Body = BoxBody<Bytes, Infallible>;

/// Channel numbers of the WebSocket channel protocols.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[255, n]` from the client closes its channel `n`.
const CLOSE: u8 = 255;

fn text(code: u16, s: impl Into<String>) -> Response<Body> {
    Response::builder().status(code).header("content-type", "text/plain").body(Full::new(Bytes::from(s.into())).boxed()).unwrap()
}

/// Answer `req`'s WebSocket upgrade and bridge it to the runtime's SPDY
/// streaming server at `url`.
pub async fn websocket_to_spdy(mut req: Request<hyper::body::Incoming>, url: &str, session: Session) -> Response<Body> {
    let h = req.headers();
    let offered: Vec<String> = h.get_all("sec-websocket-protocol").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(|v| v.trim().to_string()).collect();
    let (supported, towards_runtime): (&[&str], &str) = match session {
        Session::Channels { .. } => (&["v5.channel.k8s.io", "v4.channel.k8s.io"], "v4.channel.k8s.io"),
        Session::PortForward => (&["SPDY/3.1+portforward.k8s.io"], "portforward.k8s.io"),
    };
    let Some(proto) = offered.iter().find(|p| supported.contains(&p.as_str())).cloned() else {
        return text(403, format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"));
    };
    let Some(key) = h.get("sec-websocket-key").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return text(400, "websocket upgrade without Sec-WebSocket-Key");
    };
    let headers = [("Connection", "Upgrade".to_string()), ("Upgrade", "SPDY/3.1".to_string()), ("X-Stream-Protocol-Version", towards_runtime.to_string()), ("Content-Length", "0".to_string())];
    let up = match dial("POST", url, &headers).await {
        Ok(u) if u.code == 101 => u,
        Ok(u) => return u.refusal().await,
        Err(r) => return r,
    };
    tracing::debug!(runtime = %up.addr, %proto, "translating a WebSocket stream to SPDY");
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(client) = on_upgrade.await else { return };
        let client = hyper_util::rt::TokioIo::new(client);
        let (r, w) = up.tcp.into_split();
        // Anything the runtime sent right after its 101 is already SPDY.
        let r = std::io::Cursor::new(up.rest).chain(r);
        match session {
            Session::PortForward => tunnel(client, r, w).await,
            Session::Channels { stdin, stdout, stderr, tty } => channels(client, r, w, [stdin, stdout, stderr, tty]).await,
        }
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", ws::accept_key(&key))
        .header("sec-websocket-protocol", proto)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

/// Port-forward: SPDY tunnelled in binary messages, unwrapped for the runtime.
async fn tunnel<C, R, W>(client: C, mut r: R, mut w: W)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(ws::tunnel(client));
    let up = async {
        let _ = tokio::io::copy(&mut cr, &mut w).await;
        let _ = w.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut r, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Exec/attach: one SPDY stream per channel, opened in client-go's order.
async fn channels<C, R, W>(client: C, r: R, w: W, [stdin, stdout, stderr, tty]: [bool; 4])
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut msgs, tx) = ws::serve(client);
    let (mut spdy, mut events) = Client::start(r, w);
    let error = spdy.open(&[("streamtype", "error")]);
    let mut to_client: HashMap<u32, u8> = [(error, ERROR)].into();
    let input = stdin.then(|| spdy.open(&[("streamtype", "stdin")]));
    if stdout {
        to_client.insert(spdy.open(&[("streamtype", "stdout")]), STDOUT);
    }
    if stderr {
        to_client.insert(spdy.open(&[("streamtype", "stderr")]), STDERR);
    }
    let resize = tty.then(|| spdy.open(&[("streamtype", "resize")]));
    loop {
        tokio::select! {
            m = msgs.recv() => {
                // The client went away: dropping the SPDY client ends the runtime's session too.
                let Some(m) = m else { break };
                let stream = match m.first() {
                    Some(&STDIN) => input,
                    Some(&RESIZE) => resize,
                    Some(&CLOSE) if m.get(1) == Some(&STDIN) => {
                        if let Some(id) = input {
                            spdy.fin(id);
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(id) = stream.filter(|_| m.len() > 1) {
                    spdy.data(id, Bytes::copy_from_slice(&m[1..]));
                }
            }
            e = events.recv() => match e {
                Some(Event::Data(id, b)) => {
                    if let Some(&ch) = to_client.get(&id) {
                        let mut v = Vec::with_capacity(b.len() + 1);
                        v.push(ch);
                        v.extend_from_slice(&b);
                        tx.binary(v);
                    }
                }
                // The Status on the error stream is the session's last word.
                Some(Event::End(id)) if id == error => break,
                Some(Event::End(_)) => {}
                None => break,
            },
        }
    }
    // Dropping `tx` sends the WebSocket close frame, after everything queued.
}
