//! `skiff-raft`: a hand-written Raft consensus core in the style of etcd's
//! `raft` package.
//!
//! The core is a *pure, deterministic state machine*: it performs no I/O,
//! spawns no threads, reads no clocks and draws no ambient randomness. Time
//! advances only through [`RawNode::tick`]; the randomized election timeout
//! comes from a PRNG seeded by [`Config::seed`] and kept as state. Feeding
//! the same inputs therefore replays exactly the same run, which is what
//! makes the deterministic simulation in `tests/sim` possible.
//!
//! # Driving a node
//!
//! The application owns the log storage, the network and the state
//! machine. Its loop is:
//!
//! 1. Feed inputs: [`RawNode::tick`] on a timer, [`RawNode::step`] for each
//!    message from a peer, [`RawNode::propose`] / [`RawNode::read_index`] /
//!    [`RawNode::propose_conf_change`] / [`RawNode::transfer_leader`] for
//!    client requests.
//! 2. If [`RawNode::has_ready`], take a [`Ready`] and handle it in this
//!    order (see [`Ready`] for why the order matters):
//!    1. persist `snapshot`, `entries` and `hard_state` durably (fsync);
//!    2. send `messages`;
//!    3. apply `committed_entries` to the state machine (calling
//!       [`RawNode::apply_conf_change`] for conf-change entries) and serve
//!       `read_states` once their index is applied;
//! 3. call [`RawNode::advance`] with the `Ready`.
//!
//! # Layout
//!
//! * `raft` — roles, terms, timers, and routing every message through the
//!   term rules; `election`, `replication`, `follower` and `membership`
//!   each add one concern to it.
//! * `log` / `unstable` / `storage` — the log as persisted entries plus a
//!   not-yet-persisted tail; [`Storage`] is the read-only view of what the
//!   application persisted, [`MemStorage`] an in-memory implementation.
//! * `progress` / `tracker` — the leader's per-follower flow control
//!   (probe / replicate with an inflight window / snapshot) and quorums.
//! * `read_only` — ReadIndex bookkeeping; `snapshot_recv` — reassembly of
//!   chunked snapshots.
//! * `raw_node` / `ready` — the application-facing API.
//!
//! # Testing
//!
//! `tests/behaviour` drives small clusters message by message;
//! `tests/sim` runs seeded whole-cluster simulations with network faults,
//! crashes (including torn writes) and membership changes, checking the
//! Raft safety properties after every step. A failing seed prints a replay
//! command (`SKIFF_SIM_SEED=<n> SKIFF_SIM_TRACE=1 cargo test -p skiff-raft
//! --test sim <scenario>`); `SKIFF_SIM_SEEDS=<n>` changes the seed count
//! and the ignored `soak` test runs 2000 seeds per scenario.

pub mod config;
pub mod error;
pub mod log;
pub mod message;
pub mod progress;
pub mod raft;
pub mod raw_node;
pub mod read_only;
pub mod ready;
pub mod storage;
pub mod tracker;

mod election;
mod follower;
mod membership;
mod replication;
mod rng;
mod snapshot_recv;
mod unstable;

pub use config::Config;
pub use error::{Error, Result, StorageError};
pub use message::{
    ConfChange, ConfChangeKind, ConfState, Entry, EntryKind, HardState, Message, MessageType, NONE,
    NodeId, Snapshot, SnapshotChunk, SnapshotMetadata,
};
pub use progress::{Progress, ProgressState};
pub use raft::{Raft, StateRole};
pub use raw_node::{RawNode, Status};
pub use read_only::{ReadOnlyOption, ReadState};
pub use ready::{Ready, SoftState};
pub use storage::{MemStorage, MemStorageCore, Storage};
