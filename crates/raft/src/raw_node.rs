//! `RawNode`: the application-facing API around `Raft`, adding the
//! `Ready`/`advance` handshake. Everything is synchronous and single
//! threaded; the caller drives time with `tick()`.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::message::{ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageType, NodeId};
use crate::progress::Progress;
use crate::raft::{Raft, SoftState, StateRole};
use crate::ready::Ready;
use crate::storage::Storage;

/// A snapshot of the node's state for monitoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub hard_state: HardState,
    pub soft_state: SoftState,
    pub applied: u64,
    /// Per-member progress; only on the leader.
    pub progress: BTreeMap<NodeId, Progress>,
}

pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_ss: SoftState,
    prev_hs: HardState,
    awaiting_advance: bool,
}

impl<S: Storage> RawNode<S> {
    /// Start (or restart) a node from what `storage` holds. A node joining
    /// an existing cluster starts with an empty configuration and waits for
    /// the leader to contact it.
    pub fn new(cfg: &Config, storage: S) -> Result<RawNode<S>> {
        let raft = Raft::new(cfg, storage)?;
        let prev_hs = raft.hard_state();
        Ok(RawNode { prev_ss: raft.soft_state(), prev_hs, raft, awaiting_advance: false })
    }

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Campaign immediately (skipping the election timeout).
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.step(Message::new(MessageType::Hup, 0, self.raft.id()))
    }

    /// Propose application data. Success means "accepted for replication",
    /// not "committed": watch committed entries for it.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        self.propose_entry(Entry { data, ..Default::default() })
    }

    /// Propose a single-server membership change.
    pub fn propose_conf_change(&mut self, cc: &ConfChange) -> Result<()> {
        self.propose_entry(Entry { kind: EntryKind::ConfChange, data: cc.encode(), ..Default::default() })
    }

    fn propose_entry(&mut self, e: Entry) -> Result<()> {
        let mut m = Message::new(MessageType::Propose, 0, self.raft.id());
        m.entries = vec![e];
        self.raft.step(m)
    }

    /// Feed a message received from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.msg_type.is_local() {
            return Err(Error::StepLocalMsg);
        }
        if m.msg_type.is_response() && self.raft.progress(m.from).is_none() {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Request a linearizable read. The answer arrives as a `ReadState` with
    /// the same `ctx` (which must be unique per request) in a later `Ready`;
    /// requests may be silently dropped (e.g. no leader) and should be
    /// retried on timeout.
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        let mut m = Message::new(MessageType::ReadIndex, 0, self.raft.id());
        m.context = ctx;
        let _ = self.raft.step(m);
    }

    /// Ask the leader to transfer leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: NodeId) {
        let m = Message::new(MessageType::TransferLeader, 0, transferee);
        let _ = self.raft.step(m);
    }

    /// Apply a committed conf change (call while applying its entry).
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        self.raft.apply_conf_change(cc)
    }

    /// The transport failed to deliver to `id`.
    pub fn report_unreachable(&mut self, id: NodeId) {
        let m = Message::new(MessageType::Unreachable, 0, id);
        let _ = self.raft.step(m);
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.soft_state() != self.prev_ss
            || r.hard_state() != self.prev_hs
            || !r.msgs.is_empty()
            || !r.read_states.is_empty()
            || !r.log.unstable.entries.is_empty()
            || r.log.unstable.snapshot.is_some()
            || r.log.has_next_committed_entries()
    }

    /// Collect pending work. See [`Ready`] for what to do with it.
    pub fn ready(&mut self) -> Ready {
        assert!(!self.awaiting_advance, "ready() called twice without advance()");
        self.awaiting_advance = true;
        let r = &mut self.raft;
        let hs = r.hard_state();
        let ss = r.soft_state();
        let entries = r.log.unstable.entries.clone();
        let snapshot = r.log.unstable.snapshot.clone();
        let must_sync = !entries.is_empty()
            || snapshot.is_some()
            || hs.term != self.prev_hs.term
            || hs.vote != self.prev_hs.vote;
        let rd = Ready {
            soft_state: (ss != self.prev_ss).then_some(ss),
            hard_state: (hs != self.prev_hs).then_some(hs),
            read_states: std::mem::take(&mut r.read_states),
            committed_entries: r.log.next_committed_entries(),
            entries,
            snapshot,
            messages: std::mem::take(&mut r.msgs),
            must_sync,
        };
        self.prev_hs = hs;
        self.prev_ss = ss;
        rd
    }

    /// Acknowledge that `rd` was persisted, sent and applied.
    pub fn advance(&mut self, rd: Ready) {
        self.awaiting_advance = false;
        let log = &mut self.raft.log;
        if let Some(s) = &rd.snapshot {
            log.stable_snap_to(s.metadata.index);
            if s.metadata.index > log.applied {
                log.applied_to(s.metadata.index);
            }
        }
        if let Some(e) = rd.entries.last() {
            log.stable_to(e.index, e.term);
        }
        if let Some(e) = rd.committed_entries.last() {
            log.applied_to(e.index);
        }
    }

    pub fn status(&self) -> Status {
        let r = &self.raft;
        let progress =
            if r.role() == StateRole::Leader { r.prs.progress.clone() } else { BTreeMap::new() };
        Status {
            id: r.id(),
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.applied(),
            progress,
        }
    }

    /// Read-only access to the state machine, for inspection and tests.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// Mutable access for tests that need to poke at internals.
    #[doc(hidden)]
    pub fn raft_mut(&mut self) -> &mut Raft<S> {
        &mut self.raft
    }
}
