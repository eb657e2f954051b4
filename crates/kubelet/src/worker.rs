//! One pod worker per pod bound to this node. Each pass it makes the
//! runtime match the spec through the CRI (sandbox, then init containers one
//! at a time, then the app containers, restarting by restartPolicy with
//! CrashLoopBackOff), then reports the status through pods/status. When the
//! API server sets deletionTimestamp it stops the containers gracefully
//! (SIGTERM, the grace period, SIGKILL), removes the sandbox and deletes the
//! pod with gracePeriodSeconds=0.

use crate::backoff::Backoff;
use crate::probes::{action, Probe};
use crate::status;
use crate::Ctx;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use skiff_cri as cri;
use skiff_runtime::timefmt::{now_nanos, rfc3339};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;

pub struct Worker {
    ctx: Arc<Ctx>,
    sandbox: Option<(String, String, cri::PodSandboxConfig)>,
    ids: HashMap<String, Vec<String>>,
    backoff: HashMap<String, Backoff>,
    waiting: HashMap<String, (String, String)>,
    start_time: String,
    last_status: Value,
    cond_times: HashMap<String, (Value, Value)>,
    /// Startup, liveness and readiness probes, by container instance ID.
    probes: HashMap<String, [Option<Probe>; 3]>,
    volumes_synced: Option<Instant>,
    /// The outcome of preparing the volumes earlier in the current `sync`,
    /// if it did: containers started in the same pass use it instead of
    /// preparing (API reads, file writes) a second time.
    volumes_now: Option<Result<(), String>>,
    pruned: HashMap<String, usize>,
    /// Evicted under node pressure: stopped for good, waiting for deletion.
    evicted: bool,
    /// When this worker began: the debug-level step timings count from here.
    born: Instant,
}

/// The pod's log directory, upstream's layout.
pub fn log_dir(root: &std::path::Path, pod: &Value) -> std::path::PathBuf {
    let m = &pod["metadata"];
    root.join(format!("{}_{}_{}", m["namespace"].as_str().unwrap_or(""), m["name"].as_str().unwrap_or(""), m["uid"].as_str().unwrap_or("")))
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect()
}

impl Worker {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx, sandbox: None, ids: HashMap::new(), backoff: HashMap::new(), waiting: HashMap::new(), start_time: String::new(), last_status: Value::Null, cond_times: HashMap::new(), probes: HashMap::new(), volumes_synced: None, volumes_now: None, pruned: HashMap::new(), evicted: false, born: Instant::now() }
    }

    /// Run until the pod is gone.
    pub async fn run(mut self, mut rx: watch::Receiver<Option<Value>>) {
        let mut uid = String::new();
        loop {
            let pod = rx.borrow_and_update().clone();
            if let Some(p) = &pod {
                uid = s(&p["metadata"]["uid"]);
                self.ctx.live_pods.lock().insert(uid.clone(), p.clone());
            }
            let eviction = self.ctx.evictions.lock().get(&uid).cloned();
            match pod {
                None => {
                    self.forget(&uid);
                    self.teardown(None, 0).await;
                    return;
                }
                Some(p) if !p["metadata"]["deletionTimestamp"].is_null() => {
                    self.forget(&uid);
                    self.terminate(&p).await;
                    return;
                }
                Some(_) if self.evicted => {}
                Some(p) if eviction.is_some() => self.evict(&p, eviction.as_deref().unwrap_or_default()).await,
                Some(p) => {
                    self.ctx.metrics.syncs.inc();
                    if let Err(e) = self.sync(&p).await {
                        tracing::warn!(pod = %p["metadata"]["name"], "sync: {e:#}");
                    }
                    if let Err(e) = self.report(&p).await {
                        tracing::warn!(pod = %p["metadata"]["name"], "status update: {e:#}");
                    }
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { self.forget(&uid); self.teardown(None, 0).await; return; },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn forget(&self, uid: &str) {
        self.ctx.live_pods.lock().remove(uid);
        self.ctx.evictions.lock().remove(uid);
    }

    /// Kill the pod at once (hard eviction has no grace period) and report
    /// it Failed with reason Evicted, as upstream's eviction manager does.
    async fn evict(&mut self, pod: &Value, message: &str) {
        tracing::info!(pod = %pod["metadata"]["name"], "{message}");
        self.evicted = true;
        self.teardown(Some(pod), 0).await;
        let _ = self.report(pod).await;
        let now = rfc3339(now_nanos());
        let mut st = self.last_status.clone();
        st["phase"] = json!("Failed");
        st["reason"] = json!("Evicted");
        st["message"] = json!(message);
        let mut conds: Vec<Value> = st["conditions"].as_array().cloned().unwrap_or_default();
        for c in conds.iter_mut().filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady") {
            if c["status"] != "False" {
                c["status"] = json!("False");
                c["lastTransitionTime"] = json!(now);
            }
        }
        conds.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": message, "lastTransitionTime": now}));
        st["conditions"] = json!(conds);
        let m = &pod["metadata"];
        let path = format!("/api/v1/namespaces/{}/pods/{}/status", s(&m["namespace"]), s(&m["name"]));
        if let Err(e) = self.ctx.api.ok("PATCH", &path, "application/merge-patch+json", Some(&json!({"status": st}))).await {
            tracing::warn!("evicted pod status: {e:#}");
        }
    }

    fn sandbox_config(&self, pod: &Value) -> cri::PodSandboxConfig {
        let m = &pod["metadata"];
        let labels: HashMap<String, String> = [("io.kubernetes.pod.name", s(&m["name"])), ("io.kubernetes.pod.namespace", s(&m["namespace"])), ("io.kubernetes.pod.uid", s(&m["uid"]))].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata { name: s(&m["name"]), uid: s(&m["uid"]), namespace: s(&m["namespace"]), attempt: 0 }),
            hostname: pod["spec"]["hostname"].as_str().map(str::to_string).unwrap_or_else(|| s(&m["name"])),
            log_directory: log_dir(&self.ctx.log_root, pod).display().to_string(),
            dns_config: None,
            labels,
            annotations: Default::default(),
            linux: Some(cri::LinuxPodSandboxConfig { cgroup_parent: crate::resources::pod_cgroup(pod), security_context: Some(cri::LinuxSandboxSecurityContext { namespace_options: Some(crate::namespaces::for_pod(pod)) }) }),
        }
    }

    async fn observe(&self) -> HashMap<String, Vec<cri::ContainerStatus>> {
        let mut rt = self.ctx.rt.clone();
        let mut out = HashMap::new();
        for (name, ids) in &self.ids {
            let mut v = vec![];
            for id in ids {
                if let Ok(r) = rt.container_status(cri::ContainerStatusRequest { container_id: id.clone(), verbose: false }).await {
                    v.extend(r.into_inner().status);
                }
            }
            out.insert(name.clone(), v);
        }
        out
    }

    /// After an agent restart: take over the pod's ready sandbox and its
    /// containers (instances ordered by attempt) instead of starting anew.
    async fn adopt(&mut self, pod: &Value) -> Result<()> {
        let uid = s(&pod["metadata"]["uid"]);
        let mut rt = self.ctx.rt.clone();
        let filter = cri::PodSandboxFilter { label_selector: [("io.kubernetes.pod.uid".to_string(), uid)].into(), state: Some(cri::PodSandboxStateValue { state: 0 }), ..Default::default() };
        let items = rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) }).await?.into_inner().items;
        let Some(sb) = items.into_iter().max_by_key(|s| s.created_at) else { return Ok(()) };
        let st = rt.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: sb.id.clone(), verbose: false }).await?.into_inner();
        let ip = st.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
        let filter = cri::ContainerFilter { pod_sandbox_id: sb.id.clone(), ..Default::default() };
        let mut cs = rt.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await?.into_inner().containers;
        cs.sort_by_key(|c| (c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0), c.created_at));
        for c in cs {
            let (name, attempt) = c.metadata.map(|m| (m.name, m.attempt as usize)).unwrap_or_default();
            let ids = self.ids.entry(name.clone()).or_default();
            if ids.is_empty() {
                // Instances before the oldest one left were pruned: they still
                // count as restarts, and new attempts number after them.
                self.pruned.insert(name, attempt);
            }
            ids.push(c.id);
        }
        tracing::info!(pod = %pod["metadata"]["name"], sandbox = %sb.id, "adopted the running sandbox");
        self.start_time = rfc3339(sb.created_at);
        self.sandbox = Some((sb.id, ip, self.sandbox_config(pod)));
        Ok(())
    }

    async fn sync(&mut self, pod: &Value) -> Result<()> {
        if self.sandbox.is_none() && self.start_time.is_empty() {
            self.adopt(pod).await?;
        }
        if self.sandbox.is_none() {
            let config = self.sandbox_config(pod);
            // The kubelet owns the pod's log directory (runtimes only create files in it).
            std::fs::create_dir_all(&config.log_directory).with_context(|| format!("creating {}", config.log_directory))?;
            let mut rt = self.ctx.rt.clone();
            let id = rt.run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() }).await?.into_inner().pod_sandbox_id;
            let st = rt.pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false }).await?.into_inner();
            let ip = st.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default();
            self.start_time = rfc3339(now_nanos());
            self.sandbox = Some((id, ip, config));
            self.step(pod, "sandbox ready");
        }
        self.volumes_now = None;
        if self.volumes_synced.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            self.volumes_synced = Some(Instant::now());
            let ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
            let prepared = crate::volumes::prepare(&self.ctx.api, &self.ctx.root_dir, pod, &ip, &self.ctx.node_ip).await;
            if let Err(e) = &prepared {
                tracing::debug!("volumes: {e:#}");
            }
            self.volumes_now = Some(prepared.map_err(|e| format!("{e:#}")));
            self.step(pod, "volumes synced");
        }
        let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string();
        let obs = self.observe().await;
        let last = |n: &str| obs.get(n).and_then(|v| v.last()).map(|l| (l.state, l.exit_code));
        let terminal = matches!(status::phase(pod, &obs), "Succeeded" | "Failed");
        for c in pod["spec"]["initContainers"].as_array().cloned().unwrap_or_default() {
            let name = s(&c["name"]);
            if status::is_sidecar(&c) {
                // Sidecars start in order, keep running (restarted whatever the
                // pod's policy), and stop once the pod's main work is over.
                match last(&name) {
                    None if !terminal => return self.start(pod, &c).await,
                    Some((EXITED, _)) if !terminal => self.maybe_restart(pod, &c).await?,
                    Some((RUNNING, _)) if terminal => {
                        if let Some(id) = self.ids.get(&name).and_then(|v| v.last()).cloned() {
                            let mut rt = self.ctx.rt.clone();
                            let grace = Self::grace(pod);
                            tokio::spawn(async move { rt.stop_container(cri::StopContainerRequest { container_id: id, timeout: grace }).await });
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match last(&name) {
                None => return self.start(pod, &c).await,
                Some((EXITED, 0)) => continue,
                Some((EXITED, _)) if policy != "Never" => return self.maybe_restart(pod, &c).await,
                _ => return Ok(()),
            }
        }
        for c in pod["spec"]["containers"].as_array().cloned().unwrap_or_default() {
            let name = s(&c["name"]);
            match last(&name) {
                None => self.start(pod, &c).await?,
                Some((EXITED, code)) if policy == "Always" || (policy == "OnFailure" && code != 0) => self.maybe_restart(pod, &c).await?,
                Some((RUNNING, _)) => {
                    self.waiting.remove(&name);
                    if let Some(id) = self.ids.get(&name).and_then(|v| v.last()).cloned() {
                        self.probe(pod, &c, &id).await;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A debug-level event with the time since the worker began, so that a
    /// slow start can be traced step by step (`--log-level skiff_kubelet::worker=debug`).
    fn step(&self, pod: &Value, what: &str) {
        tracing::debug!(pod = %pod["metadata"]["name"], ms = self.born.elapsed().as_millis() as u64, "{what}");
    }

    fn grace(pod: &Value) -> i64 {
        pod["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)
    }

    /// Run the container's due probes; a failed startup or liveness probe kills it
    /// (restartPolicy then decides), readiness feeds the Ready condition.
    async fn probe(&mut self, pod: &Value, c: &Value, id: &str) {
        let now = Instant::now();
        let ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
        let set = self.probes.entry(id.to_string()).or_insert_with(|| ["startupProbe", "livenessProbe", "readinessProbe"].map(|k| c[k].is_object().then(|| Probe::new(c[k].clone(), now))));
        let mut rt = self.ctx.rt.clone();
        let mut kill = None;
        if let Some(p) = set[0].as_mut().filter(|p| p.result != Some(true)) {
            if p.due(now) {
                let ok = p.run(&mut rt, id, &ip).await;
                if p.record(ok, now) == Some(false) {
                    kill = Some("Startup");
                }
            }
        } else {
            if let Some(p) = set[1].as_mut().filter(|p| p.due(now)) {
                let ok = p.run(&mut rt, id, &ip).await;
                if p.record(ok, now) == Some(false) {
                    kill = Some("Liveness");
                }
            }
            if let Some(p) = set[2].as_mut().filter(|p| p.due(now)) {
                let ok = p.run(&mut rt, id, &ip).await;
                p.record(ok, now);
            }
        }
        if let Some(which) = kill {
            tracing::info!(pod = %pod["metadata"]["name"], container = %c["name"], "{which} probe failed, container will be restarted");
            self.probes.remove(id);
            let (id, grace) = (id.to_string(), Self::grace(pod));
            tokio::spawn(async move { rt.stop_container(cri::StopContainerRequest { container_id: id, timeout: grace }).await });
        }
    }

    /// Readiness per container name: its readiness probe passes and its startup probe has.
    fn readiness(&self, pod: &Value) -> HashMap<String, bool> {
        let mut out = HashMap::new();
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let name = s(&c["name"]);
            let Some(set) = self.ids.get(&name).and_then(|v| v.last()).and_then(|id| self.probes.get(id)) else {
                if c["readinessProbe"].is_object() || c["startupProbe"].is_object() {
                    out.insert(name, false);
                }
                continue;
            };
            let started = set[0].as_ref().is_none_or(|p| p.result == Some(true));
            let ready = set[2].as_ref().is_none_or(|p| p.result == Some(true));
            out.insert(name, started && ready);
        }
        out
    }

    async fn maybe_restart(&mut self, pod: &Value, c: &Value) -> Result<()> {
        let name = s(&c["name"]);
        let now = Instant::now();
        let b = self.backoff.entry(name.clone()).or_default();
        if b.remaining(now).is_zero() {
            b.restarted(now);
            self.ctx.metrics.restarts.inc();
            self.start(pod, c).await
        } else {
            let msg = format!("back-off {}s restarting failed container={name} pod={}_{}({})", b.delay().as_secs(), s(&pod["metadata"]["name"]), s(&pod["metadata"]["namespace"]), s(&pod["metadata"]["uid"]));
            self.waiting.insert(name, ("CrashLoopBackOff".into(), msg));
            Ok(())
        }
    }

    async fn start(&mut self, pod: &Value, c: &Value) -> Result<()> {
        let (sid, _, sconfig) = self.sandbox.clone().context("no sandbox")?;
        let name = s(&c["name"]);
        let image = s(&c["image"]);
        let mut img = self.ctx.img.clone();
        let have = img.image_status(cri::ImageStatusRequest { image: Some(cri::ImageSpec { image: image.clone(), annotations: Default::default() }), verbose: false }).await?.into_inner().image.is_some();
        let policy = c["imagePullPolicy"].as_str().unwrap_or(if image.ends_with(":latest") || !image.rsplit('/').next().unwrap_or("").contains(':') { "Always" } else { "IfNotPresent" });
        if !have && policy == "Never" {
            self.waiting.insert(name, ("ErrImageNeverPull".into(), format!("Container image \"{image}\" is not present with pull policy of Never")));
            return Ok(());
        }
        if !have || policy == "Always" {
            // Failed pulls back off like crashes: ErrImagePull, then ImagePullBackOff.
            let key = format!("pull/{name}");
            let now = Instant::now();
            if self.backoff.get(&key).is_some_and(|b| !b.remaining(now).is_zero()) {
                self.waiting.insert(name, ("ImagePullBackOff".into(), format!("Back-off pulling image \"{image}\"")));
                return Ok(());
            }
            match img.pull_image(cri::PullImageRequest { image: Some(cri::ImageSpec { image: image.clone(), annotations: Default::default() }), auth: None, sandbox_config: Some(sconfig.clone()) }).await {
                Ok(_) => {
                    self.backoff.remove(&key);
                }
                Err(e) if have => tracing::warn!("pulling {image}: {}; using the local copy", e.message()),
                Err(e) => {
                    self.backoff.entry(key).or_default().restarted(now);
                    self.waiting.insert(name, ("ErrImagePull".into(), e.message().to_string()));
                    return Ok(());
                }
            }
        }
        let ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
        let volumes_now = self.volumes_now.clone();
        let prepared = async {
            match volumes_now {
                Some(r) => r.map_err(anyhow::Error::msg)?,
                None => crate::volumes::prepare(&self.ctx.api, &self.ctx.root_dir, pod, &ip, &self.ctx.node_ip).await?,
            }
            let mounts = crate::volumes::mounts(&self.ctx.root_dir, pod, c)?;
            let env = crate::volumes::env(&self.ctx.api, pod, c, &ip, &self.ctx.node_ip).await?;
            anyhow::Ok((mounts, env))
        };
        let (mounts, envs) = match prepared.await {
            Ok(x) => x,
            Err(e) => {
                self.waiting.insert(name, ("CreateContainerConfigError".into(), format!("{e:#}")));
                return Ok(());
            }
        };
        // Attempts count every instance, pruned ones too: runtimes such as
        // containerd name containers by (name, attempt) and refuse a reuse.
        let attempt = (self.ids.get(&name).map(Vec::len).unwrap_or(0) + self.pruned.get(&name).copied().unwrap_or(0)) as u32;
        let (shares, quota, mem, oom) = crate::resources::container_limits(pod, c);
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: name.clone(), attempt }),
            image: Some(cri::ImageSpec { image, annotations: Default::default() }),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            working_dir: s(&c["workingDir"]),
            envs,
            mounts,
            labels: [("io.kubernetes.container.name".to_string(), name.clone()), ("io.kubernetes.pod.uid".to_string(), s(&pod["metadata"]["uid"]))].into(),
            annotations: Default::default(),
            log_path: format!("{name}/{attempt}.log"),
            stdin: c["stdin"].as_bool().unwrap_or(false),
            stdin_once: c["stdinOnce"].as_bool().unwrap_or(false),
            tty: c["tty"].as_bool().unwrap_or(false),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources { cpu_period: if quota > 0 { 100_000 } else { 0 }, cpu_quota: quota, cpu_shares: shares, memory_limit_in_bytes: mem, oom_score_adj: oom }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(crate::namespaces::for_pod(pod)),
                    run_as_user: c["securityContext"]["runAsUser"].as_i64().map(|value| cri::Int64Value { value }),
                    run_as_group: c["securityContext"]["runAsGroup"].as_i64().map(|value| cri::Int64Value { value }),
                }),
            }),
        };
        self.step(pod, "container config ready");
        let mut rt = self.ctx.rt.clone();
        let id = match rt.create_container(cri::CreateContainerRequest { pod_sandbox_id: sid, config: Some(config), sandbox_config: Some(sconfig) }).await {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                self.waiting.insert(name, ("CreateContainerError".into(), e.message().to_string()));
                return Ok(());
            }
        };
        let ids = self.ids.entry(name.clone()).or_default();
        ids.push(id.clone());
        // Keep the running instance and the one before it (lastState, logs
        // --previous); remove older ones from the runtime, and their log
        // files (runtimes leave those to the kubelet), as upstream's GC does.
        while ids.len() > 2 {
            let old = ids.remove(0);
            *self.pruned.entry(name.clone()).or_default() += 1;
            self.probes.remove(&old);
            let mut rt = self.ctx.rt.clone();
            let log_root = self.ctx.log_root.clone();
            tokio::spawn(async move {
                let log = rt.container_status(cri::ContainerStatusRequest { container_id: old.clone(), verbose: false }).await.ok().and_then(|r| r.into_inner().status).map(|s| s.log_path);
                let _ = rt.remove_container(cri::RemoveContainerRequest { container_id: old }).await;
                if let Some(log) = log.filter(|l| std::path::Path::new(l).starts_with(&log_root)) {
                    let _ = std::fs::remove_file(log);
                }
            });
        }
        self.step(pod, "container created");
        rt.start_container(cri::StartContainerRequest { container_id: id.clone() }).await?;
        self.step(pod, "container running");
        self.waiting.remove(&name);
        let post = &c["lifecycle"]["postStart"];
        if post.is_object() {
            let ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
            if !action(post, &mut rt, &id, &ip, Self::grace(pod).max(1) as u64).await {
                tracing::info!(pod = %pod["metadata"]["name"], container = %name, "postStart hook failed, killing the container");
                rt.stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: Self::grace(pod) }).await?;
            }
        }
        tracing::info!(pod = %pod["metadata"]["name"], container = %name, id = %id, "started container");
        Ok(())
    }

    async fn report(&mut self, pod: &Value) -> Result<()> {
        let obs = self.observe().await;
        let ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
        let now = rfc3339(now_nanos());
        let mut st = status::compute(&status::Inputs { pod, pod_ip: &ip, host_ip: &self.ctx.node_ip, start_time: &self.start_time, instances: &obs, waiting: &self.waiting, now: &now, readiness: &self.readiness(pod), pruned: &self.pruned, runtime: &self.ctx.runtime_name });
        // Keep each condition's transition time until its status changes.
        for c in st["conditions"].as_array_mut().into_iter().flatten() {
            let t = s(&c["type"]);
            match self.cond_times.get(&t) {
                Some((status, time)) if *status == c["status"] => c["lastTransitionTime"] = time.clone(),
                _ => {
                    self.cond_times.insert(t, (c["status"].clone(), c["lastTransitionTime"].clone()));
                }
            }
        }
        if st == self.last_status {
            return Ok(());
        }
        let m = &pod["metadata"];
        let path = format!("/api/v1/namespaces/{}/pods/{}/status", s(&m["namespace"]), s(&m["name"]));
        self.ctx.api.ok("PATCH", &path, "application/merge-patch+json", Some(&json!({"status": st}))).await?;
        self.step(pod, &format!("status sent ({})", st["phase"].as_str().unwrap_or_default()));
        self.last_status = st;
        Ok(())
    }

    /// Stop every container (SIGTERM, `grace` seconds, SIGKILL) in parallel, then the sandbox.
    /// preStop hooks run first, within the grace period.
    async fn teardown(&mut self, pod: Option<&Value>, grace: i64) {
        let sidecars: Vec<String> = pod.and_then(|p| p["spec"]["initContainers"].as_array()).into_iter().flatten().filter(|c| status::is_sidecar(c)).map(|c| s(&c["name"])).collect();
        let t0 = Instant::now();
        self.stop_group(pod, grace, |n| !sidecars.contains(&n.to_string())).await;
        let left = if grace > 0 { (grace - t0.elapsed().as_secs() as i64).max(2) } else { 0 };
        self.stop_group(pod, left, |n| sidecars.contains(&n.to_string())).await;
        if let Some((sid, _, config)) = &self.sandbox {
            let mut rt = self.ctx.rt.clone();
            let _ = rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sid.clone() }).await;
            let _ = rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sid.clone() }).await;
            // The runtime removed the containers' cgroups; the pod's is ours to remove.
            if let Some(cg) = config.linux.as_ref().map(|l| l.cgroup_parent.clone()).filter(|c| !c.is_empty()) {
                let _ = tokio::task::spawn_blocking(move || crate::pod_cgroups::remove(&cg)).await;
            }
        }
    }

    /// Stop, in parallel, the containers whose name `pick` selects.
    async fn stop_group(&self, pod: Option<&Value>, grace: i64, pick: impl Fn(&str) -> bool) {
        let mut stops = vec![];
        let ip = self.sandbox.as_ref().map(|s| s.1.clone()).unwrap_or_default();
        for (name, ids) in self.ids.iter().filter(|(n, _)| pick(n)) {
            let hook = pod.and_then(|p| p["spec"]["containers"].as_array()?.iter().find(|c| c["name"] == name.as_str()).map(|c| c["lifecycle"]["preStop"].clone())).filter(Value::is_object);
            for (i, id) in ids.iter().enumerate() {
                let mut rt = self.ctx.rt.clone();
                let id = id.clone();
                let hook = if i + 1 == ids.len() { hook.clone() } else { None };
                let ip = ip.clone();
                stops.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    if let Some(h) = hook.filter(|_| grace > 0) {
                        let _ = tokio::time::timeout(Duration::from_secs(grace as u64), action(&h, &mut rt, &id, &ip, grace as u64)).await;
                    }
                    let left = (grace - t0.elapsed().as_secs() as i64).max(if grace > 0 { 2 } else { 0 });
                    rt.stop_container(cri::StopContainerRequest { container_id: id, timeout: left }).await
                }));
            }
        }
        for s in stops {
            let _ = s.await;
        }
    }

    async fn terminate(&mut self, pod: &Value) {
        let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_i64().or(pod["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30);
        tracing::info!(pod = %pod["metadata"]["name"], grace, "terminating pod");
        let obs_before = self.observe().await;
        self.teardown(Some(pod), grace).await;
        let _ = obs_before;
        if let Err(e) = self.report(pod).await {
            tracing::debug!("final status: {e:#}");
        }
        let m = &pod["metadata"];
        let path = format!("/api/v1/namespaces/{}/pods/{}", s(&m["namespace"]), s(&m["name"]));
        let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": m["uid"]}});
        match self.ctx.api.call("DELETE", &path, "application/json", Some(&body)).await {
            Ok((c, _)) if c < 300 || c == 404 || c == 409 => {}
            Ok((c, v)) => tracing::warn!("deleting pod: {c} {}", v["message"]),
            Err(e) => tracing::warn!("deleting pod: {e:#}"),
        }
        let _ = std::fs::remove_dir_all(log_dir(&self.ctx.log_root, pod));
        crate::volumes::remove(&self.ctx.root_dir, pod);
    }
}
