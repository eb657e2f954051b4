//! A tiny synchronous network for message-by-message tests.
//!
//! Every node's `Ready` is handled exactly per the contract (persist into
//! its `MemStorage`, then queue messages, then apply), and `deliver` pumps
//! the queue until it is empty. Tests cut links or drop message types to
//! build scenarios, or pull messages out one at a time with `take`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use skiff_raft::{
    ConfChange, ConfState, Config, Entry, EntryKind, MemStorage, Message, MessageType, NodeId,
    RawNode, ReadState, StateRole,
};

pub struct Node {
    pub rn: RawNode<MemStorage>,
    pub store: MemStorage,
    /// Data of applied normal entries (no-ops skipped).
    pub applied: Vec<Vec<u8>>,
    pub read_states: Vec<ReadState>,
}

/// Sees (and may rewrite) a message in flight; returning true drops it.
pub type Filter = Box<dyn FnMut(&mut Message) -> bool>;

pub struct Net {
    pub nodes: BTreeMap<NodeId, Node>,
    /// Directed links that lose everything.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub drop_types: BTreeSet<MessageType>,
    pub filter: Option<Filter>,
    pub queue: VecDeque<Message>,
    /// Every message that was delivered, in order.
    pub delivered: Vec<Message>,
    pub base: Config,
}

pub fn config(id: NodeId) -> Config {
    Config {
        id,
        election_tick: 10,
        heartbeat_tick: 1,
        seed: 7,
        ..Config::default()
    }
}

impl Net {
    pub fn new(ids: &[NodeId]) -> Net {
        Net::with(ids, |_| {})
    }

    pub fn with(ids: &[NodeId], f: impl Fn(&mut Config)) -> Net {
        let mut base = config(0);
        f(&mut base);
        let mut n = Net {
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            drop_types: BTreeSet::new(),
            filter: None,
            queue: VecDeque::new(),
            delivered: Vec::new(),
            base,
        };
        let cs = ConfState::with_voters(ids.iter().copied());
        for &id in ids {
            n.add(id, MemStorage::new_with_conf_state(cs.clone()));
        }
        n
    }

    /// Add (or restart) node `id` over `store`.
    pub fn add(&mut self, id: NodeId, store: MemStorage) {
        let cfg = Config {
            id,
            applied: store.rl().snapshot_ref().metadata.index,
            ..self.base.clone()
        };
        let rn = RawNode::new(&cfg, store.clone()).unwrap();
        self.nodes.insert(
            id,
            Node {
                rn,
                store,
                applied: Vec::new(),
                read_states: Vec::new(),
            },
        );
    }

    /// Crash and restart `id`: everything not persisted is lost.
    pub fn restart(&mut self, id: NodeId) {
        let store = self.nodes[&id].store.clone();
        self.queue.retain(|m| m.from != id && m.to != id);
        self.add(id, store);
    }

    /// Snapshot node `id` at its applied index with `data` and compact its
    /// log up to there, as the application would periodically.
    pub fn compact(&mut self, id: NodeId, data: &[u8]) {
        let raft = self.nodes[&id].rn.raft();
        let applied = raft.raft_log.applied();
        let cs = raft.tracker.conf_state();
        let mut s = self.nodes[&id].store.wl();
        s.create_snapshot(applied, cs, data.to_vec()).unwrap();
        s.compact(applied).unwrap();
    }

    /// A node joining an existing cluster: empty log, told the voters.
    pub fn add_joining(&mut self, id: NodeId, voters: &[NodeId]) {
        self.add(
            id,
            MemStorage::new_with_conf_state(ConfState::with_voters(voters.iter().copied())),
        );
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    pub fn rn(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        &mut self.nodes.get_mut(&id).unwrap().rn
    }

    pub fn state(&self, id: NodeId) -> StateRole {
        self.nodes[&id].rn.raft().state
    }

    pub fn term(&self, id: NodeId) -> u64 {
        self.nodes[&id].rn.raft().term
    }

    pub fn committed(&self, id: NodeId) -> u64 {
        self.nodes[&id].rn.raft().raft_log.committed()
    }

    pub fn last_index(&self, id: NodeId) -> u64 {
        self.nodes[&id].rn.raft().raft_log.last_index()
    }

    pub fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.rn.raft().state == StateRole::Leader)
            .map(|(&id, _)| id)
            .collect();
        match leaders.as_slice() {
            [] => None,
            [l] => Some(*l),
            _ => {
                // Several nodes may think they lead (stale ones); the highest term wins.
                leaders.into_iter().max_by_key(|&id| self.term(id))
            }
        }
    }

    /// Handle every pending Ready, queueing messages.
    pub fn flush(&mut self) {
        loop {
            let ids: Vec<_> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.rn.has_ready())
                .map(|(&id, _)| id)
                .collect();
            if ids.is_empty() {
                return;
            }
            for id in ids {
                let msgs = self.handle_ready(id);
                self.queue.extend(msgs);
            }
        }
    }

    fn handle_ready(&mut self, id: NodeId) -> Vec<Message> {
        let n = self.nodes.get_mut(&id).unwrap();
        let rd = n.rn.ready();
        {
            let mut s = n.store.wl();
            if let Some(snap) = &rd.snapshot {
                s.apply_snapshot(snap.clone()).unwrap();
            }
            s.append(&rd.entries).unwrap();
            if let Some(hs) = rd.hard_state {
                s.set_hard_state(hs);
            }
        }
        let msgs = rd.messages.clone();
        for e in &rd.committed_entries {
            match e.kind {
                EntryKind::ConfChange => {
                    let cc = ConfChange::decode(&e.data).unwrap();
                    // Membership after the snapshot is recovered by re-applying
                    // the log on restart, so nothing is persisted here.
                    n.rn.apply_conf_change(&cc);
                }
                EntryKind::Normal if !e.data.is_empty() => n.applied.push(e.data.clone()),
                EntryKind::Normal => {}
            }
        }
        n.read_states.extend(rd.read_states.iter().cloned());
        n.rn.advance(rd);
        msgs
    }

    fn allowed(&mut self, m: &mut Message) -> bool {
        if let Some(f) = self.filter.as_mut()
            && f(m)
        {
            return false;
        }
        !self.cut.contains(&(m.from, m.to))
            && !self.drop_types.contains(&m.msg_type)
            && self.nodes.contains_key(&m.to)
    }

    /// Deliver queued messages (and everything they cause) until quiet.
    pub fn deliver(&mut self) {
        self.flush();
        while let Some(mut m) = self.queue.pop_front() {
            if !self.allowed(&mut m) {
                continue;
            }
            self.delivered.push(m.clone());
            let _ = self.rn(m.to).step(m);
            self.flush();
        }
    }

    /// Remove and return queued messages matching `f` (after flushing).
    pub fn take(&mut self, f: impl Fn(&Message) -> bool) -> Vec<Message> {
        self.flush();
        let (hit, keep): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|m| f(m));
        self.queue = keep.into();
        hit
    }

    /// Step one message into its target (bypassing filters) and flush.
    pub fn step(&mut self, m: Message) {
        let _ = self.rn(m.to).step(m);
        self.flush();
    }

    pub fn tick(&mut self, id: NodeId, n: usize) {
        for _ in 0..n {
            self.rn(id).tick();
            self.deliver();
        }
    }

    pub fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            let ids: Vec<_> = self.nodes.keys().copied().collect();
            for id in ids {
                self.rn(id).tick();
            }
            self.deliver();
        }
    }

    pub fn campaign(&mut self, id: NodeId) {
        self.rn(id).campaign().unwrap();
        self.deliver();
    }

    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> skiff_raft::Result<()> {
        let r = self.rn(id).propose(data.to_vec());
        self.deliver();
        r
    }

    /// Cut every link between `a` and `b` groups.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<_> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        for o in ids {
            self.cut.insert((id, o));
            self.cut.insert((o, id));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.drop_types.clear();
        self.filter = None;
    }

    pub fn entries(&self, id: NodeId) -> Vec<Entry> {
        self.nodes[&id].rn.raft().raft_log.all_entries()
    }

    pub fn count_delivered(&self, t: MessageType) -> usize {
        self.delivered.iter().filter(|m| m.msg_type == t).count()
    }
}
