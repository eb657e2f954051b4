//! The Raft state machine: terms, roles, elections and message dispatch.
//!
//! `Raft` is pure: inputs are `tick()` and `step(msg)`, outputs accumulate
//! in `msgs`, `read_states` and the log's unstable part, and are collected
//! by `RawNode::ready`. Role-specific handling lives in `leader.rs`,
//! `follower.rs` (followers and candidates) and `membership.rs`.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::RaftLog;
use crate::message::{EntryKind, HardState, Message, MessageType, NONE, NodeId};
use crate::progress::Progress;
use crate::read_only::{ReadOnly, ReadState};
use crate::rng::Rng;
use crate::storage::Storage;
use crate::tracker::{ProgressTracker, VoteResult};

/// Vote request context marking a leadership-transfer election, which may
/// bypass leader leases (the leader asked for it).
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StateRole {
    #[default]
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile state the application may want to observe (not persisted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SoftState {
    pub leader_id: NodeId,
    pub role: StateRole,
}

/// A snapshot being reassembled from chunks on a follower.
#[derive(Debug)]
pub(crate) struct SnapshotAssembly {
    pub metadata: crate::message::SnapshotMetadata,
    pub total_len: u64,
    pub data: Vec<u8>,
}

pub struct Raft<S: Storage> {
    pub(crate) id: NodeId,
    pub(crate) term: u64,
    pub(crate) vote: NodeId,
    pub(crate) log: RaftLog<S>,
    pub(crate) prs: ProgressTracker,
    pub(crate) state: StateRole,
    /// We are a learner in the current configuration.
    pub(crate) is_learner: bool,
    pub(crate) msgs: Vec<Message>,
    pub(crate) leader_id: NodeId,
    /// Target of an ongoing leadership transfer (leader only).
    pub(crate) lead_transferee: NodeId,
    /// Index of the latest conf change the leader appended; a new one may
    /// only be proposed once this is applied (one change at a time).
    pub(crate) pending_conf_index: u64,
    pub(crate) read_only: ReadOnly,
    pub(crate) read_states: Vec<ReadState>,
    /// Reads received before this leader committed an entry of its term;
    /// until then its commit index may be behind the true one.
    pub(crate) pending_read_index: Vec<Message>,
    pub(crate) election_elapsed: u64,
    pub(crate) heartbeat_elapsed: u64,
    pub(crate) randomized_election_timeout: u64,
    pub(crate) rng: Rng,
    pub(crate) snapshot_assembly: Option<SnapshotAssembly>,
    pub(crate) election_timeout: u64,
    pub(crate) heartbeat_timeout: u64,
    pub(crate) check_quorum: bool,
    pub(crate) pre_vote: bool,
    pub(crate) max_msg_size: u64,
    pub(crate) snapshot_chunk_size: u64,
    pub(crate) max_snapshot_chunks_inflight: u64,
    pub(crate) disable_proposal_forwarding: bool,
}

impl<S: Storage> Raft<S> {
    pub fn new(cfg: &Config, storage: S) -> Result<Raft<S>> {
        cfg.validate()?;
        let (hs, cs) = storage.initial_state()?;
        let log = RaftLog::new(storage, cfg.max_committed_size_per_ready);
        let mut r = Raft {
            id: cfg.id,
            term: 0,
            vote: NONE,
            log,
            prs: ProgressTracker::new(cfg.max_inflight_msgs),
            state: StateRole::Follower,
            is_learner: false,
            msgs: Vec::new(),
            leader_id: NONE,
            lead_transferee: NONE,
            pending_conf_index: 0,
            read_only: ReadOnly::new(cfg.read_only_option),
            read_states: Vec::new(),
            pending_read_index: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            // Mix the id in so nodes sharing a cluster seed still diverge.
            rng: Rng::new(cfg.seed ^ cfg.id.wrapping_mul(0xA24B_AED4_963E_E407)),
            snapshot_assembly: None,
            election_timeout: cfg.election_tick,
            heartbeat_timeout: cfg.heartbeat_tick,
            check_quorum: cfg.check_quorum,
            pre_vote: cfg.pre_vote,
            max_msg_size: cfg.max_size_per_msg,
            snapshot_chunk_size: cfg.snapshot_chunk_size as u64,
            max_snapshot_chunks_inflight: cfg.max_snapshot_chunks_inflight,
            disable_proposal_forwarding: cfg.disable_proposal_forwarding,
        };
        let next = r.log.last_index() + 1;
        r.prs.apply_conf(&cs, next);
        r.is_learner = cs.learners.contains(&r.id);
        if hs != HardState::default() {
            if hs.commit > r.log.last_index() {
                return Err(Error::ConfigInvalid(format!(
                    "hard state commit {} beyond last index {}",
                    hs.commit,
                    r.log.last_index()
                )));
            }
            r.log.commit_to(hs.commit);
            r.term = hs.term;
            r.vote = hs.vote;
        }
        if cfg.applied > 0 {
            r.log.applied_to(cfg.applied.min(r.log.committed));
        }
        let term = r.term;
        r.become_follower(term, NONE);
        Ok(r)
    }

    // ----- observation -------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn term(&self) -> u64 {
        self.term
    }
    pub fn vote(&self) -> NodeId {
        self.vote
    }
    pub fn role(&self) -> StateRole {
        self.state
    }
    pub fn leader_id(&self) -> NodeId {
        self.leader_id
    }
    pub fn committed(&self) -> u64 {
        self.log.committed
    }
    pub fn applied(&self) -> u64 {
        self.log.applied
    }
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    pub fn first_index(&self) -> u64 {
        self.log.first_index()
    }
    pub fn is_learner(&self) -> bool {
        self.is_learner
    }
    pub fn lead_transferee(&self) -> NodeId {
        self.lead_transferee
    }
    pub fn log(&self) -> &RaftLog<S> {
        &self.log
    }
    pub fn tracker(&self) -> &ProgressTracker {
        &self.prs
    }
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.prs.progress.get(&id)
    }
    pub fn election_elapsed(&self) -> u64 {
        self.election_elapsed
    }
    pub fn randomized_election_timeout(&self) -> u64 {
        self.randomized_election_timeout
    }
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed }
    }
    pub fn soft_state(&self) -> SoftState {
        SoftState { leader_id: self.leader_id, role: self.state }
    }

    // ----- output ------------------------------------------------------

    /// Queue a message, stamping `from` and (except for votes, whose term is
    /// explicit, and forwarded proposals/reads, which carry none) our term.
    pub(crate) fn send(&mut self, mut m: Message) {
        if m.from == NONE {
            m.from = self.id;
        }
        use MessageType::*;
        match m.msg_type {
            RequestVote | RequestPreVote | RequestVoteResponse | RequestPreVoteResponse => {
                assert!(m.term != 0, "vote message without term: {m:?}");
            }
            Propose | ReadIndex => {}
            _ => m.term = self.term,
        }
        self.msgs.push(m);
    }

    // ----- role transitions -------------------------------------------

    fn reset_randomized_election_timeout(&mut self) {
        self.randomized_election_timeout =
            self.rng.range(self.election_timeout, 2 * self.election_timeout);
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = NONE;
        }
        self.leader_id = NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = NONE;
        self.prs.reset_votes();
        let last = self.log.last_index();
        let max_inflight = self.prs.max_inflight;
        for (&id, pr) in self.prs.progress.iter_mut() {
            let is_learner = pr.is_learner;
            *pr = Progress::new(last + 1, max_inflight);
            pr.is_learner = is_learner;
            if id == self.id {
                pr.matched = last;
                pr.recent_active = true;
            }
        }
        self.pending_conf_index = 0;
        self.read_only.reset();
        self.pending_read_index.clear();
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.leader_id = leader;
        self.state = StateRole::Follower;
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.state, StateRole::Leader, "leader cannot become pre-candidate");
        // No term bump and no reset: a pre-election must leave no trace if
        // it fails, which is the whole point of pre-vote.
        self.prs.reset_votes();
        self.leader_id = NONE;
        self.state = StateRole::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.state, StateRole::Leader, "leader cannot become candidate");
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.state = StateRole::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert_ne!(self.state, StateRole::Follower, "follower cannot become leader directly");
        let term = self.term;
        self.reset(term);
        self.leader_id = self.id;
        self.state = StateRole::Leader;
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.become_replicate();
        }
        // Conservatively treat the whole uncommitted tail as possibly holding
        // a conf change: no new one until everything up to here is applied.
        self.pending_conf_index = self.log.last_index();
        // A leader may only commit entries of its own term by counting
        // replicas (§5.4.2); the no-op lets it commit everything before it.
        self.append_entry(vec![crate::message::Entry::default()]);
    }

    // ----- ticks -------------------------------------------------------

    pub fn tick(&mut self) {
        if self.state == StateRole::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let _ = self.step(Message::new(MessageType::Hup, NONE, self.id));
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                let _ = self.step(Message::new(MessageType::CheckQuorum, NONE, self.id));
            }
            // A transfer that did not finish within an election timeout is
            // abandoned so proposals are accepted again.
            if self.state == StateRole::Leader && self.lead_transferee != NONE {
                self.lead_transferee = NONE;
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let _ = self.step(Message::new(MessageType::Beat, NONE, self.id));
        }
    }

    /// Whether this node may campaign: it is a voter and is not in the
    /// middle of installing a snapshot.
    pub(crate) fn promotable(&self) -> bool {
        self.prs.is_voter(self.id) && self.log.unstable.snapshot.is_none()
    }

    // ----- elections ---------------------------------------------------

    fn has_unapplied_conf_changes(&self) -> bool {
        if self.log.applied >= self.log.committed {
            return false;
        }
        let lo = (self.log.applied + 1).max(self.log.first_index());
        match self.log.slice(lo, self.log.committed + 1, None) {
            Ok(ents) => ents.iter().any(|e| e.kind == EntryKind::ConfChange),
            Err(_) => true,
        }
    }

    pub(crate) fn hup(&mut self, transfer: bool) {
        if self.state == StateRole::Leader || !self.promotable() {
            return;
        }
        // A committed but unapplied conf change could change who the voters
        // are; campaigning with a stale configuration is unsafe.
        if self.has_unapplied_conf_changes() {
            return;
        }
        self.campaign(self.pre_vote && !transfer, transfer);
    }

    pub(crate) fn campaign(&mut self, pre: bool, transfer: bool) {
        let (vote_type, term) = if pre {
            self.become_pre_candidate();
            (MessageType::RequestPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::RequestVote, self.term)
        };
        let self_id = self.id;
        if self.poll(self_id, true) == VoteResult::Won {
            // Single-voter cluster.
            if pre {
                self.campaign(false, transfer);
            } else {
                self.won_election();
            }
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.prs.voters.iter().copied().filter(|&v| v != self.id).collect();
        for to in voters {
            let mut m = Message::new(vote_type, to, self.id);
            m.term = term;
            m.index = last_index;
            m.log_term = last_term;
            if transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
    }

    pub(crate) fn poll(&mut self, id: NodeId, granted: bool) -> VoteResult {
        self.prs.record_vote(id, granted);
        self.prs.tally_votes().2
    }

    pub(crate) fn won_election(&mut self) {
        self.become_leader();
        self.bcast_append();
    }

    fn handle_vote_request(&mut self, m: Message) {
        let pre = m.msg_type == MessageType::RequestPreVote;
        let resp_type = if pre { MessageType::RequestPreVoteResponse } else { MessageType::RequestVoteResponse };
        // We can vote for the same candidate again (retransmission), for
        // anyone if we have neither voted nor know a leader this term, and
        // pre-vote for any future term.
        let can_vote = self.vote == m.from
            || (self.vote == NONE && self.leader_id == NONE)
            || (pre && m.term > self.term);
        let mut resp = Message::new(resp_type, m.from, self.id);
        if can_vote && self.log.is_up_to_date(m.index, m.log_term) {
            // Answer with the candidate's term: for a pre-vote our own term
            // is lower and the pre-candidate would otherwise ignore us.
            resp.term = m.term;
            if !pre {
                self.election_elapsed = 0;
                self.vote = m.from;
            }
        } else {
            resp.term = self.term;
            resp.reject = true;
        }
        self.send(resp);
    }

    // ----- step --------------------------------------------------------

    pub fn step(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        if m.term == 0 {
            // Local message, or a forwarded proposal/read.
        } else if m.term > self.term {
            if matches!(m.msg_type, RequestVote | RequestPreVote) {
                let force = m.context == CAMPAIGN_TRANSFER;
                // Leader stickiness: while we heard from a leader within the
                // election timeout, ignore would-be leaders entirely, so a
                // node returning from a partition cannot depose it.
                let in_lease = self.check_quorum
                    && self.leader_id != NONE
                    && self.election_elapsed < self.election_timeout;
                if !force && in_lease {
                    return Ok(());
                }
            }
            match m.msg_type {
                // A pre-vote never changes our term, nor does a granted
                // pre-vote response (we bump the term when we campaign).
                RequestPreVote => {}
                RequestPreVoteResponse if !m.reject => {}
                Append | Heartbeat | Snapshot => self.become_follower(m.term, m.from),
                _ => self.become_follower(m.term, NONE),
            }
        } else if m.term < self.term {
            if (self.check_quorum || self.pre_vote) && matches!(m.msg_type, Heartbeat | Append) {
                // A stale leader (e.g. back from a partition) would never
                // learn of the new term since its ignored vote requests go
                // unanswered; tell it so it steps down.
                self.send(Message::new(AppendResponse, m.from, self.id));
            } else if m.msg_type == RequestPreVote {
                // Let the pre-candidate learn our term so it can catch up.
                let mut r = Message::new(RequestPreVoteResponse, m.from, self.id);
                r.term = self.term;
                r.reject = true;
                self.send(r);
            }
            return Ok(());
        }

        match m.msg_type {
            Hup => {
                self.hup(false);
                Ok(())
            }
            RequestVote | RequestPreVote => {
                self.handle_vote_request(m);
                Ok(())
            }
            _ => match self.state {
                StateRole::Leader => self.step_leader(m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Follower => self.step_follower(m),
            },
        }
    }
}
