//! Membership plus the per-member progress and vote tallies: everything
//! that needs a "majority of voters" answer lives here.
//!
//! Changes are one server at a time (Raft thesis §4.1), so a single
//! majority configuration suffices; no joint consensus.

use std::collections::{BTreeMap, BTreeSet};

use crate::message::{ConfState, NodeId};
use crate::progress::Progress;

/// Outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Pending,
    Won,
    Lost,
}

#[derive(Clone, Debug, Default)]
pub struct ProgressTracker {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// One entry per voter and learner. BTreeMap, not HashMap: iteration
    /// order decides message order and must be deterministic.
    pub progress: BTreeMap<NodeId, Progress>,
    pub votes: BTreeMap<NodeId, bool>,
    pub max_inflight: usize,
}

impl ProgressTracker {
    pub fn new(max_inflight: usize) -> ProgressTracker {
        ProgressTracker {
            max_inflight,
            ..Default::default()
        }
    }

    pub fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.clone(),
            learners: self.learners.clone(),
        }
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Set membership to `cs`, keeping progress of members that stay and
    /// creating fresh progress (starting at `next_idx`) for new ones.
    pub fn apply_conf(&mut self, cs: &ConfState, next_idx: u64) {
        self.voters = cs.voters.clone();
        self.learners = cs
            .learners
            .iter()
            .filter(|id| !cs.voters.contains(id))
            .copied()
            .collect();
        self.progress.retain(|id, _| cs.contains(*id));
        for &id in cs.voters.iter().chain(cs.learners.iter()) {
            let max_inflight = self.max_inflight;
            let pr = self.progress.entry(id).or_insert_with(|| {
                let mut p = Progress::new(next_idx, max_inflight);
                // A new member counts as active so check-quorum does not
                // immediately depose a leader that just added it.
                p.recent_active = true;
                p
            });
            pr.is_learner = !cs.voters.contains(&id);
        }
        self.votes.retain(|id, _| cs.voters.contains(id));
    }

    /// The largest index stored on a quorum of voters.
    pub fn committed_index(&self) -> u64 {
        if self.voters.is_empty() {
            return 0;
        }
        let mut matched: Vec<u64> = self
            .voters
            .iter()
            .map(|id| self.progress.get(id).map_or(0, |p| p.matched))
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.quorum() - 1]
    }

    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    pub fn record_vote(&mut self, id: NodeId, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    pub fn tally_votes(&self) -> (usize, usize, VoteResult) {
        let mut granted = 0;
        let mut rejected = 0;
        for id in &self.voters {
            match self.votes.get(id) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        let q = self.quorum();
        let result = if granted >= q {
            VoteResult::Won
        } else if self.voters.len() - rejected < q {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        };
        (granted, rejected, result)
    }

    /// Whether a quorum of voters (counting `self_id`) was recently active.
    pub fn quorum_active(&self, self_id: NodeId) -> bool {
        let active = self
            .voters
            .iter()
            .filter(|&&id| id == self_id || self.progress.get(&id).is_some_and(|p| p.recent_active))
            .count();
        active >= self.quorum()
    }

    /// Whether `acks` contains a quorum of voters.
    pub fn has_quorum(&self, acks: &BTreeSet<NodeId>) -> bool {
        self.voters.iter().filter(|id| acks.contains(id)).count() >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(voters: &[u64], matched: &[u64]) -> ProgressTracker {
        let mut t = ProgressTracker::new(8);
        t.apply_conf(&ConfState::with_voters(voters.iter().copied()), 1);
        for (id, m) in voters.iter().zip(matched) {
            t.progress.get_mut(id).unwrap().matched = *m;
        }
        t
    }

    #[test]
    fn committed_index_is_quorum_median() {
        assert_eq!(tracker(&[1, 2, 3], &[5, 3, 1]).committed_index(), 3);
        assert_eq!(tracker(&[1, 2, 3, 4], &[5, 3, 1, 9]).committed_index(), 3);
        assert_eq!(tracker(&[1], &[7]).committed_index(), 7);
    }

    #[test]
    fn learners_do_not_count() {
        let mut t = tracker(&[1, 2, 3], &[5, 1, 1]);
        let mut cs = t.conf_state();
        cs.learners.insert(4);
        t.apply_conf(&cs, 1);
        t.progress.get_mut(&4).unwrap().matched = 5;
        assert_eq!(t.committed_index(), 1);
        t.record_vote(4, true);
        t.record_vote(1, true);
        assert_eq!(t.tally_votes().2, VoteResult::Pending);
        t.record_vote(2, false);
        t.record_vote(3, false);
        assert_eq!(t.tally_votes().2, VoteResult::Lost);
    }
}
