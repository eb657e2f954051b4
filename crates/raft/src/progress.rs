//! The leader's view of each follower: how much of the log it has, how much
//! is in flight, and which replication mode it is in.
//!
//! The three modes (as in etcd) exist to bound wasted work:
//! * `Probe`: we do not know where the follower's log matches ours, so send
//!   one append per heartbeat interval and backtrack on rejections.
//! * `Replicate`: the follower is in sync; stream appends optimistically,
//!   limited by the `Inflights` window.
//! * `Snapshot`: the follower needs entries we compacted; stream a snapshot
//!   and send nothing else until it is installed.

use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressState {
    #[default]
    Probe,
    Replicate,
    Snapshot,
}

/// A window of in-flight append messages, identified by their last index.
/// Acknowledging index `i` frees every message ending at or before `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inflights {
    cap: usize,
    queue: VecDeque<u64>,
}

impl Inflights {
    pub fn new(cap: usize) -> Inflights {
        Inflights {
            cap: cap.max(1),
            queue: VecDeque::new(),
        }
    }

    pub fn full(&self) -> bool {
        self.queue.len() >= self.cap
    }

    pub fn count(&self) -> usize {
        self.queue.len()
    }

    pub fn add(&mut self, last: u64) {
        assert!(!self.full(), "inflights overflow");
        self.queue.push_back(last);
    }

    pub fn free_to(&mut self, index: u64) {
        while self.queue.front().is_some_and(|&i| i <= index) {
            self.queue.pop_front();
        }
    }

    /// A heartbeat response proves the follower is alive even if our appends
    /// were lost; free one slot so replication cannot stall forever.
    pub fn free_first_one(&mut self) {
        self.queue.pop_front();
    }

    pub fn reset(&mut self) {
        self.queue.clear();
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Highest index known to match the leader's log.
    pub matched: u64,
    /// Next index to send.
    pub next_idx: u64,
    pub state: ProgressState,
    /// In Probe: an append was sent and we wait for its answer (or the next
    /// heartbeat) before sending another.
    pub probe_sent: bool,
    /// In Snapshot: index of the snapshot being streamed.
    pub pending_snapshot: u64,
    /// In Snapshot: chunks the follower confirmed holding / chunks we have
    /// sent. A heartbeat response rewinds `sent` to `acked`, which resends
    /// whatever the network lost.
    pub snapshot_acked: u64,
    pub snapshot_sent: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Newest `lease_tick` this follower acknowledged (0: none this term).
    pub lease_tick: u64,
    pub is_learner: bool,
    pub inflights: Inflights,
}

impl Progress {
    pub fn new(next_idx: u64, max_inflight: usize) -> Progress {
        Progress {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            snapshot_acked: 0,
            snapshot_sent: 0,
            recent_active: false,
            lease_tick: 0,
            is_learner: false,
            inflights: Inflights::new(max_inflight),
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.snapshot_acked = 0;
        self.snapshot_sent = 0;
        self.state = state;
        self.inflights.reset();
    }

    pub fn become_probe(&mut self) {
        // Coming out of Snapshot, the follower has at least the snapshot.
        if self.state == ProgressState::Snapshot {
            let pending = self.pending_snapshot;
            self.reset_state(ProgressState::Probe);
            self.next_idx = (self.matched + 1).max(pending + 1);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next_idx = self.matched + 1;
        }
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    pub fn become_snapshot(&mut self, snapshot_index: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// An append was acknowledged up to `n`. Returns false if it was stale.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.probe_sent = false;
        }
        self.next_idx = self.next_idx.max(n + 1);
        updated
    }

    /// Record that entries up to `last` were sent (Replicate mode).
    pub fn optimistic_update(&mut self, last: u64) {
        self.next_idx = last + 1;
    }

    /// The follower rejected an append at `rejected`; move `next_idx` back to
    /// `new_next` (computed by the leader from the follower's hints). Returns
    /// false if the rejection is stale and should be ignored.
    pub fn maybe_decr_to(&mut self, rejected: u64, new_next: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // Rejections of indexes we already know match are stale.
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        // In Probe, only the answer to the probe in flight counts.
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        self.next_idx = new_next.min(rejected).max(self.matched + 1).max(1);
        self.probe_sent = false;
        true
    }

    /// Whether sending appends to this follower is currently throttled.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflights_window() {
        let mut f = Inflights::new(3);
        f.add(2);
        f.add(4);
        f.add(6);
        assert!(f.full());
        f.free_to(4);
        assert_eq!(f.count(), 1);
        f.free_first_one();
        assert_eq!(f.count(), 0);
    }

    #[test]
    fn probe_ignores_stale_rejections() {
        let mut p = Progress::new(10, 4);
        assert!(!p.maybe_decr_to(5, 3), "not the probe in flight");
        assert!(p.maybe_decr_to(9, 4));
        assert_eq!(p.next_idx, 4);
        p.matched = 5;
        p.next_idx = 8;
        assert!(p.maybe_decr_to(7, 2));
        assert_eq!(p.next_idx, 6, "never below matched + 1");
    }

    #[test]
    fn replicate_rejection_falls_back_to_match() {
        let mut p = Progress::new(10, 4);
        p.matched = 5;
        p.become_replicate();
        p.optimistic_update(9);
        assert!(!p.maybe_decr_to(5, 1));
        assert!(p.maybe_decr_to(7, 1));
        assert_eq!(p.next_idx, 6);
    }

    #[test]
    fn leaving_snapshot_resumes_after_it() {
        let mut p = Progress::new(3, 4);
        p.become_snapshot(20);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next_idx, 21);
    }
}
