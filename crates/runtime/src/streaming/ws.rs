//! The server half of WebSocket (RFC 6455) for the Kubernetes channel
//! protocols: the handshake answer, and framing split into a message
//! receiver and a frame sender. Newer kubectl speaks `v5.channel.k8s.io`
//! for exec/attach (first byte of each binary message names the channel)
//! and tunnels SPDY inside binary messages for port-forward.

use anyhow::{bail, Result};
use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub const BINARY: u8 = 2;
const CLOSE: u8 = 8;
const PING: u8 = 9;
const PONG: u8 = 10;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut s = key.trim().as_bytes().to_vec();
    s.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &s);
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

/// One unmasked server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 10);
    f.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xffff => {
            f.push(126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// Sends whole messages; the connection's write side sends a close frame
/// and shuts down when every sender is gone.
#[derive(Clone)]
pub struct Sender(mpsc::UnboundedSender<(u8, Vec<u8>)>);

impl Sender {
    pub fn binary(&self, payload: Vec<u8>) -> bool {
        self.0.send((BINARY, payload)).is_ok()
    }
}

async fn write_loop(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::UnboundedReceiver<(u8, Vec<u8>)>) {
    while let Some((op, p)) = rx.recv().await {
        if w.write_all(&frame(op, &p)).await.is_err() {
            return;
        }
    }
    // Normal closure (1000).
    let _ = w.write_all(&frame(CLOSE, &[0x03, 0xe8])).await;
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await?;
    let fin = h[0] & 0x80 != 0;
    let op = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => r.read_u16().await? as u64,
        127 => r.read_u64().await?,
        n => n as u64,
    };
    if len > 64 << 20 {
        bail!("websocket frame of {len} bytes");
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut p = vec![0u8; len as usize];
    r.read_exact(&mut p).await?;
    if masked {
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((fin, op, p))
}

async fn read_loop(mut r: impl AsyncRead + Unpin, pong: mpsc::UnboundedSender<(u8, Vec<u8>)>, msgs: mpsc::UnboundedSender<Vec<u8>>) {
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let Ok((fin, op, p)) = read_frame(&mut r).await else { return };
        match op {
            PING => {
                let _ = pong.send((PONG, p));
            }
            PONG => {}
            CLOSE => return,
            _ => {
                partial.extend_from_slice(&p);
                if fin && msgs.send(std::mem::take(&mut partial)).is_err() {
                    return;
                }
            }
        }
    }
}

/// Run framing on an upgraded connection: received data messages (text or
/// binary; the channel ends at close or EOF), and a sender.
pub fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(io: S) -> (mpsc::UnboundedReceiver<Vec<u8>>, Sender) {
    let (r, w) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (msg_tx, msg_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(w, out_rx));
    // The reader answers pings through a weak handle, so that it does not keep the connection open.
    let pong = out_tx.clone();
    let weak = pong.downgrade();
    drop(pong);
    tokio::spawn(async move {
        let (ptx, mut prx) = mpsc::unbounded_channel::<(u8, Vec<u8>)>();
        let fwd = tokio::spawn(async move {
            while let Some(m) = prx.recv().await {
                let Some(s) = weak.upgrade() else { return };
                let _ = s.send(m);
            }
        });
        read_loop(r, ptx, msg_tx).await;
        fwd.abort();
    });
    (msg_rx, Sender(out_tx))
}

/// Bytes carried in binary messages, as one duplex byte stream: how
/// kubectl tunnels SPDY port-forwarding over a WebSocket.
pub fn tunnel<S: AsyncRead + AsyncWrite + Send + 'static>(io: S) -> tokio::io::DuplexStream {
    let (mut msgs, tx) = serve(io);
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Some(m) = msgs.recv().await {
            if wr.write_all(&m).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !tx.binary(buf[..n].to_vec()) {
                        return;
                    }
                }
            }
        }
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn rfc6455_example_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
    #[test]
    fn frame_lengths() {
        assert_eq!(frame(BINARY, b"ab"), vec![0x82, 2, b'a', b'b']);
        assert_eq!(&frame(BINARY, &[0; 300])[..4], &[0x82, 126, 1, 44]);
    }
}
