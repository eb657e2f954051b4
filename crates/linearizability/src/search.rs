//! The search: depth-first over "which operation takes effect next",
//! memoizing (set of operations already linearized, model state) pairs so
//! no configuration is explored twice (Lowe's improvement of Wing–Gong,
//! as Porcupine does it).

use std::collections::{BTreeMap, HashSet};

use crate::Operation;
use crate::model::{State, step};

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Linearizable,
    /// No order explains key `key`; `detail` shows the longest prefix that
    /// could be linearized and the operations that could not follow it.
    Illegal {
        key: u64,
        detail: String,
    },
    /// The search gave up after its step budget (history too concurrent).
    Unknown {
        key: u64,
    },
}

/// Check a whole history, one key at a time. `budget` bounds the number of
/// search configurations per key.
pub fn check(history: &[Operation], budget: u64) -> Outcome {
    let mut keys: BTreeMap<u64, Vec<Operation>> = BTreeMap::new();
    for op in history {
        keys.entry(op.input.key()).or_default().push(op.clone());
    }
    let mut unknown = None;
    for (key, ops) in keys {
        match check_key(key, &ops, budget) {
            Outcome::Linearizable => {}
            o @ Outcome::Illegal { .. } => return o,
            o @ Outcome::Unknown { .. } => unknown = unknown.or(Some(o)),
        }
    }
    unknown.unwrap_or(Outcome::Linearizable)
}

/// One search frame: the moves still to try from a configuration.
struct Frame {
    moves: Vec<(usize, State)>,
    next: usize,
    /// The op this frame's configuration linearized last (to undo it).
    via: Option<usize>,
}

/// Check the operations of one key (all must be on `key`), starting from an
/// absent key.
pub fn check_key(key: u64, ops: &[Operation], budget: u64) -> Outcome {
    let mut ops: Vec<&Operation> = ops.iter().collect();
    ops.sort_by_key(|o| o.call);
    let n = ops.len();
    let known = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut lin = vec![0u64; n.div_ceil(64)];
    let mut done_known = 0;
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut path: Vec<usize> = Vec::new();
    let mut best: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut stack = vec![Frame {
        moves: moves(&ops, &lin, None),
        next: 0,
        via: None,
    }];
    while let Some(top) = stack.last_mut() {
        if done_known == known {
            return Outcome::Linearizable;
        }
        let Some(&(i, s)) = top.moves.get(top.next) else {
            // Dead end: undo the move that led here.
            let f = stack.pop().unwrap();
            if let Some(i) = f.via {
                lin[i / 64] &= !(1 << (i % 64));
                done_known -= ops[i].ret.is_some() as usize;
                path.pop();
            }
            continue;
        };
        top.next += 1;
        lin[i / 64] |= 1 << (i % 64);
        if !seen.insert((lin.clone(), s)) {
            lin[i / 64] &= !(1 << (i % 64));
            continue;
        }
        steps += 1;
        if steps > budget {
            return Outcome::Unknown { key };
        }
        done_known += ops[i].ret.is_some() as usize;
        path.push(i);
        if path.len() > best.len() {
            best = path.clone();
        }
        stack.push(Frame {
            moves: moves(&ops, &lin, s),
            next: 0,
            via: Some(i),
        });
    }
    Outcome::Illegal {
        key,
        detail: describe(&ops, &best),
    }
}

/// The moves possible next: every operation not yet linearized that was
/// called before the earliest return among the pending answered ones, with
/// every state the model allows it to produce.
fn moves(ops: &[&Operation], lin: &[u64], s: State) -> Vec<(usize, State)> {
    let pending = |i: usize| lin[i / 64] & (1 << (i % 64)) == 0;
    let min_ret = (0..ops.len())
        .filter(|&i| pending(i))
        .filter_map(|i| ops[i].ret)
        .min()
        .unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if op.call > min_ret {
            break; // sorted by call
        }
        if pending(i) {
            for next in step(s, &op.input, op.output.as_ref()) {
                out.push((i, next));
            }
        }
    }
    out
}

fn describe(ops: &[&Operation], best: &[usize]) -> String {
    let mut out = String::from("longest linearizable prefix:\n");
    let mut s: State = None;
    for &i in best {
        let o = ops[i];
        s = step(s, &o.input, o.output.as_ref())
            .into_iter()
            .next()
            .unwrap_or(s);
        out += &format!("  {o:?} -> {s:?}\n");
    }
    out += "cannot continue with any of:\n";
    let rest: Vec<_> = (0..ops.len()).filter(|i| !best.contains(i)).collect();
    for i in rest.into_iter().take(8) {
        out += &format!("  {:?}\n", ops[i]);
    }
    out
}
