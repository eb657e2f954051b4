//! The Raft state machine proper: roles, terms, timers and message dispatch.
//!
//! The work is split by concern across modules that each add an
//! `impl Raft` block: `election` (campaigns and votes), `replication`
//! (leader → follower log and snapshot streaming), `follower` (the receiving
//! side), `membership` (conf changes) and this file (the skeleton that
//! routes every message through the term rules of Raft §5.1).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::RaftLog;
use crate::message::{Entry, HardState, Message, MessageType, NONE, NodeId};
use crate::read_only::{ReadOnly, ReadOnlyOption, ReadState};
use crate::rng::Rng;
use crate::snapshot_recv::SnapshotReceiver;
use crate::storage::Storage;
use crate::tracker::ProgressTracker;

/// The role a node currently plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StateRole {
    #[default]
    Follower,
    /// Running a pre-vote round: asking whether it *could* win, without
    /// bumping its term, so a node that cannot win never disrupts others.
    PreCandidate,
    Candidate,
    Leader,
}

/// Context marker on vote requests caused by a leadership transfer: such a
/// campaign must override leader stickiness (the lease), because the
/// current leader asked for it.
pub(crate) const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

pub struct Raft<S: Storage> {
    pub id: NodeId,
    pub term: u64,
    pub vote: NodeId,
    /// The leader we currently follow (or ourselves), `NONE` if unknown.
    pub lead: NodeId,
    pub state: StateRole,
    pub raft_log: RaftLog<S>,
    pub tracker: ProgressTracker,
    /// Outgoing messages, drained into `Ready::messages`.
    pub msgs: Vec<Message>,
    pub read_states: Vec<ReadState>,
    pub(crate) read_only: ReadOnly,
    /// ReadIndex requests that arrived before this leader committed an entry
    /// of its own term; until then its commit index may be stale (§6.4).
    pub(crate) pending_read_index: Vec<Message>,
    /// Target of an ongoing leadership transfer, or `NONE`.
    pub lead_transferee: NodeId,
    /// Set once this leader has sent TimeoutNow: the transferee may win an
    /// election without waiting out our lease, so lease reads are no longer
    /// safe for the rest of this term; reads fall back to ReadIndex rounds.
    pub(crate) lease_revoked: bool,
    /// Ticks since this node started, from 1 (0 means "never" in
    /// `lease_tick`); dates leader leases.
    pub(crate) ticks: u64,
    /// Started with a term from disk: it may have acknowledged a leader
    /// before it went down.
    pub(crate) restarted: bool,
    /// Index of the latest conf change proposed by this leader. Another may
    /// only be proposed once it is applied: one change at a time is what
    /// makes single-server membership changes safe.
    pub pending_conf_index: u64,
    pub(crate) snap_recv: SnapshotReceiver,

    pub(crate) election_elapsed: u64,
    pub(crate) heartbeat_elapsed: u64,
    pub(crate) election_timeout: u64,
    pub(crate) heartbeat_timeout: u64,
    pub(crate) randomized_election_timeout: u64,
    pub(crate) rng: Rng,

    pub(crate) check_quorum: bool,
    pub(crate) pre_vote: bool,
    pub(crate) max_msg_size: u64,
    pub(crate) snapshot_chunk_size: u64,
    pub(crate) max_snapshot_chunks_inflight: u64,
    pub(crate) disable_proposal_forwarding: bool,
}

impl<S: Storage> Raft<S> {
    pub fn new(config: &Config, storage: S) -> Result<Raft<S>> {
        config.validate()?;
        let (hs, cs) = storage.initial_state()?;
        let raft_log = RaftLog::new(storage, config.max_committed_size_per_ready);
        let mut r = Raft {
            id: config.id,
            term: 0,
            vote: NONE,
            lead: NONE,
            state: StateRole::Follower,
            raft_log,
            tracker: ProgressTracker::new(config.max_inflight_msgs),
            msgs: Vec::new(),
            read_states: Vec::new(),
            read_only: ReadOnly::new(config.read_only_option),
            pending_read_index: Vec::new(),
            lead_transferee: NONE,
            lease_revoked: false,
            ticks: 1,
            restarted: false,
            pending_conf_index: 0,
            snap_recv: SnapshotReceiver::default(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: config.election_tick,
            heartbeat_timeout: config.heartbeat_tick,
            randomized_election_timeout: config.election_tick,
            // Mix in the id so nodes sharing a cluster seed still diverge.
            rng: Rng::new(config.seed ^ config.id.wrapping_mul(0x2545_F491_4F6C_DD1D)),
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            max_msg_size: config.max_size_per_msg,
            snapshot_chunk_size: config.snapshot_chunk_size as u64,
            max_snapshot_chunks_inflight: config.max_snapshot_chunks_inflight,
            disable_proposal_forwarding: config.disable_proposal_forwarding,
        };
        let next = r.raft_log.last_index() + 1;
        r.tracker.apply_conf(&cs, next);
        if hs != HardState::default() {
            let (first, last) = (r.raft_log.first_index(), r.raft_log.last_index());
            assert!(hs.commit <= last, "persisted commit {} beyond last index {last}", hs.commit);
            // A snapshot implies its index is committed even if the hard
            // state was written before it.
            r.raft_log.committed = hs.commit.max(first - 1);
            r.term = hs.term;
            r.vote = hs.vote;
            r.restarted = hs.term > 0;
        }
        if config.applied > 0 {
            r.raft_log
                .applied_to(config.applied.min(r.raft_log.committed));
        }
        r.become_follower(r.term, NONE);
        Ok(r)
    }

    /// This node's current (randomized) election timeout in ticks.
    pub fn randomized_election_timeout(&self) -> u64 {
        self.randomized_election_timeout
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// Whether this node may campaign: only voters can become leader.
    pub fn promotable(&self) -> bool {
        self.tracker.is_voter(self.id)
    }

    pub fn is_learner(&self) -> bool {
        self.tracker.learners.contains(&self.id)
    }

    /// Queue a message. Fills in `from` and, except for messages that must
    /// carry an explicit term (vote responses) or none (forwarded proposals
    /// and reads), our current term.
    pub(crate) fn send(&mut self, mut m: Message) {
        if m.from == NONE {
            m.from = self.id;
        }
        match m.msg_type {
            MessageType::RequestVote
            | MessageType::RequestVoteResponse
            | MessageType::RequestPreVote
            | MessageType::RequestPreVoteResponse => {
                assert!(m.term != 0, "vote message {:?} without term", m.msg_type);
            }
            MessageType::Propose | MessageType::ReadIndex => m.term = 0,
            _ => m.term = self.term,
        }
        if self.state == StateRole::Leader
            && matches!(m.msg_type, MessageType::Heartbeat | MessageType::Append)
        {
            m.lease_tick = self.ticks;
        }
        self.msgs.push(m);
    }

    // ----- role transitions -------------------------------------------------

    pub(crate) fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = NONE;
        }
        self.lead = NONE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_election_timeout =
            self.election_timeout + self.rng.range(0, self.election_timeout);
        self.abort_leader_transfer();
        self.tracker.reset_votes();
        let last = self.raft_log.last_index();
        let (id, max_inflight) = (self.id, self.tracker.max_inflight);
        for (&pid, pr) in self.tracker.progress.iter_mut() {
            let learner = pr.is_learner;
            *pr = crate::progress::Progress::new(last + 1, max_inflight);
            pr.is_learner = learner;
            if pid == id {
                pr.matched = last;
            }
        }
        self.pending_conf_index = 0;
        self.read_only.reset();
        self.pending_read_index.clear();
    }

    pub fn become_follower(&mut self, term: u64, lead: NodeId) {
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "leader cannot become pre-candidate"
        );
        // Deliberately no reset: a pre-vote changes neither term nor vote.
        self.tracker.reset_votes();
        self.lead = NONE;
        self.state = StateRole::PreCandidate;
    }

    pub(crate) fn become_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "leader cannot become candidate"
        );
        self.reset(self.term + 1);
        self.vote = self.id;
        self.state = StateRole::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert!(
            self.state != StateRole::Follower,
            "follower cannot become leader directly"
        );
        self.reset(self.term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        self.lease_revoked = false;
        let last = self.raft_log.last_index();
        if let Some(pr) = self.tracker.progress.get_mut(&self.id) {
            pr.become_replicate();
            pr.recent_active = true;
        }
        // Conf changes may be in the uncommitted tail; forbid new ones until
        // everything up to here is applied. Together with committing an entry
        // of our own term first, this closes the known single-server
        // membership-change hole (Ongaro, raft-dev 2015).
        self.pending_conf_index = last;
        // A leader may only count replicas for entries of its own term
        // (§5.4.2), so it commits an empty entry to learn what is committed.
        self.append_entries(vec![Entry::default()]);
    }

    // ----- time -------------------------------------------------------------

    pub fn tick(&mut self) {
        self.ticks += 1;
        match self.state {
            StateRole::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let _ = self.step(Message::new(MessageType::Hup, self.id, self.id));
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                let _ = self.step(Message::new(MessageType::CheckQuorum, self.id, self.id));
            }
            // A transfer that did not finish within an election timeout failed
            // (the target is down or slow); resume accepting proposals.
            if self.state == StateRole::Leader && self.lead_transferee != NONE {
                self.abort_leader_transfer();
            }
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            let _ = self.step(Message::new(MessageType::Beat, self.id, self.id));
        }
    }

    pub(crate) fn abort_leader_transfer(&mut self) {
        self.lead_transferee = NONE;
    }

    /// Whether we heard from a leader within the election timeout: while we
    /// did, we refuse to help anyone depose it (leader stickiness).
    ///
    /// With lease reads, a node that just (re)started counts as in a lease
    /// for its first election timeout too: before a crash it may have
    /// acknowledged a leader whose lease relies on its refusal.
    fn in_lease(&self) -> bool {
        let fresh = self.restarted
            && self.read_only.option == ReadOnlyOption::LeaseBased
            && self.ticks <= self.election_timeout;
        self.check_quorum
            && (self.lead != NONE || fresh)
            && self.election_elapsed < self.election_timeout
    }

    /// Whether our leader lease still holds: a quorum of voters (us
    /// included) acknowledged a heartbeat or append we sent less than an
    /// election timeout ago, so none of them will help elect another leader
    /// yet (ticks are assumed to run at about the same rate everywhere).
    pub(crate) fn lease_valid(&self) -> bool {
        let mut acked: Vec<u64> = self
            .tracker
            .voters
            .iter()
            .map(|id| {
                if *id == self.id {
                    self.ticks
                } else {
                    self.tracker.progress.get(id).map_or(0, |p| p.lease_tick)
                }
            })
            .collect();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let oldest_in_quorum = acked[acked.len() / 2];
        oldest_in_quorum > 0 && self.ticks - oldest_in_quorum < self.election_timeout
    }

    // ----- message dispatch -------------------------------------------------

    pub fn step(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        if m.term == 0 {
            // Local message, or a forwarded proposal / read.
        } else if m.term > self.term {
            if matches!(m.msg_type, RequestVote | RequestPreVote) {
                let forced = m.context == CAMPAIGN_TRANSFER;
                if !forced && self.in_lease() {
                    // A rejoining partitioned node must not depose a leader
                    // that a quorum still hears from. Ignore without replying.
                    return Ok(());
                }
            }
            match m.msg_type {
                // A pre-vote never changes our term: it is hypothetical.
                RequestPreVote => {}
                // A granted pre-vote carries the future term; we adopt it
                // only when we actually campaign.
                RequestPreVoteResponse if !m.reject => {}
                Append | Heartbeat | Snapshot => self.become_follower(m.term, m.from),
                _ => self.become_follower(m.term, NONE),
            }
        } else if m.term < self.term {
            if (self.check_quorum || self.pre_vote) && matches!(m.msg_type, Heartbeat | Append) {
                // A stale leader would otherwise never learn our term: with
                // pre-vote/check-quorum we do not campaign against it, so it
                // only finds out if we answer. The reply deposes it.
                self.send(Message::new(AppendResponse, m.from, NONE));
            } else if m.msg_type == RequestPreVote {
                let mut resp = Message::new(RequestPreVoteResponse, m.from, NONE);
                resp.term = self.term;
                resp.reject = true;
                self.send(resp);
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

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        match m.msg_type {
            Propose => return Err(Error::ProposalDropped),
            Append => {
                // Someone won this term (or a later one).
                self.become_follower(m.term, m.from);
                self.handle_append(m);
            }
            Heartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(m);
            }
            Snapshot => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot_chunk(m);
            }
            RequestVoteResponse | RequestPreVoteResponse => self.handle_vote_response(m),
            _ => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        match m.msg_type {
            Propose => {
                if self.lead == NONE || self.disable_proposal_forwarding {
                    return Err(Error::ProposalDropped);
                }
                let mut m = m;
                m.to = self.lead;
                self.send(m);
            }
            Append => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append(m);
            }
            Heartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            Snapshot => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot_chunk(m);
            }
            TransferLeader => {
                if self.lead == NONE {
                    return Err(Error::ProposalDropped);
                }
                let mut m = m;
                m.to = self.lead;
                self.send(m);
            }
            TimeoutNow => {
                // Campaign at once, skipping pre-vote: the leader vouches
                // for us and will step aside.
                self.hup(true);
            }
            ReadIndex => {
                if self.lead == NONE {
                    return Err(Error::ProposalDropped);
                }
                let mut m = m;
                m.to = self.lead;
                self.send(m);
            }
            ReadIndexResponse => {
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx: m.context,
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn step_leader(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        match m.msg_type {
            Beat => {
                let ctx = self
                    .read_only
                    .last_pending_ctx()
                    .cloned()
                    .unwrap_or_default();
                self.bcast_heartbeat(ctx);
                return Ok(());
            }
            CheckQuorum => {
                if !self.tracker.quorum_active(self.id) {
                    self.become_follower(self.term, NONE);
                }
                let id = self.id;
                for (&pid, pr) in self.tracker.progress.iter_mut() {
                    if pid != id {
                        pr.recent_active = false;
                    }
                }
                return Ok(());
            }
            Propose => return self.handle_propose(m),
            ReadIndex => {
                self.handle_read_index(m);
                return Ok(());
            }
            _ => {}
        }
        // Everything else is a response from a peer; ignore unknown peers
        // (e.g. a node we just removed).
        if !self.tracker.progress.contains_key(&m.from) {
            return Ok(());
        }
        match m.msg_type {
            AppendResponse => self.handle_append_response(m),
            HeartbeatResponse => self.handle_heartbeat_response(m),
            SnapshotResponse => self.handle_snapshot_response(m),
            Unreachable => {
                let pr = self.tracker.progress.get_mut(&m.from).expect("checked");
                if pr.state == crate::progress::ProgressState::Replicate {
                    pr.become_probe();
                }
            }
            TransferLeader => self.handle_transfer_leader(m.from),
            _ => {}
        }
        Ok(())
    }

    fn handle_propose(&mut self, m: Message) -> Result<()> {
        if m.entries.is_empty() {
            return Err(Error::ProposalDropped);
        }
        if !self.tracker.progress.contains_key(&self.id) || self.lead_transferee != NONE {
            // Removed from the cluster, or handing leadership over.
            return Err(Error::ProposalDropped);
        }
        let base = self.raft_log.last_index();
        let mut pending_conf = None;
        for (i, e) in m.entries.iter().enumerate() {
            if e.kind == crate::message::EntryKind::ConfChange {
                if pending_conf.is_some() || self.pending_conf_index > self.raft_log.applied {
                    return Err(Error::ProposalDropped);
                }
                self.check_conf_change(e)?;
                pending_conf = Some(base + 1 + i as u64);
            }
        }
        if let Some(idx) = pending_conf {
            self.pending_conf_index = idx;
        }
        self.append_entries(m.entries);
        self.bcast_append();
        Ok(())
    }

    fn handle_read_index(&mut self, m: Message) {
        if self.tracker.voters.len() == 1 && self.promotable() {
            let index = self.raft_log.committed;
            self.respond_read_index(m.from, m.context, index);
            return;
        }
        if !self.committed_in_current_term() {
            // Our commit index may lag the true one until our no-op commits.
            self.pending_read_index.push(m);
            return;
        }
        let index = self.raft_log.committed;
        match self.read_only.option {
            ReadOnlyOption::LeaseBased if !self.lease_revoked && self.lease_valid() => {
                self.respond_read_index(m.from, m.context, index)
            }
            _ => {
                self.read_only
                    .add_request(index, m.from, m.context.clone(), self.id);
                self.bcast_heartbeat(m.context);
            }
        }
    }

    pub(crate) fn respond_read_index(&mut self, from: NodeId, ctx: Vec<u8>, index: u64) {
        if from == NONE || from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: ctx,
            });
        } else {
            let mut resp = Message::new(MessageType::ReadIndexResponse, from, NONE);
            resp.index = index;
            resp.context = ctx;
            self.send(resp);
        }
    }

    pub(crate) fn committed_in_current_term(&self) -> bool {
        self.raft_log
            .term(self.raft_log.committed)
            .is_ok_and(|t| t == self.term)
    }

    /// Once this leader commits in its own term, serve the reads that had
    /// to wait for it.
    pub(crate) fn release_pending_read_index(&mut self) {
        if self.pending_read_index.is_empty() || !self.committed_in_current_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index) {
            self.handle_read_index(m);
        }
    }

    fn handle_transfer_leader(&mut self, transferee: NodeId) {
        if self
            .tracker
            .progress
            .get(&transferee)
            .is_none_or(|p| p.is_learner)
        {
            return;
        }
        if self.lead_transferee != NONE {
            if self.lead_transferee == transferee {
                return;
            }
            self.abort_leader_transfer();
        }
        if transferee == self.id {
            return;
        }
        // The transfer must finish within one election timeout.
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        if self.tracker.progress[&transferee].matched == self.raft_log.last_index() {
            self.send_timeout_now(transferee);
        } else {
            self.maybe_send_append(transferee, true);
        }
    }

    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_revoked = true;
        self.send(Message::new(MessageType::TimeoutNow, to, NONE));
    }
}
