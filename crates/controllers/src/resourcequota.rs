//! ResourceQuota status: `status.hard` mirrors `spec.hard`, `status.used`
//! holds what the namespace consumes of each hard resource (upstream's
//! resource quota controller, status half; admission is separate).
//!
//! Why a periodic full recompute instead of incremental accounting: a sum
//! rebuilt from a fresh list can never drift, and quotas are few. Every
//! [`PERIOD`] each quota's namespace is listed for just the kinds its hard
//! keys need, and status is written only when it differs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::Client;
use serde_json::Value;

use crate::quantity::{format, Qty};
use crate::quota_usage::{add_usage, pod_in_scopes, pod_usage, pvc_usage, service_usage, Usage};
use crate::Ctx;

/// How often every quota is recomputed (upstream resyncs every 5 minutes
/// but also reacts to every change; a short period stands in for both).
pub const PERIOD: Duration = Duration::from_secs(2);

pub fn start(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        let mut c = QuotaController { client: ctx.client.clone(), resources: HashMap::new() };
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = c.pass().await {
                tracing::warn!(error = %format!("{e:#}"), "resource quota pass failed");
            }
        }
    });
}

struct QuotaController {
    client: Client,
    /// `plural[.group]` -> how to list it (from discovery, cached).
    resources: HashMap<String, ApiResource>,
}

/// The kind a hard key is charged by: its `count/` object kind, or the kind
/// whose evaluator produces it.
fn kind_of(key: &str) -> Option<String> {
    if let Some(r) = key.strip_prefix("count/") {
        return Some(r.to_string());
    }
    let k = match key {
        "pods" | "cpu" | "memory" | "ephemeral-storage" => "pods",
        k if k.starts_with("requests.") && k != "requests.storage" || k.starts_with("limits.") => "pods",
        "services" | "services.nodeports" | "services.loadbalancers" => "services",
        "persistentvolumeclaims" | "requests.storage" => "persistentvolumeclaims",
        k if k.contains(".storageclass.storage.k8s.io/") => "persistentvolumeclaims",
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => key,
        _ => return None,
    };
    Some(k.to_string())
}

/// What one object of `kind` charges.
fn usage_of(kind: &str, obj: &Value, now: i64) -> Usage {
    match kind {
        "pods" => pod_usage(obj, now),
        "services" => {
            let mut u = service_usage(obj);
            u.insert("count/services".into(), Qty::count(1));
            u
        }
        "persistentvolumeclaims" => {
            let mut u = pvc_usage(obj);
            u.insert("count/persistentvolumeclaims".into(), Qty::count(1));
            u
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            Usage::from([(kind.to_string(), Qty::count(1)), (format!("count/{kind}"), Qty::count(1))])
        }
        other => Usage::from([(format!("count/{other}"), Qty::count(1))]),
    }
}

/// The status for a quota given the objects of its namespace by kind.
/// Keys nothing charges are reported as "0", as upstream.
pub fn compute_status(spec_hard: &BTreeMap<String, Quantity>, scopes: &[String], objects: &HashMap<String, Vec<Value>>, now: i64) -> ResourceQuotaStatus {
    let mut total = Usage::new();
    for (kind, items) in objects {
        for o in items {
            // Scoped quotas track pods only (upstream: other evaluators match no scope).
            if !scopes.is_empty() && (kind != "pods" || !pod_in_scopes(o, scopes)) {
                continue;
            }
            add_usage(&mut total, &usage_of(kind, o, now));
        }
    }
    let used = spec_hard.keys().map(|k| (k.clone(), Quantity(format(total.get(k).copied().unwrap_or_else(Qty::zero))))).collect();
    ResourceQuotaStatus { hard: Some(spec_hard.clone()), used: Some(used) }
}

impl QuotaController {
    async fn pass(&mut self) -> Result<()> {
        let quotas = Api::<ResourceQuota>::all(self.client.clone()).list(&ListParams::default()).await?.items;
        // One list per (namespace, kind) per pass, shared by the namespace's quotas.
        let mut cache: HashMap<(String, String), Vec<Value>> = HashMap::new();
        for q in quotas {
            let ns = q.metadata.namespace.clone().unwrap_or_default();
            let hard = q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
            let scopes = q.spec.as_ref().and_then(|s| s.scopes.clone()).unwrap_or_default();
            let mut objects = HashMap::new();
            for kind in hard.keys().filter_map(|k| kind_of(k)) {
                if objects.contains_key(&kind) {
                    continue;
                }
                let key = (ns.clone(), kind.clone());
                if !cache.contains_key(&key) {
                    match self.list(&ns, &kind).await {
                        Ok(items) => {
                            cache.insert(key.clone(), items);
                        }
                        Err(e) => {
                            tracing::debug!(namespace = %ns, resource = %kind, error = %format!("{e:#}"), "quota: cannot list");
                            continue;
                        }
                    }
                }
                objects.insert(kind, cache[&key].clone());
            }
            let status = compute_status(&hard, &scopes, &objects, jiff::Timestamp::now().as_second());
            if q.status.as_ref() == Some(&status) {
                continue;
            }
            self.write(q, status).await;
        }
        Ok(())
    }

    async fn write(&self, mut q: ResourceQuota, status: ResourceQuotaStatus) {
        let ns = q.metadata.namespace.clone().unwrap_or_default();
        let name = q.metadata.name.clone().unwrap_or_default();
        q.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &ns);
        match api.replace_status(&name, &PostParams::default(), &q).await {
            Ok(_) => tracing::debug!(quota = %format!("{ns}/{name}"), "updated quota status"),
            // A concurrent change: the next pass recomputes from fresh lists.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => tracing::warn!(quota = %format!("{ns}/{name}"), error = %e, "cannot update quota status"),
        }
    }

    /// Every object of `kind` (`plural` or `plural.group`) in `ns`, as JSON.
    async fn list(&mut self, ns: &str, kind: &str) -> Result<Vec<Value>> {
        let ar = self.resolve(kind).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let items = api.list(&ListParams::default()).await?.items;
        Ok(items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect())
    }

    async fn resolve(&mut self, kind: &str) -> Result<ApiResource> {
        if let Some(ar) = self.resources.get(kind) {
            return Ok(ar.clone());
        }
        let (plural, group) = kind.split_once('.').unwrap_or((kind, ""));
        let ar = if group.is_empty() {
            ApiResource { group: String::new(), version: "v1".into(), api_version: "v1".into(), kind: String::new(), plural: plural.into() }
        } else {
            let g = kube::discovery::group(&self.client, group).await?;
            g.recommended_resources().into_iter().map(|(ar, _)| ar).find(|ar| ar.plural == plural).ok_or_else(|| anyhow::anyhow!("no resource {kind}"))?
        };
        self.resources.insert(kind.to_string(), ar.clone());
        Ok(ar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_reports_every_hard_key() {
        let hard: BTreeMap<String, Quantity> =
            [("pods", "10"), ("requests.cpu", "4"), ("configmaps", "5"), ("count/deployments.apps", "2"), ("limits.memory", "8Gi")].into_iter().map(|(k, v)| (k.to_string(), Quantity(v.into()))).collect();
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "750m"}, "limits": {"memory": "1Gi"}}}]}});
        let done = json!({"status": {"phase": "Failed"}, "spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        let objects = HashMap::from([
            ("pods".to_string(), vec![pod.clone(), pod, done]),
            ("configmaps".to_string(), vec![json!({}), json!({})]),
            ("deployments.apps".to_string(), vec![json!({})]),
        ]);
        let st = compute_status(&hard, &[], &objects, 0);
        let used = st.used.unwrap();
        let get = |k: &str| used[k].0.clone();
        assert_eq!(get("pods"), "2");
        assert_eq!(get("requests.cpu"), "1500m");
        assert_eq!(get("limits.memory"), "2Gi");
        assert_eq!(get("configmaps"), "2");
        assert_eq!(get("count/deployments.apps"), "1");
        assert_eq!(st.hard.unwrap(), hard);
    }

    #[test]
    fn scoped_quota_counts_matching_pods_only() {
        let hard: BTreeMap<String, Quantity> = [("pods".to_string(), Quantity("5".into()))].into();
        let be = json!({"spec": {"containers": [{}]}});
        let burst = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        let objects = HashMap::from([("pods".to_string(), vec![be.clone(), be, burst])]);
        assert_eq!(compute_status(&hard, &["BestEffort".into()], &objects, 0).used.unwrap()["pods"].0, "2");
        assert_eq!(compute_status(&hard, &["NotBestEffort".into()], &objects, 0).used.unwrap()["pods"].0, "1");
    }

    #[test]
    fn keys_map_to_kinds() {
        assert_eq!(kind_of("requests.cpu").as_deref(), Some("pods"));
        assert_eq!(kind_of("requests.storage").as_deref(), Some("persistentvolumeclaims"));
        assert_eq!(kind_of("count/jobs.batch").as_deref(), Some("jobs.batch"));
        assert_eq!(kind_of("services.nodeports").as_deref(), Some("services"));
        assert_eq!(kind_of("hugepages-2Mi"), None);
    }
}
