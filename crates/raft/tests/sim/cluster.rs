//! The simulated cluster: nodes with explicit durable "disks", a lossy
//! network, and a fault injector, all driven by one seeded RNG.
//!
//! Persistence is modelled explicitly: a node's `disk` (a `MemStorage`)
//! only ever receives what a `Ready` asked to persist, written before that
//! `Ready`'s messages are sent. A crash throws away the `RawNode` and the
//! state machine; a restart rebuilds them from the disk alone. A *torn*
//! crash dies in the middle of persisting a `Ready`: a prefix of its
//! entries reaches the disk, nothing else does and no message leaves.

use std::collections::{BTreeMap, BTreeSet};

use skiff_linearizability::{Cmp, Input, Outcome};
use skiff_raft::{
    ConfChange, ConfChangeKind, ConfState, Config, EntryKind, MemStorage, Message, NodeId, RawNode,
    ReadOnlyOption, StateRole, Storage,
};

use crate::checker::{Check, Checker, data_hash};
use crate::kv::{Clients, Cmd, Kv};
use crate::rng::SimRng;

/// Time units per tick; message delays are measured in units.
pub const UNITS_PER_TICK: u64 = 10;

#[derive(Clone, Debug)]
pub struct Params {
    pub voters: u64,
    /// Extra node ids that may join via membership changes.
    pub spares: u64,
    pub fault_ticks: u64,
    pub liveness_ticks: u64,
    pub drop: f64,
    pub dup: f64,
    pub max_delay: u64,
    pub long_delay: f64,
    pub crash: f64,
    pub crash_leader: f64,
    pub torn: f64,
    pub restart: f64,
    /// Crash-and-immediately-restart a node; much likelier while an
    /// election is running, where forgetting a vote or term would show.
    pub bounce: f64,
    pub bounce_in_election: f64,
    pub partition: f64,
    pub heal: f64,
    /// Isolate the current leader together with a minority.
    pub leader_minority: f64,
    pub compact: f64,
    pub propose: f64,
    pub read: f64,
    pub transfer: f64,
    pub conf_change: f64,
    pub chunk_size: usize,
    /// Bytes of entries per append (at least one entry is always sent).
    pub max_msg_size: u64,
    /// Concurrent KV clients (each with at most one request in flight).
    pub clients: u64,
    /// Serve ReadIndex from the leader's lease instead of a heartbeat round.
    pub lease_reads: bool,
    /// Clock skew: each node's clock skips a tick, or ticks twice, with its
    /// own probability of up to this much. Leases assume equal rates, so
    /// lease scenarios set it to 0.
    pub skew: f64,
    /// A deliberate bug, to prove the history check catches it: serve gets
    /// from the contacted node's state machine without ReadIndex.
    pub unsafe_local_reads: bool,
}

/// A client gives up on a request after this many ticks.
const CLIENT_TIMEOUT_TICKS: u64 = 40;
/// Keys the clients use: few, so operations contend.
const KEYS: u64 = 3;

impl Default for Params {
    fn default() -> Params {
        Params {
            voters: 3,
            spares: 0,
            fault_ticks: 300,
            liveness_ticks: 300,
            drop: 0.05,
            dup: 0.03,
            max_delay: 12,
            long_delay: 0.01,
            crash: 0.005,
            crash_leader: 0.005,
            torn: 0.3,
            restart: 0.05,
            bounce: 0.01,
            bounce_in_election: 0.1,
            partition: 0.01,
            heal: 0.05,
            leader_minority: 0.0,
            compact: 0.02,
            propose: 0.3,
            read: 0.05,
            transfer: 0.002,
            conf_change: 0.0,
            chunk_size: 16,
            max_msg_size: 256,
            clients: 4,
            lease_reads: false,
            skew: 0.05,
            unsafe_local_reads: false,
        }
    }
}

/// The application's state machine: the KV store, plus a hash chain over
/// applied entries that the safety checker compares across nodes.
#[derive(Clone, Default)]
struct Sm {
    index: u64,
    hash: u64,
    kv: Kv,
}

impl Sm {
    fn encode(&self, pad: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + pad);
        v.extend_from_slice(&self.index.to_le_bytes());
        v.extend_from_slice(&self.hash.to_le_bytes());
        self.kv.encode(&mut v);
        v.extend((0..pad).map(|i| (self.hash >> (i % 8)) as u8));
        v
    }

    fn decode(d: &[u8]) -> Sm {
        if d.len() < 16 {
            return Sm::default();
        }
        Sm {
            index: u64::from_le_bytes(d[..8].try_into().unwrap()),
            hash: u64::from_le_bytes(d[8..16].try_into().unwrap()),
            kv: Kv::decode(&d[16..]).0,
        }
    }
}

struct SimNode {
    rn: Option<RawNode<MemStorage>>,
    disk: MemStorage,
    sm: Sm,
    crash_in_next_ready: bool,
    /// Bumped on every restart: answers owed by an earlier incarnation are
    /// never sent.
    incarnation: u64,
    /// ReadIndex results waiting for the state machine: (index, op id).
    reads: Vec<(u64, u64)>,
}

pub struct Sim {
    pub seed: u64,
    rng: SimRng,
    p: Params,
    now: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    /// (delivery time, sequence) -> message.
    net: BTreeMap<(u64, u64), Message>,
    seq: u64,
    /// Partition group per node; messages cross only within a group.
    group: BTreeMap<NodeId, u64>,
    initial: ConfState,
    /// Spares added at some point (never re-added after removal).
    joined: BTreeSet<NodeId>,
    next_val: u64,
    /// Per node: (chance to skip a tick, chance to tick twice).
    clock: BTreeMap<NodeId, (f64, f64)>,
    pub chk: Checker,
    pub clients: Clients,
    pub stats: Stats,
    trace: bool,
}

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub crashes: u64,
    pub torn: u64,
    pub snapshots_sent: u64,
    pub conf_changes: u64,
    pub leader_removals: u64,
    pub elections: u64,
    pub ticks_to_recover: u64,
}

impl Sim {
    pub fn new(seed: u64, p: Params) -> Sim {
        let initial = ConfState::with_voters(1..=p.voters);
        let mut s = Sim {
            seed,
            rng: SimRng::new(seed),
            now: 0,
            nodes: BTreeMap::new(),
            net: BTreeMap::new(),
            seq: 0,
            group: BTreeMap::new(),
            initial,
            joined: BTreeSet::new(),
            next_val: 0,
            clock: BTreeMap::new(),
            chk: Checker::default(),
            clients: Clients::default(),
            stats: Stats::default(),
            trace: std::env::var_os("SKIFF_SIM_TRACE").is_some(),
            p,
        };
        for id in 1..=s.p.voters {
            s.start_node(id);
        }
        s
    }

    fn config(&self, id: NodeId, applied: u64) -> Config {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            applied,
            max_size_per_msg: self.p.max_msg_size,
            max_inflight_msgs: 4,
            snapshot_chunk_size: self.p.chunk_size,
            max_snapshot_chunks_inflight: 2,
            seed: self.seed,
            read_only_option: if self.p.lease_reads {
                ReadOnlyOption::LeaseBased
            } else {
                ReadOnlyOption::Safe
            },
            ..Config::default()
        }
    }

    fn start_node(&mut self, id: NodeId) {
        let disk = MemStorage::new_with_conf_state(self.initial.clone());
        self.nodes.insert(
            id,
            SimNode {
                rn: None,
                disk,
                sm: Sm::default(),
                crash_in_next_ready: false,
                incarnation: 0,
                reads: Vec::new(),
            },
        );
        self.group.insert(id, 0);
        let skew = self.p.skew;
        let (slow, fast) = (self.rng.range(0, 1001), self.rng.range(0, 1001));
        let rate = (slow as f64 / 1000.0 * skew, fast as f64 / 1000.0 * skew);
        self.clock.insert(id, rate);
        self.restart(id);
    }

    /// Rebuild a node from its disk alone.
    fn restart(&mut self, id: NodeId) {
        let snap = self.nodes[&id].disk.snapshot().unwrap();
        let cfg = self.config(id, snap.metadata.index);
        let n = self.nodes.get_mut(&id).unwrap();
        n.sm = Sm::decode(&snap.data);
        n.rn = Some(RawNode::new(&cfg, n.disk.clone()).unwrap());
        n.crash_in_next_ready = false;
        n.incarnation += 1;
        n.reads.clear();
        self.chk.forget_commit_progress(id);
        self.log(|| format!("restart {id}"));
    }

    fn crash(&mut self, id: NodeId) {
        let torn = self.rng.chance(self.p.torn);
        self.log(|| format!("crash {id} torn={torn}"));
        let n = self.nodes.get_mut(&id).unwrap();
        if torn {
            n.crash_in_next_ready = true;
            self.stats.torn += 1;
        } else {
            n.rn = None;
        }
        self.stats.crashes += 1;
    }

    fn log(&self, f: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6}] {}", self.now, f());
        }
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.rn.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// The leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(&id, n)| n.rn.as_ref().map(|rn| (id, rn.raft())))
            .filter(|(_, r)| r.state == StateRole::Leader)
            .max_by_key(|(_, r)| r.term)
            .map(|(id, _)| id)
    }

    fn send(&mut self, m: Message) {
        if self.group.get(&m.from) != self.group.get(&m.to) || self.rng.chance(self.p.drop) {
            return;
        }
        let copies = if self.rng.chance(self.p.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if self.rng.chance(self.p.long_delay) {
                self.rng.range(UNITS_PER_TICK, 20 * UNITS_PER_TICK)
            } else {
                self.rng.range(1, self.p.max_delay + 1)
            };
            self.seq += 1;
            self.net.insert((self.now + delay, self.seq), m.clone());
        }
    }

    /// Handle every pending Ready of `id` per the contract, checking
    /// invariants along the way.
    fn process(&mut self, id: NodeId) -> Check {
        loop {
            let n = self.nodes.get_mut(&id).unwrap();
            let Some(rn) = n.rn.as_mut() else {
                return Ok(());
            };
            if !rn.has_ready() {
                return self.chk.on_step(id, rn);
            }
            let rd = rn.ready();
            if n.crash_in_next_ready {
                // Torn write: a prefix of the entries hits the disk.
                let keep = self.rng.range(0, rd.entries.len() as u64 + 1) as usize;
                let mut d = n.disk.wl();
                if let Some(s) = &rd.snapshot
                    && self.rng.chance(0.5)
                {
                    d.apply_snapshot(s.clone()).unwrap();
                    d.append(&rd.entries[..keep]).unwrap();
                } else if rd.snapshot.is_none() {
                    d.append(&rd.entries[..keep]).unwrap();
                }
                drop(d);
                n.rn = None;
                return Ok(());
            }
            self.chk.on_entries(id, rn, &rd.entries)?;
            {
                let mut d = n.disk.wl();
                if let Some(s) = &rd.snapshot {
                    d.apply_snapshot(s.clone()).unwrap();
                }
                d.append(&rd.entries).unwrap();
                if let Some(hs) = rd.hard_state {
                    d.set_hard_state(hs);
                }
            }
            if let Some(s) = &rd.snapshot {
                n.sm = Sm::decode(&s.data);
                self.stats.snapshots_sent += 1;
                if n.sm.index != s.metadata.index {
                    return Err(format!("snapshot data/metadata mismatch at node {id}"));
                }
                self.chk.on_apply(id, n.sm.index, n.sm.hash)?;
            }
            for e in &rd.committed_entries {
                if e.index != n.sm.index + 1 {
                    return Err(format!(
                        "node {id} applies {} after {}",
                        e.index, n.sm.index
                    ));
                }
                n.sm.index = e.index;
                n.sm.hash =
                    (n.sm.hash.rotate_left(17) ^ data_hash(e) ^ e.term.wrapping_mul(0x9E37))
                        .wrapping_mul(0x100_0000_01b3);
                self.chk.on_apply(id, e.index, n.sm.hash)?;
                if e.kind == EntryKind::Normal
                    && let Cmd::Op {
                        client,
                        id: op,
                        input,
                    } = Cmd::decode(&e.data)
                    && let Some(out) = n.sm.kv.apply_once(client, op, &input)
                {
                    self.clients.answer(op, id, n.incarnation, out);
                }
                if e.kind == EntryKind::ConfChange {
                    let cc = ConfChange::decode(&e.data).ok_or("bad conf change")?;
                    rn.apply_conf_change(&cc);
                }
            }
            for rs in &rd.read_states {
                self.chk.on_read_state(id, rs.index, &rs.request_ctx)?;
                if let Ok(op) = <[u8; 8]>::try_from(&rs.request_ctx[..]) {
                    n.reads.push((rs.index, u64::from_le_bytes(op)));
                }
            }
            // Answer the reads whose index this node has applied.
            let (applied, inc) = (n.sm.index, n.incarnation);
            for (idx, op) in std::mem::take(&mut n.reads) {
                match self.clients.input(op) {
                    Some(input) if idx <= applied => {
                        let out = n.sm.kv.apply(&input);
                        self.clients.answer(op, id, inc, out);
                    }
                    Some(_) => n.reads.push((idx, op)),
                    None => {}
                }
            }
            if rd.soft_state.is_some_and(|s| s.role == StateRole::Leader) {
                self.stats.elections += 1;
                if self.trace {
                    eprintln!("[{:>6}] {id} leads term {}", self.now, rn.raft().term);
                }
            }
            let msgs = rd.messages.clone();
            rn.advance(rd);
            self.chk.on_step(id, self.nodes[&id].rn.as_ref().unwrap())?;
            for m in msgs {
                self.send(m);
            }
        }
    }

    fn deliver_due(&mut self) -> Check {
        while let Some((&(t, s), _)) = self.net.first_key_value() {
            if t > self.now {
                break;
            }
            let m = self.net.remove(&(t, s)).unwrap();
            let to = m.to;
            if self.group.get(&m.from) != self.group.get(&to) {
                continue;
            }
            let Some(rn) = self.nodes.get_mut(&to).and_then(|n| n.rn.as_mut()) else {
                continue;
            };
            let _ = rn.step(m);
            self.process(to)?;
        }
        Ok(())
    }

    fn tick_all(&mut self) -> Check {
        for id in self.live() {
            let (slow, fast) = self.clock[&id];
            if self.rng.chance(slow) {
                continue;
            }
            let n = if self.rng.chance(fast) { 2 } else { 1 };
            for _ in 0..n {
                if let Some(rn) = self.nodes.get_mut(&id).unwrap().rn.as_mut() {
                    rn.tick();
                }
                self.process(id)?;
            }
        }
        Ok(())
    }

    fn faults(&mut self) -> Check {
        let p = self.p.clone();
        let live = self.live();
        // Keep a quorum of the original size up most of the time.
        if live.len() as u64 > self.p.voters / 2 + 1 {
            if self.rng.chance(p.crash)
                && let Some(id) = self.rng.pick(&live)
            {
                self.crash(id);
            }
            if self.rng.chance(p.crash_leader)
                && let Some(l) = self.leader()
            {
                self.crash(l);
            }
        }
        let electing = self.nodes.values().any(|n| {
            n.rn.as_ref().is_some_and(|rn| {
                matches!(
                    rn.raft().state,
                    StateRole::Candidate | StateRole::PreCandidate
                )
            })
        });
        let bounce = if electing {
            p.bounce_in_election
        } else {
            p.bounce
        };
        if self.rng.chance(bounce)
            && let Some(id) = self.rng.pick(&live)
            && self.nodes[&id].rn.is_some()
        {
            self.log(|| format!("bounce {id}"));
            self.nodes.get_mut(&id).unwrap().rn = None;
            self.stats.crashes += 1;
            self.restart(id);
        }
        let down: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.rn.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            if self.rng.chance(p.restart) {
                self.restart(id);
            }
        }
        let ids: Vec<_> = self.nodes.keys().copied().collect();
        if self.rng.chance(p.partition) {
            for &id in &ids {
                let g = self.rng.range(0, 2);
                self.group.insert(id, g);
            }
            self.log(|| format!("partition {:?}", self.group));
        }
        if self.rng.chance(p.leader_minority)
            && let Some(l) = self.leader()
        {
            // The leader keeps a minority (itself plus at most one other).
            for &id in &ids {
                self.group.insert(id, 0);
            }
            self.group.insert(l, 1);
            if ids.len() >= 5 {
                let others: Vec<_> = ids.iter().copied().filter(|&i| i != l).collect();
                if let Some(o) = self.rng.pick(&others) {
                    self.group.insert(o, 1);
                }
            }
            self.log(|| format!("leader {l} isolated with minority {:?}", self.group));
        }
        if self.rng.chance(p.heal) {
            for &id in &ids {
                self.group.insert(id, 0);
            }
        }
        for id in self.live() {
            if self.rng.chance(p.compact) {
                self.compact(id);
            }
        }
        Ok(())
    }

    /// Snapshot at the applied index and drop some log prefix.
    fn compact(&mut self, id: NodeId) {
        let pad = self.rng.range(0, 64) as usize;
        let keep = self.rng.range(0, 4);
        let n = self.nodes.get_mut(&id).unwrap();
        let rn = n.rn.as_ref().unwrap();
        let applied = n.sm.index;
        let mut d = n.disk.wl();
        if applied <= d.snapshot_ref().metadata.index {
            return;
        }
        let cs = rn.raft().tracker.conf_state();
        d.create_snapshot(applied, cs, n.sm.encode(pad)).unwrap();
        let _ = d.compact(applied.saturating_sub(keep));
    }

    fn clients(&mut self) -> Check {
        for c in 0..self.p.clients {
            if !self.clients.is_busy(c) && self.rng.chance(self.p.propose) {
                self.client_op(c)?;
            }
        }
        if self.rng.chance(self.p.transfer)
            && let Some(l) = self.leader()
        {
            let voters: Vec<_> = self.nodes[&l]
                .rn
                .as_ref()
                .unwrap()
                .raft()
                .tracker
                .voters
                .iter()
                .copied()
                .collect();
            if let Some(to) = self.rng.pick(&voters) {
                let _ = self
                    .nodes
                    .get_mut(&l)
                    .unwrap()
                    .rn
                    .as_mut()
                    .unwrap()
                    .transfer_leader(to);
                self.process(l)?;
            }
        }
        if self.rng.chance(self.p.conf_change) {
            self.membership()?;
        }
        Ok(())
    }

    /// Client `c` sends one request, mostly to the leader: writes are
    /// proposed, reads go through ReadIndex.
    fn client_op(&mut self, c: u64) -> Check {
        let live = self.live();
        let target = if self.rng.chance(0.7) {
            self.leader()
        } else {
            self.rng.pick(&live)
        };
        let Some(node) = target else { return Ok(()) };
        let key = self.rng.range(0, KEYS);
        self.next_val += 1;
        let value = self.next_val;
        // Compare against the current value or revision (as some node sees
        // it) half of the time, so that txns succeed often enough.
        let seen = self
            .rng
            .pick(&live)
            .and_then(|n| self.nodes[&n].sm.kv.map.get(&key).copied());
        let roll = self.rng.range(0, 100);
        let get_pct = 25 + (self.p.read * 100.0) as u64;
        let input = if roll < get_pct {
            Input::Get { key }
        } else if roll < get_pct + 30 {
            Input::Put { key, value }
        } else if roll < get_pct + 40 {
            Input::Delete { key }
        } else {
            let fresh = self.rng.chance(0.5);
            let cmp = if self.rng.chance(0.5) {
                Cmp::Value(if fresh {
                    seen.map(|s| s.0)
                } else {
                    Some(self.rng.range(1, value))
                })
            } else {
                Cmp::ModRevision(if fresh {
                    seen.map_or(0, |s| s.1)
                } else {
                    self.rng.range(0, 50)
                })
            };
            Input::Txn { key, cmp, value }
        };
        let deadline = self.now + CLIENT_TIMEOUT_TICKS * UNITS_PER_TICK;
        let inc = self.nodes[&node].incarnation;
        let op = self.clients.call(c, input, node, inc, deadline);
        if self.p.unsafe_local_reads && matches!(input, Input::Get { .. }) {
            let out = self.nodes.get_mut(&node).unwrap().sm.kv.apply(&input);
            self.clients.answer(op, node, inc, out);
            return Ok(());
        }
        let rn = self.nodes.get_mut(&node).unwrap().rn.as_mut().unwrap();
        let res = if let Input::Get { .. } = input {
            let ctx = op.to_le_bytes().to_vec();
            self.chk.on_read_issued(ctx.clone());
            rn.read_index(ctx)
        } else {
            rn.propose(Cmd::encode_op(c, op, &input))
        };
        if res.is_err() {
            self.clients.refused(op);
        }
        self.process(node)
    }

    /// Check the recorded client history for linearizability.
    fn check_history(&self) -> Check {
        let h = self.clients.history();
        match skiff_linearizability::check(&h, 2_000_000) {
            Outcome::Linearizable => Ok(()),
            Outcome::Illegal { key, detail } => {
                Err(format!("history not linearizable on key {key}:\n{detail}"))
            }
            Outcome::Unknown { key } => Err(format!(
                "linearizability check gave up on key {key} ({} ops)",
                h.len()
            )),
        }
    }

    /// Grow with a spare as learner, promote caught-up learners, or remove
    /// a voter (possibly the leader itself).
    fn membership(&mut self) -> Check {
        let Some(l) = self.leader() else {
            return Ok(());
        };
        let r = self.nodes[&l].rn.as_ref().unwrap().raft();
        let learners: Vec<_> = r
            .tracker
            .learners
            .iter()
            .copied()
            .filter(|&x| r.learner_caught_up(x))
            .collect();
        let voters: Vec<_> = r.tracker.voters.iter().copied().collect();
        let spare = (1..=self.p.voters + self.p.spares).find(|id| !self.nodes.contains_key(id));
        let cc = if let Some(x) = self.rng.pick(&learners) {
            ConfChange {
                kind: ConfChangeKind::AddVoter,
                node_id: x,
                context: vec![],
            }
        } else if let Some(s) = spare.filter(|_| self.rng.chance(0.5)) {
            ConfChange {
                kind: ConfChangeKind::AddLearner,
                node_id: s,
                context: vec![],
            }
        } else if voters.len() > 3 {
            let v = self.rng.pick(&voters).unwrap();
            ConfChange {
                kind: ConfChangeKind::Remove,
                node_id: v,
                context: vec![],
            }
        } else {
            return Ok(());
        };
        let res = self
            .nodes
            .get_mut(&l)
            .unwrap()
            .rn
            .as_mut()
            .unwrap()
            .propose_conf_change(&cc);
        if res.is_ok() {
            self.stats.conf_changes += 1;
            if cc.kind == ConfChangeKind::Remove && cc.node_id == l {
                self.stats.leader_removals += 1;
            }
            self.log(|| format!("{l} proposes {cc:?}"));
            if cc.kind == ConfChangeKind::AddLearner && !self.joined.contains(&cc.node_id) {
                self.joined.insert(cc.node_id);
                self.start_node(cc.node_id);
            }
        }
        self.process(l)
    }

    fn advance_tick(&mut self) -> Check {
        for _ in 0..UNITS_PER_TICK {
            self.now += 1;
            self.deliver_due()?;
        }
        self.clients.expire(self.now);
        self.tick_all()
    }

    /// Run the fault phase, then heal everything and require progress.
    pub fn run(&mut self) -> Check {
        for _ in 0..self.p.fault_ticks {
            self.advance_tick()?;
            self.faults()?;
            self.clients()?;
        }
        // Heal: reconnect, restart everyone, stop losing messages.
        self.p.drop = 0.0;
        self.p.dup = 0.0;
        self.p.long_delay = 0.0;
        for g in self.group.values_mut() {
            *g = 0;
        }
        let down: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.rn.is_none())
            .map(|(&id, _)| id)
            .collect();
        for id in down {
            self.restart(id);
        }
        for n in self.nodes.values_mut() {
            n.crash_in_next_ready = false;
        }
        let mut marker: Option<(NodeId, Vec<u8>, u64)> = None;
        for t in 0..self.p.liveness_ticks {
            self.advance_tick()?;
            let Some(l) = self.leader() else { continue };
            match &marker {
                None => {
                    self.next_val += 1;
                    let v = self.next_val.to_le_bytes().to_vec();
                    if self
                        .nodes
                        .get_mut(&l)
                        .unwrap()
                        .rn
                        .as_mut()
                        .unwrap()
                        .propose(v.clone())
                        .is_ok()
                    {
                        let idx = self.nodes[&l]
                            .rn
                            .as_ref()
                            .unwrap()
                            .raft()
                            .raft_log
                            .last_index();
                        marker = Some((l, v, idx));
                    }
                    self.process(l)?;
                }
                Some((_, _, idx)) => {
                    // Done once every member of the leader's configuration
                    // applied past the marker (it may have been lost with a
                    // leader change: then propose again).
                    let r = self.nodes[&l].rn.as_ref().unwrap().raft();
                    let members: Vec<_> = r.tracker.progress.keys().copied().collect();
                    if members
                        .iter()
                        .all(|m| self.nodes.get(m).is_some_and(|n| n.sm.index >= *idx))
                    {
                        self.stats.ticks_to_recover = t;
                        self.converged(&members)?;
                        return self.check_history();
                    }
                    if t % 50 == 49 {
                        marker = None; // retry the proposal
                    }
                }
            }
        }
        Err(format!(
            "liveness: no commit on all members within {} ticks after healing (leader {:?})\n{}",
            self.p.liveness_ticks,
            self.leader(),
            self.describe()
        ))
    }

    /// One line per node, for failure reports.
    fn describe(&self) -> String {
        let mut out = String::new();
        let l = self.leader();
        for (id, n) in &self.nodes {
            let Some(rn) = n.rn.as_ref() else {
                out += &format!("  {id}: down\n");
                continue;
            };
            let r = rn.raft();
            let pr = l
                .and_then(|l| self.nodes[&l].rn.as_ref())
                .and_then(|lr| lr.raft().tracker.progress.get(id).cloned());
            out += &format!(
                "  {id}: {:?} term {} lead {} commit {} applied {} first {} last {} voters {:?} learners {:?} | leader's progress {:?}\n",
                r.state,
                r.term,
                r.lead,
                r.raft_log.committed(),
                n.sm.index,
                r.raft_log.first_index(),
                r.raft_log.last_index(),
                r.tracker.voters,
                r.tracker.learners,
                pr.map(|p| (
                    p.state,
                    p.matched,
                    p.next_idx,
                    p.probe_sent,
                    p.pending_snapshot,
                    p.snapshot_sent,
                    p.snapshot_acked,
                    p.inflights.count()
                ))
            );
        }
        out
    }

    fn converged(&self, members: &[NodeId]) -> Check {
        let first = &self.nodes[&members[0]].sm;
        for m in members {
            let sm = &self.nodes[m].sm;
            if sm.index == first.index && sm.hash != first.hash {
                return Err(format!(
                    "final state machines differ: {} vs {m}",
                    members[0]
                ));
            }
        }
        Ok(())
    }
}
