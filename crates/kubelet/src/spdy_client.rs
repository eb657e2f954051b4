//! The client half of SPDY/3.1 as Kubernetes' streaming protocols use it
//! (the `moby/spdystream` dialect), for talking to a CRI runtime's
//! streaming server that only speaks SPDY (containerd 1.x). We open every
//! stream (SYN_STREAM with odd ids, headers naming its role), then DATA
//! flows both ways and FIN half-closes. Everything the server sends comes
//! back as one ordered event queue, so output written before the exit
//! status is delivered before it. Header blocks share one zlib context per
//! direction, primed with the SPDY/3 dictionary; the server's must be
//! inflated in order even though we ignore them.

use anyhow::{bail, Result};
use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use skiff_runtime::streaming::spdy::{control, data_frame, dictionary, read_frame, stream_id, Frame, Inflater, FLAG_FIN, GOAWAY, HEADERS, PING, RST_STREAM, SYN_REPLY, SYN_STREAM};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the server sent, in order.
#[derive(Debug)]
pub enum Event {
    Data(u32, Bytes),
    /// The server closed its side of a stream (FIN or reset).
    End(u32),
}

enum Out {
    Open(u32, Vec<(String, String)>),
    Data(u32, Bytes, bool),
    Ping(Vec<u8>),
}

/// Opens streams and writes to them; the connection's write side shuts
/// down when the client is dropped.
pub struct Client {
    out: mpsc::UnboundedSender<Out>,
    next_id: u32,
}

impl Client {
    /// Run SPDY on an upgraded connection: the client, and the server's events
    /// (the queue ends when the connection does).
    pub fn start<R, W>(r: R, w: W) -> (Client, mpsc::UnboundedReceiver<Event>)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(w, out_rx));
        let pongs = out.downgrade();
        tokio::spawn(async move {
            if let Err(e) = read_loop(r, ev_tx, pongs).await {
                tracing::debug!("SPDY client connection: {e:#}");
            }
        });
        (Client { out, next_id: 1 }, ev_rx)
    }

    /// Open a stream with these headers; returns its id.
    pub fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let _ = self.out.send(Out::Open(id, headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        id
    }

    pub fn data(&self, id: u32, b: Bytes) {
        let _ = self.out.send(Out::Data(id, b, false));
    }

    /// Half-close our side of a stream.
    pub fn fin(&self, id: u32) {
        let _ = self.out.send(Out::Data(id, Bytes::new(), true));
    }
}

/// An uncompressed header block: count, then length-prefixed names and values.
fn header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut b = (headers.len() as u32).to_be_bytes().to_vec();
    for (k, v) in headers {
        for s in [k.to_ascii_lowercase(), v.clone()] {
            b.extend_from_slice(&(s.len() as u32).to_be_bytes());
            b.extend_from_slice(s.as_bytes());
        }
    }
    b
}

async fn write_loop(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut z = Compress::new(Compression::default(), true);
    let primed = z.set_dictionary(dictionary()).is_ok();
    while let Some(o) = rx.recv().await {
        let frame = match o {
            Out::Open(id, headers) => {
                let raw = header_block(&headers);
                let mut block = Vec::with_capacity(raw.len() + 64);
                if !primed || z.compress_vec(&raw, &mut block, FlushCompress::Sync).is_err() {
                    return;
                }
                // Stream id, no associated stream, priority 0, slot 0.
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                p.extend_from_slice(&block);
                control(SYN_STREAM, 0, &p)
            }
            Out::Ping(p) => control(PING, 0, &p),
            Out::Data(id, b, fin) => data_frame(id, &b, fin),
        };
        if w.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop(mut r: impl AsyncRead + Unpin, events: mpsc::UnboundedSender<Event>, pongs: mpsc::WeakUnboundedSender<Out>) -> Result<()> {
    let mut z = Inflater::default();
    while let Some(Frame { kind, id, flags, payload }) = read_frame(&mut r).await? {
        let Some(kind) = kind else {
            if !payload.is_empty() {
                let _ = events.send(Event::Data(id, Bytes::from(payload)));
            }
            if flags & FLAG_FIN != 0 {
                let _ = events.send(Event::End(id));
            }
            continue;
        };
        match kind {
            SYN_STREAM if payload.len() >= 10 => {
                // Server-initiated streams have no use here, but their headers
                // advance the shared zlib context.
                z.inflate(&payload[10..])?;
            }
            SYN_REPLY | HEADERS if payload.len() >= 4 => {
                z.inflate(&payload[4..])?;
                if flags & FLAG_FIN != 0 {
                    let _ = events.send(Event::End(stream_id(&payload)));
                }
            }
            RST_STREAM if payload.len() >= 4 => {
                let _ = events.send(Event::End(stream_id(&payload)));
            }
            PING => {
                if let Some(p) = pongs.upgrade() {
                    let _ = p.send(Out::Ping(payload));
                }
            }
            GOAWAY => return Ok(()),
            SYN_STREAM | SYN_REPLY | HEADERS | RST_STREAM => bail!("short SPDY control frame"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our client against the embedded runtime's SPDY server: streams open
    /// with their headers, data goes both ways in order, FIN ends a stream.
    #[tokio::test]
    async fn talks_to_the_spdy_server() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let mut streams = skiff_runtime::streaming::spdy::serve(b);
        let (r, w) = tokio::io::split(a);
        let (mut c, mut events) = Client::start(r, w);
        let err = c.open(&[("streamType", "error")]);
        let out = c.open(&[("streamtype", "stdout")]);
        let s1 = streams.recv().await.unwrap();
        let mut s2 = streams.recv().await.unwrap();
        assert_eq!((s1.id, s1.header("streamtype")), (err, "error"));
        assert_eq!((s2.id, s2.header("streamtype")), (out, "stdout"));
        c.data(out, Bytes::from_static(b"up"));
        c.fin(out);
        assert_eq!(s2.rx.recv().await.unwrap(), Bytes::from_static(b"up"));
        assert!(s2.rx.recv().await.is_none(), "FIN ends the server's stream");
        s2.send(Bytes::from_static(b"one"));
        s1.send(Bytes::from_static(b"two"));
        s1.close();
        let mut got = vec![];
        while got.len() < 3 {
            got.push(events.recv().await.unwrap());
        }
        assert!(matches!(&got[0], Event::Data(id, b) if *id == out && b == "one"), "{got:?}");
        assert!(matches!(&got[1], Event::Data(id, b) if *id == err && b == "two"), "{got:?}");
        assert!(matches!(&got[2], Event::End(id) if *id == err), "{got:?}");
    }
}
