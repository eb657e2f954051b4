//! Node heartbeats: each node's Lease in `kube-node-lease`, renewed every
//! quarter of its duration as the kubelet does, spread over the interval so
//! 5,000 nodes make a steady trickle of writes rather than bursts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::Config;

const NS: &str = "kube-node-lease";

pub(crate) async fn ensure_namespace(client: &kube::Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace { metadata: ObjectMeta { name: Some(NS.into()), ..Default::default() }, ..Default::default() };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Create or renew one node's lease.
async fn renew(api: &Api<Lease>, config: &Config, name: &str) -> Result<()> {
    let patch = serde_json::json!({ "spec": { "renewTime": micro_now() } });
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(config.lease_duration_seconds),
                    renew_time: Some(micro_now()),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

// `.then` yields each renewal as a future on purpose: the stream paces the
// starts one by one, and `buffer_unordered` then runs them concurrently.
#[allow(clippy::async_yields_async)]
pub(crate) async fn renew_forever(client: kube::Client, config: Arc<Config>, faults: Arc<crate::faults::Faults>) {
    let api: Api<Lease> = Api::namespaced(client.clone(), NS);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    // Nodes seen dead, so their revival posts Ready status again.
    let dead: Arc<std::sync::Mutex<std::collections::HashSet<usize>>> = Arc::default();
    let interval = Duration::from_secs((config.lease_duration_seconds as u64 / 4).max(1));
    loop {
        let start = tokio::time::Instant::now();
        let n = config.nodes.max(1);
        // Pace: one node every interval/n, at most `concurrency` in flight.
        let pace = interval / n as u32;
        futures::stream::iter(0..config.nodes)
            .then(|i| {
                let (api, nodes, config, faults, dead) = (api.clone(), nodes.clone(), config.clone(), faults.clone(), dead.clone());
                async move {
                    tokio::time::sleep_until(start + pace * i as u32).await;
                    async move {
                        let name = config.node_name(i);
                        if faults.node_down(i) {
                            if dead.lock().unwrap().insert(i) {
                                tracing::info!(node = %name, "injected failure: node stops heartbeating");
                            }
                            return;
                        }
                        if dead.lock().unwrap().remove(&i) {
                            tracing::info!(node = %name, "injected failure over: node posts Ready again");
                            if let Err(e) = crate::node::register(&nodes, &config, i).await {
                                tracing::warn!(node = %name, error = %format!("{e:#}"), "posting node status");
                            }
                        }
                        if let Err(e) = renew(&api, &config, &name).await {
                            tracing::warn!(node = %name, error = %e, "renewing node lease");
                        }
                    }
                }
            })
            .buffer_unordered(config.concurrency.max(1))
            .for_each(|_| async {})
            .await;
        tokio::time::sleep_until(start + interval).await;
    }
}
