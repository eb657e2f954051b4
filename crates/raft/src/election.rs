//! Leader election (§5.2) with pre-vote (thesis §9.6).
//!
//! Pre-vote asks "would you vote for me?" at `term + 1` without anyone
//! changing their term. Only if a quorum says yes does the node run the
//! real election. A node cut off in a minority partition therefore keeps
//! its term, and when it rejoins it cannot force the healthy leader to step
//! down by showing up with a higher term.

use crate::message::{EntryKind, Message, MessageType, NONE};
use crate::raft::{CAMPAIGN_TRANSFER, Raft, StateRole};
use crate::storage::Storage;
use crate::tracker::VoteResult;

impl<S: Storage> Raft<S> {
    /// Start an election if allowed. `transfer` campaigns skip pre-vote and
    /// override voters' leader leases (the old leader asked for this).
    pub(crate) fn hup(&mut self, transfer: bool) {
        if self.state == StateRole::Leader || !self.promotable() {
            return;
        }
        if self.has_unapplied_conf_change() {
            // Our configuration may be about to change; campaigning under the
            // stale one could let two quorums disagree.
            return;
        }
        if self.pre_vote && !transfer {
            self.campaign(true, false);
        } else {
            self.campaign(false, transfer);
        }
    }

    fn has_unapplied_conf_change(&self) -> bool {
        let (lo, hi) = (self.raft_log.applied + 1, self.raft_log.committed + 1);
        if lo >= hi {
            return false;
        }
        match self
            .raft_log
            .slice(lo.max(self.raft_log.first_index()), hi, None)
        {
            Ok(ents) => ents.iter().any(|e| e.kind == EntryKind::ConfChange),
            Err(_) => false,
        }
    }

    pub(crate) fn campaign(&mut self, pre: bool, transfer: bool) {
        let (msg_type, term) = if pre {
            self.become_pre_candidate();
            (MessageType::RequestPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::RequestVote, self.term)
        };
        self.tracker.record_vote(self.id, true);
        if self.tracker.tally_votes().2 == VoteResult::Won {
            // Single-voter cluster: our own vote is a quorum.
            if pre {
                self.campaign(false, transfer);
            } else {
                self.become_leader();
            }
            return;
        }
        let (last_index, last_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        let voters: Vec<_> = self
            .tracker
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        for v in voters {
            let mut m = Message::new(msg_type, v, NONE);
            m.term = term;
            m.index = last_index;
            m.log_term = last_term;
            if transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
    }

    /// Called with `m.term >= self.term` (the term rules ran already).
    pub(crate) fn handle_vote_request(&mut self, m: Message) {
        let pre = m.msg_type == MessageType::RequestPreVote;
        let resp_type = if pre {
            MessageType::RequestPreVoteResponse
        } else {
            MessageType::RequestVoteResponse
        };
        // We may vote for the one we already voted for (duplicate request),
        // for anyone if we have not voted and know no leader this term, and
        // hypothetically for a pre-candidate from a future term.
        let can_vote = self.vote == m.from
            || (self.vote == NONE && self.lead == NONE)
            || (pre && m.term > self.term);
        let mut resp = Message::new(resp_type, m.from, NONE);
        if can_vote && self.raft_log.is_up_to_date(m.index, m.log_term) {
            // Answer in the requester's term so it counts the vote even
            // though (for pre-vote) we have not moved to that term.
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

    pub(crate) fn handle_vote_response(&mut self, m: Message) {
        let expected = match self.state {
            StateRole::PreCandidate => MessageType::RequestPreVoteResponse,
            StateRole::Candidate => MessageType::RequestVoteResponse,
            _ => return,
        };
        if m.msg_type != expected {
            return; // stale response from an earlier round
        }
        self.tracker.record_vote(m.from, !m.reject);
        match self.tracker.tally_votes().2 {
            VoteResult::Won => {
                if self.state == StateRole::PreCandidate {
                    self.campaign(false, false);
                } else {
                    self.become_leader();
                    self.bcast_append();
                }
            }
            VoteResult::Lost => {
                // Stay in our term; a pre-vote loss must not bump it.
                self.become_follower(self.term, NONE);
            }
            VoteResult::Pending => {}
        }
    }
}
