//! The peer transport: Raft messages as length-prefixed protobuf frames
//! (`u32 little-endian length | skiffpb.RaftMessage`) over one TCP stream per
//! direction and peer, on the peer URL.
//!
//! Raft tolerates lost, duplicated and reordered messages, so the transport
//! is deliberately simple: each peer has a sender task that (re)connects on
//! demand and writes frames in order; while a peer is unreachable its frames
//! are dropped and the node is told (`Unreachable`), so the leader falls back
//! to probing instead of pipelining into the void. It never retries a frame,
//! so a forwarded proposal is never delivered twice by the transport.
//!
//! **Fault hook (for tests):** if `SKIFF_PEER_FAULT_FILE` names a file, its
//! whitespace-separated words list member names whose traffic this member
//! drops in both directions (`*` = every peer). The file is re-read every
//! 100 ms, so a test partitions and heals a member by rewriting it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use prost::Message as _;
use skiff_raft::{Message, NodeId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{codec, Input};

/// Largest frame accepted from a peer (snapshot chunks are 1 MiB).
const MAX_FRAME: usize = 64 << 20;

/// Drops traffic to and from the peers named in the fault file.
pub struct Fault {
    path: Option<PathBuf>,
    cache: Mutex<(Instant, Vec<String>)>,
}

impl Fault {
    pub fn from_env() -> Fault {
        let path = std::env::var_os("SKIFF_PEER_FAULT_FILE").map(PathBuf::from);
        Fault { path, cache: Mutex::new((Instant::now() - Duration::from_secs(1), Vec::new())) }
    }

    pub fn blocks(&self, peer_name: &str) -> bool {
        let Some(path) = &self.path else { return false };
        let mut c = self.cache.lock();
        if c.0.elapsed() >= Duration::from_millis(100) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            *c = (Instant::now(), text.split_whitespace().map(str::to_owned).collect());
        }
        c.1.iter().any(|w| w == "*" || w == peer_name)
    }
}

struct Peer {
    name: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

pub struct Transport {
    rt: tokio::runtime::Handle,
    peers: Mutex<HashMap<NodeId, Peer>>,
    /// Member names by ID (including removed ones, so their traffic can still be dropped by name).
    names: Arc<Mutex<HashMap<NodeId, String>>>,
    fault: Arc<Fault>,
    inbox: std_mpsc::Sender<Input>,
}

fn addr_of(url: &str) -> String {
    let s = url.trim();
    let s = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")).unwrap_or(s);
    s.trim_end_matches('/').to_owned()
}

impl Transport {
    pub fn new(rt: tokio::runtime::Handle, inbox: std_mpsc::Sender<Input>) -> Arc<Transport> {
        Arc::new(Transport {
            rt,
            peers: Mutex::new(HashMap::new()),
            names: Arc::new(Mutex::new(HashMap::new())),
            fault: Arc::new(Fault::from_env()),
            inbox,
        })
    }

    /// Start (or restart, with a new URL) the sender to a peer.
    pub fn add_peer(&self, id: NodeId, name: &str, url: &str) {
        self.names.lock().insert(id, name.to_owned());
        let (tx, rx) = mpsc::unbounded_channel();
        let addr = addr_of(url);
        let inbox = self.inbox.clone();
        self.rt.spawn(sender(id, addr, rx, inbox));
        self.peers.lock().insert(id, Peer { name: name.to_owned(), tx });
    }

    pub fn has_peer(&self, id: NodeId) -> bool {
        self.peers.lock().contains_key(&id)
    }

    pub fn remove_peer(&self, id: NodeId) {
        self.peers.lock().remove(&id);
    }

    pub fn send(&self, msgs: Vec<Message>) {
        let peers = self.peers.lock();
        for m in msgs {
            let Some(p) = peers.get(&m.to) else { continue };
            if self.fault.blocks(&p.name) {
                continue;
            }
            let pb = codec::message_to_pb(&m);
            let mut buf = BytesMut::with_capacity(4 + pb.encoded_len());
            buf.extend_from_slice(&(pb.encoded_len() as u32).to_le_bytes());
            pb.encode(&mut buf).expect("BytesMut grows");
            let _ = p.tx.send(buf.freeze());
        }
    }

    /// Accept peer connections on `listener` and feed their messages to the node.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((conn, from)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = conn.set_nodelay(true);
            let t = self.clone();
            tokio::spawn(async move {
                if let Err(e) = t.receive(conn).await {
                    tracing::debug!(%from, "peer connection closed: {e}");
                }
            });
        }
    }

    async fn receive(&self, mut conn: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let mut len = [0u8; 4];
            conn.read_exact(&mut len).await?;
            let len = u32::from_le_bytes(len) as usize;
            if len > MAX_FRAME {
                return Err(std::io::Error::other(format!("frame of {len} bytes")));
            }
            buf.resize(len, 0);
            conn.read_exact(&mut buf).await?;
            let Ok(pb) = etcdpb::skiffpb::RaftMessage::decode(&buf[..]) else {
                return Err(std::io::Error::other("undecodable raft message"));
            };
            let Some(m) = codec::message_from_pb(pb) else { continue };
            let name = self.names.lock().get(&m.from).cloned().unwrap_or_default();
            if self.fault.blocks(&name) {
                continue;
            }
            if self.inbox.send(Input::Peer(m)).is_err() {
                return Ok(());
            }
        }
    }
}

async fn sender(id: NodeId, addr: String, mut rx: mpsc::UnboundedReceiver<Bytes>, inbox: std_mpsc::Sender<Input>) {
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut next_attempt = Instant::now();
    while let Some(frame) = rx.recv().await {
        if conn.is_none() {
            if Instant::now() < next_attempt {
                continue; // dropped: the peer was unreachable a moment ago
            }
            match tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(&addr)).await {
                Ok(Ok(c)) => {
                    let _ = c.set_nodelay(true);
                    conn = Some(c);
                }
                _ => {
                    next_attempt = Instant::now() + Duration::from_millis(100);
                    let _ = inbox.send(Input::Unreachable(id));
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        // Coalesce whatever else is queued into one write.
        let mut batch = frame.to_vec();
        while batch.len() < (4 << 20) {
            match rx.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if let Err(e) = c.write_all(&batch).await {
            tracing::debug!(peer = id, %addr, "peer send failed: {e}");
            conn = None;
            let _ = inbox.send(Input::Unreachable(id));
        }
    }
}

/// Parse a peer URL into a socket address to listen on.
pub fn listen_addr(url: &str) -> Option<SocketAddr> {
    addr_of(url).parse().ok()
}
