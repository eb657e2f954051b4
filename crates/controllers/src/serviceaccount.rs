//! The ServiceAccount controller.
//!
//! Why: pods that name no service account get `default`, so every namespace
//! must have a ServiceAccount called `default`. This controller creates it in
//! each active namespace, and again if someone deletes it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::Ctx;

pub fn start(ctx: Arc<Ctx>) {
    let q = crate::queue::Queue::new("serviceaccount", ctx.metrics.clone());
    let qq = q.clone();
    ctx.namespaces.on_change(move |n| qq.add(n.metadata.name.clone().unwrap_or_default()));
    let qq = q.clone();
    ctx.serviceaccounts.on_change(move |sa| {
        if sa.metadata.name.as_deref() == Some("default") {
            qq.add(sa.metadata.namespace.clone().unwrap_or_default());
        }
    });
    crate::queue::run_workers(q, 1, move |ns| {
        let ctx = ctx.clone();
        async move { sync(&ctx, &ns).await }
    });
}

async fn sync(ctx: &Ctx, ns: &str) -> Result<Option<Duration>> {
    let Some(n) = ctx.namespaces.get(None, ns) else { return Ok(None) };
    if n.metadata.deletion_timestamp.is_some() || ctx.serviceaccounts.get(Some(ns), "default").is_some() {
        return Ok(None);
    }
    let sa = ServiceAccount { metadata: ObjectMeta { name: Some("default".into()), ..Default::default() }, ..Default::default() };
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns).create(&PostParams::default(), &sa).await {
        Ok(_) => tracing::info!(namespace = %ns, "created default service account"),
        // 409: exists (cache behind); 403/404: namespace terminating or gone.
        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404 | 409) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(None)
}
