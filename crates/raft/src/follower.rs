//! Follower and candidate behaviour: accepting appends, heartbeats and
//! snapshot chunks from the leader, counting votes, forwarding requests.

use crate::error::{Error, Result};
use crate::message::{Message, MessageType, NONE, Snapshot};
use crate::raft::{Raft, SnapshotAssembly, StateRole};
use crate::read_only::ReadState;
use crate::storage::Storage;
use crate::tracker::{ProgressTracker, VoteResult};

impl<S: Storage> Raft<S> {
    pub(crate) fn step_candidate(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        let my_resp =
            if self.state == StateRole::PreCandidate { RequestPreVoteResponse } else { RequestVoteResponse };
        match m.msg_type {
            Propose => return Err(Error::ProposalDropped),
            // Someone won this term: follow them.
            Append => {
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
            t if t == my_resp => match self.poll(m.from, !m.reject) {
                VoteResult::Won => {
                    if self.state == StateRole::PreCandidate {
                        // Pre-vote won: now the real election (term bump).
                        self.campaign(false, false);
                    } else {
                        self.won_election();
                    }
                }
                VoteResult::Lost => {
                    let term = self.term;
                    self.become_follower(term, NONE);
                }
                VoteResult::Pending => {}
            },
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn step_follower(&mut self, mut m: Message) -> Result<()> {
        use MessageType::*;
        match m.msg_type {
            Propose => {
                if self.leader_id == NONE || self.disable_proposal_forwarding {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.leader_id;
                self.send(m);
            }
            Append => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_append(m);
            }
            Heartbeat => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_heartbeat(m);
            }
            Snapshot => {
                self.election_elapsed = 0;
                self.leader_id = m.from;
                self.handle_snapshot_chunk(m);
            }
            TransferLeader | ReadIndex => {
                if self.leader_id == NONE {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.leader_id;
                self.send(m);
            }
            TimeoutNow => self.hup(true),
            ReadIndexResponse => {
                self.read_states.push(ReadState { index: m.index, request_ctx: m.context });
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn handle_append(&mut self, m: Message) {
        let mut resp = Message::new(MessageType::AppendResponse, m.from, self.id);
        if m.index < self.log.committed {
            // Everything up to our commit index matches the leader already.
            resp.index = self.log.committed;
            self.send(resp);
            return;
        }
        if let Some(last_new) = self.log.maybe_append(m.index, m.log_term, m.commit, &m.entries) {
            resp.index = last_new;
            self.send(resp);
            return;
        }
        // Mismatch: tell the leader the conflicting term and where it starts
        // in our log so it can skip the whole term at once.
        resp.reject = true;
        resp.index = m.index;
        let last = self.log.last_index();
        if m.index > last {
            resp.reject_hint = last + 1;
            resp.log_term = 0;
        } else {
            resp.log_term = self.log.term(m.index).unwrap_or(0);
            resp.reject_hint = self.log.first_index_of_term_at(m.index, self.log.committed + 1);
        }
        self.send(resp);
    }

    pub(crate) fn handle_heartbeat(&mut self, m: Message) {
        let commit = m.commit.min(self.log.last_index());
        self.log.commit_to(commit);
        let mut resp = Message::new(MessageType::HeartbeatResponse, m.from, self.id);
        resp.context = m.context;
        self.send(resp);
    }

    /// Reassemble snapshot chunks; install the snapshot when complete.
    pub(crate) fn handle_snapshot_chunk(&mut self, m: Message) {
        let Some(c) = m.snapshot else { return };
        let idx = c.metadata.index;
        let mut ack = Message::new(MessageType::SnapshotResponse, m.from, self.id);
        ack.index = idx;
        if idx <= self.log.committed {
            // We already have everything it covers; say so, so the leader
            // can go back to plain appends.
            self.snapshot_assembly = None;
            let mut r = Message::new(MessageType::AppendResponse, m.from, self.id);
            r.index = self.log.committed;
            self.send(r);
            return;
        }
        let asm = &mut self.snapshot_assembly;
        let same = asm.as_ref().is_some_and(|a| a.metadata.index == idx && a.metadata.term == c.metadata.term);
        let older = asm.as_ref().is_some_and(|a| a.metadata.index > idx);
        if older {
            return; // stale chunk of a snapshot we already moved past
        }
        let held = if same { asm.as_ref().map_or(0, |a| a.data.len() as u64) } else { 0 };
        if c.offset == held && (held > 0 || c.offset == 0) {
            let a = asm.get_or_insert_with(|| SnapshotAssembly {
                metadata: c.metadata.clone(),
                total_len: c.total_len,
                data: Vec::new(),
            });
            if !same {
                *a = SnapshotAssembly { metadata: c.metadata.clone(), total_len: c.total_len, data: Vec::new() };
            }
            a.data.extend_from_slice(&c.data);
        } else if c.offset < held {
            // Duplicate of something we have: just re-acknowledge.
            ack.snapshot_offset = held;
            self.send(ack);
            return;
        } else {
            // Gap: ask the leader to resume from what we hold.
            if !same {
                *asm = None;
            }
            ack.snapshot_offset = held;
            ack.reject = true;
            self.send(ack);
            return;
        }
        let a = asm.as_ref().expect("just filled");
        let held = a.data.len() as u64;
        if !c.done {
            ack.snapshot_offset = held;
            self.send(ack);
            return;
        }
        let a = self.snapshot_assembly.take().expect("just filled");
        if a.data.len() as u64 != a.total_len {
            ack.snapshot_offset = 0;
            ack.reject = true;
            self.send(ack);
            return;
        }
        let snap = Snapshot { metadata: a.metadata, data: a.data };
        let mut r = Message::new(MessageType::AppendResponse, m.from, self.id);
        r.index = if self.restore(snap) { self.log.last_index() } else { self.log.committed };
        self.send(r);
    }

    /// Install `snap` as our log's prefix. Returns false if it is stale or we
    /// already have its last entry (then only the commit index moves).
    pub(crate) fn restore(&mut self, snap: Snapshot) -> bool {
        let (idx, term) = (snap.metadata.index, snap.metadata.term);
        if idx <= self.log.committed {
            return false;
        }
        if self.state != StateRole::Follower {
            // Defensive: only followers install snapshots.
            let t = self.term + 1;
            self.become_follower(t, NONE);
            return false;
        }
        if self.log.match_term(idx, term) {
            self.log.commit_to(idx);
            return false;
        }
        let cs = snap.metadata.conf_state.clone();
        self.log.restore(snap);
        let mut prs = ProgressTracker::new(self.prs.max_inflight);
        prs.apply_conf(&cs, self.log.last_index() + 1);
        self.prs = prs;
        self.is_learner = cs.learners.contains(&self.id);
        true
    }
}

