//! The node lifecycle controller: node health from heartbeats, and the
//! condition taints.
//!
//! Why: a node that stops heartbeating cannot report that it is gone. Every
//! `--node-monitor-period` this controller looks at each node's heartbeats
//! (its Lease in `kube-node-lease` and its Ready condition's
//! lastHeartbeatTime). If neither changed for `--node-monitor-grace-period`,
//! as seen by *our* clock (so clock skew between nodes does not matter), the
//! node's Ready, MemoryPressure, DiskPressure and PIDPressure conditions become
//! Unknown ("Kubelet stopped posting node status.") and its pods are marked
//! not Ready, so Services stop sending them traffic.
//!
//! It also keeps the taints that mirror conditions, as upstream:
//! `node.kubernetes.io/not-ready` (Ready=False) or `unreachable`
//! (Ready=Unknown) with NoExecute — the taint manager evicts pods that do not
//! tolerate them — and the NoSchedule taints for both and for the pressure
//! conditions, NetworkUnavailable and `spec.unschedulable`. First NoExecute
//! taints are rate-limited per zone, and withheld when every zone is fully
//! disrupted (see `zone_eviction`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::json;

use crate::util::{is_pod_ready, now};
use crate::zone_eviction::{rate, zone_of, zone_state, ZoneLimiters, ZoneState};
use crate::{Ctx, NetOptions};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const LEASE_NS: &str = "kube-node-lease";

/// The conditions upstream sets to Unknown when the kubelet goes quiet.
const WATCHED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// NoSchedule taints that mirror a condition (condition, status, taint key).
const NO_SCHEDULE: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
];
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// What we last saw of a node's heartbeats, and when (our clock) it last changed.
struct Health {
    probe: Instant,
    heartbeat: Option<Time>,
    lease: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
}

pub fn start(ctx: Arc<Ctx>, opts: NetOptions) {
    tokio::spawn(async move {
        ctx.nodes.wait_ready().await;
        ctx.node_leases.wait_ready().await;
        let health: Mutex<HashMap<String, Health>> = Mutex::default();
        let mut limiters = ZoneLimiters::default();
        let mut tick = tokio::time::interval(opts.node_monitor_period);
        loop {
            tick.tick().await;
            if let Err(e) = monitor(&ctx, &opts, &health, &mut limiters).await {
                tracing::warn!(error = %format!("{e:#}"), "node health pass failed");
            }
        }
    });
}

fn condition<'a>(n: &'a Node, t: &str) -> Option<&'a NodeCondition> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == t)
}

/// The Ready condition's status; "" if the kubelet never posted one.
pub fn ready_status(n: &Node) -> &str {
    condition(n, "Ready").map(|c| c.status.as_str()).unwrap_or("")
}

async fn monitor(ctx: &Ctx, opts: &NetOptions, health: &Mutex<HashMap<String, Health>>, limiters: &mut ZoneLimiters) -> Result<()> {
    let nodes = ctx.nodes.list();
    let mut stale_names = Vec::new();
    {
        let mut h = health.lock();
        h.retain(|name, _| nodes.iter().any(|n| n.metadata.name.as_ref() == Some(name)));
        for n in &nodes {
            let name = n.metadata.name.clone().unwrap_or_default();
            let heartbeat = condition(n, "Ready").and_then(|c| c.last_heartbeat_time.clone());
            let lease = ctx.node_leases.get(Some(LEASE_NS), &name).and_then(|l| l.spec.as_ref()?.renew_time.clone());
            let e = h.entry(name.clone()).or_insert_with(|| Health { probe: Instant::now(), heartbeat: heartbeat.clone(), lease: lease.clone() });
            if e.heartbeat != heartbeat || e.lease != lease {
                e.probe = Instant::now();
                e.heartbeat = heartbeat;
                e.lease = lease;
            }
            if e.probe.elapsed() > opts.node_monitor_grace_period {
                stale_names.push(name);
            }
        }
    }
    // Mark stale nodes Unknown first, so the taint pass below sees what we wrote.
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut current: Vec<Node> = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let mut node = (**n).clone();
        if let Some(conds) = stale_names.contains(&name).then(|| unknown_conditions(n)).flatten() {
            {
                tracing::info!(node = %name, "node stopped posting status: conditions Unknown");
                // Guarded by resourceVersion: a kubelet that just came back must not be overwritten.
                let patch = json!({"metadata": {"resourceVersion": n.metadata.resource_version}, "status": {"conditions": conds}});
                match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(updated) => node = updated,
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        current.push(node);
    }
    let mut zones: HashMap<String, Vec<bool>> = HashMap::new();
    for n in &current {
        zones.entry(zone_of(n)).or_default().push(ready_status(n) == "True");
    }
    let states: HashMap<&String, (ZoneState, usize)> = zones.iter().map(|(z, r)| (z, (zone_state(r, opts.eviction.unhealthy_threshold), r.len()))).collect();
    let all_down = !states.is_empty() && states.values().all(|(s, _)| *s == ZoneState::FullDisruption);
    for node in &current {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut want = desired_taints(node, !all_down);
        // A first NoExecute taint evicts pods: only as fast as the zone's rate allows.
        if want.as_ref().is_some_and(|t| has_no_execute(t) && !has_no_execute(node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default())) {
            let zone = zone_of(node);
            let (state, size) = states[&zone];
            if !limiters.try_take(&zone, rate(&opts.eviction, state, size), Instant::now()) {
                tracing::debug!(node = %name, ?state, "NoExecute taint waits for the zone's eviction rate");
                want = desired_taints(node, false);
            }
        }
        if let Some(taints) = want {
            tracing::info!(node = %name, taints = ?taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "updating node taints");
            let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                // Changed meanwhile: the next pass looks again.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if matches!(ready_status(node), "False" | "Unknown") {
            mark_pods_not_ready(ctx, &name).await?;
        }
    }
    Ok(())
}

/// The node's conditions with the watched ones set to Unknown, or None if they already are.
pub fn unknown_conditions(n: &Node) -> Option<Vec<NodeCondition>> {
    let mut conds = n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(now());
    let mut changed = false;
    for t in WATCHED {
        match conds.iter_mut().find(|c| c.type_ == t) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(now.clone());
                changed = true;
            }
            None => {
                conds.push(NodeCondition {
                    type_: t.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: n.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conds)
}

fn has_no_execute(t: &[Taint]) -> bool {
    t.iter().any(|t| t.effect == "NoExecute" && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE))
}

fn managed(t: &Taint) -> bool {
    let k = t.key.as_str();
    match t.effect.as_str() {
        "NoExecute" => k == TAINT_NOT_READY || k == TAINT_UNREACHABLE,
        "NoSchedule" => k == UNSCHEDULABLE || NO_SCHEDULE.iter().any(|(_, _, key)| *key == k),
        _ => false,
    }
}

/// The node's taints with the condition taints brought up to date, or None
/// if nothing changes. `no_execute`: whether NoExecute taints may be set.
pub fn desired_taints(n: &Node, no_execute: bool) -> Option<Vec<Taint>> {
    let have = n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut want: Vec<(String, &str)> = Vec::new();
    for (cond, status, key) in NO_SCHEDULE {
        let s = condition(n, cond).map(|c| c.status.as_str()).unwrap_or("");
        if s == status {
            want.push((key.to_string(), "NoSchedule"));
        }
    }
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push((UNSCHEDULABLE.to_string(), "NoSchedule"));
    }
    if no_execute {
        match ready_status(n) {
            "False" => want.push((TAINT_NOT_READY.to_string(), "NoExecute")),
            "Unknown" => want.push((TAINT_UNREACHABLE.to_string(), "NoExecute")),
            _ => {}
        }
    }
    let mut out: Vec<Taint> = have.iter().filter(|t| !managed(t) || want.iter().any(|(k, e)| *k == t.key && *e == t.effect)).cloned().collect();
    for (k, e) in &want {
        if !out.iter().any(|t| t.key == *k && t.effect == *e) {
            let time_added = (*e == "NoExecute").then(|| Time(now()));
            out.push(Taint { key: k.clone(), value: None, effect: e.to_string(), time_added });
        }
    }
    (out != have).then_some(out)
}

/// Upstream's MarkPodsNotReady: the node cannot vouch for its pods any more.
async fn mark_pods_not_ready(ctx: &Ctx, node: &str) -> Result<()> {
    let pods: Vec<Arc<Pod>> = ctx.pods.store.state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node) && is_pod_ready(p));
    for p in pods {
        let mut conds = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        for c in conds.iter_mut().filter(|c| c.type_ == "Ready") {
            c.status = "False".into();
            c.last_transition_time = Some(Time(now()));
        }
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        tracing::info!(pod = %format!("{ns}/{name}"), %node, "marking pod not ready: its node is not ready");
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"metadata": {"resourceVersion": p.metadata.resource_version}, "status": {"conditions": conds}});
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            metadata: Default::default(),
            spec: Some(NodeSpec { taints: Some(taints), ..Default::default() }),
            status: Some(NodeStatus {
                conditions: Some(vec![
                    NodeCondition { type_: "Ready".into(), status: ready.into(), ..Default::default() },
                    NodeCondition { type_: "MemoryPressure".into(), status: "False".into(), ..Default::default() },
                ]),
                ..Default::default()
            }),
        }
    }

    fn keys(t: &[Taint]) -> Vec<String> {
        let mut v: Vec<String> = t.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        v.sort();
        v
    }

    #[test]
    fn unknown_gets_unreachable_taints_and_keeps_foreign_ones() {
        let user = Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoSchedule".into(), time_added: None };
        let t = desired_taints(&node("Unknown", vec![user]), true).unwrap();
        assert_eq!(keys(&t), ["dedicated:NoSchedule", "node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"]);
        assert!(t.iter().find(|t| t.effect == "NoExecute").unwrap().time_added.is_some());
        // Unchanged on the next pass.
        assert!(desired_taints(&node("Unknown", t.clone()), true).is_none());
        // Back to Ready: only the user's taint is left.
        assert_eq!(keys(&desired_taints(&node("True", t.clone()), true).unwrap()), ["dedicated:NoSchedule"]);
        // Full disruption: no NoExecute.
        assert_eq!(keys(&desired_taints(&node("Unknown", t), false).unwrap()), ["dedicated:NoSchedule", "node.kubernetes.io/unreachable:NoSchedule"]);
        assert_eq!(keys(&desired_taints(&node("False", vec![]), true).unwrap()), ["node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/not-ready:NoSchedule"]);
    }

    #[test]
    fn stale_node_conditions_become_unknown_with_upstream_reasons() {
        let c = unknown_conditions(&node("True", vec![])).unwrap();
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref(), ready.message.as_deref()), ("Unknown", Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));
        let never = c.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(never.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let mut n = node("True", vec![]);
        n.status.as_mut().unwrap().conditions = Some(c);
        assert!(unknown_conditions(&n).is_none());
    }
}
