//! Wire-level types: log entries, snapshots and the messages Raft nodes
//! exchange.
//!
//! These are plain data. The application owns serialization (Skiff's store
//! puts entries into its WAL and messages onto its transport), so nothing
//! here depends on an encoding library. `ConfChange` gets a tiny hand-rolled
//! binary codec because it travels inside `Entry::data`, which is opaque bytes.

use std::collections::BTreeSet;

/// Identifies a Raft node. `0` ([`NONE`]) means "nobody".
pub type NodeId = u64;

/// The "no node" id: no leader known, no vote cast.
pub const NONE: NodeId = 0;

/// What an entry's `data` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EntryKind {
    /// Application data (empty data = the no-op a new leader appends).
    #[default]
    Normal,
    /// An encoded [`ConfChange`]; the application must call
    /// `RawNode::apply_conf_change` when it applies one.
    ConfChange,
}

/// One slot of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    pub data: Vec<u8>,
}

impl Entry {
    /// Approximate encoded size, used for batching limits. Constant overhead
    /// keeps empty entries from being "free" so batches stay bounded.
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + 24
    }
}

/// The state that must be durable before any message of the same `Ready`
/// is sent: the current term, who we voted for in it, and the commit index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: u64,
    pub vote: NodeId,
    pub commit: u64,
}

/// Cluster membership. Voters count towards quorums; learners only receive
/// the log (a new member starts as a learner so it can catch up without
/// hurting availability).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfState {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl ConfState {
    pub fn with_voters(ids: impl IntoIterator<Item = NodeId>) -> ConfState {
        ConfState {
            voters: ids.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}

/// Describes the log prefix a snapshot replaces.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotMetadata {
    /// Membership as of `index`.
    pub conf_state: ConfState,
    pub index: u64,
    pub term: u64,
}

/// A state-machine image covering the log up to `metadata.index`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub metadata: SnapshotMetadata,
    pub data: Vec<u8>,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.metadata.index == 0
    }
}

/// One piece of a snapshot in flight. Snapshots can be far larger than a
/// sensible message, so the leader streams them in chunks and the follower
/// reassembles; `offset` lets the follower detect gaps (drops/reordering)
/// and ask the leader to resume from what it has.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotChunk {
    pub metadata: SnapshotMetadata,
    /// Byte offset of `data` within the full snapshot data.
    pub offset: u64,
    /// Total length of the snapshot data, so the follower can sanity check.
    pub total_len: u64,
    pub data: Vec<u8>,
    /// This is the last chunk.
    pub done: bool,
}

/// How a single-server membership change alters the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeKind {
    /// Add as a voter, or promote an existing learner.
    AddVoter,
    /// Add as a learner (or demote a voter to learner).
    AddLearner,
    /// Remove from the configuration entirely.
    Remove,
}

/// A single-server membership change, carried in an entry of kind
/// [`EntryKind::ConfChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChange {
    pub kind: ConfChangeKind,
    pub node_id: NodeId,
    /// Opaque application data (e.g. the new member's address).
    pub context: Vec<u8>,
}

impl ConfChange {
    /// Encode as `[kind:1][node_id:8 LE][context...]`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.context.len());
        out.push(match self.kind {
            ConfChangeKind::AddVoter => 0,
            ConfChangeKind::AddLearner => 1,
            ConfChangeKind::Remove => 2,
        });
        out.extend_from_slice(&self.node_id.to_le_bytes());
        out.extend_from_slice(&self.context);
        out
    }

    /// Inverse of [`ConfChange::encode`]; `None` on malformed input.
    pub fn decode(data: &[u8]) -> Option<ConfChange> {
        if data.len() < 9 {
            return None;
        }
        let kind = match data[0] {
            0 => ConfChangeKind::AddVoter,
            1 => ConfChangeKind::AddLearner,
            2 => ConfChangeKind::Remove,
            _ => return None,
        };
        let node_id = u64::from_le_bytes(data[1..9].try_into().ok()?);
        Some(ConfChange {
            kind,
            node_id,
            context: data[9..].to_vec(),
        })
    }
}

/// Every kind of message. Those marked *local* never cross the network:
/// they are how the node drives itself, and `RawNode::step` refuses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum MessageType {
    /// *local*: start an election (election timeout fired).
    #[default]
    Hup,
    /// *local*: leader should broadcast heartbeats.
    Beat,
    /// *local*: leader should verify it still hears from a quorum.
    CheckQuorum,
    /// Propose entries; local, or forwarded from a follower to the leader.
    Propose,
    /// Leader -> follower: entries after (`index`, `log_term`), plus `commit`.
    Append,
    /// Follower -> leader: accepted up to `index`, or `reject` with hints.
    AppendResponse,
    RequestVote,
    RequestVoteResponse,
    RequestPreVote,
    RequestPreVoteResponse,
    /// Leader -> follower: one chunk of a snapshot (`snapshot`).
    Snapshot,
    /// Follower -> leader: snapshot `index` received up to `snapshot_offset`
    /// bytes; the leader continues streaming from there.
    SnapshotResponse,
    /// Leader -> follower: liveness + `commit` + optional read `context`.
    Heartbeat,
    HeartbeatResponse,
    /// *local*: the transport could not reach `from`.
    Unreachable,
    /// Ask the leader to hand leadership to `from` (the transferee).
    TransferLeader,
    /// Leader -> transferee: campaign now, skipping pre-vote and leases.
    TimeoutNow,
    /// Linearizable read request carrying `context`; local or forwarded.
    ReadIndex,
    /// Leader -> follower: the read with `context` may be served at `index`.
    ReadIndexResponse,
}

impl MessageType {
    /// Messages the node generates for itself and must not accept from peers.
    pub fn is_local(self) -> bool {
        matches!(
            self,
            MessageType::Hup
                | MessageType::Beat
                | MessageType::CheckQuorum
                | MessageType::Unreachable
        )
    }

    /// Responses are the messages a node may safely receive from a peer it
    /// does not know about (e.g. after that peer was removed).
    pub fn is_response(self) -> bool {
        matches!(
            self,
            MessageType::AppendResponse
                | MessageType::RequestVoteResponse
                | MessageType::RequestPreVoteResponse
                | MessageType::HeartbeatResponse
                | MessageType::SnapshotResponse
                | MessageType::Unreachable
        )
    }
}

/// A Raft message. One flat struct (as in etcd) keeps routing and term
/// handling uniform; each `MessageType` documents which fields it uses and
/// the rest stay at their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Message {
    pub msg_type: MessageType,
    pub to: NodeId,
    pub from: NodeId,
    /// Sender's term; `0` for local messages and forwarded proposals/reads.
    pub term: u64,
    /// Append: term of the entry at `index`. Votes: candidate's last term.
    /// AppendResponse reject: term of the follower's conflicting entry.
    pub log_term: u64,
    /// Append: index preceding `entries`. Votes: candidate's last index.
    /// AppendResponse: last matching index, or the rejected index.
    /// SnapshotResponse: the snapshot's index.
    pub index: u64,
    pub entries: Vec<Entry>,
    pub commit: u64,
    pub snapshot: Option<SnapshotChunk>,
    /// SnapshotResponse: bytes of the snapshot the follower holds (a contiguous prefix).
    pub snapshot_offset: u64,
    pub reject: bool,
    /// AppendResponse reject: the largest index at which the follower's
    /// term is <= the leader's `log_term` at the rejected index (its term
    /// there goes in `log_term`). Lets the leader skip whole terms.
    pub reject_hint: u64,
    /// Read requests: the caller's request id. Votes: campaign kind marker.
    pub context: Vec<u8>,
    /// Heartbeat/Append: the leader's tick count when it sent them; their
    /// responses echo it. A lease must be dated from when the leader *sent*
    /// what a quorum acknowledged (each follower then refuses votes for an
    /// election timeout), not from when the acknowledgements arrived.
    pub lease_tick: u64,
}

impl Message {
    pub fn new(msg_type: MessageType, to: NodeId, from: NodeId) -> Message {
        Message {
            msg_type,
            to,
            from,
            ..Default::default()
        }
    }
}
