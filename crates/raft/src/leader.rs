//! Leader behaviour: accepting proposals, replicating the log (appends,
//! heartbeats, chunked snapshots), advancing the commit index, serving
//! ReadIndex and transferring leadership.

use crate::error::{Error, Result};
use crate::message::{Entry, EntryKind, Message, MessageType, NONE, NodeId, SnapshotChunk};
use crate::progress::ProgressState;
use crate::raft::{Raft, StateRole};
use crate::read_only::{ReadOnlyOption, ReadState};
use crate::storage::Storage;
use crate::error::StorageError;

impl<S: Storage> Raft<S> {
    /// Stamp and append entries to our own log, counting ourselves as a
    /// replica. Counting before our own fsync is safe because nothing in
    /// the same `Ready` leaves the node until it is persisted.
    pub(crate) fn append_entry(&mut self, mut ents: Vec<Entry>) {
        let last = self.log.last_index();
        for (i, e) in ents.iter_mut().enumerate() {
            e.term = self.term;
            e.index = last + 1 + i as u64;
        }
        let last = self.log.append(&ents);
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.maybe_update(last);
        }
        self.maybe_commit();
    }

    /// Advance the commit index to what a quorum stores — but only if that
    /// entry is from our term (Raft §5.4.2, the Figure 8 rule).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.committed_index();
        if mci <= self.log.committed || self.log.term(mci) != Ok(self.term) {
            return false;
        }
        let first_in_term = !self.committed_entry_in_current_term();
        self.log.commit_to(mci);
        if first_in_term {
            self.release_pending_read_index();
        }
        true
    }

    pub(crate) fn committed_entry_in_current_term(&self) -> bool {
        self.log.term(self.log.committed) == Ok(self.term)
    }

    pub(crate) fn bcast_append(&mut self) {
        let ids: Vec<NodeId> = self.prs.progress.keys().copied().filter(|&id| id != self.id).collect();
        for id in ids {
            self.maybe_send_append(id, true);
        }
    }

    /// Send entries from `next_idx` to `to`, or a snapshot if they are
    /// compacted. Returns whether a message was sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.progress.get(&to) else { return false };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_idx;
        let prev_term = self.log.term(next - 1);
        let ents = self.log.entries(next, Some(self.max_msg_size));
        if ents.as_ref().is_ok_and(|e| e.is_empty()) && !send_if_empty {
            return false;
        }
        let (Ok(prev_term), Ok(ents)) = (prev_term, ents) else {
            return self.send_snapshot(to);
        };
        let pr = self.prs.progress.get_mut(&to).expect("checked above");
        if let Some(last) = ents.last().map(|e| e.index) {
            match pr.state {
                ProgressState::Replicate => {
                    pr.optimistic_update(last);
                    pr.inflights.add(last);
                }
                ProgressState::Probe => pr.probe_sent = true,
                ProgressState::Snapshot => unreachable!("paused"),
            }
        }
        let mut m = Message::new(MessageType::Append, to, self.id);
        m.index = next - 1;
        m.log_term = prev_term;
        m.entries = ents;
        m.commit = self.log.committed;
        self.send(m);
        true
    }

    /// Switch `to` into Snapshot mode and start streaming our snapshot.
    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let pr = self.prs.progress.get_mut(&to).expect("progress exists");
        // Do not stream a snapshot at a node that may well be down.
        if !pr.recent_active {
            return false;
        }
        let snap = match self.log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("leader failed to get snapshot: {e}"),
        };
        assert!(!snap.is_empty(), "need a snapshot but storage has none");
        let pr = self.prs.progress.get_mut(&to).expect("progress exists");
        pr.become_snapshot(snap.metadata.index);
        self.send_snapshot_window(to);
        true
    }

    /// Send snapshot chunks from the progress' cursor, keeping at most
    /// `max_snapshot_chunks_inflight` chunks beyond the acknowledged offset.
    pub(crate) fn send_snapshot_window(&mut self, to: NodeId) {
        let snap = match self.log.snapshot() {
            Ok(s) => s,
            Err(_) => return,
        };
        let Some(pr) = self.prs.progress.get_mut(&to) else { return };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if snap.metadata.index > pr.pending_snapshot {
            // A newer snapshot exists (we compacted further): stream that.
            pr.become_snapshot(snap.metadata.index);
        } else if snap.metadata.index < pr.pending_snapshot {
            return;
        }
        let len = snap.data.len() as u64;
        let limit = pr.snapshot_acked + self.snapshot_chunk_size * self.max_snapshot_chunks_inflight;
        let mut out = Vec::new();
        while !pr.snapshot_final_sent && pr.snapshot_sent < limit {
            let off = pr.snapshot_sent.min(len);
            let end = (off + self.snapshot_chunk_size).min(len);
            let done = end == len;
            let mut m = Message::new(MessageType::Snapshot, to, self.id);
            m.snapshot = Some(SnapshotChunk {
                metadata: snap.metadata.clone(),
                offset: off,
                total_len: len,
                data: snap.data[off as usize..end as usize].to_vec(),
                done,
            });
            out.push(m);
            pr.snapshot_sent = end;
            pr.snapshot_final_sent = done;
        }
        for m in out {
            self.send(m);
        }
    }

    pub(crate) fn bcast_heartbeat(&mut self) {
        let ctx = self.read_only.last_pending_ctx().cloned().unwrap_or_default();
        self.bcast_heartbeat_with_ctx(ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, ctx: Vec<u8>) {
        let ids: Vec<NodeId> = self.prs.progress.keys().copied().filter(|&id| id != self.id).collect();
        for to in ids {
            let matched = self.prs.progress[&to].matched;
            let mut m = Message::new(MessageType::Heartbeat, to, self.id);
            // Never tell a follower to commit past what it is known to hold
            // in agreement with us.
            m.commit = matched.min(self.log.committed);
            m.context = ctx.clone();
            self.send(m);
        }
    }

    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        self.send(Message::new(MessageType::TimeoutNow, to, self.id));
    }

    fn release_pending_read_index(&mut self) {
        for m in std::mem::take(&mut self.pending_read_index) {
            self.handle_read_index(m);
        }
    }

    fn handle_read_index(&mut self, m: Message) {
        let from = if m.from == NONE { self.id } else { m.from };
        let index = self.log.committed;
        if self.prs.voters.len() <= 1 || self.read_only.option == ReadOnlyOption::LeaseBased {
            // Single voter: we are trivially the leader. Lease: trust
            // check-quorum instead of a round trip.
            self.respond_read(from, index, m.context);
            return;
        }
        self.read_only.add_request(index, from, m.context.clone(), self.id);
        self.bcast_heartbeat_with_ctx(m.context);
    }

    fn respond_read(&mut self, from: NodeId, index: u64, ctx: Vec<u8>) {
        if from == self.id {
            self.read_states.push(ReadState { index, request_ctx: ctx });
        } else {
            let mut m = Message::new(MessageType::ReadIndexResponse, from, self.id);
            m.index = index;
            m.context = ctx;
            self.send(m);
        }
    }

    pub(crate) fn step_leader(&mut self, m: Message) -> Result<()> {
        use MessageType::*;
        match m.msg_type {
            Beat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            CheckQuorum => {
                if !self.prs.quorum_active(self.id) {
                    let term = self.term;
                    self.become_follower(term, NONE);
                }
                let self_id = self.id;
                for (&id, pr) in self.prs.progress.iter_mut() {
                    if id != self_id {
                        pr.recent_active = false;
                    }
                }
                return Ok(());
            }
            Propose => return self.propose(m),
            ReadIndex => {
                if self.prs.voters.len() > 1 && !self.committed_entry_in_current_term() {
                    self.pending_read_index.push(m);
                } else {
                    self.handle_read_index(m);
                }
                return Ok(());
            }
            _ => {}
        }
        // The rest are from peers we track.
        let from = m.from;
        if !self.prs.progress.contains_key(&from) {
            return Ok(());
        }
        match m.msg_type {
            AppendResponse => self.handle_append_response(m),
            HeartbeatResponse => self.handle_heartbeat_response(m),
            SnapshotResponse => self.handle_snapshot_response(m),
            Unreachable => {
                let pr = self.prs.progress.get_mut(&from).expect("checked");
                // Appends were likely lost; stop streaming optimistically.
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
            }
            TransferLeader => self.handle_transfer_leader(from),
            _ => {}
        }
        Ok(())
    }

    fn propose(&mut self, mut m: Message) -> Result<()> {
        assert!(!m.entries.is_empty(), "empty proposal");
        if !self.prs.progress.contains_key(&self.id) {
            // We were removed from the configuration.
            return Err(Error::ProposalDropped);
        }
        if self.lead_transferee != NONE {
            return Err(Error::ProposalDropped);
        }
        let last = self.log.last_index();
        for (i, e) in m.entries.iter().enumerate() {
            if e.kind == EntryKind::ConfChange {
                if self.pending_conf_index > self.log.applied {
                    return Err(Error::ProposalDropped);
                }
                self.pending_conf_index = last + 1 + i as u64;
            }
        }
        self.append_entry(std::mem::take(&mut m.entries));
        self.bcast_append();
        Ok(())
    }

    fn handle_append_response(&mut self, m: Message) {
        let from = m.from;
        let pr = self.prs.progress.get_mut(&from).expect("checked");
        pr.recent_active = true;
        if m.reject {
            let next = self.backtrack_target(&m);
            let pr = self.prs.progress.get_mut(&from).expect("checked");
            if pr.maybe_decr_to(m.index, next) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return;
        }
        let old_paused = pr.is_paused();
        if !pr.maybe_update(m.index) {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= self.log.first_index() => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Replicate => pr.inflights.free_to(m.index),
            ProgressState::Snapshot => {}
        }
        if self.maybe_commit() {
            self.bcast_append();
        } else if old_paused {
            self.maybe_send_append(from, false);
        }
        // Fill the pipeline as far as the inflight window allows.
        while self.maybe_send_append(from, false) {}
        if from == self.lead_transferee && self.prs.progress[&from].matched == self.log.last_index() {
            self.send_timeout_now(from);
        }
    }

    /// Where to probe next after a rejection. The follower reported the term
    /// of its conflicting entry and where that term starts in its log. If we
    /// have entries of that term, our logs agree up to our last one of them;
    /// otherwise skip the follower's whole term. Either way one round trip
    /// per conflicting term instead of per entry.
    fn backtrack_target(&self, m: &Message) -> u64 {
        if m.log_term == 0 {
            return m.reject_hint;
        }
        let (idx, term) = self.log.find_conflict_by_term(m.index, m.log_term);
        if term == m.log_term { idx + 1 } else { m.reject_hint }
    }

    fn handle_heartbeat_response(&mut self, m: Message) {
        let from = m.from;
        let last = self.log.last_index();
        let pr = self.prs.progress.get_mut(&from).expect("checked");
        pr.recent_active = true;
        pr.probe_sent = false;
        match pr.state {
            ProgressState::Replicate if pr.inflights.full() => pr.inflights.free_first_one(),
            ProgressState::Snapshot => {
                if !pr.snapshot_progressed {
                    let acked = pr.snapshot_acked;
                    pr.rewind_snapshot(acked);
                }
                pr.snapshot_progressed = false;
            }
            _ => {}
        }
        if pr.state == ProgressState::Snapshot {
            self.send_snapshot_window(from);
        } else if pr.matched < last || pr.state == ProgressState::Probe {
            self.maybe_send_append(from, true);
        }

        if self.read_only.option != ReadOnlyOption::Safe || m.context.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(from, &m.context) else { return };
        if !self.prs.has_quorum(acks) {
            return;
        }
        for rs in self.read_only.advance(&m.context) {
            self.respond_read(rs.from, rs.index, rs.ctx);
        }
    }

    fn handle_snapshot_response(&mut self, m: Message) {
        let from = m.from;
        let pr = self.prs.progress.get_mut(&from).expect("checked");
        pr.recent_active = true;
        if pr.state != ProgressState::Snapshot || m.index != pr.pending_snapshot {
            return;
        }
        if m.reject {
            // The follower saw a gap (lost/reordered chunk, or it restarted):
            // resume from what it actually holds.
            pr.rewind_snapshot(m.snapshot_offset);
        } else if m.snapshot_offset > pr.snapshot_acked {
            pr.snapshot_acked = m.snapshot_offset;
            pr.snapshot_progressed = true;
        }
        self.send_snapshot_window(from);
    }

    fn handle_transfer_leader(&mut self, to: NodeId) {
        let Some(pr) = self.prs.progress.get(&to) else { return };
        if pr.is_learner || to == self.id {
            return;
        }
        if self.lead_transferee != NONE {
            if self.lead_transferee == to {
                return;
            }
            self.lead_transferee = NONE;
        }
        // The transfer must finish within an election timeout.
        self.election_elapsed = 0;
        self.lead_transferee = to;
        if self.prs.progress[&to].matched == self.log.last_index() {
            self.send_timeout_now(to);
        } else {
            self.maybe_send_append(to, true);
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.state == StateRole::Leader
    }
}
