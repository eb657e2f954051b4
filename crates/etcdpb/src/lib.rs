//! Wire types of the etcd v3 API (`mvccpb`, `etcdserverpb`) and Skiff's own log
//! records (`skiffpb`). Generated from `proto/` at build time.
//!
//! Byte fields are `bytes::Bytes`, so keys and values are shared, not copied,
//! between the store's history, watch events and responses.

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod skiffpb {
    tonic::include_proto!("skiffpb");
}

pub use etcdserverpb::*;
pub use mvccpb::{Event, KeyValue};
