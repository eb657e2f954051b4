//! The TTL-after-finished controller (upstream's `ttlafterfinished`).
//!
//! Why: finished Jobs and their pods pile up. A Job with
//! `ttlSecondsAfterFinished` is deleted (foreground, so its pods go first)
//! that many seconds after its Complete or Failed condition. The expiry is
//! re-checked against a fresh read before deleting, as upstream does, so a
//! TTL changed at the last moment is honoured.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};

use crate::informer::{key_of, split_key};
use crate::job_util::finished_at;
use crate::Ctx;

/// Seconds until `job` expires: None if it has no TTL or has not finished.
pub fn time_left(job: &Job, now: Timestamp) -> Option<i64> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let done = finished_at(job)?;
    Some(done.as_second() + i64::from(ttl) - now.as_second())
}

pub fn start(ctx: Arc<Ctx>) {
    let q = crate::queue::Queue::new("ttl_jobs_to_delete", ctx.metrics.clone());
    let qq = q.clone();
    ctx.jobs.on_change(move |j| {
        if j.metadata.deletion_timestamp.is_none() && time_left(j, Timestamp::now()).is_some() {
            qq.add(key_of(j));
        }
    });
    crate::queue::run_workers(q, 2, move |key| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &key).await }
    });
}

async fn sync(ctx: &Ctx, key: &str) -> Result<Option<Duration>> {
    let (ns, name) = split_key(key);
    let ns = ns.unwrap_or("default");
    let Some(job) = ctx.jobs.get(Some(ns), name) else { return Ok(None) };
    let Some(left) = time_left(&job, Timestamp::now()) else { return Ok(None) };
    if left > 0 {
        return Ok(Some(Duration::from_secs(left as u64)));
    }
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let Some(fresh) = api.get_opt(name).await? else { return Ok(None) };
    match time_left(&fresh, Timestamp::now()) {
        Some(l) if l <= 0 && fresh.metadata.deletion_timestamp.is_none() => {}
        Some(l) if l > 0 => return Ok(Some(Duration::from_secs(l as u64))),
        _ => return Ok(None),
    }
    tracing::info!(job = %key, "deleting finished job after its TTL");
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions { uid: fresh.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_counts_from_the_finish_condition() {
        let j: Job = serde_json::from_value(json!({"spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})).unwrap();
        let t0 = Timestamp::from_second(1767225600).unwrap(); // 2026-01-01T00:00:00Z
        assert_eq!(time_left(&j, t0), Some(30));
        assert_eq!(time_left(&j, Timestamp::from_second(1767225640).unwrap()), Some(-10));
        let unfinished: Job = serde_json::from_value(json!({"spec": {"ttlSecondsAfterFinished": 30, "template": {}}})).unwrap();
        assert_eq!(time_left(&unfinished, t0), None);
    }
}
