//! Skiff's store: etcd's data model and API, hand-written.
//!
//! - [`state`]: the deterministic MVCC state machine (revisions, history,
//!   txns, compaction, leases). Everything else feeds it or reads it.
//! - [`wal`] and [`snapshot`]: durability: a checksummed write-ahead log of
//!   commands, and periodic snapshots of the state machine.
//! - [`store`]: the in-process handle: group-committed writes, reads, watches
//!   and the lessor. The API server uses this directly.
//! - [`grpc`]: the etcd v3 gRPC face (`skiff store`).

pub mod error;
pub mod keyrange;
pub mod state;

pub use error::{Result, StoreError};
pub use keyrange::{prefix_end, KeyRange};
pub use state::StateMachine;
