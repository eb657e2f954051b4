//! Single-server membership changes (Raft thesis §4.1), applied when the
//! conf-change entry is *applied* (as etcd does), with at most one change
//! pending at a time.
//!
//! New members join as learners: they receive the log but do not vote and
//! do not count towards quorums, so a slow new member cannot stall commits.
//! Once caught up, an `AddVoter` change promotes them.

use crate::message::{ConfChange, ConfChangeKind, ConfState, NONE, NodeId};
use crate::raft::Raft;
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// Apply a committed conf change; returns the resulting membership (for
    /// the application to store with its next snapshot). A change that would
    /// leave no voters is ignored.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let mut cs = self.prs.conf_state();
        let id = cc.node_id;
        let last_voter = cs.voters.len() == 1 && cs.voters.contains(&id);
        match cc.kind {
            ConfChangeKind::AddVoter => {
                cs.learners.remove(&id);
                cs.voters.insert(id);
            }
            ConfChangeKind::AddLearner if !last_voter => {
                cs.voters.remove(&id);
                cs.learners.insert(id);
            }
            ConfChangeKind::Remove if !last_voter => {
                cs.voters.remove(&id);
                cs.learners.remove(&id);
            }
            _ => return cs,
        }
        self.switch_to_config(cs)
    }

    fn switch_to_config(&mut self, cs: ConfState) -> ConfState {
        let next = self.log.last_index() + 1;
        self.prs.apply_conf(&cs, next);
        self.is_learner = cs.learners.contains(&self.id);
        if !self.is_leader() {
            return cs;
        }
        if !self.prs.is_voter(self.id) {
            self.step_down_after_removal();
            return cs;
        }
        if self.lead_transferee != NONE && !self.prs.is_voter(self.lead_transferee) {
            self.lead_transferee = NONE;
        }
        // The quorum changed: maybe something commits now, and new members
        // need to be contacted.
        if self.maybe_commit() {
            self.bcast_append();
        } else {
            let ids: Vec<NodeId> = self.prs.progress.keys().copied().filter(|&i| i != self.id).collect();
            for id in ids {
                self.maybe_send_append(id, false);
            }
        }
        cs
    }

    /// We led the cluster and were removed (or demoted). Hand leadership to
    /// the most up-to-date voter right away instead of making the cluster
    /// wait out an election timeout, then step down.
    fn step_down_after_removal(&mut self) {
        let last = self.log.last_index();
        let target = self
            .prs
            .voters
            .iter()
            .copied()
            .find(|id| self.prs.progress.get(id).is_some_and(|p| p.matched == last));
        // Make sure followers learn the commit index first.
        self.bcast_append();
        if let Some(t) = target {
            self.send_timeout_now(t);
        }
        let term = self.term;
        self.become_follower(term, NONE);
    }
}
