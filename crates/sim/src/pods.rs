//! The fake kubelet: one watch over all bound pods (`spec.nodeName!=`), and
//! for those on our nodes, Pending → Running after the startup delay, and the
//! final delete (grace period 0) once the API server marks them deleting.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use parking::Inflight;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::Config;

/// Pods we are already acting on, so repeated watch events do not double the work.
mod parking {
    use std::collections::HashSet;
    use std::sync::Mutex;
    #[derive(Default)]
    pub struct Inflight(Mutex<HashSet<String>>);
    impl Inflight {
        /// True if `key` was not in flight (and now is).
        pub fn claim(&self, key: &str) -> bool {
            self.0.lock().unwrap().insert(key.to_string())
        }
        pub fn release(&self, key: &str) {
            self.0.lock().unwrap().remove(key);
        }
    }
}

pub(crate) async fn drive(client: kube::Client, config: Arc<Config>, faults: Arc<crate::faults::Faults>) -> Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    let ours: Arc<HashSet<String>> = Arc::new((0..config.nodes).map(|i| config.node_name(i)).collect());
    let inflight = Arc::new(Inflight::default());
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let ip_counter = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let wc = watcher::Config::default().fields("spec.nodeName!=");
    let mut stream = watcher::watcher(api.clone(), wc).default_backoff().boxed();
    while let Some(ev) = stream.next().await {
        let pod = match ev {
            Ok(Event::Apply(p)) | Ok(Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch");
                continue;
            }
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
        if !ours.contains(&node) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        // In-flight work is keyed by UID: a StatefulSet recreates a pod under
        // the same name while the old one's deletion is still in flight, and
        // the new pod's events must not be mistaken for the old one's.
        let key = pod.metadata.uid.clone().unwrap_or_else(|| format!("{ns}/{name}"));
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let deleting = pod.metadata.deletion_timestamp.is_some();
        if !deleting && phase != "Pending" && !phase.is_empty() {
            continue;
        }
        if !inflight.claim(&key) {
            continue;
        }
        let (api, config, inflight, limit, ips) = (Api::<Pod>::namespaced(client.clone(), &ns), config.clone(), inflight.clone(), limit.clone(), ip_counter.clone());
        let faults = faults.clone();
        tokio::spawn(async move {
            let (mut pod, mut deleting) = (pod, deleting);
            let idx = node_index(&node);
            if faults.node_down(idx) {
                // A dead kubelet does nothing; once it is back it acts on the pod as it is then.
                while faults.node_down(idx) {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                match api.get_opt(&name).await {
                    Ok(Some(p)) if p.metadata.uid.as_deref() == Some(key.as_str()) => {
                        let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
                        deleting = p.metadata.deletion_timestamp.is_some();
                        pod = p;
                        if !deleting && phase != "Pending" && !phase.is_empty() {
                            return inflight.release(&key);
                        }
                    }
                    _ => return inflight.release(&key),
                }
            }
            if !deleting {
                tokio::time::sleep(config.pod_startup_delay).await;
            }
            let _permit = limit.acquire().await;
            let result = if deleting {
                let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                match api.delete(&name, &dp).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    r => r.map(|_| ()),
                }
            } else {
                let ip = ips.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut status = running_status(&pod, &node, ip);
                let crashed = faults.pod_fails(&key);
                if crashed {
                    status = crate::faults::crashed_status(&pod, &status);
                }
                let r = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                if let (Ok(running), Some((after, code)), false) = (&r, crate::exit::planned(&pod), crashed) {
                    tokio::spawn(exit_later(api.clone(), running.clone(), after, code));
                }
                r.map(|_| ())
            };
            if let Err(e) = &result {
                tracing::warn!(pod = %name, uid = %key, error = %e, "driving pod");
                tokio::time::sleep(crate::RETRY).await;
            }
            // Released either way: the next watch event (Running, or gone)
            // decides whether there is more to do.
            inflight.release(&key);
        });
    }
    Ok(())
}

/// Report the pod's containers as exited after `after` (see `crate::exit`).
async fn exit_later(api: Api<Pod>, pod: Pod, after: std::time::Duration, code: i32) {
    tokio::time::sleep(after).await;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = crate::exit::exited_status(&pod, code);
    if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await {
        tracing::warn!(pod = %name, error = %e, "reporting exit");
    }
}

fn node_index(node: &str) -> usize {
    node.rsplit(|c: char| !c.is_ascii_digit()).next().and_then(|d| d.parse().ok()).unwrap_or(0)
}

/// The status a kubelet reports once every container is up.
fn running_status(pod: &Pod, node: &str, ip: u32) -> Value {
    let now = serde_json::to_value(crate::now()).unwrap();
    let pod_ip = format!("10.{}.{}.{}", 128 + (ip >> 16) % 64, (ip >> 8) & 255, ip & 255);
    let host_ip = crate::node::node_ip(node_index(node));
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let cond = |t: &str| json!({ "type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now });
    let container = |c: &k8s_openapi::api::core::v1::Container, init: bool| {
        let state = if init {
            json!({ "terminated": { "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now, "containerID": format!("sim://{uid}-{}", c.name) } })
        } else {
            json!({ "running": { "startedAt": now } })
        };
        json!({
            "name": c.name, "image": c.image, "imageID": format!("sim://{}", c.image.clone().unwrap_or_default()),
            "containerID": format!("sim://{uid}-{}", c.name), "ready": !init, "started": !init, "restartCount": 0, "state": state,
        })
    };
    let containers: Vec<Value> = spec.containers.iter().map(|c| container(c, false)).collect();
    let inits: Vec<Value> = spec.init_containers.iter().flatten().map(|c| container(c, true)).collect();
    let mut status = json!({
        "phase": "Running",
        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
        "hostIP": host_ip, "hostIPs": [{ "ip": host_ip }],
        "podIP": pod_ip, "podIPs": [{ "ip": pod_ip }],
        "startTime": now,
        "containerStatuses": containers,
        "qosClass": pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| "BestEffort".into()),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = Value::Array(inits);
    }
    json!({ "status": status })
}
