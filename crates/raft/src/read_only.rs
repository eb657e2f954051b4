//! ReadIndex bookkeeping (Raft thesis §6.4).
//!
//! A linearizable read needs the leader's commit index at the time of the
//! request *and* proof that the leader was still the leader then. The proof
//! is a heartbeat round: the heartbeat carries the request context, and once
//! a quorum echoes it back, every read queued up to that context is safe to
//! serve at its recorded index.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::message::NodeId;

/// How the leader confirms leadership for reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// Confirm with a quorum heartbeat round per batch of reads.
    #[default]
    Safe,
    /// No round trip while our lease holds: a quorum acknowledged a
    /// heartbeat or append we sent less than an election timeout ago, so
    /// (with `check_quorum`) none of them helps elect another leader yet;
    /// restarted nodes also refuse votes for their first election timeout.
    /// Once the lease lapses, reads fall back to the `Safe` round. Relies on
    /// ticks running at about the same rate on every node.
    LeaseBased,
}

/// Answer to a read request: reads with `request_ctx` may be served once the
/// state machine has applied `index`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReadState {
    pub index: u64,
    pub request_ctx: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct ReadIndexStatus {
    /// Who asked (ourselves, or a follower that forwarded the request).
    pub from: NodeId,
    pub ctx: Vec<u8>,
    /// Our commit index when the request arrived.
    pub index: u64,
    pub acks: BTreeSet<NodeId>,
}

#[derive(Clone, Debug, Default)]
pub struct ReadOnly {
    pub option: ReadOnlyOption,
    pending: BTreeMap<Vec<u8>, ReadIndexStatus>,
    queue: VecDeque<Vec<u8>>,
}

impl ReadOnly {
    pub fn new(option: ReadOnlyOption) -> ReadOnly {
        ReadOnly {
            option,
            ..Default::default()
        }
    }

    /// Queue a request. Duplicate contexts are ignored: the context is the
    /// caller's request id and the earlier request will answer it.
    pub fn add_request(&mut self, index: u64, from: NodeId, ctx: Vec<u8>, self_id: NodeId) {
        if self.pending.contains_key(&ctx) {
            return;
        }
        let mut acks = BTreeSet::new();
        acks.insert(self_id);
        self.queue.push_back(ctx.clone());
        self.pending.insert(
            ctx.clone(),
            ReadIndexStatus {
                from,
                ctx,
                index,
                acks,
            },
        );
    }

    /// Record that `id` echoed `ctx`; returns the ack set if `ctx` is pending.
    pub fn recv_ack(&mut self, id: NodeId, ctx: &[u8]) -> Option<&BTreeSet<NodeId>> {
        let status = self.pending.get_mut(ctx)?;
        status.acks.insert(id);
        Some(&status.acks)
    }

    /// Dequeue every request up to and including `ctx`: a quorum ack for a
    /// later heartbeat round also confirms leadership for earlier requests.
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<ReadIndexStatus> {
        if !self.pending.contains_key(ctx) {
            return Vec::new();
        }
        let mut out = Vec::new();
        while let Some(c) = self.queue.pop_front() {
            let done = c == ctx;
            out.push(
                self.pending
                    .remove(&c)
                    .expect("queued read must be pending"),
            );
            if done {
                break;
            }
        }
        out
    }

    pub fn last_pending_ctx(&self) -> Option<&Vec<u8>> {
        self.queue.back()
    }

    pub fn pending_count(&self) -> usize {
        self.queue.len()
    }

    pub fn reset(&mut self) {
        self.pending.clear();
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_releases_prefix() {
        let mut r = ReadOnly::new(ReadOnlyOption::Safe);
        r.add_request(3, 1, b"a".to_vec(), 1);
        r.add_request(4, 2, b"b".to_vec(), 1);
        r.add_request(5, 1, b"c".to_vec(), 1);
        assert_eq!(r.recv_ack(2, b"b").unwrap().len(), 2);
        let done = r.advance(b"b");
        assert_eq!(done.iter().map(|s| s.index).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(r.pending_count(), 1);
        assert!(r.recv_ack(2, b"a").is_none());
    }
}
