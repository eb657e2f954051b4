//! Message-by-message behaviour tests for the Raft core.

mod harness;

mod election;
mod membership;
mod read;
mod replication;
mod snapshot;
mod transfer;
