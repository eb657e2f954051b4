//! Leader election through a coordination.k8s.io/v1 Lease, as client-go's
//! leaderelection does: candidates try every retry period; the holder renews
//! and gives up if it cannot renew within the renew deadline; a lease is
//! free once its holder has not changed it for leaseDuration, measured on
//! our own clock from when we last saw it change (no clock-skew trust).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: Config,
    /// The last record we saw and when (our clock) it last changed.
    observed: Option<(LeaseSpec, Instant)>,
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, cfg: Config) -> Elector {
        Elector { api: Api::namespaced(client, &cfg.namespace), cfg, observed: None }
    }

    /// One attempt to acquire or renew; true if we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        let me = self.cfg.identity.clone();
        let fresh = LeaseSpec {
            holder_identity: Some(me.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs() as i32),
            acquire_time: Some(micro_now()),
            renew_time: Some(micro_now()),
            lease_transitions: Some(0),
            ..Default::default()
        };
        let current = match self.api.get_opt(&self.cfg.name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "reading leader lease");
                return false;
            }
        };
        let Some(mut lease) = current else {
            let lease = Lease { metadata: ObjectMeta { name: Some(self.cfg.name.clone()), namespace: Some(self.cfg.namespace.clone()), ..Default::default() }, spec: Some(fresh.clone()) };
            let ok = self.api.create(&PostParams::default(), &lease).await.is_ok();
            if ok {
                self.observed = Some((fresh, Instant::now()));
            }
            return ok;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = self.observed.as_ref().is_none_or(|(s, _)| s != &spec);
        if changed {
            self.observed = Some((spec.clone(), Instant::now()));
        }
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let seen = self.observed.as_ref().unwrap().1;
        if !holder.is_empty() && holder != me && seen.elapsed() < duration {
            return false;
        }
        let mut next = spec.clone();
        next.renew_time = Some(micro_now());
        next.lease_duration_seconds = Some(self.cfg.lease_duration.as_secs() as i32);
        if holder != me {
            next.holder_identity = Some(me.clone());
            next.acquire_time = Some(micro_now());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next.clone());
        // resourceVersion in the body makes this a compare-and-swap.
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => {
                self.observed = Some((next, Instant::now()));
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "updating leader lease");
                false
            }
        }
    }

    /// Blocks until we are the leader.
    pub async fn acquire(&mut self) {
        loop {
            if self.try_acquire_or_renew().await {
                tracing::info!(lease = %format!("{}/{}", self.cfg.namespace, self.cfg.name), identity = %self.cfg.identity, "acquired leadership");
                return;
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renews until a renewal fails for longer than the renew deadline; returns then.
    pub async fn hold(&mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            if self.try_acquire_or_renew().await {
                last_ok = Instant::now();
            } else if last_ok.elapsed() >= self.cfg.renew_deadline {
                tracing::error!("leader election lost");
                return;
            }
        }
    }

    /// Gives the lease up (on shutdown) so another replica need not wait it out.
    pub async fn release(&mut self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                spec.renew_time = Some(micro_now());
                let _ = self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await;
            }
        }
    }
}
