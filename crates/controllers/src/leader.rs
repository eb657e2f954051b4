//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's
//! `leaderelection` with kube-controller-manager's defaults: lease duration
//! 15s, renew deadline 10s, retry period 2s.
//!
//! Why: several controller managers may run (one per `skiff server`, or a
//! standalone `skiff controller-manager`); exactly one may act, or they would
//! fight over the same objects.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub fn kube_controller_manager(identity: String) -> Self {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One attempt to take or renew the lease. Ok(true) = we hold it now.
async fn try_acquire_or_renew(api: &Api<Lease>, cfg: &LeaderConfig) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let secs = cfg.lease_duration.as_secs() as i32;
    let existing = match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(cfg.name.clone()), namespace: Some(cfg.namespace.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
        Some(l) => l,
    };
    let mut spec = existing.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let ours = holder == cfg.identity;
    if !ours && !holder.is_empty() {
        let dur = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
        let renewed = spec.renew_time.as_ref().map(|t| t.0.as_second()).unwrap_or(0);
        if renewed + dur > Timestamp::now().as_second() {
            return Ok(false);
        }
    }
    if !ours {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(secs);
    let mut lease = existing.clone();
    lease.spec = Some(spec);
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Block until this process holds the lease.
pub async fn acquire(client: &kube::Client, cfg: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.name), identity = %cfg.identity, "attempting to acquire leader lease");
    loop {
        match try_acquire_or_renew(&api, cfg).await {
            Ok(true) => {
                tracing::info!(identity = %cfg.identity, "successfully acquired lease");
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "error acquiring the leader lease"),
        }
        tokio::time::sleep(cfg.retry_period).await;
    }
}

/// Renew every retry period; return when the lease could not be renewed for
/// the renew deadline (leadership lost).
pub async fn keep_renewing(client: &kube::Client, cfg: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut last_ok = Instant::now();
    loop {
        tokio::time::sleep(cfg.retry_period).await;
        match tokio::time::timeout(cfg.renew_deadline, try_acquire_or_renew(&api, cfg)).await {
            Ok(Ok(true)) => last_ok = Instant::now(),
            Ok(Ok(false)) => {
                tracing::error!("leader lease taken by another holder");
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "failed to renew the leader lease"),
            Err(_) => tracing::warn!("renewing the leader lease timed out"),
        }
        if last_ok.elapsed() > cfg.renew_deadline {
            tracing::error!("leaderelection lost");
            return;
        }
    }
}
