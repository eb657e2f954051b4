//! Safety invariants, checked after every simulated step.
//!
//! * Election safety: at most one leader per term.
//! * Log matching: an (index, term) pair identifies the entry's content and
//!   its predecessor's term everywhere, so equal (index, term) implies equal
//!   prefixes.
//! * Leader completeness: a new leader holds every entry committed in an
//!   earlier term.
//! * State machine safety: every node applies the same entry at each index
//!   (tracked as a hash chain, which also covers snapshots).
//! * Committed entries are never lost or changed: no node ever commits a
//!   different term at an index the cluster committed.
//! * ReadIndex linearizability: a read's index covers every commit that
//!   completed before the read was issued.

use std::collections::BTreeMap;

use skiff_raft::{Entry, MemStorage, NodeId, RawNode};

pub type Check = Result<(), String>;

#[derive(Default)]
pub struct Checker {
    leaders: BTreeMap<u64, NodeId>,
    /// (index, term) -> (predecessor term, data hash).
    entries: BTreeMap<(u64, u64), (u64, u64)>,
    /// index -> (entry term, term of the leader that committed it).
    committed: BTreeMap<u64, (u64, u64)>,
    /// index -> state machine hash after applying it.
    applied: BTreeMap<u64, u64>,
    /// Per node: highest commit index already checked.
    checked_commit: BTreeMap<NodeId, u64>,
    /// read ctx -> highest committed index when it was issued.
    reads: BTreeMap<Vec<u8>, u64>,
    pub reads_served: u64,
    pub max_term: u64,
}

pub fn data_hash(e: &Entry) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ (e.kind as u64);
    for b in &e.data {
        h = (h ^ *b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl Checker {
    pub fn max_committed(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    /// Entries a node is about to persist.
    pub fn on_entries(&mut self, id: NodeId, rn: &RawNode<MemStorage>, ents: &[Entry]) -> Check {
        for e in ents {
            let prev = match rn.raft().raft_log.term(e.index - 1) {
                Ok(t) => t,
                Err(_) => continue,
            };
            let v = (prev, data_hash(e));
            match self.entries.get(&(e.index, e.term)) {
                Some(&old) if old != v => {
                    return Err(format!(
                        "log matching: node {id} has ({}, {}) with prev term/data {v:?}, elsewhere {old:?}",
                        e.index, e.term
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries.insert((e.index, e.term), v);
                }
            }
        }
        Ok(())
    }

    /// After any step of node `id`.
    pub fn on_step(&mut self, id: NodeId, rn: &RawNode<MemStorage>) -> Check {
        let r = rn.raft();
        self.max_term = self.max_term.max(r.term);
        if r.state == skiff_raft::StateRole::Leader {
            match self.leaders.get(&r.term) {
                Some(&l) if l != id => {
                    return Err(format!(
                        "election safety: {l} and {id} both lead term {}",
                        r.term
                    ));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(r.term, id);
                    self.on_new_leader(id, rn)?;
                }
            }
        }
        let c = r.raft_log.committed();
        let from = self
            .checked_commit
            .get(&id)
            .copied()
            .unwrap_or(0)
            .max(r.raft_log.first_index() - 1);
        for i in from + 1..=c {
            let t = r
                .raft_log
                .term(i)
                .map_err(|e| format!("node {id} committed {i} but term: {e}"))?;
            match self.committed.get(&i) {
                Some(&(ct, _)) if ct != t => {
                    return Err(format!(
                        "committed entry changed: index {i} committed at term {ct}, node {id} commits term {t}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(i, (t, r.term));
                }
            }
        }
        self.checked_commit.insert(id, c);
        Ok(())
    }

    fn on_new_leader(&self, id: NodeId, rn: &RawNode<MemStorage>) -> Check {
        let r = rn.raft();
        let first = r.raft_log.first_index();
        for (&i, &(t, cterm)) in self.committed.range(first..) {
            if cterm >= r.term {
                continue;
            }
            if r.raft_log.term(i).ok() != Some(t) {
                return Err(format!(
                    "leader completeness: {id} leads term {} without entry {i} (term {t}) committed in term {cterm}",
                    r.term
                ));
            }
        }
        Ok(())
    }

    pub fn forget_commit_progress(&mut self, id: NodeId) {
        self.checked_commit.remove(&id);
    }

    /// Node `id` applied up to `index`, reaching state-machine `hash`.
    pub fn on_apply(&mut self, id: NodeId, index: u64, hash: u64) -> Check {
        match self.applied.get(&index) {
            Some(&h) if h != hash => Err(format!(
                "state machine safety: node {id} diverged at index {index}"
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(index, hash);
                Ok(())
            }
        }
    }

    pub fn on_read_issued(&mut self, ctx: Vec<u8>) {
        let c = self.max_committed();
        self.reads.insert(ctx, c);
    }

    pub fn on_read_state(&mut self, id: NodeId, index: u64, ctx: &[u8]) -> Check {
        let Some(&need) = self.reads.get(ctx) else {
            return Ok(());
        };
        if index < need {
            return Err(format!(
                "stale read at node {id}: read index {index} < {need} committed before the read"
            ));
        }
        self.reads_served += 1;
        Ok(())
    }
}
