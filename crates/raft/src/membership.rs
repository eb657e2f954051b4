//! Single-server membership changes (thesis §4.1) with learners.
//!
//! A conf change is an ordinary log entry; it takes effect on each node when
//! the application *applies* it and calls `RawNode::apply_conf_change` (the
//! etcd model). Safety rests on three rules enforced here and in the
//! leader: only one change is in flight at a time, a new leader first
//! commits an entry of its own term, and nodes with committed-but-unapplied
//! changes do not campaign.
//!
//! New members should join as learners: they receive the log but do not
//! count towards quorums, so a slow new node cannot stall commits. Once it
//! has caught up it is promoted with `AddVoter`.

use crate::error::{Error, Result};
use crate::message::{ConfChange, ConfChangeKind, ConfState, Entry, NodeId};
use crate::raft::{Raft, StateRole};
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// Leader-side validation of a proposed conf change.
    pub(crate) fn check_conf_change(&self, e: &Entry) -> Result<()> {
        let Some(cc) = ConfChange::decode(&e.data) else {
            return Err(Error::ProposalDropped);
        };
        if cc.kind == ConfChangeKind::AddVoter && self.tracker.learners.contains(&cc.node_id) {
            // Promote only a learner that has caught up, otherwise the new
            // voter could be needed for a quorum while still far behind.
            if !self.learner_caught_up(cc.node_id) {
                return Err(Error::ProposalDropped);
            }
        }
        if cc.kind == ConfChangeKind::Remove
            && self.tracker.voters.len() == 1
            && self.tracker.is_voter(cc.node_id)
        {
            return Err(Error::ProposalDropped); // would leave no voters
        }
        Ok(())
    }

    /// A learner is caught up once it holds everything committed.
    pub fn learner_caught_up(&self, id: NodeId) -> bool {
        self.tracker
            .progress
            .get(&id)
            .is_some_and(|p| p.matched >= self.raft_log.committed)
    }

    /// Apply a committed conf change; returns the new configuration.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        let mut cs = self.tracker.conf_state();
        match cc.kind {
            ConfChangeKind::AddVoter => {
                cs.learners.remove(&cc.node_id);
                cs.voters.insert(cc.node_id);
            }
            ConfChangeKind::AddLearner => {
                cs.voters.remove(&cc.node_id);
                cs.learners.insert(cc.node_id);
            }
            ConfChangeKind::Remove => {
                cs.voters.remove(&cc.node_id);
                cs.learners.remove(&cc.node_id);
            }
        }
        self.apply_conf_state(&cs);
        cs
    }

    fn apply_conf_state(&mut self, cs: &ConfState) {
        let next = self.raft_log.last_index() + 1;
        self.tracker.apply_conf(cs, next);
        if self.state != StateRole::Leader {
            return;
        }
        if !self.tracker.is_voter(self.id) {
            // We removed (or demoted) ourselves. Tell everyone the latest
            // commit index, hand leadership to the most caught-up voter if
            // one holds our whole log, and step down.
            self.bcast_append();
            let last = self.raft_log.last_index();
            let best = self
                .tracker
                .voters
                .iter()
                .filter_map(|v| self.tracker.progress.get(v).map(|p| (p.matched, *v)))
                .max();
            if let Some((matched, v)) = best
                && matched == last
            {
                self.send_timeout_now(v);
            }
            self.become_follower(self.term, crate::message::NONE);
            return;
        }
        if self.lead_transferee != crate::message::NONE
            && !self.tracker.is_voter(self.lead_transferee)
        {
            self.abort_leader_transfer();
        }
        // The quorum changed: something may now be committed, and new
        // members need their first append.
        if self.maybe_commit() {
            self.release_pending_read_index();
        }
        self.bcast_append();
    }
}
