//! The CronJob controller (upstream's `cronjob_controllerv2`).
//!
//! Why: a CronJob creates a Job per scheduled time. The decision of what to
//! do is a pure function of the CronJob, its Jobs and "now" ([`plan`]), so
//! schedules, missed runs and concurrency policies are unit tested with an
//! injected clock; the controller only applies the plan: it keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, creates
//! `<cronjob>-<minutes since epoch>` Jobs, and trims finished Jobs to the
//! history limits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;

use crate::cron::{time_zone, Schedule};
use crate::informer::{key_of, split_key};
use crate::job_util::{finished_at, has_condition};
use crate::util::*;
use crate::Ctx;

pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// What one sync should do.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Create the Job for this scheduled time.
    pub create: Option<Timestamp>,
    /// Delete these active Jobs first (concurrencyPolicy Replace).
    pub replace: Vec<String>,
    /// Missed start times between the last schedule and now (more than 100 is reported).
    pub missed: u64,
    /// When to look again (the next scheduled time).
    pub requeue: Option<Duration>,
    pub reason: Option<&'static str>,
}

/// Decide, as upstream's syncCronJob, given the names of unfinished active Jobs.
pub fn plan(cj: &CronJob, active: &[String], now: Timestamp) -> Result<Plan, String> {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut p = Plan::default();
    if spec.suspend == Some(true) || is_terminating(&cj.metadata) {
        p.reason = Some("suspended");
        return Ok(p);
    }
    let sched = Schedule::parse(&spec.schedule)?;
    let tz = time_zone(spec.time_zone.as_deref())?;
    let created = cj.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let mut earliest = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0).unwrap_or(created);
    if let Some(sds) = spec.starting_deadline_seconds {
        let horizon = Timestamp::from_second(now.as_second() - sds).unwrap_or(now);
        if horizon > earliest {
            earliest = horizon;
        }
    }
    // The most recent missed time, counting how many were missed.
    let mut most_recent = None;
    let mut t = earliest;
    while let Some(n) = sched.next(t, &tz) {
        if n > now {
            p.requeue = Some(Duration::from_millis(((n.as_millisecond() - now.as_millisecond()).max(0) + 100) as u64));
            break;
        }
        most_recent = Some(n);
        p.missed += 1;
        t = n;
        if p.missed > 100_000 {
            break;
        }
    }
    let Some(scheduled) = most_recent else {
        p.reason = Some("not yet");
        return Ok(p);
    };
    if let Some(sds) = spec.starting_deadline_seconds && scheduled.as_second() + sds < now.as_second() {
        p.reason = Some("missed the starting deadline");
        return Ok(p);
    }
    let name = job_name(cj, scheduled);
    if active.contains(&name) {
        p.reason = Some("already running");
        return Ok(p);
    }
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            p.reason = Some("forbidden: a job is still active");
            return Ok(p);
        }
        "Replace" => p.replace = active.to_vec(),
        _ => {}
    }
    p.create = Some(scheduled);
    Ok(p)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`, as upstream.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!("{}-{}", cj.metadata.name.as_deref().unwrap_or(""), scheduled.as_second() / 60)
}

pub fn job_for(cj: &CronJob, scheduled: Timestamp) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let tmpl = spec.job_template;
    let tm = tmpl.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tm.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: tmpl.spec,
        status: None,
    }
}

pub struct CronJobController {
    ctx: Arc<Ctx>,
    /// The clock, injectable for tests.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl CronJobController {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("cronjob", ctx.metrics.clone());
        let qq = q.clone();
        ctx.cronjobs.on_change(move |c| qq.add(key_of(c)));
        let qq = q.clone();
        ctx.jobs.on_change(move |j| {
            if let Some(r) = controller_ref(&j.metadata).filter(|r| r.kind == "CronJob") {
                qq.add(format!("{}/{}", j.metadata.namespace.as_deref().unwrap_or(""), r.name));
            }
        });
        let c = Arc::new(CronJobController { ctx, clock: Arc::new(Timestamp::now) });
        crate::queue::run_workers(q, 2, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Some(cj) = self.ctx.cronjobs.get(Some(ns), name) else { return Ok(None) };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let mut jobs: Vec<Arc<Job>> = self.ctx.jobs.list_ns(ns).into_iter().filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.uid == uid)).collect();
        jobs.sort_by_key(|j| creation_secs(&j.metadata));
        let st = cj.status.clone().unwrap_or_default();
        // Active: the listed Jobs that still exist and have not finished.
        let mut active: Vec<ObjectReference> = st.active.clone().unwrap_or_default();
        active.retain(|r| jobs.iter().any(|j| j.metadata.uid == r.uid && finished_at(j).is_none()));
        let mut last_ok = st.last_successful_time.as_ref().map(|t| t.0);
        for j in &jobs {
            if has_condition(j, "Complete") {
                let t = j.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0);
                if t > last_ok {
                    last_ok = t;
                }
            }
        }
        let now = (self.clock)();
        let names: Vec<String> = active.iter().filter_map(|r| r.name.clone()).collect();
        let p = match plan(&cj, &names, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(cronjob = %key, error = %e, "unparseable schedule");
                return Ok(None);
            }
        };
        if p.missed > 100 {
            tracing::warn!(cronjob = %key, missed = p.missed, "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
        }
        let jobs_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let background = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        for r in &p.replace {
            match jobs_api.delete(r, &background).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            active.retain(|a| a.name.as_deref() != Some(r.as_str()));
        }
        let mut last_schedule = st.last_schedule_time.as_ref().map(|t| t.0);
        if let Some(at) = p.create {
            let job = job_for(&cj, at);
            let created = match jobs_api.create(&PostParams::default(), &job).await {
                Ok(j) => Some(j),
                Err(kube::Error::Api(e)) if e.code == 409 => jobs_api.get_opt(job.metadata.name.as_deref().unwrap_or("")).await?.filter(|j| controller_ref(&j.metadata).is_some_and(|r| r.uid == uid)),
                Err(e) => return Err(e.into()),
            };
            if let Some(j) = created {
                tracing::info!(cronjob = %key, job = ?j.metadata.name, "created job");
                if finished_at(&j).is_none() && !active.iter().any(|a| a.uid == j.metadata.uid) {
                    active.push(ObjectReference {
                        api_version: Some("batch/v1".into()),
                        kind: Some("Job".into()),
                        name: j.metadata.name.clone(),
                        namespace: j.metadata.namespace.clone(),
                        uid: j.metadata.uid.clone(),
                        resource_version: j.metadata.resource_version.clone(),
                        ..Default::default()
                    });
                }
            }
            last_schedule = Some(at);
        }
        let status = json!({"status": {
            "active": if active.is_empty() { json!(null) } else { json!(active) },
            "lastScheduleTime": last_schedule.map(Time),
            "lastSuccessfulTime": last_ok.map(Time),
        }});
        let old = json!({"status": {
            "active": st.active.clone().filter(|a| !a.is_empty()),
            "lastScheduleTime": st.last_schedule_time, "lastSuccessfulTime": st.last_successful_time,
        }});
        if status != old {
            let api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), ns);
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        }
        self.cleanup(&cj, &jobs, &jobs_api).await?;
        Ok(p.requeue)
    }

    /// Keep only the newest successfulJobsHistoryLimit (3) and failedJobsHistoryLimit (1) finished Jobs.
    async fn cleanup(&self, cj: &CronJob, jobs: &[Arc<Job>], api: &Api<Job>) -> Result<()> {
        let spec = cj.spec.clone().unwrap_or_default();
        let bg = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        for (cond, limit) in [("Complete", spec.successful_jobs_history_limit.unwrap_or(3)), ("Failed", spec.failed_jobs_history_limit.unwrap_or(1))] {
            let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| has_condition(j, cond) && !is_terminating(&j.metadata)).collect();
            done.sort_by_key(|j| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_second()).unwrap_or_else(|| creation_secs(&j.metadata)));
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            for j in done.into_iter().take(excess) {
                tracing::info!(cronjob = ?cj.metadata.name, job = ?j.metadata.name, "deleting job beyond the history limit");
                match api.delete(j.metadata.name.as_deref().unwrap_or(""), &bg).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cj(spec: serde_json::Value, created: &str, last: Option<&str>) -> CronJob {
        let mut v = json!({"metadata": {"name": "cj", "namespace": "default", "uid": "u", "creationTimestamp": created},
            "spec": {"jobTemplate": {"spec": {"template": {}}}}});
        for (k, x) in spec.as_object().unwrap() {
            v["spec"][k] = x.clone();
        }
        if let Some(l) = last {
            v["status"] = json!({"lastScheduleTime": l});
        }
        serde_json::from_value(v).unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_at_the_most_recent_missed_time_and_requeues_for_the_next() {
        let c = cj(json!({"schedule": "*/5 * * * *"}), "2026-11-27T04:00:30Z", None);
        let p = plan(&c, &[], ts("2026-11-27T04:03:00Z")).unwrap();
        assert_eq!((p.create, p.reason), (None, Some("not yet")));
        assert_eq!(p.requeue, Some(Duration::from_millis(120_100)));
        let p = plan(&c, &[], ts("2026-11-27T04:11:00Z")).unwrap();
        assert_eq!(p.create, Some(ts("2026-11-27T04:10:00Z")));
        assert_eq!(p.missed, 2);
        assert_eq!(job_name(&c, ts("2026-11-27T04:10:00Z")), format!("cj-{}", ts("2026-11-27T04:10:00Z").as_second() / 60));
        let j = job_for(&c, ts("2026-11-27T04:10:00Z"));
        assert_eq!(j.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP], "2026-11-27T04:10:00Z");
        assert_eq!(j.metadata.owner_references.unwrap()[0].kind, "CronJob");
        // Already done for that time: nothing until the next one.
        let c2 = cj(json!({"schedule": "*/5 * * * *"}), "2026-11-27T04:00:30Z", Some("2026-11-27T04:10:00Z"));
        assert_eq!(plan(&c2, &[], ts("2026-11-27T04:11:00Z")).unwrap().create, None);
    }

    #[test]
    fn concurrency_policies() {
        let now = ts("2026-11-27T04:11:00Z");
        let running = vec!["cj-old".to_string()];
        let allow = cj(json!({"schedule": "*/5 * * * *"}), "2026-11-27T04:06:00Z", None);
        assert_eq!(plan(&allow, &running, now).unwrap().create, Some(ts("2026-11-27T04:10:00Z")));
        let forbid = cj(json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Forbid"}), "2026-11-27T04:06:00Z", None);
        let p = plan(&forbid, &running, now).unwrap();
        assert_eq!((p.create, p.reason), (None, Some("forbidden: a job is still active")));
        let replace = cj(json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Replace"}), "2026-11-27T04:06:00Z", None);
        let p = plan(&replace, &running, now).unwrap();
        assert_eq!((p.create, p.replace), (Some(ts("2026-11-27T04:10:00Z")), running.clone()));
        let suspended = cj(json!({"schedule": "*/5 * * * *", "suspend": true}), "2026-11-27T04:06:00Z", None);
        assert_eq!(plan(&suspended, &[], now).unwrap().create, None);
    }

    #[test]
    fn starting_deadline_and_missed_runs() {
        // Created a day ago, never ran: 1440 missed minutes, the most recent one is run.
        let c = cj(json!({"schedule": "* * * * *"}), "2026-11-26T04:00:00Z", None);
        let p = plan(&c, &[], ts("2026-11-27T04:00:30Z")).unwrap();
        assert_eq!((p.create, p.missed), (Some(ts("2026-11-27T04:00:00Z")), 1440));
        // startingDeadlineSeconds bounds how far back missed runs are counted.
        let c = cj(json!({"schedule": "* * * * *", "startingDeadlineSeconds": 200}), "2026-11-26T04:00:00Z", None);
        let p = plan(&c, &[], ts("2026-11-27T04:00:30Z")).unwrap();
        assert_eq!((p.create, p.missed), (Some(ts("2026-11-27T04:00:00Z")), 3));
        // Too late for the only missed time: skipped.
        let c = cj(json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 60}), "2026-11-27T03:30:00Z", None);
        let p = plan(&c, &[], ts("2026-11-27T04:02:00Z")).unwrap();
        assert_eq!((p.create, p.reason), (None, Some("not yet")));
        let c = cj(json!({"schedule": "0 * * * *", "startingDeadlineSeconds": 120}), "2026-11-27T03:30:00Z", None);
        assert_eq!(plan(&c, &[], ts("2026-11-27T04:01:50Z")).unwrap().create, Some(ts("2026-11-27T04:00:00Z")));
        // Time zones.
        let c = cj(json!({"schedule": "0 9 * * *", "timeZone": "America/New_York"}), "2026-11-26T00:00:00Z", None);
        assert_eq!(plan(&c, &[], ts("2026-11-26T15:00:00Z")).unwrap().create, Some(ts("2026-11-26T14:00:00Z")));
        assert!(plan(&cj(json!({"schedule": "bad"}), "2026-11-26T00:00:00Z", None), &[], ts("2026-11-26T15:00:00Z")).is_err());
    }
}
