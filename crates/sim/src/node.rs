//! Node registration: one Node object per simulated node, created with its
//! status (capacity, allocatable, Ready, addresses, nodeInfo) as a kubelet
//! would report it.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::Config;

/// The node's InternalIP: 10.64.0.0/10 numbered by index, so it is stable.
pub(crate) fn node_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 64 + (i >> 16) % 64, (i >> 8) & 255, i & 255)
}

pub(crate) fn build(config: &Config, i: usize) -> Node {
    let name = config.node_name(i);
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("type", "skiff-sim"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if config.zones > 0 {
        labels.insert("topology.kubernetes.io/zone".into(), format!("zone-{}", i % config.zones));
    }
    labels.extend(config.labels.clone());
    let resources: BTreeMap<String, Quantity> = [("cpu", &config.cpu), ("memory", &config.memory), ("pods", &config.pods), ("ephemeral-storage", &"100Gi".to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
        .collect();
    let now = crate::now();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    Node {
        metadata: ObjectMeta { name: Some(name.clone()), labels: Some(labels), annotations: Some([("skiff.dev/sim".to_string(), "true".to_string())].into()), ..Default::default() },
        spec: Some(NodeSpec { taints: (!config.taints.is_empty()).then(|| config.taints.clone()), ..Default::default() }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            phase: Some("Running".into()),
            conditions: Some(vec![
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ]),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: node_ip(i) },
                NodeAddress { type_: "Hostname".into(), address: name },
            ]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                os_image: "Skiff sim".into(),
                kernel_version: "6.1.0-sim".into(),
                kubelet_version: "v1.33.0-skiff-sim".into(),
                kube_proxy_version: "v1.33.0-skiff-sim".into(),
                container_runtime_version: "sim://1.0.0".into(),
                machine_id: format!("{i:032x}"),
                system_uuid: format!("{i:032x}"),
                boot_id: format!("{i:032x}"),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Create every node (or refresh its status if it already exists), with at
/// most `config.concurrency` requests in flight.
pub(crate) async fn register_all(client: &kube::Client, config: &Config) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let results: Vec<Result<()>> = futures::stream::iter(0..config.nodes)
        .map(|i| {
            let api = api.clone();
            async move { register(&api, config, i).await }
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Register node `i`, retrying transient failures (see [`crate::retry_transient`]).
pub(crate) async fn register(api: &Api<Node>, config: &Config, i: usize) -> Result<()> {
    crate::retry_transient(&format!("registering node {}", config.node_name(i)), || register_once(api, config, i)).await
}

async fn register_once(api: &Api<Node>, config: &Config, i: usize) -> Result<()> {
    let node = build(config, i);
    let name = config.node_name(i);
    let created = match api.create(&PostParams::default(), &node).await {
        Ok(n) => Some(n),
        Err(kube::Error::Api(e)) if e.code == 409 => None,
        Err(e) => return Err(e).with_context(|| format!("creating node {name}")),
    };
    // A server may drop status on create (the status subresource owns it): set it there.
    if created.as_ref().and_then(|n| n.status.as_ref()).and_then(|s| s.allocatable.as_ref()).is_none() {
        let patch = serde_json::json!({ "status": node.status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.with_context(|| format!("setting status of node {name}"))?;
    }
    Ok(())
}
