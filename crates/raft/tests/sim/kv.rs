//! The replicated application: a tiny etcd-like KV store applied from
//! committed entries, and the clients whose operations are recorded as a
//! history for the linearizability checker.
//!
//! Clients see the system only from outside: a write is answered when the
//! node it was sent to applies it, a read when that node's ReadIndex came
//! back and it applied up to the read index. A client gives up after a
//! timeout; its write then has an unknown outcome (it may still commit),
//! while a read that was never answered is dropped from the history
//! (reads change nothing).

use std::collections::BTreeMap;

use skiff_linearizability::{Cmp, Input, Operation, Output};
use skiff_raft::NodeId;

/// A log entry's payload: either a client operation or filler.
pub enum Cmd {
    Noop,
    Op { client: u64, id: u64, input: Input },
}

impl Cmd {
    pub fn encode_op(client: u64, id: u64, input: &Input) -> Vec<u8> {
        let mut v = vec![1u8];
        let (tag, key, a, b) = match *input {
            Input::Put { key, value } => (0, key, value, 0),
            Input::Get { key } => (1, key, 0, 0),
            Input::Delete { key } => (2, key, 0, 0),
            Input::Txn {
                key,
                cmp: Cmp::Value(None),
                value,
            } => (3, key, value, 0),
            Input::Txn {
                key,
                cmp: Cmp::Value(Some(c)),
                value,
            } => (4, key, value, c),
            Input::Txn {
                key,
                cmp: Cmp::ModRevision(r),
                value,
            } => (5, key, value, r),
        };
        v.push(tag);
        for x in [client, id, key, a, b] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }

    pub fn decode(d: &[u8]) -> Cmd {
        if d.len() != 42 || d[0] != 1 {
            return Cmd::Noop;
        }
        let w = |i: usize| u64::from_le_bytes(d[2 + 8 * i..10 + 8 * i].try_into().unwrap());
        let (client, id, key, a, b) = (w(0), w(1), w(2), w(3), w(4));
        let input = match d[1] {
            0 => Input::Put { key, value: a },
            1 => Input::Get { key },
            2 => Input::Delete { key },
            3 => Input::Txn {
                key,
                cmp: Cmp::Value(None),
                value: a,
            },
            4 => Input::Txn {
                key,
                cmp: Cmp::Value(Some(b)),
                value: a,
            },
            _ => Input::Txn {
                key,
                cmp: Cmp::ModRevision(b),
                value: a,
            },
        };
        Cmd::Op { client, id, input }
    }
}

/// The state machine: key -> (value, mod_revision), and the store revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub map: BTreeMap<u64, (u64, u64)>,
    pub revision: u64,
    /// Each client's last applied op id (the Raft thesis' client sessions):
    /// the network may duplicate a forwarded proposal, so one op can be
    /// committed twice, and must take effect once.
    pub sessions: BTreeMap<u64, u64>,
}

impl Default for Kv {
    fn default() -> Kv {
        Kv {
            map: BTreeMap::new(),
            revision: 1,
            sessions: BTreeMap::new(),
        }
    }
}

impl Kv {
    /// Apply a committed op once; `None` for a duplicate.
    pub fn apply_once(&mut self, client: u64, id: u64, input: &Input) -> Option<Output> {
        let last = self.sessions.entry(client).or_default();
        if id <= *last {
            return None;
        }
        *last = id;
        Some(self.apply(input))
    }

    pub fn apply(&mut self, input: &Input) -> Output {
        match *input {
            Input::Put { key, value } => {
                self.revision += 1;
                self.map.insert(key, (value, self.revision));
                Output::Put {
                    revision: self.revision,
                }
            }
            Input::Get { key } => Output::Get(self.map.get(&key).copied()),
            Input::Delete { key } => {
                let deleted = self.map.remove(&key).is_some();
                self.revision += deleted as u64;
                Output::Delete { deleted }
            }
            Input::Txn { key, cmp, value } => {
                let cur = self.map.get(&key);
                let succeeded = match cmp {
                    Cmp::Value(v) => v == cur.map(|c| c.0),
                    Cmp::ModRevision(r) => r == cur.map_or(0, |c| c.1),
                };
                if succeeded {
                    self.revision += 1;
                    self.map.insert(key, (value, self.revision));
                }
                Output::Txn {
                    succeeded,
                    revision: self.revision,
                }
            }
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&(self.map.len() as u64).to_le_bytes());
        for (k, (v, r)) in &self.map {
            for x in [*k, *v, *r] {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.sessions.len() as u64).to_le_bytes());
        for (c, id) in &self.sessions {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    /// Decode from the front of `d`; returns the bytes consumed.
    pub fn decode(d: &[u8]) -> (Kv, usize) {
        let w = |i: usize| u64::from_le_bytes(d[8 * i..8 * i + 8].try_into().unwrap());
        let (revision, n) = (w(0), w(1) as usize);
        let map = (0..n)
            .map(|j| (w(2 + 3 * j), (w(3 + 3 * j), w(4 + 3 * j))))
            .collect();
        let at = 2 + 3 * n;
        let m = w(at) as usize;
        let sessions = (0..m)
            .map(|j| (w(at + 1 + 2 * j), w(at + 2 + 2 * j)))
            .collect();
        (
            Kv {
                map,
                revision,
                sessions,
            },
            8 * (at + 1 + 2 * m),
        )
    }
}

/// Where an operation waits for its answer.
struct Pending {
    hist: usize,
    node: NodeId,
    incarnation: u64,
    deadline: u64,
}

/// The clients and the history they record.
#[derive(Default)]
pub struct Clients {
    /// Entries of reads that were never answered become `None`.
    history: Vec<Option<Operation>>,
    pending: BTreeMap<u64, Pending>,
    /// client -> op id in flight.
    busy: BTreeMap<u64, u64>,
    /// Logical time: one tick per call or return, so real-time order in the
    /// simulation is exact.
    clock: u64,
    next_id: u64,
    pub answered: u64,
    pub timed_out: u64,
}

impl Clients {
    pub fn is_busy(&self, client: u64) -> bool {
        self.busy.contains_key(&client)
    }

    /// Record a call; returns the op id.
    pub fn call(
        &mut self,
        client: u64,
        input: Input,
        node: NodeId,
        inc: u64,
        deadline: u64,
    ) -> u64 {
        self.next_id += 1;
        self.clock += 1;
        let id = self.next_id;
        self.history.push(Some(Operation {
            client,
            input,
            call: self.clock,
            ret: None,
            output: None,
        }));
        self.pending.insert(
            id,
            Pending {
                hist: self.history.len() - 1,
                node,
                incarnation: inc,
                deadline,
            },
        );
        self.busy.insert(client, id);
        id
    }

    /// The request never reached the system (refused locally): forget it.
    pub fn refused(&mut self, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            let op = self.history[p.hist].take().unwrap();
            self.busy.remove(&op.client);
        }
    }

    /// Node `node` (in incarnation `inc`) answers op `id`, if it is the one
    /// the client is waiting on.
    pub fn answer(&mut self, id: u64, node: NodeId, inc: u64, out: Output) {
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        if p.node != node || p.incarnation != inc {
            return;
        }
        let p = self.pending.remove(&id).unwrap();
        self.clock += 1;
        let op = self.history[p.hist].as_mut().unwrap();
        op.ret = Some(self.clock);
        op.output = Some(out);
        self.busy.remove(&op.client);
        self.answered += 1;
    }

    pub fn input(&self, id: u64) -> Option<Input> {
        let p = self.pending.get(&id)?;
        self.history[p.hist].as_ref().map(|o| o.input)
    }

    /// Give up on operations past their deadline.
    pub fn expire(&mut self, now: u64) {
        let late: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let p = self.pending.remove(&id).unwrap();
            let op = self.history[p.hist].as_ref().unwrap();
            self.busy.remove(&op.client);
            if matches!(op.input, Input::Get { .. }) {
                self.history[p.hist] = None;
            }
            self.timed_out += 1;
        }
    }

    /// The history; reads still waiting are left out, writes still waiting
    /// have unknown outcomes.
    pub fn history(&self) -> Vec<Operation> {
        let waiting_reads: Vec<usize> = self
            .pending
            .values()
            .map(|p| p.hist)
            .filter(|&h| {
                matches!(
                    self.history[h].as_ref().map(|o| o.input),
                    Some(Input::Get { .. })
                )
            })
            .collect();
        self.history
            .iter()
            .enumerate()
            .filter(|(i, _)| !waiting_reads.contains(i))
            .filter_map(|(_, o)| o.clone())
            .collect()
    }
}
