//! `RawNode`: the application-facing handle around [`Raft`], producing
//! [`Ready`] batches and consuming `advance` acknowledgements.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::{
    ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageType, NONE, NodeId,
};
use crate::progress::Progress;
use crate::raft::{Raft, StateRole};
use crate::ready::{Ready, SoftState};
use crate::storage::Storage;

/// A snapshot of the node's state for monitoring and tests.
#[derive(Clone, Debug)]
pub struct Status {
    pub id: NodeId,
    pub hard_state: HardState,
    pub soft_state: SoftState,
    pub applied: u64,
    /// Per-member replication progress; only populated on the leader.
    pub progress: BTreeMap<NodeId, Progress>,
}

pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft: SoftState,
    prev_hard: HardState,
}

impl<S: Storage> RawNode<S> {
    /// Create a node over `storage`, recovering whatever it holds (hard
    /// state, snapshot, entries). For a new cluster, seed the storage with
    /// the initial `ConfState` (see `MemStorage::new_with_conf_state`).
    pub fn new(config: &Config, storage: S) -> Result<RawNode<S>> {
        let raft = Raft::new(config, storage)?;
        let prev_hard = raft.hard_state();
        let prev_soft = SoftState {
            leader_id: raft.lead,
            role: raft.state,
        };
        Ok(RawNode {
            raft,
            prev_soft,
            prev_hard,
        })
    }

    /// Advance logical time by one tick (election / heartbeat timers).
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Start an election now (e.g. for a single-node bootstrap).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft
            .step(Message::new(MessageType::Hup, self.raft.id, self.raft.id))
    }

    /// Propose application data. `Ok` means accepted for replication, not
    /// committed: watch `committed_entries`. Proposals can be lost (leader
    /// change), so the application must retry on a timeout.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        let mut m = Message::new(MessageType::Propose, NONE, self.raft.id);
        m.entries = vec![Entry {
            data,
            ..Default::default()
        }];
        self.raft.step(m)
    }

    /// Propose a membership change; it takes effect when applied.
    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<()> {
        let mut m = Message::new(MessageType::Propose, NONE, self.raft.id);
        m.entries = vec![Entry {
            kind: EntryKind::ConfChange,
            data: cc.encode(),
            ..Default::default()
        }];
        self.raft.step(m)
    }

    /// Apply a committed conf change (call while applying its entry).
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        self.raft.apply_conf_change(cc)
    }

    /// Feed a message received from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.msg_type.is_local() {
            return Err(Error::StepLocalMsg);
        }
        if m.msg_type.is_response() && !self.raft.tracker.progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Request a linearizable read. The answer arrives as a `ReadState`
    /// carrying `ctx` (make it unique per request); serve the read once the
    /// state machine has applied its `index`. Requests can be lost (leader
    /// change), so retry on a timeout.
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<()> {
        let mut m = Message::new(MessageType::ReadIndex, NONE, self.raft.id);
        m.context = ctx;
        self.raft.step(m)
    }

    /// Ask the leader to hand leadership to `to`.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<()> {
        self.raft
            .step(Message::new(MessageType::TransferLeader, NONE, to))
    }

    /// Tell the node that a message to `id` could not be delivered, so the
    /// leader stops pipelining to it.
    pub fn report_unreachable(&mut self, id: NodeId) {
        let _ = self
            .raft
            .step(Message::new(MessageType::Unreachable, self.raft.id, id));
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.raft.lead,
            role: self.raft.state,
        }
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        self.soft_state() != self.prev_soft
            || r.hard_state() != self.prev_hard
            || !r.msgs.is_empty()
            || !r.read_states.is_empty()
            || !r.raft_log.unstable.entries.is_empty()
            || r.raft_log.unstable.snapshot.is_some()
            || r.raft_log.has_next_committed_entries()
    }

    /// Collect pending work. Call `advance` with it once handled.
    pub fn ready(&mut self) -> Ready {
        let soft = self.soft_state();
        let hard = self.raft.hard_state();
        let r = &mut self.raft;
        let entries = r.raft_log.unstable.entries.clone();
        let snapshot = r.raft_log.unstable.snapshot.clone();
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hard.term != self.prev_hard.term
            || hard.vote != self.prev_hard.vote;
        let rd = Ready {
            soft_state: (soft != self.prev_soft).then_some(soft),
            hard_state: (hard != self.prev_hard).then_some(hard),
            read_states: std::mem::take(&mut r.read_states),
            entries,
            snapshot,
            committed_entries: r.raft_log.next_committed_entries(),
            messages: std::mem::take(&mut r.msgs),
            must_sync,
        };
        self.prev_soft = soft;
        self.prev_hard = hard;
        rd
    }

    /// Acknowledge that `rd` was handled per the `Ready` contract.
    pub fn advance(&mut self, rd: Ready) {
        let log = &mut self.raft.raft_log;
        if let Some(s) = &rd.snapshot {
            log.stable_snap_to(s.metadata.index);
            log.applied = log.applied.max(s.metadata.index);
        }
        if let Some(e) = rd.entries.last() {
            log.stable_to(e.index, e.term);
        }
        if let Some(e) = rd.committed_entries.last() {
            log.applied_to(e.index);
        }
    }

    pub fn status(&self) -> Status {
        let progress = if self.raft.state == StateRole::Leader {
            self.raft.tracker.progress.clone()
        } else {
            BTreeMap::new()
        };
        Status {
            id: self.raft.id,
            hard_state: self.raft.hard_state(),
            soft_state: self.soft_state(),
            applied: self.raft.raft_log.applied,
            progress,
        }
    }

    /// Read-only access to the core, for inspection and tests.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// Mutable access to the core, for tests that need to poke state.
    pub fn raft_mut(&mut self) -> &mut Raft<S> {
        &mut self.raft
    }

    pub fn store(&self) -> &S {
        &self.raft.raft_log.storage
    }
}
