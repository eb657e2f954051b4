//! The Job controller (upstream's `job` package: completions, parallelism,
//! backoffLimit, activeDeadlineSeconds, Indexed mode, finalizer tracking).
//!
//! Why: a Job runs pods until enough of them succeed, or gives up. Counting
//! must be exact even though finished pods can vanish (PodGC, users), so each
//! pod is created with the `batch.kubernetes.io/job-tracking` finalizer; a
//! finished pod is first recorded in `status.uncountedTerminatedPods`, then
//! its finalizer is removed, then it moves into `succeeded`/`failed`. A crash
//! between the steps repeats none and loses none. Like 1.33, the controller
//! first adds `SuccessCriteriaMet` or `FailureTarget` (and stops/deletes the
//! remaining pods), and adds `Complete` or `Failed` once no pod is left
//! running or terminating.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::expectations::{Expectations, Seen};
use crate::informer::{key_of, split_key};
use crate::job_util::*;
use crate::replicaset::claim_pods;
use crate::util::*;
use crate::Ctx;

pub struct JobController {
    ctx: Arc<Ctx>,
    expectations: Expectations,
    /// UIDs of pods whose tracking finalizer we removed (and counted).
    removed: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// succeeded+failed per Job as we last wrote them: a cached status below
    /// that is stale, and acting on it would create pods for work already done.
    counted: parking_lot::Mutex<std::collections::HashMap<String, i32>>,
}

impl JobController {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("job", ctx.metrics.clone());
        let qq = q.clone();
        ctx.jobs.on_change(move |j| qq.add(key_of(j)));
        let (qq, jobs) = (q.clone(), ctx.jobs.clone());
        ctx.pods.on_change(move |pod| {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_ref(&pod.metadata) {
                if r.kind == "Job" {
                    qq.add(format!("{ns}/{}", r.name));
                }
                return;
            }
            for j in jobs.list_ns(ns) {
                if selector_matches(j.spec.as_ref().and_then(|s| s.selector.as_ref()), pod.metadata.labels.as_ref()) {
                    qq.add(key_of(j.as_ref()));
                }
            }
        });
        let c = Arc::new(JobController { ctx, expectations: Expectations::default(), removed: Default::default(), counted: Default::default() });
        crate::queue::run_workers(q, 5, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>> {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let Some(job) = self.ctx.jobs.get(Some(ns), name) else {
            // Gone: its pods must not keep our finalizer forever.
            self.expectations.forget(key);
            self.counted.lock().remove(key);
            for p in self.ctx.pods.list_ns(ns) {
                if controller_ref(&p.metadata).is_some_and(|r| r.kind == "Job" && r.name == name) {
                    remove_finalizer(&api, &p).await?;
                }
            }
            return Ok(None);
        };
        let spec = job.spec.clone().unwrap_or_default();
        // Expectations first, then the pods: checked the other way round, a pod
        // created by the previous sync could reach the cache in between, satisfy
        // the expectation and still be missing from the list (a second create).
        let satisfied = self.expectations.satisfied(key, |n| match self.ctx.pods.get(Some(ns), n) {
            None => Seen::Absent,
            Some(p) if is_terminating(&p.metadata) => Seen::Terminating,
            Some(_) => Seen::Present,
        });
        let pods = claim_pods(&self.ctx.client, ns, &job.metadata, "batch/v1", "Job", spec.selector.as_ref(), &self.ctx.pods.list_ns(ns)).await?;
        if finished_at(&job).is_some() {
            for p in &pods {
                remove_finalizer(&api, p).await?;
            }
            return Ok(None);
        }
        let now = Timestamp::now();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completions = spec.completions;
        let st = job.status.clone().unwrap_or_default();
        let jobs: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let seen = st.succeeded.unwrap_or(0) + st.failed.unwrap_or(0);
        if self.counted.lock().get(key).is_some_and(|c| *c > seen) {
            return Ok(Some(Duration::from_millis(100)));
        }

        // 1. Record newly finished tracked pods as uncounted (with their indexes).
        let unc = st.uncounted_terminated_pods.clone().unwrap_or_default();
        let (mut unc_ok, mut unc_fail) = (unc.succeeded.clone().unwrap_or_default(), unc.failed.clone().unwrap_or_default());
        let mut completed = parse_intervals(st.completed_indexes.as_deref().unwrap_or(""), completions.unwrap_or(0));
        let mut recorded = false;
        for p in &pods {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if !has_finalizer(p) || unc_ok.contains(&uid) || unc_fail.contains(&uid) || self.removed.lock().contains(&uid) {
                continue;
            }
            if pod_phase(p) == "Succeeded" {
                unc_ok.push(uid);
                if let Some(i) = index_of(p).filter(|_| indexed) {
                    completed.insert(i);
                }
                recorded = true;
            } else if is_failed(p) {
                unc_fail.push(uid);
                recorded = true;
            }
        }
        if recorded {
            let p = json!({"status": {"uncountedTerminatedPods": {"succeeded": unc_ok, "failed": unc_fail}, "completedIndexes": indexed.then(|| format_intervals(&completed))}});
            jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&p)).await?;
        }
        // 2. Drop the finalizers of recorded pods; 3. count those whose finalizer is gone.
        let (mut succeeded, mut failed) = (st.succeeded.unwrap_or(0), st.failed.unwrap_or(0));
        // Finalizers we removed that the cache still shows: counted already, skip them (upstream's finalizer expectations).
        self.removed.lock().retain(|u| pods.iter().any(|p| p.metadata.uid.as_deref() == Some(u.as_str()) && has_finalizer(p)));
        for p in &pods {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if unc_ok.contains(&uid) || unc_fail.contains(&uid) {
                remove_finalizer(&api, p).await?;
                self.removed.lock().insert(uid);
            }
        }
        // Every recorded pod's finalizer is now gone: all move into the counts.
        succeeded += unc_ok.len() as i32;
        failed += unc_fail.len() as i32;
        unc_ok.clear();
        unc_fail.clear();

        let active: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).filter(|p| is_pod_active(p)).collect();
        let terminating = pods.iter().filter(|p| is_terminating(&p.metadata) && !matches!(pod_phase(p), "Succeeded" | "Failed")).count() as i32;
        let mut conditions: Vec<JobCondition> = st.conditions.clone().unwrap_or_default();
        let start = st.start_time.as_ref().map(|t| t.0).unwrap_or(now);
        let mut requeue: Option<Duration> = None;

        // Decide: success or failure targets.
        let has = |c: &[JobCondition], t: &str| c.iter().any(|c| c.type_ == t && c.status == "True");
        if !has(&conditions, "FailureTarget") && !has(&conditions, "SuccessCriteriaMet") {
            let done = if indexed {
                completed.len() as i32 >= completions.unwrap_or(1)
            } else {
                match completions {
                    Some(c) => succeeded >= c,
                    None => succeeded > 0 && active.is_empty(),
                }
            };
            if done {
                conditions.push(condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods", now));
            } else if failed > spec.backoff_limit.unwrap_or(6) {
                conditions.push(condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now));
            } else if let Some(ads) = spec.active_deadline_seconds {
                let deadline = start.as_second() + ads;
                if now.as_second() >= deadline {
                    conditions.push(condition("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline", now));
                } else {
                    requeue = Some(Duration::from_secs((deadline - now.as_second()) as u64));
                }
            }
        }
        let target = conditions.iter().find(|c| (c.type_ == "FailureTarget" || c.type_ == "SuccessCriteriaMet") && c.status == "True").cloned();
        let mut completion_time = None;
        if let Some(t) = &target {
            // Terminal: stop what still runs; finish once nothing runs.
            if !active.is_empty() {
                self.delete_pods(key, &api, &active).await?;
            } else if terminating == 0 {
                let (ty, reason, msg) = if t.type_ == "SuccessCriteriaMet" {
                    completion_time = Some(now);
                    ("Complete", t.reason.clone().unwrap_or_default(), t.message.clone().unwrap_or_default())
                } else {
                    ("Failed", t.reason.clone().unwrap_or_default(), t.message.clone().unwrap_or_default())
                };
                conditions.push(condition(ty, &reason, &msg, now));
            }
        } else if satisfied && !is_terminating(&job.metadata) {
            let wait = failure_backoff_left(&pods, failed, now);
            if wait.is_zero() {
                self.manage(&job, &spec, key, &api, &active, &completed, succeeded).await?;
            } else {
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            }
        }

        let ready = active.iter().filter(|p| is_pod_ready(p)).count();
        let mut status = json!({
            "active": active.len(), "ready": ready, "terminating": terminating,
            "succeeded": succeeded, "failed": failed,
            "startTime": st.start_time.clone().unwrap_or(Time(now)),
            "uncountedTerminatedPods": {"succeeded": unc_ok, "failed": unc_fail},
            "conditions": conditions,
        });
        if indexed {
            status["completedIndexes"] = json!(format_intervals(&completed));
        }
        if let Some(t) = completion_time {
            status["completionTime"] = json!(Time(t));
        }
        let old = json!({
            "active": st.active.unwrap_or(0), "ready": st.ready.unwrap_or(0), "terminating": st.terminating.unwrap_or(0),
            "succeeded": st.succeeded.unwrap_or(0), "failed": st.failed.unwrap_or(0), "startTime": st.start_time,
            "uncountedTerminatedPods": {"succeeded": unc.succeeded.clone().unwrap_or_default(), "failed": unc.failed.clone().unwrap_or_default()},
            "conditions": st.conditions.clone().unwrap_or_default(),
        });
        let changed = completion_time.is_some()
            || (indexed && st.completed_indexes.as_deref().unwrap_or("") != format_intervals(&completed))
            || status.as_object().unwrap().iter().any(|(k, v)| old.get(k).is_some_and(|o| o != v));
        if changed {
            jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await?;
            self.counted.lock().insert(key.to_owned(), succeeded + failed);
        }
        Ok(requeue)
    }

    /// Create or delete pods so that the right number (or the right indexes) run.
    #[allow(clippy::too_many_arguments)]
    async fn manage(&self, job: &Job, spec: &JobSpec, key: &str, api: &Api<Pod>, active: &[&Pod], completed: &BTreeSet<i32>, succeeded: i32) -> Result<()> {
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let name = job.metadata.name.clone().unwrap_or_default();
        let mut to_create: Vec<Option<i32>> = Vec::new();
        if spec.completion_mode.as_deref() == Some("Indexed") {
            let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
            let room = (parallelism - active.len() as i32).max(0) as usize;
            to_create = (0..spec.completions.unwrap_or(1)).filter(|i| !completed.contains(i) && !running.contains(i)).take(room).map(Some).collect();
        } else {
            let want = match spec.completions {
                Some(c) => parallelism.min((c - succeeded).max(0)),
                None if succeeded > 0 => active.len() as i32,
                None => parallelism,
            };
            let have = active.len() as i32;
            if want > have {
                to_create = vec![None; (want - have) as usize];
            } else if want < have {
                let mut victims = active.to_vec();
                crate::replicaset::rank_for_deletion(&mut victims, Timestamp::now());
                self.delete_pods(key, api, &victims[..(have - want) as usize]).await?;
            }
        }
        if to_create.is_empty() {
            return Ok(());
        }
        tracing::info!(job = %key, creating = to_create.len(), "creating job pods");
        let owner = owner_ref("batch/v1", "Job", &job.metadata);
        let template = spec.template.clone();
        let pods: Vec<Pod> = to_create.iter().map(|idx| job_pod(&template, &name, owner.clone(), *idx)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (created, err) = crate::replicaset::slow_start(pods.len(), || {
            let pod = pods[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)].clone();
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await.map(|p| p.metadata.name.unwrap_or_default()) }
        })
        .await;
        self.expectations.expect_adds(key, created);
        if let Some(e) = err {
            return Err(e.into());
        }
        Ok(())
    }

    async fn delete_pods(&self, key: &str, api: &Api<Pod>, pods: &[&Pod]) -> Result<()> {
        let names: Vec<String> = pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
        self.expectations.expect_dels(key, names.clone());
        for n in names {
            match api.delete(&n, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// How long pod creation must still wait after the latest failure (upstream's backoff).
fn failure_backoff_left(pods: &[Arc<Pod>], failed: i32, now: Timestamp) -> Duration {
    let last = pods
        .iter()
        .filter(|p| pod_phase(p) == "Failed")
        .filter_map(|p| {
            let cs = p.status.as_ref()?.container_statuses.as_ref()?;
            cs.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0)).max()
        })
        .max();
    let Some(last) = last else { return Duration::ZERO };
    let until = last.as_second() + failure_backoff(failed).as_secs() as i64;
    Duration::from_secs((until - now.as_second()).max(0) as u64)
}

fn has_finalizer(p: &Pod) -> bool {
    p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

async fn remove_finalizer(api: &Api<Pod>, p: &Pod) -> Result<()> {
    if !has_finalizer(p) {
        return Ok(());
    }
    let rest: Vec<&String> = p.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": if rest.is_empty() { json!(null) } else { json!(rest) }, "resourceVersion": p.metadata.resource_version}});
    match api.patch(p.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A Job's pod: generateName `<job>-` (Indexed: `<job>-<index>-`, with the
/// index annotation, label, hostname and JOB_COMPLETION_INDEX env var), and the tracking finalizer.
pub fn job_pod(template: &k8s_openapi::api::core::v1::PodTemplateSpec, job: &str, owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference, index: Option<i32>) -> Pod {
    let prefix = match index {
        Some(i) => generate_prefix(&format!("{job}-{i}")),
        None => generate_prefix(job),
    };
    let mut pod = pod_from_template(template, &prefix, owner);
    pod.metadata.finalizers.get_or_insert_with(Vec::new).push(TRACKING_FINALIZER.into());
    if let Some(i) = index {
        pod.metadata.annotations.get_or_insert_with(Default::default).insert(INDEX_KEY.into(), i.to_string());
        pod.metadata.labels.get_or_insert_with(Default::default).insert(INDEX_KEY.into(), i.to_string());
        let spec = pod.spec.get_or_insert_with(Default::default);
        spec.hostname = Some(format!("{job}-{i}"));
        let env = EnvVar {
            name: INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { api_version: None, field_path: format!("metadata.annotations['{INDEX_KEY}']") }),
                ..Default::default()
            }),
        };
        for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            let e = c.env.get_or_insert_with(Vec::new);
            if !e.iter().any(|v| v.name == INDEX_ENV) {
                e.push(env.clone());
            }
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_pods_carry_their_index() {
        let t = serde_json::from_value(json!({"metadata": {"labels": {"job-name": "j"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}})).unwrap();
        let o = owner_ref("batch/v1", "Job", &Default::default());
        let p = job_pod(&t, "j", o.clone(), Some(3));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-3-"));
        assert_eq!(p.metadata.annotations.as_ref().unwrap()[INDEX_KEY], "3");
        assert_eq!(p.metadata.labels.as_ref().unwrap()[INDEX_KEY], "3");
        assert_eq!(p.metadata.finalizers.as_ref().unwrap(), &[TRACKING_FINALIZER.to_string()]);
        let s = p.spec.unwrap();
        assert_eq!(s.hostname.as_deref(), Some("j-3"));
        assert_eq!(s.containers[0].env.as_ref().unwrap()[0].name, INDEX_ENV);
        let p = job_pod(&t, "j", o, None);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("j-"));
        assert!(p.metadata.annotations.is_none() && p.spec.unwrap().hostname.is_none());
    }
}
