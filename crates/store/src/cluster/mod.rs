//! Raft under the store: a `skiff store` with several members (etcd's
//! `etcdserver` role).
//!
//! - [`node`]: the Raft driver thread. It owns the pure Raft core
//!   (`skiff-raft`'s `RawNode`), persists each `Ready` to the [`raftlog`]
//!   (fsync before sending the messages that depend on it), sends messages
//!   over the [`transport`], applies committed entries to the same
//!   `StateMachine` the single-member store uses, answers the member's
//!   waiting proposals and ReadIndex reads, and snapshots/compacts.
//! - [`raftlog`]: entries, hard state and snapshot marks on disk.
//! - [`transport`]: length-prefixed protobuf frames over TCP on the peer URL,
//!   with a fault hook for partition tests.
//! - [`codec`]: Raft's types to and from protobuf.
//!
//! A one-member store does not use any of this: its writer thread is the
//! same commit path without a network round (append, fsync, apply).

pub mod codec;
mod node;
pub mod raftlog;
pub mod transport;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use etcdpb::skiffpb::{Command, MemberInfo};
use parking_lot::Mutex;
use skiff_raft::{Message, NodeId};
use tokio::sync::oneshot;

use crate::error::{Result, StoreError};
use crate::state::Response;

pub(crate) use node::start;

/// A member's ID: derived from its peer URLs (as etcd does, by a different
/// hash), so every member computes the same IDs from `--initial-cluster`,
/// and `member add` assigns the ID the new member will compute when it starts.
pub fn member_id(peer_urls: &[String]) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let data = urls.join(",");
    data.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The cluster ID: a hash of the founding members' IDs (sorted).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    ids.iter()
        .flat_map(|i| i.to_be_bytes())
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// How this member joins the cluster (etcd's clustering flags).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `--name`
    pub name: String,
    /// `--initial-cluster`: every founding member, `(name, peer URLs)`.
    pub initial: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state new` (true) or `existing` (false: this
    /// member was added with `member add` and learns the log from the leader).
    pub new_cluster: bool,
    /// `--listen-peer-urls`
    pub listen_peer: Vec<SocketAddr>,
    /// `--advertise-client-urls` of this member.
    pub client_urls: Vec<String>,
    /// Milliseconds per Raft tick (etcd's `--heartbeat-interval`).
    pub tick_ms: u64,
    /// Ticks without a leader before an election (etcd's
    /// `--election-timeout` / `--heartbeat-interval`).
    pub election_ticks: u64,
}

impl ClusterConfig {
    pub fn self_peer_urls(&self) -> Vec<String> {
        self.initial.iter().find(|(n, _)| *n == self.name).map(|(_, u)| u.clone()).unwrap_or_default()
    }
    pub fn self_id(&self) -> u64 {
        member_id(&self.self_peer_urls())
    }
}

/// A change to the membership, from the Cluster API.
#[derive(Debug, Clone)]
pub enum MemberChange {
    /// `member add` (as a learner when `learner`).
    Add { peer_urls: Vec<String>, learner: bool },
    Remove(u64),
    Promote(u64),
}

pub(crate) type MemberReply = oneshot::Sender<Result<Vec<MemberInfo>>>;

/// What the Raft driver thread takes in.
pub enum Input {
    Propose(Command, oneshot::Sender<Result<Response>>),
    Read(oneshot::Sender<Result<()>>),
    Peer(Message),
    Unreachable(NodeId),
    /// A background snapshot of the state machine at this index is on disk.
    SnapshotWritten(u64),
    Member(MemberChange, MemberReply),
    /// etcd's MoveLeader: hand leadership to this voter (on the leader only).
    TransferLeader(u64, oneshot::Sender<Result<()>>),
    Stop,
}

/// What the rest of the member (gRPC Status, MemberList, headers, the
/// lessor) needs to know about Raft, updated by the driver.
pub struct Status {
    pub id: u64,
    pub cluster_id: u64,
    pub name: String,
    term: AtomicU64,
    leader: AtomicU64,
    last_index: AtomicU64,
    commit: AtomicU64,
    learner: AtomicBool,
    members: Mutex<Vec<MemberInfo>>,
}

impl Status {
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }
    pub fn is_leader(&self) -> bool {
        self.leader() == self.id
    }
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }
    pub fn commit(&self) -> u64 {
        self.commit.load(Ordering::Relaxed)
    }
    pub fn is_learner(&self) -> bool {
        self.learner.load(Ordering::Relaxed)
    }
    /// Members with `is_learner` set as Raft sees them now.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.lock().clone()
    }
}

/// The store's handle on its Raft driver.
pub struct NodeHandle {
    tx: Mutex<std_mpsc::Sender<Input>>,
    pub status: Arc<Status>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl NodeHandle {
    pub(crate) fn send(&self, input: Input) -> Result<()> {
        self.tx.lock().send(input).map_err(|_| StoreError::Stopped)
    }

    pub(crate) fn propose(&self, cmd: Command, reply: oneshot::Sender<Result<Response>>) -> Result<()> {
        self.send(Input::Propose(cmd, reply))
    }

    pub(crate) fn stop(&self) {
        let _ = self.send(Input::Stop);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}
