//! The taint manager (upstream's NoExecuteTaintManager, "taint-eviction-controller").
//!
//! Why: a NoExecute taint means "pods must not run here". A pod that does
//! not tolerate one of its node's NoExecute taints is evicted at once; a pod
//! whose tolerations carry `tolerationSeconds` is evicted when the shortest
//! of them has passed since we first saw it under the taint (a toleration
//! without seconds tolerates forever). This is what turns "node unreachable"
//! into "pods recreated elsewhere": the API server gives every pod a 300 s
//! toleration of `unreachable` and `not-ready`. Eviction marks the pod with
//! the DisruptionTarget condition (reason DeletionByTaintManager) and then
//! deletes it; its controller makes a replacement.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::util::{is_terminating, now};
use crate::Ctx;

/// How often pods on NoExecute-tainted nodes are looked at.
const PERIOD: Duration = Duration::from_millis(500);

pub fn start(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        ctx.nodes.wait_ready().await;
        ctx.pods.wait_ready().await;
        // Pod uid → when we first saw it under a NoExecute taint it tolerates for a while.
        let mut since: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(PERIOD);
        loop {
            tick.tick().await;
            if let Err(e) = pass(&ctx, &mut since).await {
                tracing::warn!(error = %format!("{e:#}"), "taint eviction pass failed");
            }
        }
    });
}

/// Does `tol` tolerate `taint` (upstream's ToleratesTaint)?
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if tol.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => !key.is_empty() && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// How long a pod may stay under `taints`: None = forever, Some(0) = not at all.
pub fn toleration_time(tols: &[Toleration], taints: &[Taint]) -> Option<Duration> {
    let mut min: Option<Duration> = None;
    for taint in taints {
        let used: Vec<&Toleration> = tols.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(Duration::ZERO);
        }
        for t in used {
            if let Some(s) = t.toleration_seconds {
                let d = Duration::from_secs(s.max(0) as u64);
                min = Some(min.map_or(d, |m| m.min(d)));
            }
        }
    }
    min
}

async fn pass(ctx: &Ctx, since: &mut HashMap<String, Instant>) -> Result<()> {
    let tainted: HashMap<String, Vec<Taint>> = ctx
        .nodes
        .list()
        .iter()
        .filter_map(|n| {
            let t: Vec<Taint> = n.spec.as_ref()?.taints.iter().flatten().filter(|t| t.effect == "NoExecute").cloned().collect();
            (!t.is_empty()).then(|| (n.metadata.name.clone().unwrap_or_default(), t))
        })
        .collect();
    if tainted.is_empty() {
        since.clear();
        return Ok(());
    }
    let pods = ctx.pods.store.state_filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| tainted.contains_key(n)) && !is_terminating(&p.metadata));
    let mut seen = std::collections::HashSet::new();
    for pod in pods {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let taints = &tainted[spec.node_name.as_deref().unwrap_or("")];
        let Some(allowed) = toleration_time(spec.tolerations.as_deref().unwrap_or_default(), taints) else { continue };
        seen.insert(uid.clone());
        let first = *since.entry(uid.clone()).or_insert_with(Instant::now);
        if first.elapsed() >= allowed {
            evict(ctx, &pod).await?;
        }
    }
    since.retain(|uid, _| seen.contains(uid));
    Ok(())
}

async fn evict(ctx: &Ctx, pod: &Pod) -> Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    tracing::info!(pod = %format!("{ns}/{name}"), node = ?pod.spec.as_ref().and_then(|s| s.node_name.clone()), "evicting pod: NoExecute taint not tolerated (any longer)");
    let mut conds = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conds.retain(|c| c.type_ != "DisruptionTarget");
    conds.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now())),
        ..Default::default()
    });
    let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"conditions": conds}}))).await;
    let dp = DeleteParams { preconditions: Some(kube::api::Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
    match api.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint { key: key.into(), effect: "NoExecute".into(), ..Default::default() }
    }

    fn tol(key: Option<&str>, op: &str, secs: Option<i64>) -> Toleration {
        Toleration { key: key.map(Into::into), operator: Some(op.into()), effect: Some("NoExecute".into()), toleration_seconds: secs, value: None }
    }

    #[test]
    fn shortest_toleration_wins_and_untolerated_means_now() {
        let t = [taint("node.kubernetes.io/unreachable")];
        assert_eq!(toleration_time(&[], &t), Some(Duration::ZERO));
        assert_eq!(toleration_time(&[tol(Some("node.kubernetes.io/unreachable"), "Exists", Some(300))], &t), Some(Duration::from_secs(300)));
        assert_eq!(toleration_time(&[tol(Some("node.kubernetes.io/unreachable"), "Exists", Some(300)), tol(None, "Exists", Some(5))], &t), Some(Duration::from_secs(5)));
        assert_eq!(toleration_time(&[tol(Some("node.kubernetes.io/unreachable"), "Exists", None)], &t), None);
        assert_eq!(toleration_time(&[tol(Some("node.kubernetes.io/not-ready"), "Exists", Some(300))], &t), Some(Duration::ZERO));
        // A NoSchedule toleration does not tolerate NoExecute.
        let mut ns = tol(None, "Exists", None);
        ns.effect = Some("NoSchedule".into());
        assert_eq!(toleration_time(&[ns], &t), Some(Duration::ZERO));
    }

    #[test]
    fn equal_operator_compares_values() {
        let mut t = taint("k");
        t.value = Some("v".into());
        let mut eq = tol(Some("k"), "Equal", None);
        eq.value = Some("v".into());
        assert!(tolerates(&eq, &t));
        eq.value = Some("w".into());
        assert!(!tolerates(&eq, &t));
    }
}
