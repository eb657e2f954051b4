//! Linearizability checking for etcd-like key-value histories.
//!
//! A history is a list of [`Operation`]s: what a client asked
//! ([`Input`]), when it asked and when it got its answer (any totally
//! ordered clock: logical counters work best, since ties are ambiguous),
//! and the answer ([`Output`]), or no answer at all when the client gave up
//! (a timeout: the write may or may not have happened).
//!
//! [`check`] decides whether some total order of the operations, each
//! taking effect at one instant between its call and its return, explains
//! every answer under the [`model`] of a KV store (the Wing–Gong search
//! with Lowe's memoization, as in Porcupine). Every operation touches one
//! key and keys are independent, so the history is split per key first;
//! this keeps each search small.

pub mod model;
mod search;

pub use model::{Cmp, Input, Output, State};
pub use search::{Outcome, check, check_key};

/// One client operation as observed from outside the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub input: Input,
    /// When the client sent the request.
    pub call: u64,
    /// When the client got the answer; `None` when it never did (timed
    /// out), so the operation may take effect at any later time, or never.
    pub ret: Option<u64>,
    /// The answer; `None` exactly when `ret` is `None`.
    pub output: Option<Output>,
}
