//! One upgraded streaming connection: sort the client's streams (SPDY) or
//! channels (WebSocket) into a [`process::Io`], run the session, and report
//! the outcome as the channel protocols' `metav1.Status` on the error
//! stream.

use super::process::{self, Io, Sink};
use super::{spdy, ws, Pending};
use crate::Runtime;
use bytes::Bytes;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Channel numbers of the WebSocket channel protocols.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: `[255, n]` from the client closes its channel `n`.
const CLOSE: u8 = 255;

pub async fn run<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(rt: Arc<Runtime>, io: S, websocket: bool, p: Pending) {
    match p {
        Pending::PortForward { sandbox_id } => {
            let pid = rt.sandboxes.lock().get(&sandbox_id).map(|s| s.pid);
            let Some(pid) = pid else { return };
            if websocket {
                port_forward(spdy::serve(ws::tunnel(io)), pid, sandbox_id).await
            } else {
                port_forward(spdy::serve(io), pid, sandbox_id).await
            }
        }
        p if websocket => channels_ws(rt, io, p).await,
        p => channels_spdy(rt, io, p).await,
    }
}

fn flags(p: &Pending) -> (bool, bool, bool, bool) {
    match p {
        Pending::Exec { tty, stdin, stdout, stderr, .. } | Pending::Attach { tty, stdin, stdout, stderr, .. } => (*tty, *stdin, *stdout, *stderr && !*tty),
        Pending::PortForward { .. } => (false, false, false, false),
    }
}

/// The Status written on the error stream when the session ends.
fn status(p: &Pending, r: &anyhow::Result<i32>) -> Vec<u8> {
    let v = match r {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => {
            let cmd = match p {
                Pending::Exec { cmd, .. } => cmd.join(" "),
                _ => String::new(),
            };
            json!({"metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command [{cmd}], exit code {code}"),
                "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
        }
        Err(e) => json!({"metadata": {}, "status": "Failure", "message": format!("{e:#}"), "reason": "InternalError", "code": 500}),
    };
    v.to_string().into_bytes()
}

async fn execute(rt: &Arc<Runtime>, p: &Pending, io: Io) -> anyhow::Result<i32> {
    match p {
        Pending::Exec { container_id, cmd, tty, .. } => process::exec(rt, container_id, cmd, *tty, io).await,
        Pending::Attach { container_id, .. } => process::attach(rt, container_id, io).await.map(|_| 0),
        Pending::PortForward { .. } => Ok(0),
    }
}

async fn channels_spdy<S: AsyncRead + AsyncWrite + Send + 'static>(rt: Arc<Runtime>, io: S, p: Pending) {
    let (tty, stdin, stdout, stderr) = flags(&p);
    let expected = 1 + stdin as usize + stdout as usize + stderr as usize + tty as usize;
    let mut incoming = spdy::serve(io);
    let mut got: HashMap<String, spdy::Stream> = HashMap::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while got.len() < expected {
            match incoming.recv().await {
                Some(s) => {
                    got.insert(s.header("streamtype").to_string(), s);
                }
                None => return,
            }
        }
    })
    .await;
    let Some(error) = got.remove("error") else {
        tracing::debug!("streaming session without an error stream");
        return;
    };
    let sink = |s: &spdy::Stream| -> Sink {
        let (tx, id) = (s.tx.clone(), s.id);
        Box::new(move |b| tx.data(id, b))
    };
    let outs: Vec<(u32, spdy::Writer)> = ["stdout", "stderr"].iter().filter_map(|k| got.get(*k)).map(|s| (s.id, s.tx.clone())).collect();
    let session = Io {
        stdout: got.get("stdout").map(sink),
        stderr: got.get("stderr").map(sink),
        stdin: got.remove("stdin").map(|s| s.rx),
        resize: got.remove("resize").map(|s| process::resize_events(s.rx)),
    };
    let r = execute(&rt, &p, session).await;
    for (id, w) in outs {
        w.fin(id);
    }
    error.send(Bytes::from(status(&p, &r)));
    error.close();
    // Keep the connection until the client hangs up.
    while incoming.recv().await.is_some() {}
}

async fn channels_ws<S: AsyncRead + AsyncWrite + Send + 'static>(rt: Arc<Runtime>, io: S, p: Pending) {
    let (_, stdin, stdout, stderr) = flags(&p);
    let tty = matches!(p, Pending::Exec { tty: true, .. } | Pending::Attach { tty: true, .. });
    let (mut msgs, tx) = ws::serve(io);
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (rs_tx, rs_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut in_tx = Some(in_tx);
        while let Some(m) = msgs.recv().await {
            match (m.first(), m.get(1)) {
                (Some(&STDIN), _) => {
                    if let Some(t) = &in_tx {
                        let _ = t.send(Bytes::copy_from_slice(&m[1..]));
                    }
                }
                (Some(&RESIZE), _) => {
                    let _ = rs_tx.send(Bytes::copy_from_slice(&m[1..]));
                }
                (Some(&CLOSE), Some(&STDIN)) => in_tx = None,
                _ => {}
            }
        }
    });
    let sink = |ch: u8| -> Sink {
        let t = tx.clone();
        Box::new(move |b: Bytes| {
            let mut v = Vec::with_capacity(b.len() + 1);
            v.push(ch);
            v.extend_from_slice(&b);
            t.binary(v);
        })
    };
    let session = Io {
        stdin: stdin.then_some(in_rx),
        stdout: stdout.then(|| sink(STDOUT)),
        stderr: stderr.then(|| sink(STDERR)),
        resize: tty.then(|| process::resize_events(rs_rx)),
    };
    let r = execute(&rt, &p, session).await;
    let mut st = vec![ERROR];
    st.extend(status(&p, &r));
    tx.binary(st);
    // Dropping the last sender sends the close frame.
}

async fn port_forward(mut incoming: mpsc::UnboundedReceiver<spdy::Stream>, pid: u32, sandbox: String) {
    let mut pairs: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    while let Some(s) = incoming.recv().await {
        let rid = s.header("requestid").to_string();
        let e = pairs.entry(rid.clone()).or_default();
        match s.header("streamtype") {
            "error" => e.0 = Some(s),
            "data" => e.1 = Some(s),
            _ => {
                s.close();
                continue;
            }
        }
        if e.0.is_some() && e.1.is_some()
            && let Some((Some(err), Some(data))) = pairs.remove(&rid) {
                tokio::spawn(forward(pid, sandbox.clone(), err, data));
            }
    }
}

/// Copy one forwarded connection both ways; failures go to its error stream.
async fn forward(pid: u32, sandbox: String, error: spdy::Stream, data: spdy::Stream) {
    let port: u16 = data.header("port").parse().unwrap_or(0);
    let spdy::Stream { id, rx: mut from_client, tx, .. } = data;
    let tcp = match process::dial_in_netns(pid, port).await {
        Ok(t) => t,
        Err(e) => {
            error.send(Bytes::from(format!("error forwarding port {port} to pod {sandbox}, uid : {e:#}")));
            error.close();
            tx.fin(id);
            return;
        }
    };
    let (mut r, mut w) = tcp.into_split();
    let up = async {
        while let Some(b) = from_client.recv().await {
            if w.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => tx.data(id, Bytes::copy_from_slice(&buf[..n])),
            }
        }
        tx.fin(id);
        // kubectl waits for the error stream to end before it closes the
        // local connection (and with it the data stream): end it now.
        error.close();
    };
    tokio::join!(up, down);
}
