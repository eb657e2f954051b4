//! The Endpoints controller (core/v1 Endpoints, the legacy form kube-proxy
//! and many clients still read).
//!
//! Why: a Service with a selector promises "these pods, on these ports".
//! This controller keeps one Endpoints object per such Service, named like
//! it: ready pods under `addresses`, not-ready ones under
//! `notReadyAddresses` (all under `addresses` with publishNotReadyAddresses),
//! terminating pods left out, named target ports resolved per pod, and
//! addresses with the same port set grouped into one subset, as upstream's
//! RepackSubsets does. Services without a selector are left to their users.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};

use crate::informer::{key_of, split_key};
use crate::service_endpoints::*;
use crate::util::is_pod_ready;
use crate::Ctx;

/// Upstream's maxCapacity: more addresses than this are truncated.
pub const MAX_CAPACITY: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";

pub fn start(ctx: Arc<Ctx>) {
    let q = crate::queue::Queue::new("endpoint", ctx.metrics.clone());
    let qq = q.clone();
    ctx.services.on_change(move |s| qq.add(key_of(s)));
    let qq = q.clone();
    ctx.endpoints.on_change(move |e| qq.add(key_of(e)));
    let (qq, index) = (q.clone(), PodToServices::new(ctx.services.clone(), ctx.pods.clone()));
    ctx.pods.on_change(move |p| index.enqueue(p, &qq));
    crate::queue::run_workers(q, 5, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
    let Some(svc) = ctx.services.get(Some(ns), name) else {
        if ctx.endpoints.get(Some(ns), name).is_some() {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(None);
    };
    if svc.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(sel) = selector(&svc) else { return Ok(None) };
    let pods: Vec<Arc<Pod>> = ctx.pods.list_ns(ns).into_iter().filter(|p| selects(sel, p)).collect();
    let (subsets, truncated) = build_subsets(&svc, &pods);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    // Ours, not a user's: the EndpointSlice mirroring controller must not copy it.
    labels.insert(SKIP_MIRROR_LABEL.into(), "true".into());
    if is_headless(&svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    let existing = ctx.endpoints.get(Some(ns), name);
    let mut annotations = existing.as_ref().and_then(|e| e.metadata.annotations.clone()).unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if let Some(e) = &existing {
        let same = e.subsets.clone().unwrap_or_default() == subsets
            && e.metadata.labels.clone().unwrap_or_default() == labels
            && e.metadata.annotations.clone().unwrap_or_default() == annotations;
        if same {
            return Ok(None);
        }
    }
    let mut ep = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        subsets: Some(subsets),
    };
    let n: usize = ep.subsets.iter().flatten().map(|s| s.addresses.as_ref().map_or(0, Vec::len) + s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
    match existing {
        Some(e) => {
            ep.metadata.resource_version = e.metadata.resource_version.clone();
            tracing::debug!(service = %key, addresses = n, "updating endpoints");
            api.replace(name, &PostParams::default(), &ep).await?;
        }
        None => {
            tracing::debug!(service = %key, addresses = n, "creating endpoints");
            match api.create(&PostParams::default(), &ep).await {
                Ok(_) => {}
                // Created meanwhile (the cache lags): the informer event requeues us.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(None)
}

type PortKey = Vec<(String, i32, String, Option<String>)>;

/// The subsets for `pods`, repacked (addresses with equal port sets share a
/// subset), sorted, and truncated to [`MAX_CAPACITY`] addresses (ready ones kept first).
pub fn build_subsets(svc: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = publish_not_ready(svc);
    let headless = is_headless(svc);
    let svc_name = svc.metadata.name.clone().unwrap_or_default();
    // ports → (ready addresses, not ready addresses)
    let mut groups: BTreeMap<PortKey, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let ps = pod.spec.clone().unwrap_or_default();
        let hostname = match (&ps.hostname, &ps.subdomain) {
            (Some(h), Some(sd)) if headless && !h.is_empty() && *sd == svc_name => Some(h.clone()),
            _ => None,
        };
        let addr = EndpointAddress {
            ip: ip.to_owned(),
            hostname,
            node_name: ps.node_name.clone(),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let ports = spec.ports.clone().unwrap_or_default();
        let mut key: PortKey = Vec::new();
        for sp in &ports {
            match find_port(pod, sp) {
                Some(p) => key.push((sp.name.clone().unwrap_or_default(), p, sp.protocol.clone().unwrap_or_else(|| "TCP".into()), sp.app_protocol.clone())),
                None => tracing::debug!(pod = ?pod.metadata.name, port = ?sp.name, "pod has no such port"),
            }
        }
        // A pod that serves none of the ports is no endpoint, except for a headless Service without ports.
        if key.is_empty() && !(ports.is_empty() && headless) {
            continue;
        }
        key.sort();
        let g = groups.entry(key).or_default();
        if tolerate_unready || is_pod_ready(pod) {
            g.0.push(addr);
        } else {
            g.1.push(addr);
        }
    }
    let mut budget = MAX_CAPACITY;
    let total: usize = groups.values().map(|(r, n)| r.len() + n.len()).sum();
    let mut out = Vec::new();
    let mut groups: Vec<_> = groups.into_iter().collect();
    // Ready addresses get the capacity first.
    for (_, (ready, _)) in groups.iter_mut() {
        ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        ready.truncate(budget);
        budget -= ready.len();
    }
    for (ports, (ready, mut not_ready)) in groups {
        not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        not_ready.truncate(budget);
        budget -= not_ready.len();
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        let ports: Vec<EndpointPort> =
            ports.into_iter().map(|(name, port, protocol, app_protocol)| EndpointPort { name: (!name.is_empty()).then_some(name), port, protocol: Some(protocol), app_protocol }).collect();
        out.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    (out, total > MAX_CAPACITY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn pod(name: &str, ip: &str, ready: bool, http_port: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), ports: Some(vec![ContainerPort { name: Some("http".into()), container_port: http_port, ..Default::default() }]), ..Default::default() }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition { type_: "Ready".into(), status: if ready { "True" } else { "False" }.into(), ..Default::default() }]),
                ..Default::default()
            }),
        })
    }

    fn svc() -> Service {
        Service {
            metadata: ObjectMeta { name: Some("web".into()), ..Default::default() },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![ServicePort { name: Some("http".into()), port: 80, target_port: Some(IntOrString::String("http".into())), protocol: Some("TCP".into()), ..Default::default() }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn repacks_by_resolved_port_and_splits_not_ready() {
        let pods = vec![pod("a", "10.0.0.2", true, 8080), pod("b", "10.0.0.1", true, 8080), pod("c", "10.0.0.3", false, 8080), pod("d", "10.0.0.4", true, 9090)];
        let (subsets, truncated) = build_subsets(&svc(), &pods);
        assert!(!truncated);
        assert_eq!(subsets.len(), 2);
        let ips = |v: &Option<Vec<EndpointAddress>>| v.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>();
        assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
        assert_eq!(subsets[1].ports.as_ref().unwrap()[0].port, 9090);
        assert_eq!(ips(&subsets[1].addresses), ["10.0.0.4"]);
    }

    #[test]
    fn publish_not_ready_addresses_makes_every_address_ready() {
        let mut s = svc();
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let (subsets, _) = build_subsets(&s, &[pod("c", "10.0.0.3", false, 8080)]);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn truncates_over_capacity_keeping_ready_first() {
        let pods: Vec<_> = (0..1100).map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 256, i % 256), i % 2 == 0, 8080)).collect();
        let (subsets, truncated) = build_subsets(&svc(), &pods);
        assert!(truncated);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 550);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 450);
    }
}
