//! Leader side of log replication (§5.3): appending, streaming entries and
//! snapshots to followers, and turning their acknowledgements into commits.

use crate::error::StorageError;
use crate::message::{Entry, Message, MessageType, NONE, NodeId, SnapshotChunk};
use crate::progress::ProgressState;
use crate::raft::Raft;
use crate::read_only::ReadOnlyOption;
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    /// Stamp `ents` with our term and the next indexes and append them.
    pub(crate) fn append_entries(&mut self, mut ents: Vec<Entry>) {
        let last = self.raft_log.last_index();
        for (i, e) in ents.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        let li = self.raft_log.append(&ents);
        // Counting our own unpersisted entries is safe: followers only ack
        // after receiving messages that the Ready contract sends *after* our
        // copy was persisted.
        if let Some(pr) = self.tracker.progress.get_mut(&self.id) {
            pr.maybe_update(li);
        }
        self.maybe_commit();
    }

    /// Advance the commit index to what a quorum holds, but only via an
    /// entry of the current term (§5.4.2, figure 8): an older-term entry on a
    /// quorum can still be overwritten.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mci = self.tracker.committed_index();
        if mci > self.raft_log.committed && self.raft_log.term(mci).is_ok_and(|t| t == self.term) {
            self.raft_log.commit_to(mci);
            return true;
        }
        false
    }

    pub(crate) fn bcast_append(&mut self) {
        let peers: Vec<NodeId> = self
            .tracker
            .progress
            .keys()
            .copied()
            .filter(|&p| p != self.id)
            .collect();
        for p in peers {
            self.maybe_send_append(p, true);
        }
    }

    pub(crate) fn bcast_heartbeat(&mut self, ctx: Vec<u8>) {
        let peers: Vec<(NodeId, u64)> = self
            .tracker
            .progress
            .iter()
            .filter(|&(&p, _)| p != self.id)
            .map(|(&p, pr)| (p, pr.matched))
            .collect();
        for (p, matched) in peers {
            let mut m = Message::new(MessageType::Heartbeat, p, NONE);
            // Never tell a follower to commit past what it is known to hold
            // matching our log: it might hold a conflicting entry there.
            m.commit = matched.min(self.raft_log.committed);
            m.context = ctx.clone();
            self.send(m);
        }
    }

    /// Send `to` the entries it is missing (or a snapshot if they are
    /// compacted), respecting its flow control. Returns whether anything
    /// was sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.tracker.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_idx;
        let term = self.raft_log.term(next - 1);
        let ents = self.raft_log.entries(next, Some(self.max_msg_size));
        let (term, ents) = match (term, ents) {
            (Ok(t), Ok(e)) => (t, e),
            (Err(StorageError::Compacted), _) | (_, Err(StorageError::Compacted)) => {
                return self.start_snapshot(to);
            }
            _ => return false,
        };
        if ents.is_empty() && !send_if_empty {
            return false;
        }
        let pr = self.tracker.progress.get_mut(&to).expect("checked");
        match pr.state {
            ProgressState::Replicate => {
                if let Some(last) = ents.last() {
                    pr.optimistic_update(last.index);
                    pr.inflights.add(last.index);
                }
            }
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Snapshot => unreachable!("paused"),
        }
        let mut m = Message::new(MessageType::Append, to, NONE);
        m.index = next - 1;
        m.log_term = term;
        m.entries = ents;
        m.commit = self.raft_log.committed;
        self.send(m);
        true
    }

    fn start_snapshot(&mut self, to: NodeId) -> bool {
        // Do not stream a possibly large snapshot to a node we have not heard
        // from; it is likely down.
        if !self.tracker.progress[&to].recent_active {
            return false;
        }
        let Ok(snap) = self.raft_log.snapshot() else {
            return false;
        };
        assert!(!snap.is_empty(), "log compacted but no snapshot available");
        self.tracker
            .progress
            .get_mut(&to)
            .expect("checked")
            .become_snapshot(snap.metadata.index);
        self.send_snapshot_chunks(to);
        true
    }

    /// Stream the next chunks of the snapshot to `to`, keeping at most
    /// `max_snapshot_chunks_inflight` unacknowledged. `snapshot_sent` and
    /// `snapshot_acked` count chunks.
    pub(crate) fn send_snapshot_chunks(&mut self, to: NodeId) {
        self.stream_snapshot(to, false);
    }

    /// Like `send_snapshot_chunks`, but first rewind to the last
    /// acknowledged chunk, so chunks the network lost are sent again. At
    /// least the final chunk is always resent: if the follower installed the
    /// snapshot but its answer was lost, the repeat makes it answer again.
    fn resend_snapshot_chunks(&mut self, to: NodeId) {
        self.stream_snapshot(to, true);
    }

    fn stream_snapshot(&mut self, to: NodeId, rewind: bool) {
        let Ok(snap) = self.raft_log.snapshot() else {
            return;
        };
        let Some(pr) = self.tracker.progress.get_mut(&to) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if snap.metadata.index > pr.pending_snapshot {
            // We compacted again meanwhile; the newer snapshot supersedes.
            pr.become_snapshot(snap.metadata.index);
        } else if snap.metadata.index < pr.pending_snapshot {
            return;
        }
        let chunk = self.snapshot_chunk_size;
        let total = snap.data.len() as u64;
        let n_chunks = total.div_ceil(chunk).max(1);
        let mut out = Vec::new();
        if rewind {
            pr.snapshot_sent = pr.snapshot_acked.min(n_chunks - 1);
        }
        pr.snapshot_sent = pr.snapshot_sent.max(pr.snapshot_acked.min(n_chunks - 1));
        while pr.snapshot_sent < n_chunks
            && pr.snapshot_sent.saturating_sub(pr.snapshot_acked)
                < self.max_snapshot_chunks_inflight
        {
            let i = pr.snapshot_sent;
            let (off, end) = (i * chunk, ((i + 1) * chunk).min(total));
            out.push(SnapshotChunk {
                metadata: snap.metadata.clone(),
                offset: off,
                total_len: total,
                data: snap.data[off as usize..end as usize].to_vec(),
                done: i + 1 == n_chunks,
            });
            pr.snapshot_sent += 1;
        }
        for c in out {
            let mut m = Message::new(MessageType::Snapshot, to, NONE);
            m.index = c.metadata.index;
            m.snapshot = Some(c);
            self.send(m);
        }
    }

    pub(crate) fn handle_append_response(&mut self, m: Message) {
        let from = m.from;
        let pr = self
            .tracker
            .progress
            .get_mut(&from)
            .expect("caller checked");
        pr.recent_active = true;
        pr.lease_tick = pr.lease_tick.max(m.lease_tick);
        if m.reject {
            // Fast backtracking: jump to the last index where our log can
            // possibly match, using the follower's (index, term) hint,
            // instead of stepping back one entry per round trip.
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                next_probe = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let pr = self.tracker.progress.get_mut(&from).expect("checked");
            if pr.maybe_decr_to(m.index, next_probe + 1) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return;
        }
        let first = self.raft_log.first_index();
        let pr = self.tracker.progress.get_mut(&from).expect("checked");
        let was_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= first => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_to(m.index),
            ProgressState::Snapshot => {}
        }
        if self.maybe_commit() {
            self.release_pending_read_index();
            self.bcast_append();
        } else if was_paused {
            self.maybe_send_append(from, true);
        }
        // Pipelining: keep the window full.
        while self.maybe_send_append(from, false) {}
        if from == self.lead_transferee
            && self.tracker.progress[&from].matched == self.raft_log.last_index()
        {
            self.send_timeout_now(from);
        }
    }

    pub(crate) fn handle_heartbeat_response(&mut self, m: Message) {
        let from = m.from;
        let last = self.raft_log.last_index();
        let pr = self
            .tracker
            .progress
            .get_mut(&from)
            .expect("caller checked");
        pr.recent_active = true;
        pr.lease_tick = pr.lease_tick.max(m.lease_tick);
        pr.probe_sent = false;
        let state = pr.state;
        match state {
            // The follower is alive, so lost appends must not stall us.
            ProgressState::Replicate if pr.inflights.full() => pr.inflights.free_first_one(),
            _ => {}
        }
        if state == ProgressState::Snapshot {
            self.resend_snapshot_chunks(from);
        } else if self.tracker.progress[&from].matched < last || state == ProgressState::Probe {
            self.maybe_send_append(from, true);
        }

        // Read acks matter in Safe mode, and in lease mode once the lease was given up.
        if (self.read_only.option != ReadOnlyOption::Safe && !self.lease_revoked) || m.context.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(from, &m.context) else {
            return;
        };
        if !self.tracker.has_quorum(acks) {
            return;
        }
        for rs in self.read_only.advance(&m.context) {
            self.respond_read_index(rs.from, rs.ctx, rs.index);
        }
    }

    pub(crate) fn handle_snapshot_response(&mut self, m: Message) {
        let chunk = self.snapshot_chunk_size;
        let pr = self
            .tracker
            .progress
            .get_mut(&m.from)
            .expect("caller checked");
        pr.recent_active = true;
        if pr.state != ProgressState::Snapshot || pr.pending_snapshot != m.index {
            return;
        }
        // Trust the follower's latest word on what it holds, even if it
        // went backwards (it restarted and lost its partial copy).
        pr.snapshot_acked = m.snapshot_offset / chunk;
        self.send_snapshot_chunks(m.from);
    }
}
