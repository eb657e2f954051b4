//! The scheduler's writes to the API server: bindings (pods/binding),
//! PodScheduled=False + nominatedNodeName (pods/status), events, and
//! graceful deletion of preemption victims.

use k8s_openapi::api::core::v1::{Binding, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::framework::PodInfo;

fn pods(client: &kube::Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

pub async fn bind(client: &kube::Client, pod: &PodInfo, node: &str) -> kube::Result<()> {
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(pod.namespace.clone()), uid: pod.pod.metadata.uid.clone(), ..Default::default() },
        target: ObjectReference { api_version: Some("v1".into()), kind: Some("Node".into()), name: Some(node.into()), ..Default::default() },
    };
    pods(client, &pod.namespace).create_subresource::<_, serde_json::Value>("binding", &name, &PostParams::default(), &binding).await?;
    Ok(())
}

/// PodScheduled=False/Unschedulable with the FitError message, and the nominated node if any.
pub async fn mark_unschedulable(client: &kube::Client, pod: &PodInfo, message: &str, nominated: Option<&str>) -> kube::Result<()> {
    let name = pod.pod.metadata.name.clone().unwrap_or_default();
    let mut status = json!({
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": now()}],
    });
    if let Some(n) = nominated {
        status["nominatedNodeName"] = json!(n);
    }
    let patch = json!({ "status": status });
    pods(client, &pod.namespace).patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    Ok(())
}

/// A core/v1 Event about a pod, from "default-scheduler", as kubectl describe shows them.
pub async fn event(client: &kube::Client, pod: &Pod, type_: &str, reason: &str, message: &str) -> kube::Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let t = now();
    let ev = Event {
        metadata: ObjectMeta { name: Some(format!("{pod_name}.{nanos:x}")), namespace: Some(ns.clone()), ..Default::default() },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod_name),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        source: Some(EventSource { component: Some("default-scheduler".into()), host: None }),
        reporting_component: Some("default-scheduler".into()),
        reporting_instance: Some(hostname()),
        first_timestamp: Some(t.clone()),
        last_timestamp: Some(t),
        count: Some(1),
        ..Default::default()
    };
    Api::<Event>::namespaced(client.clone(), &ns).create(&PostParams::default(), &ev).await?;
    Ok(())
}

/// Graceful delete of a preemption victim (its own grace period), guarded by UID.
pub async fn delete_victim(client: &kube::Client, victim: &PodInfo) -> kube::Result<()> {
    let name = victim.pod.metadata.name.clone().unwrap_or_default();
    let dp = DeleteParams { preconditions: Some(Preconditions { uid: victim.pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
    match pods(client, &victim.namespace).delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}
