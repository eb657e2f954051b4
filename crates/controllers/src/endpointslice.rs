//! The EndpointSlice controller (discovery.k8s.io/v1).
//!
//! Why: Endpoints put a whole Service in one object; every change rewrites
//! it and ships it to every watcher. Slices cap that at 100 endpoints each.
//! For every Service with a selector this controller keeps slices labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`,
//! owned by the Service (so the garbage collector removes them with it):
//! - one endpoint per pod with an IP of the slice's address type, with the
//!   ready / serving / terminating conditions (terminating pods are kept,
//!   serving tells whether they still pass readiness);
//! - endpoints grouped by their resolved port set (a named targetPort may be
//!   a different number on each pod), at most 100 per slice;
//! - endpoints stay in the slice they are in, new ones fill slices with room,
//!   so a change touches as few slices as possible;
//! - a Service with no endpoints keeps one empty placeholder slice, as upstream.
//!
//! The informer lags our own writes; a tracker of the resourceVersions we
//! wrote holds a Service's next sync until the cache has caught up, so a
//! burst of pod events never creates the same slice twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use parking_lot::Mutex;

use crate::informer::{key_of, split_key};
use crate::service_endpoints::*;
use crate::util::{generate_prefix, is_pod_ready, is_terminating, owner_ref};
use crate::Ctx;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Writes the cache has not shown yet: slice name → resourceVersion (None = deleted).
/// Per Service: when we last wrote, and the writes not seen yet.
type Pending = (Instant, Vec<(String, Option<u64>)>);

#[derive(Default)]
struct Tracker(Mutex<HashMap<String, Pending>>);

impl Tracker {
    fn caught_up(&self, svc: &str, ctx: &Ctx, ns: &str) -> bool {
        let mut m = self.0.lock();
        let Some((since, writes)) = m.get_mut(svc) else { return true };
        writes.retain(|(name, rv)| {
            let seen = ctx.endpointslices.get(Some(ns), name).and_then(|s| s.metadata.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok()));
            match (rv, seen) {
                (None, None) => false,
                (None, Some(_)) => true,
                (Some(want), Some(have)) => have < *want,
                (Some(_), None) => true,
            }
        });
        if writes.is_empty() || since.elapsed() > Duration::from_secs(30) {
            m.remove(svc);
            return true;
        }
        false
    }

    fn wrote(&self, svc: &str, name: String, rv: Option<u64>) {
        let mut m = self.0.lock();
        let e = m.entry(svc.to_owned()).or_insert_with(|| (Instant::now(), Vec::new()));
        e.0 = Instant::now();
        e.1.push((name, rv));
    }
}

struct Controller {
    ctx: Arc<Ctx>,
    tracker: Tracker,
}

pub fn start(ctx: Arc<Ctx>) {
    let q = crate::queue::Queue::new("endpoint_slice", ctx.metrics.clone());
    let qq = q.clone();
    ctx.services.on_change(move |s| qq.add(key_of(s)));
    let qq = q.clone();
    ctx.endpointslices.on_change(move |s| {
        let labels = s.metadata.labels.clone().unwrap_or_default();
        if let (Some(svc), Some(MANAGED_BY)) = (labels.get(SERVICE_NAME_LABEL), labels.get(MANAGED_BY_LABEL).map(String::as_str)) {
            qq.add(format!("{}/{svc}", s.metadata.namespace.as_deref().unwrap_or("")));
        }
    });
    let (qq, index) = (q.clone(), PodToServices::new(ctx.services.clone(), ctx.pods.clone()));
    ctx.pods.on_change(move |p| index.enqueue(p, &qq));
    let c = Arc::new(Controller { ctx, tracker: Tracker::default() });
    crate::queue::run_workers(q, 5, move |key| {
        let c = c.clone();
        async move { c.sync(&key).await }
    });
}

type PortKey = Vec<(String, i32, String, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports.iter().map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0), p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.app_protocol.clone())).collect();
    k.sort();
    k
}

fn key_ports(k: &PortKey) -> Vec<EndpointPort> {
    k.iter().map(|(n, p, proto, ap)| EndpointPort { name: Some(n.clone()), port: Some(*p), protocol: Some(proto.clone()), app_protocol: ap.clone() }).collect()
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(svc) = self.ctx.services.get(Some(ns), name) else {
            // The garbage collector deletes the slices the Service owned.
            return Ok(None);
        };
        let Some(sel) = selector(&svc) else { return Ok(None) };
        if is_terminating(&svc.metadata) {
            return Ok(None);
        }
        if !self.tracker.caught_up(key, &self.ctx, ns) {
            return Ok(Some(Duration::from_millis(100)));
        }
        let family = svc.spec.as_ref().and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first().cloned()).unwrap_or_else(|| "IPv4".into());
        let pods: Vec<Arc<Pod>> = self.ctx.pods.list_ns(ns).into_iter().filter(|p| selects(sel, p)).collect();
        let desired = self.desired(&svc, &pods, &family);
        let existing: Vec<Arc<EndpointSlice>> = self
            .ctx
            .endpointslices
            .list_ns(ns)
            .into_iter()
            .filter(|s| {
                let l = s.metadata.labels.as_ref();
                l.and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&name.to_owned()) && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(MANAGED_BY)
            })
            .collect();
        let plan = plan(&desired, &existing, &family);
        let labels = slice_labels(&svc);
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        for s in &plan.delete {
            let n = s.metadata.name.clone().unwrap_or_default();
            match api.delete(&n, &DeleteParams::default()).await {
                Ok(_) => self.tracker.wrote(key, n, None),
                Err(kube::Error::Api(e)) if e.code == 404 => self.tracker.wrote(key, n, None),
                Err(e) => return Err(e.into()),
            }
        }
        for (old, ports, eps) in plan.keep {
            if old.metadata.labels.as_ref() == Some(&labels) && old.endpoints == eps && old.ports.clone().unwrap_or_default() == ports {
                continue;
            }
            let mut s = (*old).clone();
            s.metadata.labels = Some(labels.clone());
            s.metadata.managed_fields = None;
            s.endpoints = eps;
            s.ports = (!ports.is_empty()).then_some(ports);
            let n = s.metadata.name.clone().unwrap_or_default();
            let r = api.replace(&n, &PostParams::default(), &s).await?;
            self.tracker.wrote(key, n, rv(&r));
        }
        for (ports, eps) in plan.create {
            let s = EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(generate_prefix(name)),
                    namespace: Some(ns.to_owned()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner_ref("v1", "Service", &svc.metadata)]),
                    ..Default::default()
                },
                address_type: family.clone(),
                endpoints: eps,
                ports: (!ports.is_empty()).then_some(ports),
            };
            let r = api.create(&PostParams::default(), &s).await?;
            self.tracker.wrote(key, r.metadata.name.clone().unwrap_or_default(), rv(&r));
        }
        Ok(None)
    }

    /// Every endpoint the Service should have, grouped by resolved port set.
    fn desired(&self, svc: &Service, pods: &[Arc<Pod>], family: &str) -> BTreeMap<PortKey, Vec<Endpoint>> {
        let spec = svc.spec.clone().unwrap_or_default();
        let svc_name = svc.metadata.name.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        let mut out: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
        for pod in pods {
            if !should_be_in_endpoints(pod, true) {
                continue;
            }
            let Some(ip) = ip_of_family(pod, family) else { continue };
            let mut key: PortKey = Vec::new();
            for sp in &ports {
                if let Some(p) = find_port(pod, sp) {
                    key.push((sp.name.clone().unwrap_or_default(), p, sp.protocol.clone().unwrap_or_else(|| "TCP".into()), sp.app_protocol.clone()));
                }
            }
            if key.is_empty() && !ports.is_empty() {
                continue;
            }
            key.sort();
            out.entry(key).or_default().push(endpoint_for(svc, &svc_name, pod, &ip, &self.ctx));
        }
        out
    }
}

fn rv(s: &EndpointSlice) -> Option<u64> {
    s.metadata.resource_version.as_deref().and_then(|v| v.parse().ok())
}

fn ip_of_family(pod: &Pod, family: &str) -> Option<String> {
    let st = pod.status.as_ref()?;
    let v6 = family == "IPv6";
    let mut ips: Vec<String> = st.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    if ips.is_empty() {
        ips.extend(st.pod_ip.clone());
    }
    ips.into_iter().find(|ip| !ip.is_empty() && ip.contains(':') == v6)
}

/// Upstream's podToEndpoint.
fn endpoint_for(svc: &Service, svc_name: &str, pod: &Pod, ip: &str, ctx: &Ctx) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = is_terminating(&pod.metadata);
    // "ready" is never true for a terminating pod, unless publishNotReadyAddresses says so.
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let ps = pod.spec.clone().unwrap_or_default();
    let hostname = match (&ps.hostname, &ps.subdomain) {
        (Some(h), Some(sd)) if !h.is_empty() && sd == svc_name => Some(h.clone()),
        _ => None,
    };
    let zone = ps.node_name.as_ref().and_then(|n| ctx.nodes.get(None, n)).and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned());
    Endpoint {
        addresses: vec![ip.to_owned()],
        conditions: Some(EndpointConditions { ready: Some(ready), serving: Some(serving), terminating: Some(terminating) }),
        hostname,
        node_name: ps.node_name.clone(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone,
        hints: None,
        deprecated_topology: None,
    }
}

/// The Service's labels, plus the ones that mark the slice as ours.
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    l.remove(HEADLESS_LABEL);
    if is_headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    }
    l.insert(SERVICE_NAME_LABEL.into(), svc.metadata.name.clone().unwrap_or_default());
    l.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    l
}

#[derive(Default)]
pub struct Plan {
    pub delete: Vec<Arc<EndpointSlice>>,
    /// Existing slices with their new ports and endpoints (written only if changed).
    pub keep: Vec<(Arc<EndpointSlice>, Vec<EndpointPort>, Vec<Endpoint>)>,
    pub create: Vec<(Vec<EndpointPort>, Vec<Endpoint>)>,
}

/// Decide which slices to keep, change, create and delete.
pub fn plan(desired: &BTreeMap<PortKey, Vec<Endpoint>>, existing: &[Arc<EndpointSlice>], family: &str) -> Plan {
    let mut p = Plan::default();
    let mut by_key: BTreeMap<PortKey, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for s in existing {
        if s.address_type != family {
            p.delete.push(s.clone());
            continue;
        }
        by_key.entry(port_key(s.ports.as_deref().unwrap_or_default())).or_default().push(s.clone());
    }
    for (key, eps) in desired {
        let mut slices = by_key.remove(key).unwrap_or_default();
        slices.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut want: BTreeMap<&str, &Endpoint> = eps.iter().map(|e| (e.addresses[0].as_str(), e)).collect();
        let mut kept: Vec<(Arc<EndpointSlice>, Vec<Endpoint>)> = Vec::new();
        for s in slices {
            let mut now = Vec::new();
            for e in &s.endpoints {
                if let Some(w) = e.addresses.first().and_then(|a| want.remove(a.as_str())) {
                    if now.len() < MAX_ENDPOINTS_PER_SLICE {
                        now.push(w.clone());
                    } else {
                        want.insert(&w.addresses[0], w);
                    }
                }
            }
            kept.push((s, now));
        }
        let mut rest: Vec<Endpoint> = want.into_values().cloned().collect();
        // Fill slices with room, fullest first (fewer, fuller slices).
        kept.sort_by_key(|(_, e)| std::cmp::Reverse(e.len()));
        for (_, eps) in kept.iter_mut() {
            while eps.len() < MAX_ENDPOINTS_PER_SLICE && !rest.is_empty() {
                eps.push(rest.remove(0));
            }
        }
        let ports = key_ports(key);
        for (s, eps) in kept {
            if eps.is_empty() {
                p.delete.push(s);
            } else {
                p.keep.push((s, ports.clone(), eps));
            }
        }
        for chunk in rest.chunks(MAX_ENDPOINTS_PER_SLICE) {
            p.create.push((ports.clone(), chunk.to_vec()));
        }
    }
    p.delete.extend(by_key.into_values().flatten());
    // No endpoints at all: one empty placeholder slice (ports unset), reusing an existing one.
    if p.keep.is_empty() && p.create.is_empty() {
        let reuse = p.delete.iter().position(|s| s.address_type == family);
        match reuse {
            Some(i) => {
                let s = p.delete.remove(i);
                p.keep.push((s, Vec::new(), Vec::new()));
            }
            None => p.create.push((Vec::new(), Vec::new())),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(ip: &str) -> Endpoint {
        Endpoint { addresses: vec![ip.into()], ..Default::default() }
    }

    fn slice(name: &str, key: &PortKey, ips: &[String]) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            address_type: "IPv4".into(),
            endpoints: ips.iter().map(|i| ep(i)).collect(),
            ports: Some(key_ports(key)),
        })
    }

    fn ips(n: usize, from: usize) -> Vec<String> {
        (from..from + n).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect()
    }

    #[test]
    fn at_most_100_per_slice_and_one_slice_per_port_set() {
        let k1: PortKey = vec![("http".into(), 8080, "TCP".into(), None)];
        let k2: PortKey = vec![("http".into(), 9090, "TCP".into(), None)];
        let desired = BTreeMap::from([(k1.clone(), ips(250, 0).iter().map(|i| ep(i)).collect::<Vec<_>>()), (k2.clone(), vec![ep("10.9.9.9")])]);
        let p = plan(&desired, &[], "IPv4");
        let sizes: Vec<usize> = p.create.iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, [100, 100, 50, 1]);
        assert!(p.keep.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn endpoints_stay_put_new_ones_fill_room_and_empty_slices_go() {
        let k: PortKey = vec![(String::new(), 80, "TCP".into(), None)];
        let a = slice("a", &k, &ips(100, 0));
        let b = slice("b", &k, &ips(30, 100));
        let c = slice("c", &k, &ips(5, 130));
        // Keep all of a, drop b's first 10, drop all of c, add 20 new.
        let mut want: Vec<Endpoint> = ips(100, 0).iter().chain(ips(20, 110).iter()).chain(ips(20, 500).iter()).map(|i| ep(i)).collect();
        want.reverse();
        let p = plan(&BTreeMap::from([(k.clone(), want)]), &[a, b, c], "IPv4");
        assert_eq!(p.delete.iter().map(|s| s.metadata.name.clone().unwrap()).collect::<Vec<_>>(), ["c"]);
        assert!(p.create.is_empty());
        let kept: BTreeMap<String, usize> = p.keep.iter().map(|(s, _, e)| (s.metadata.name.clone().unwrap(), e.len())).collect();
        assert_eq!(kept, BTreeMap::from([("a".to_string(), 100), ("b".to_string(), 40)]));
    }

    #[test]
    fn no_endpoints_leaves_one_placeholder() {
        let p = plan(&BTreeMap::new(), &[], "IPv4");
        assert_eq!(p.create.len(), 1);
        assert!(p.create[0].0.is_empty() && p.create[0].1.is_empty());
        let k: PortKey = vec![(String::new(), 80, "TCP".into(), None)];
        let p = plan(&BTreeMap::new(), &[slice("a", &k, &ips(3, 0)), slice("b", &k, &ips(3, 3))], "IPv4");
        assert_eq!((p.keep.len(), p.delete.len(), p.create.len()), (1, 1, 0));
        assert!(p.keep[0].2.is_empty());
    }
}
