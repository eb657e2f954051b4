//! What the Endpoints and EndpointSlice controllers share: which pods back a
//! Service, which port a pod serves a service port on, and which Services to
//! look at again when a pod changes.
//!
//! Why a memo of pod → services: the informer hands us only a pod's new
//! state, so a pod whose labels stop matching a Service would otherwise never
//! requeue that Service and linger in its endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use parking_lot::Mutex;

use crate::informer::{key_of, Informer};
use crate::queue::Queue;
use crate::util::{is_terminating, pod_phase};

/// The label upstream puts on Endpoints and EndpointSlices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// A Service's selector; `None` means the Service's endpoints are managed by
/// someone else (upstream: a nil selector), so the controllers leave them alone.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

pub fn selects(sel: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true)
}

/// Upstream's `ShouldPodBeInEndpoints`: it has an IP, is not finished, and is
/// not terminating unless terminating pods are wanted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(pod_phase(pod), "Failed" | "Succeeded") {
        return false;
    }
    if pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || !is_terminating(&pod.metadata)
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.pod_ip.as_deref().filter(|ip| !ip.is_empty())
}

/// The pod's port for a service port (upstream's `podutil.FindPort`): a
/// numeric targetPort as is (default: the service port); a named one is looked
/// up among the pod's container ports with the same protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let proto = sp.protocol.as_deref().unwrap_or("TCP");
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers.iter().flat_map(|c| c.ports.iter().flatten()).find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == proto).map(|p| p.container_port)
        }
    }
}

/// Requeues the Services a pod belongs to, now or before its last change.
pub struct PodToServices {
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    last: Mutex<HashMap<String, Vec<String>>>,
}

impl PodToServices {
    pub fn new(services: Arc<Informer<Service>>, pods: Arc<Informer<Pod>>) -> Arc<Self> {
        Arc::new(PodToServices { services, pods, last: Mutex::default() })
    }

    pub fn enqueue(&self, pod: &Pod, q: &Queue) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let now: Vec<String> = self.services.list_ns(ns).iter().filter(|s| selector(s).is_some_and(|sel| selects(sel, pod))).map(|s| key_of(s.as_ref())).collect();
        let pk = key_of(pod);
        // Handlers run after the cache is updated: a pod missing from it was deleted.
        let gone = self.pods.get(pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or("")).is_none();
        let before = {
            let mut last = self.last.lock();
            if now.is_empty() || gone {
                last.remove(&pk)
            } else {
                last.insert(pk, now.clone())
            }
        };
        for k in now.iter().chain(before.iter().flatten()) {
            q.add(k.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus};

    fn pod() -> Pod {
        Pod {
            metadata: Default::default(),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![
                        ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() },
                        ContainerPort { name: Some("dns".into()), container_port: 5353, protocol: Some("UDP".into()), ..Default::default() },
                    ]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus { pod_ip: Some("10.1.2.3".into()), phase: Some("Running".into()), ..Default::default() }),
        }
    }

    #[test]
    fn named_ports_resolve_per_pod_and_protocol() {
        let p = pod();
        let sp = |t: Option<IntOrString>, proto: &str| ServicePort { port: 80, target_port: t, protocol: Some(proto.into()), ..Default::default() };
        assert_eq!(find_port(&p, &sp(None, "TCP")), Some(80));
        assert_eq!(find_port(&p, &sp(Some(IntOrString::Int(9000)), "TCP")), Some(9000));
        assert_eq!(find_port(&p, &sp(Some(IntOrString::String("http".into())), "TCP")), Some(8080));
        assert_eq!(find_port(&p, &sp(Some(IntOrString::String("dns".into())), "UDP")), Some(5353));
        assert_eq!(find_port(&p, &sp(Some(IntOrString::String("dns".into())), "TCP")), None);
        assert_eq!(find_port(&p, &sp(Some(IntOrString::String("nope".into())), "TCP")), None);
    }

    #[test]
    fn finished_ipless_and_terminating_pods_are_left_out() {
        let mut p = pod();
        assert!(should_be_in_endpoints(&p, false));
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(!should_be_in_endpoints(&p, false));
        assert!(should_be_in_endpoints(&p, true));
        let mut p = pod();
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_be_in_endpoints(&p, true));
        let mut p = pod();
        p.status.as_mut().unwrap().pod_ip = None;
        assert!(!should_be_in_endpoints(&p, true));
    }
}
