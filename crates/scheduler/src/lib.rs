//! Skiff's kube-scheduler: informer caches → scheduling queue → one cycle at
//! a time (filter/score plugins, preemption) → asynchronous binding. Only the
//! leader (a Lease in kube-system) schedules; the others keep warm caches.
//! See ARCHITECTURE.md ("The scheduler").

pub mod api;
pub mod cache;
pub mod framework;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod plugins;
pub mod pod_index;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};

use crate::cache::State;
use crate::framework::{Plugin, PodInfo};
use crate::metrics::{QueueLabel, ResultLabel};

#[derive(Clone, Debug)]
pub struct Config {
    /// Pods with this spec.schedulerName are ours.
    pub scheduler_name: String,
    /// None: schedule without electing (a single replica).
    pub leader_election: Option<leader::Config>,
    pub metrics_addr: Option<SocketAddr>,
    /// Bindings in flight at most (upstream binds asynchronously too).
    pub parallel_binds: usize,
    /// Emit a "Scheduled" event per bound pod, as upstream does.
    pub scheduled_events: bool,
}

/// What the informers, the queue flusher and the scheduling loop share.
pub struct Shared {
    pub state: Mutex<State>,
    /// Wakes the scheduling loop when the activeQ may have grown.
    pub wake: Notify,
    pub metrics: metrics::Metrics,
}

const PROFILE: &str = "default-scheduler";

pub async fn run(client: kube::Client, cfg: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let shared = Arc::new(Shared { state: Mutex::new(State::new(&cfg.scheduler_name)), wake: Notify::new(), metrics: Default::default() });
    if let Some(addr) = cfg.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let s = shared.clone();
        tokio::spawn(metrics::serve(listener, move || s.metrics.render()));
    }
    tokio::pin!(shutdown);
    tokio::select! {
        _ = informer::start(client.clone(), shared.clone()) => {}
        _ = &mut shutdown => return Ok(()),
    }
    tracing::info!("caches synced");
    tokio::spawn(flush_forever(shared.clone()));
    let mut elector = cfg.leader_election.clone().map(|lc| leader::Elector::new(client.clone(), lc));
    if let Some(e) = elector.as_mut() {
        tokio::select! {
            _ = e.acquire() => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
    shared.metrics.leader.set(1);
    let work = schedule_forever(client, cfg, shared.clone());
    let result = match elector.as_mut() {
        Some(e) => tokio::select! {
            _ = work => Ok(()),
            _ = e.hold() => Err(anyhow::anyhow!("leader election lost")),
            _ = &mut shutdown => { e.release().await; Ok(()) }
        },
        None => tokio::select! {
            _ = work => Ok(()),
            _ = &mut shutdown => Ok(()),
        },
    };
    shared.metrics.leader.set(0);
    result
}

/// Every second: finished backoffs back to activeQ, queue gauges updated.
async fn flush_forever(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let (moved, (a, b, u)) = {
            let mut st = shared.state.lock();
            (st.queue.flush(Instant::now()), st.queue.len())
        };
        if moved > 0 {
            shared.wake.notify_one();
        }
        for (q, n) in [("active", a), ("backoff", b), ("unschedulable", u)] {
            shared.metrics.pending.get_or_create(&QueueLabel { queue: q }).set(n as i64);
        }
    }
}

async fn schedule_forever(client: kube::Client, cfg: Config, shared: Arc<Shared>) {
    let plugins: Arc<Vec<Box<dyn Plugin>>> = Arc::new(plugins::default_plugins());
    let binds = Arc::new(Semaphore::new(cfg.parallel_binds.max(1)));
    loop {
        let popped = shared.state.lock().queue.pop();
        let Some((info, attempts, first_seen)) = popped else {
            shared.wake.notified().await;
            continue;
        };
        let permit = binds.clone().acquire_owned().await.expect("semaphore");
        schedule_one(&client, &cfg, &shared, &plugins, info, attempts, first_seen, permit);
    }
}

/// One scheduling cycle, then the binding (or the failure report) in the background.
#[allow(clippy::too_many_arguments)]
fn schedule_one(client: &kube::Client, cfg: &Config, shared: &Arc<Shared>, plugins: &Arc<Vec<Box<dyn Plugin>>>, info: Arc<PodInfo>, attempts: u32, first_seen: Instant, permit: tokio::sync::OwnedSemaphorePermit) {
    let t0 = Instant::now();
    let mut st = shared.state.lock();
    match schedule::schedule(plugins, &mut st, &info) {
        Ok(node) => {
            st.assume(info.clone(), &node);
            st.queue.done(&info.key);
            drop(st);
            let label = ResultLabel { result: "scheduled", profile: PROFILE };
            shared.metrics.attempts.get_or_create(&label).inc();
            shared.metrics.attempt_duration.get_or_create(&label).observe(t0.elapsed().as_secs_f64());
            tracing::debug!(pod = %info.key, %node, "assumed");
            let (client, shared, events) = (client.clone(), shared.clone(), cfg.scheduled_events);
            tokio::spawn(async move {
                let r = api::bind(&client, &info, &node).await;
                drop(permit);
                match r {
                    Ok(()) => {
                        shared.metrics.e2e.observe(first_seen.elapsed().as_secs_f64());
                        if events {
                            let msg = format!("Successfully assigned {} to {node}", info.key);
                            if let Err(e) = api::event(&client, &info.pod, "Normal", "Scheduled", &msg).await {
                                tracing::debug!(error = %e, "Scheduled event");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(pod = %info.key, %node, error = %e, "binding failed");
                        let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                        let mut st = shared.state.lock();
                        st.forget(&info.key);
                        if !gone {
                            st.queue.backoff(info, attempts, first_seen);
                        }
                        shared.metrics.attempts.get_or_create(&ResultLabel { result: "error", profile: PROFILE }).inc();
                    }
                }
            });
        }
        Err(fit) => {
            let plan = preemption::preempt(plugins, &st, &info, &fit);
            let mut failed = fit.plugins();
            failed.push("DefaultPreemption");
            st.queue.unschedulable(&info.key, failed);
            drop(st);
            drop(permit);
            let label = ResultLabel { result: "unschedulable", profile: PROFILE };
            shared.metrics.attempts.get_or_create(&label).inc();
            shared.metrics.attempt_duration.get_or_create(&label).observe(t0.elapsed().as_secs_f64());
            let (post, plan) = match plan {
                Ok(p) => (None, Some(p)),
                Err(m) => (Some(m), None),
            };
            let message = fit.message(post.as_deref());
            tracing::info!(pod = %info.key, %message, nominated = plan.as_ref().map(|p| p.node.as_str()), "unschedulable");
            let (client, shared) = (client.clone(), shared.clone());
            tokio::spawn(async move {
                let nominated = plan.as_ref().map(|p| p.node.clone());
                if let Some(p) = &plan {
                    for v in &p.victims {
                        shared.metrics.preemption_victims.inc();
                        let msg = format!("Preempted by pod {} on node {}", info.pod.metadata.uid.as_deref().unwrap_or(""), p.node);
                        let _ = api::event(&client, &v.pod, "Normal", "Preempted", &msg).await;
                        if let Err(e) = api::delete_victim(&client, v).await {
                            tracing::warn!(victim = %v.key, error = %e, "deleting preemption victim");
                        }
                    }
                }
                if let Err(e) = api::mark_unschedulable(&client, &info, &message, nominated.as_deref()).await {
                    tracing::debug!(pod = %info.key, error = %e, "updating PodScheduled");
                }
                if let Err(e) = api::event(&client, &info.pod, "Warning", "FailedScheduling", &message).await {
                    tracing::debug!(pod = %info.key, error = %e, "FailedScheduling event");
                }
            });
        }
    }
}
