//! PodGC: deletes pods nobody else will.
//!
//! Why: a pod bound to a node that no longer exists has no kubelet to finish
//! it, and finished pods pile up in the store forever. Every period
//! (upstream: 20 s) this controller
//! - force-deletes pods bound to a node that is gone (checked with a live
//!   GET, so a node the cache has not seen yet is not mistaken for gone),
//!   after marking them Failed with the DisruptionTarget condition
//!   (reason DeletionByPodGC), as upstream;
//! - force-deletes terminating pods that were never scheduled;
//! - deletes the oldest terminated (Succeeded/Failed) pods beyond
//!   `--terminated-pod-gc-threshold` (0 disables this).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::util::{creation_secs, is_terminating, now, pod_phase};
use crate::{Ctx, NetOptions};

pub fn start(ctx: Arc<Ctx>, opts: NetOptions) {
    tokio::spawn(async move {
        ctx.nodes.wait_ready().await;
        ctx.pods.wait_ready().await;
        let mut tick = tokio::time::interval(opts.pod_gc_period);
        loop {
            tick.tick().await;
            if let Err(e) = pass(&ctx, &opts).await {
                tracing::warn!(error = %format!("{e:#}"), "pod GC pass failed");
            }
        }
    });
}

/// The terminated pods to delete: the oldest beyond `threshold`.
pub fn over_threshold(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<Arc<Pod>> = pods.iter().filter(|p| matches!(pod_phase(p), "Succeeded" | "Failed") && !is_terminating(&p.metadata)).cloned().collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    done.sort_by_key(|p| (creation_secs(&p.metadata), p.metadata.name.clone()));
    done.truncate(done.len() - threshold);
    done
}

async fn pass(ctx: &Ctx, opts: &NetOptions) -> Result<()> {
    let pods = ctx.pods.list();
    for p in over_threshold(&pods, opts.terminated_pod_gc_threshold) {
        tracing::info!(pod = %crate::informer::key_of(p.as_ref()), "deleting terminated pod over --terminated-pod-gc-threshold");
        force_delete(ctx, &p).await?;
    }
    let known: HashSet<String> = ctx.nodes.list().iter().filter_map(|n| n.metadata.name.clone()).collect();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut gone: HashSet<String> = HashSet::new();
    for p in &pods {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        if node.is_empty() {
            if is_terminating(&p.metadata) {
                tracing::info!(pod = %crate::informer::key_of(p.as_ref()), "deleting unscheduled terminating pod");
                force_delete(ctx, p).await?;
            }
            continue;
        }
        if known.contains(&node) {
            continue;
        }
        if !gone.contains(&node) {
            if nodes.get_opt(&node).await?.is_some() {
                continue;
            }
            gone.insert(node.clone());
        }
        tracing::info!(pod = %crate::informer::key_of(p.as_ref()), %node, "deleting orphaned pod: its node is gone");
        if !matches!(pod_phase(p), "Succeeded" | "Failed") {
            mark_failed(ctx, p).await;
        }
        force_delete(ctx, p).await?;
    }
    Ok(())
}

async fn mark_failed(ctx: &Ctx, p: &Pod) {
    let mut conds = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conds.retain(|c| c.type_ != "DisruptionTarget");
    conds.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some("PodGC: node no longer exists".into()),
        last_transition_time: Some(Time(now())),
        ..Default::default()
    });
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), p.metadata.namespace.as_deref().unwrap_or(""));
    let patch = json!({"status": {"phase": "Failed", "conditions": conds}});
    let _ = api.patch_status(p.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await;
}

async fn force_delete(ctx: &Ctx, p: &Pod) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), p.metadata.namespace.as_deref().unwrap_or(""));
    let dp = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(kube::api::Preconditions { uid: p.metadata.uid.clone(), resource_version: None }), ..Default::default() };
    match api.delete(p.metadata.name.as_deref().unwrap_or(""), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, phase: &str, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), creation_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(created).unwrap())), ..Default::default() },
            spec: None,
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        })
    }

    #[test]
    fn oldest_terminated_beyond_threshold() {
        let pods = vec![pod("new-failed", "Failed", 50), pod("running", "Running", 1), pod("old-done", "Succeeded", 10), pod("mid", "Succeeded", 30)];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(names(over_threshold(&pods, 1)), ["old-done", "mid"]);
        assert_eq!(names(over_threshold(&pods, 3)), Vec::<String>::new());
        assert_eq!(names(over_threshold(&pods, 0)), Vec::<String>::new());
    }
}
