//! The server half of SPDY/3.1 as Kubernetes uses it for exec, attach and
//! port-forward (the `moby/spdystream` dialect): the client opens every
//! stream with SYN_STREAM, naming its role in headers (`streamtype`, `port`,
//! `requestid`); the server answers SYN_REPLY and then both sides send DATA
//! frames, FIN closing a direction. Header blocks are zlib streams that share
//! one compression context per direction, primed with the SPDY/3 dictionary.
//! Flow control is not enforced: Kubernetes' peers never wait for windows on
//! the small streams these protocols carry.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use std::collections::HashMap;
use std::sync::OnceLock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

// Control frame types and the FIN flag (shared with the kubelet's SPDY client).
pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const FLAG_FIN: u8 = 1;

/// The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1):
/// length-prefixed header words followed by a run of common values.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let words = "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age allow \
            authorization cache-control connection content-base content-encoding content-language content-length content-location \
            content-md5 content-range content-type date etag expect expires from host if-match if-modified-since if-none-match \
            if-range if-unmodified-since last-modified location max-forwards pragma proxy-authenticate proxy-authorization range \
            referer retry-after server te trailer transfer-encoding upgrade user-agent vary via warning www-authenticate method get \
            status 200_OK version HTTP/1.1 url public set-cookie keep-alive origin";
        let mut d = Vec::new();
        for w in words.split_whitespace().map(|w| w.replace('_', " ")) {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(
            b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden\
404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept \
Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,\
application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch\
charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        d
    })
}

/// The inflating side of one connection's header context (also used by
/// the kubelet's SPDY client, which reads the runtime's header blocks).
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    pub fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(4096);
            }
            let before = self.0.total_in();
            let r = self.0.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.0.total_in() - before) as usize;
            match r {
                Ok(_) if pos >= input.len() && out.capacity() > out.len() => return Ok(out),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0.set_dictionary(dictionary()).context("SPDY header dictionary")?;
                }
                Err(e) => bail!("SPDY header block: {e}"),
            }
        }
    }
}

/// Header name/value pairs of an uncompressed block (names are lowercase on the wire).
pub fn parse_headers(b: &[u8]) -> Result<HashMap<String, String>> {
    /// The next length-prefixed field at `*pos`.
    fn field<'a>(b: &'a [u8], pos: &mut usize) -> Result<&'a [u8]> {
        let l = b.get(*pos..*pos + 4).context("short SPDY header block")?;
        let l = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
        let v = b.get(*pos + 4..*pos + 4 + l).context("short SPDY header field")?;
        *pos += 4 + l;
        Ok(v)
    }
    let n = b.get(..4).context("short SPDY header block")?;
    let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]);
    let mut pos = 4;
    let mut out = HashMap::new();
    for _ in 0..n {
        let name = field(b, &mut pos)?;
        let value = field(b, &mut pos)?;
        out.insert(String::from_utf8_lossy(name).to_lowercase(), String::from_utf8_lossy(value).to_string());
    }
    Ok(out)
}

enum Out {
    Reply(u32),
    Data(u32, Bytes, bool),
    Ping(Vec<u8>),
}

/// Sends frames on the connection; cheap to clone. The connection's write
/// side closes when every sender is gone.
#[derive(Clone)]
pub struct Writer(mpsc::UnboundedSender<Out>);

impl Writer {
    pub fn data(&self, id: u32, b: Bytes) {
        let _ = self.0.send(Out::Data(id, b, false));
    }
    /// Half-close: FIN on an empty DATA frame.
    pub fn fin(&self, id: u32) {
        let _ = self.0.send(Out::Data(id, Bytes::new(), true));
    }
}

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: HashMap<String, String>,
    /// DATA from the client; ends at FIN or reset.
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    pub tx: Writer,
}

impl Stream {
    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).map(String::as_str).unwrap_or("")
    }
    pub fn send(&self, b: Bytes) {
        self.tx.data(self.id, b)
    }
    pub fn close(&self) {
        self.tx.fin(self.id)
    }
}

/// One frame read off the wire: a control frame's type, or a data frame's
/// stream id (`kind` None), with its flags and payload.
pub struct Frame {
    pub kind: Option<u16>,
    pub id: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

/// The next frame, or None once the peer has closed the connection
/// (shared with the kubelet's SPDY client).
pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Result<Option<Frame>> {
    let mut head = [0u8; 8];
    if r.read_exact(&mut head).await.is_err() {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    let control = head[0] & 0x80 != 0;
    Ok(Some(Frame {
        kind: control.then(|| u16::from_be_bytes([head[2], head[3]])),
        id: if control { 0 } else { stream_id(&head) },
        flags: head[4],
        payload,
    }))
}

/// The 31-bit stream id at the start of `p`.
pub fn stream_id(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
}

/// A SPDY/3 data frame on stream `id` (shared with the kubelet's SPDY client).
pub fn data_frame(id: u32, b: &[u8], fin: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + b.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(b.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(b);
    f
}

/// A SPDY/3 control frame (shared with the kubelet's SPDY client).
pub fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 3]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

async fn write_loop(mut w: impl AsyncWrite + Unpin, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut z = Compress::new(Compression::default(), true);
    while let Some(o) = rx.recv().await {
        let frame = match o {
            Out::Reply(id) => {
                // An empty header block: a count of zero pairs, compressed.
                let mut block = Vec::with_capacity(64);
                let _ = z.compress_vec(&[0, 0, 0, 0], &mut block, FlushCompress::Sync);
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&block);
                control(SYN_REPLY, 0, &p)
            }
            Out::Ping(p) => control(PING, 0, &p),
            Out::Data(id, b, fin) => data_frame(id, &b, fin),
        };
        if w.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
}

async fn read_loop(mut r: impl AsyncRead + Unpin, out: Writer, streams_tx: mpsc::UnboundedSender<Stream>) -> Result<()> {
    let mut z = Inflater(Decompress::new(true));
    let mut open: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    while let Some(Frame { kind, id, flags, payload }) = read_frame(&mut r).await? {
        let Some(kind) = kind else {
            if let Some(tx) = open.get(&id)
                && !payload.is_empty() {
                    let _ = tx.send(Bytes::from(payload));
                }
            if flags & FLAG_FIN != 0 {
                open.remove(&id);
            }
            continue;
        };
        match kind {
            SYN_STREAM => {
                if payload.len() < 10 {
                    bail!("short SYN_STREAM");
                }
                let id = stream_id(&payload);
                let headers = parse_headers(&z.inflate(&payload[10..])?)?;
                let (tx, rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN == 0 {
                    open.insert(id, tx);
                }
                let _ = out.0.send(Out::Reply(id));
                let _ = streams_tx.send(Stream { id, headers, rx, tx: out.clone() });
            }
            HEADERS if payload.len() >= 4 => {
                // Keep the shared zlib context in step even though we ignore them.
                z.inflate(&payload[4..])?;
            }
            RST_STREAM if payload.len() >= 4 => {
                open.remove(&stream_id(&payload));
            }
            PING => {
                let _ = out.0.send(Out::Ping(payload));
            }
            GOAWAY => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

/// Run the SPDY server side on `io`: returns the streams the client opens
/// (the channel ends when the connection does) and a writer for the
/// connection. The write side closes when the returned writer, every
/// stream, and the reader are dropped.
pub fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(io: S) -> mpsc::UnboundedReceiver<Stream> {
    let (r, w) = tokio::io::split(io);
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (streams_tx, streams_rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(w, out_rx));
    let writer = Writer(out_tx);
    tokio::spawn(async move {
        if let Err(e) = read_loop(r, writer, streams_tx).await {
            tracing::debug!("SPDY connection: {e:#}");
        }
    });
    streams_rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        let sum = ring::digest::digest(&ring::digest::SHA256, d);
        let hex: String = sum.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02");
    }

    #[test]
    fn inflates_dictionary_primed_blocks_across_frames() {
        // Compress two header blocks the way a SPDY client does: one zlib
        // stream primed with the dictionary, sync-flushed per block.
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(dictionary()).unwrap();
        let block = |pairs: &[(&str, &str)]| {
            let mut b = (pairs.len() as u32).to_be_bytes().to_vec();
            for (k, v) in pairs {
                b.extend_from_slice(&(k.len() as u32).to_be_bytes());
                b.extend_from_slice(k.as_bytes());
                b.extend_from_slice(&(v.len() as u32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            }
            b
        };
        let mut z = Inflater(Decompress::new(true));
        for pairs in [[("streamtype", "error")], [("streamtype", "stdout")]] {
            let mut out = Vec::with_capacity(512);
            c.compress_vec(&block(&pairs), &mut out, FlushCompress::Sync).unwrap();
            let h = parse_headers(&z.inflate(&out).unwrap()).unwrap();
            assert_eq!(h["streamtype"], pairs[0].1);
        }
    }
}
