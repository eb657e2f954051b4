//! Follower side of replication: accepting appends (with conflict hints),
//! heartbeats and chunked snapshots.

use crate::message::{Message, MessageType, NONE, Snapshot};
use crate::raft::Raft;
use crate::snapshot_recv::ChunkOutcome;
use crate::storage::Storage;

impl<S: Storage> Raft<S> {
    pub(crate) fn handle_append(&mut self, m: Message) {
        let mut resp = Message::new(MessageType::AppendResponse, m.from, NONE);
        resp.lease_tick = m.lease_tick;
        if m.index < self.raft_log.committed {
            // A stale or duplicated append: everything up to our commit index
            // is settled, tell the leader where we really are.
            resp.index = self.raft_log.committed;
            self.send(resp);
            return;
        }
        if let Some(last) = self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            resp.index = last;
            self.send(resp);
            return;
        }
        // Mismatch at (m.index, m.log_term). Hint the largest index at which
        // our term is <= the leader's term there: all entries after it
        // certainly do not match, so the leader can skip a whole term per
        // round trip (thesis §5.3 optimization, etcd's findConflictByTerm).
        let hint = m.index.min(self.raft_log.last_index());
        let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
        resp.index = m.index;
        resp.reject = true;
        resp.reject_hint = hint_index;
        resp.log_term = hint_term;
        self.send(resp);
    }

    pub(crate) fn handle_heartbeat(&mut self, m: Message) {
        self.raft_log.commit_to(m.commit);
        let mut resp = Message::new(MessageType::HeartbeatResponse, m.from, NONE);
        resp.context = m.context;
        resp.lease_tick = m.lease_tick;
        self.send(resp);
    }

    pub(crate) fn handle_snapshot_chunk(&mut self, m: Message) {
        let Some(chunk) = m.snapshot else { return };
        let index = chunk.metadata.index;
        if index <= self.raft_log.committed {
            // We already have everything it covers.
            self.snap_recv.clear();
            let mut resp = Message::new(MessageType::AppendResponse, m.from, NONE);
            resp.index = self.raft_log.committed;
            self.send(resp);
            return;
        }
        match self.snap_recv.receive(m.from, m.term, chunk) {
            ChunkOutcome::Partial(held) => {
                let mut resp = Message::new(MessageType::SnapshotResponse, m.from, NONE);
                resp.index = index;
                resp.snapshot_offset = held;
                self.send(resp);
            }
            ChunkOutcome::Complete(snap) => {
                let mut resp = Message::new(MessageType::AppendResponse, m.from, NONE);
                resp.index = if self.restore(snap) {
                    self.raft_log.last_index()
                } else {
                    self.raft_log.committed
                };
                self.send(resp);
            }
        }
    }

    /// Install a snapshot from the leader. Returns false if it brought
    /// nothing new (then only the commit index may move).
    pub(crate) fn restore(&mut self, snap: Snapshot) -> bool {
        let (index, term) = (snap.metadata.index, snap.metadata.term);
        if index <= self.raft_log.committed {
            return false;
        }
        if self.raft_log.match_term(index, term) {
            // We already hold the covered log; just fast-forward the commit.
            // Keeping the suffix matters: it may contain entries the leader
            // already counted as replicated on us.
            self.raft_log.commit_to(index);
            return false;
        }
        let cs = snap.metadata.conf_state.clone();
        self.raft_log.restore(snap);
        let next = self.raft_log.last_index() + 1;
        self.tracker.apply_conf(&cs, next);
        true
    }
}
