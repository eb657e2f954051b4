//! Skiff's kube-apiserver: the Kubernetes REST API over the store.
//!
//! - [`kv`]: the store as the API server sees it (what etcd's API offers),
//!   with the embedded store as one implementation.
//! - [`storage`]: objects in keys, resourceVersion = mod_revision.
//! - [`resources`]: the built-in resource table; [`discovery`] serves it
//!   (legacy and aggregated), [`openapi`] serves its schemas (v2 and v3).
//! - [`handlers`]: the REST verbs; [`patch`], [`selector`], [`table`],
//!   [`meta`] and [`status`] are their parts.
//! - [`rawjson`] and [`list_body`]: reads and lists written from the stored
//!   bytes (resourceVersion spliced in), not re-serialized per request.
//! - [`codec`]: protobuf request bodies and responses (`skiff_k8sproto`).
//! - [`certs`] and [`server`]: PKI, kubeconfig, HTTPS; [`authn`]: who a
//!   request is (admin token, service-account JWTs).

pub mod admission;
pub mod apply;
pub mod authn;
pub mod bootstrap;
pub mod cached;
pub mod certs;
pub mod codec;
pub mod compactor;
pub mod delete_options;
pub mod discovery;
pub mod handlers;
pub mod inflight;
pub mod etcd;
pub mod kubelet_client;
pub mod kv;
pub mod label_selector;
pub mod list_body;
pub mod meta;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod quantity;
pub mod rawjson;
pub mod resources;
pub mod selector;
pub mod smp;
pub mod server;
pub mod status;
pub mod storage;
pub mod subresources;
pub mod table;
pub mod typed;
pub mod watch_cache;

pub use server::{serve, AppState};
