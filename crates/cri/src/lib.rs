//! CRI v1 (`runtime.v1`): the subset of Kubernetes' Container Runtime Interface
//! that Skiff's kubelet and embedded runtime use. Field numbers and names are
//! upstream's, so any CRI client (crictl) or runtime (containerd) interoperates.

#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}
pub use v1::*;

/// gRPC's health service, which the kubelet's grpc probes call.
#[allow(clippy::all)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
