//! Skiff's store: etcd's data model and API, hand-written.
//!
//! - [`state`]: the deterministic MVCC state machine (revisions, history,
//!   txns, compaction, leases). Everything else feeds it or reads it.
//! - [`wal`] and [`snapshot`] (framed by [`record`]): durability: a
//!   checksummed write-ahead log of commands, and snapshots of the state.
//! - [`store`]: the in-process handle: group-committed writes, reads,
//!   watchers and the lessor. The API server uses this directly.
//! - [`cluster`]: Raft under the store (multi-member `skiff store`).
//! - [`grpc`]: the etcd v3 gRPC face (`skiff store`).

pub mod cluster;
pub mod error;
pub mod grpc;
pub mod keyrange;
pub mod metrics;
pub mod record;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod wal;

pub use error::{Result, StoreError};
pub use keyrange::{prefix_end, KeyRange};
pub use state::StateMachine;
pub use store::{Config, Store, WatchBatch, WatchEnd, WatchOptions, Watcher};
