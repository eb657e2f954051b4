//! What a streaming session does with its streams: `runc exec` a command
//! (with pipes, or with a pseudo-terminal for `-t`), attach to a
//! container's own output and stdin, or dial a port in a pod's network
//! namespace. Transports (SPDY, WebSocket) only move bytes to and from
//! these.

use crate::Runtime;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Where output goes: the transport's stream or channel.
pub type Sink = Box<dyn Fn(Bytes) + Send + Sync>;

/// The client's side of a session.
#[derive(Default)]
pub struct Io {
    /// Ends when the client closes stdin.
    pub stdin: Option<mpsc::UnboundedReceiver<Bytes>>,
    pub stdout: Option<Sink>,
    pub stderr: Option<Sink>,
    /// Terminal sizes (columns, rows).
    pub resize: Option<mpsc::UnboundedReceiver<(u16, u16)>>,
}

/// Terminal sizes from a resize stream: JSON objects `{"Width":w,"Height":h}` back to back.
pub fn resize_events(mut rx: mpsc::UnboundedReceiver<Bytes>) -> mpsc::UnboundedReceiver<(u16, u16)> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(b) = rx.recv().await {
            buf.extend_from_slice(&b);
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
            let mut used = 0;
            while let Some(Ok(v)) = it.next() {
                used = it.byte_offset();
                let (w, h) = (v["Width"].as_u64().unwrap_or(0), v["Height"].as_u64().unwrap_or(0));
                if tx.send((w as u16, h as u16)).is_err() {
                    return;
                }
            }
            buf.drain(..used);
        }
    });
    out
}

async fn pump(mut r: impl AsyncRead + Unpin, sink: Sink) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => sink(Bytes::copy_from_slice(&buf[..n])),
        }
    }
}

fn exit_code(s: std::process::ExitStatus) -> i32 {
    s.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0))
}

fn set_winsize(fd: i32, cols: u16, rows: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
}

fn running(rt: &Runtime, id: &str) -> Result<()> {
    match rt.containers.lock().get(id) {
        Some(c) if c.state == skiff_cri::ContainerState::ContainerRunning => Ok(()),
        Some(_) => bail!("container {id} is not running"),
        None => bail!("container {id} not found"),
    }
}

/// `runc exec` `cmd` in the container; returns its exit code.
pub async fn exec(rt: &Arc<Runtime>, id: &str, cmd: &[String], tty: bool, mut io: Io) -> Result<i32> {
    running(rt, id)?;
    let mut c = rt.runc();
    c.arg("exec");
    if tty {
        // runc makes the container's terminal and relays it to its own
        // stdio (our pty), following our pty's size on SIGWINCH.
        c.args(["--tty", "--env", "TERM=xterm"]);
    }
    c.arg(id).args(cmd).kill_on_drop(true);
    if tty {
        return exec_tty(c, io).await;
    }
    c.stdin(if io.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    c.stdout(if io.stdout.is_some() { Stdio::piped() } else { Stdio::null() });
    c.stderr(if io.stderr.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.spawn().with_context(|| format!("running {}", rt.cfg.runc))?;
    if let (Some(mut w), Some(mut rx)) = (child.stdin.take(), io.stdin.take()) {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() {
                    return;
                }
            }
            // Dropping `w` is the process's end of input.
        });
    }
    let mut outs = Vec::new();
    if let (Some(r), Some(s)) = (child.stdout.take(), io.stdout.take()) {
        outs.push(tokio::spawn(pump(r, s)));
    }
    if let (Some(r), Some(s)) = (child.stderr.take(), io.stderr.take()) {
        outs.push(tokio::spawn(pump(r, s)));
    }
    let status = child.wait().await?;
    // A background child may hold the pipes open; do not wait for it forever.
    let _ = tokio::time::timeout(Duration::from_secs(2), futures_join(outs)).await;
    Ok(exit_code(status))
}

async fn futures_join(hs: Vec<tokio::task::JoinHandle<()>>) {
    for h in hs {
        let _ = h.await;
    }
}

/// The command's stdio is the slave side of a new pseudo-terminal; the
/// master carries the client's input, output and window size.
async fn exec_tty(mut c: tokio::process::Command, mut io: Io) -> Result<i32> {
    let (mut master, mut slave) = (0, 0);
    if unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) } != 0 {
        bail!("openpty: {}", std::io::Error::last_os_error());
    }
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    let mfd = master.as_raw_fd();
    if let Some(rx) = io.resize.as_mut() {
        // The client sends its size first; use it before the command starts.
        if let Ok(Some((w, h))) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            set_winsize(mfd, w, h);
        }
    }
    c.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave));
    let mut child = c.spawn().context("running runc exec")?;
    // `c` holds the slave copies until dropped; the master reads EIO once all are closed.
    drop(c);
    let pid = child.id().unwrap_or(0) as i32;
    if let Some(mut rx) = io.resize.take() {
        tokio::spawn(async move {
            while let Some((w, h)) = rx.recv().await {
                set_winsize(mfd, w, h);
                // Our pty is not runc's controlling terminal: tell it by hand.
                unsafe { libc::kill(pid, libc::SIGWINCH) };
            }
        });
    }
    let reader = std::fs::File::from(master.try_clone()?);
    let mut writer = tokio::fs::File::from_std(std::fs::File::from(master));
    if let Some(mut rx) = io.stdin.take() {
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if writer.write_all(&b).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
        });
    }
    let out = io.stdout.take();
    let pumping = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut r = reader;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(s) = &out {
                        s(Bytes::copy_from_slice(&buf[..n]));
                    }
                }
            }
        }
    });
    let status = child.wait().await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), pumping).await;
    Ok(exit_code(status))
}

/// Stream the container's own output (and feed its stdin, if it was
/// created with one) until it exits or the client goes away. A terminal
/// container's window follows the client's (through its keeper).
pub async fn attach(rt: &Arc<Runtime>, id: &str, mut io: Io) -> Result<()> {
    running(rt, id)?;
    let (mut out, stdin, once, tty, bundle, mut exited) = {
        let cs = rt.containers.lock();
        let c = cs.get(id).context("container vanished")?;
        (c.output.subscribe(), c.stdin.clone(), c.config.stdin_once, c.config.tty, c.bundle.clone(), c.exited.clone())
    };
    if let (true, Some(mut rx)) = (tty, io.resize.take()) {
        let bundle = bundle.clone();
        tokio::spawn(async move {
            while let Some((cols, rows)) = rx.recv().await {
                if let Err(e) = crate::shim::control(&bundle, &crate::keeper::Request::Resize { cols, rows }) {
                    tracing::debug!("resizing the terminal: {e:#}");
                }
            }
        });
    }
    if let Some(mut rx) = io.stdin.take() {
        match stdin {
            Some(w) => {
                let (rt, id) = (rt.clone(), id.to_string());
                tokio::spawn(async move {
                    while let Some(b) = rx.recv().await {
                        if w.lock().await.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    // stdinOnce: the first attached client's end of input is the
                    // container's. Our writer goes (with the container's handle on
                    // it), then the keeper's: the FIFO then ends after what was written.
                    if once && rt.containers.lock().get_mut(&id).and_then(|c| c.stdin.take()).is_some() {
                        drop(w);
                        tracing::info!(container = %id, "stdinOnce: the attached client closed stdin; closing the container's");
                        // A restarted agent must not offer it again.
                        let _ = std::fs::write(bundle.join(crate::shim::STDIN_CLOSED), b"");
                        if let Err(e) = crate::shim::control(&bundle, &crate::keeper::Request::CloseStdin) {
                            tracing::warn!(container = %id, "closing stdin: {e:#}");
                        }
                    }
                });
            }
            None => bail!("container {id} was not created with stdin: true, or its stdin is closed"),
        }
    }
    loop {
        tokio::select! {
            m = out.recv() => match m {
                Ok((is_err, b)) => {
                    let sink = if is_err { io.stderr.as_ref().or(io.stdout.as_ref()) } else { io.stdout.as_ref() };
                    if let Some(s) = sink { s(b) }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return Ok(()),
            },
            _ = exited.wait_for(|e| *e) => return Ok(()),
        }
    }
}

/// A TCP connection to `port` on localhost inside the network namespace of
/// process `pid` (the sandbox's pause process). The socket keeps the
/// namespace it was made in; a throwaway thread enters it.
pub async fn dial_in_netns(pid: u32, port: u16) -> Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| -> Result<std::net::TcpStream> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).context("opening the pod's network namespace")?;
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("entering the pod's network namespace: {}", std::io::Error::last_os_error());
            }
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).with_context(|| format!("dial tcp4 {addr}"))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    Ok(tokio::net::TcpStream::from_std(rx.await.context("dialer thread")??)?)
}
