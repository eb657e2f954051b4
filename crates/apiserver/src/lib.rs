//! Skiff's kube-apiserver: the Kubernetes REST API over the store.
//!
//! - [`kv`]: the store as the API server sees it (what etcd's API offers),
//!   with the embedded store as one implementation.
//! - [`storage`]: objects in keys, resourceVersion = mod_revision.
//! - [`resources`]: the built-in resource table; [`discovery`] serves it.
//! - [`handlers`]: the REST verbs; [`patch`], [`selector`], [`table`],
//!   [`meta`] and [`status`] are their parts.
//! - [`codec`]: protobuf request bodies and responses (`skiff_k8sproto`).
//! - [`certs`] and [`server`]: PKI, kubeconfig, HTTPS and authentication.

pub mod bootstrap;
pub mod certs;
pub mod codec;
pub mod compactor;
pub mod discovery;
pub mod handlers;
pub mod kv;
pub mod meta;
pub mod metrics;
pub mod patch;
pub mod resources;
pub mod selector;
pub mod smp;
pub mod server;
pub mod status;
pub mod storage;
pub mod table;
pub mod typed;

pub use server::{serve, AppState};
