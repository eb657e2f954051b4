//! The sequential specification of one key of an etcd-like store.
//!
//! Each key holds at most one value with the revision of its last
//! modification (`mod_revision`). Writes that succeed report the new
//! revision, which must grow along the linearization. A write that timed
//! out leaves the revision unknown until a later read reveals it, so
//! compares on `mod_revision` against an unknown revision may go either
//! way: the model is nondeterministic there, never wrongly strict.

/// What a client asked. Values are opaque numbers (tests make them unique).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Put {
        key: u64,
        value: u64,
    },
    Get {
        key: u64,
    },
    Delete {
        key: u64,
    },
    /// `if cmp(key) then put(key, value)`; read-only when the compare fails.
    Txn {
        key: u64,
        cmp: Cmp,
        value: u64,
    },
}

impl Input {
    pub fn key(&self) -> u64 {
        match *self {
            Input::Put { key, .. }
            | Input::Get { key }
            | Input::Delete { key }
            | Input::Txn { key, .. } => key,
        }
    }
}

/// A txn guard, as etcd's `Compare` on the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `value == v`; `None` means "the key does not exist".
    Value(Option<u64>),
    /// `mod_revision == r`; 0 means "the key does not exist", as in etcd.
    ModRevision(u64),
}

/// What the store answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    Put {
        revision: u64,
    },
    /// `(value, mod_revision)`, or `None` when the key does not exist.
    Get(Option<(u64, u64)>),
    Delete {
        deleted: bool,
    },
    Txn {
        succeeded: bool,
        revision: u64,
    },
}

/// One key's state: `None` when absent, else its value and its
/// mod_revision when known.
pub type State = Option<(u64, Option<u64>)>;

/// Every state the key may be in after `input` answered `output` (`None`
/// for an unknown outcome) from state `s`; empty when the answer is
/// impossible from `s`.
pub fn step(s: State, input: &Input, output: Option<&Output>) -> Vec<State> {
    let newer = |rev: u64| match s {
        Some((_, Some(r))) => rev > r,
        _ => true,
    };
    match (*input, output) {
        (Input::Put { value, .. }, Some(&Output::Put { revision })) => {
            if newer(revision) {
                vec![Some((value, Some(revision)))]
            } else {
                vec![]
            }
        }
        (Input::Put { value, .. }, None) => vec![Some((value, None))],
        (Input::Get { .. }, Some(&Output::Get(got))) => match (s, got) {
            (None, None) => vec![None],
            (Some((v, r)), Some((gv, gr))) if v == gv && r.is_none_or(|r| r == gr) => {
                vec![Some((v, Some(gr)))]
            }
            _ => vec![],
        },
        (Input::Get { .. }, None) => vec![s],
        (Input::Delete { .. }, Some(&Output::Delete { deleted })) => {
            if deleted == s.is_some() {
                vec![None]
            } else {
                vec![]
            }
        }
        (Input::Delete { .. }, None) => vec![None],
        (
            Input::Txn { cmp, value, .. },
            Some(&Output::Txn {
                succeeded,
                revision,
            }),
        ) => match compare(s, cmp) {
            Some(c) if c != succeeded => vec![],
            _ if !succeeded => vec![s],
            _ if newer(revision) => vec![Some((value, Some(revision)))],
            _ => vec![],
        },
        (Input::Txn { cmp, value, .. }, None) => match compare(s, cmp) {
            Some(true) => vec![Some((value, None))],
            Some(false) => vec![s],
            None => vec![s, Some((value, None))],
        },
        // An answer of the wrong kind can never be explained.
        _ => vec![],
    }
}

/// The compare's result in state `s`, `None` when it depends on a revision
/// the history has not revealed.
fn compare(s: State, cmp: Cmp) -> Option<bool> {
    match (cmp, s) {
        (Cmp::Value(want), s) => Some(want == s.map(|(v, _)| v)),
        (Cmp::ModRevision(0), s) => Some(s.is_none()),
        (Cmp::ModRevision(_), None) => Some(false),
        (Cmp::ModRevision(r), Some((_, Some(have)))) => Some(r == have),
        (Cmp::ModRevision(_), Some((_, None))) => None,
    }
}
