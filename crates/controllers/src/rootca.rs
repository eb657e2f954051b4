//! The root CA publisher.
//!
//! Why: workloads verify the API server with the cluster CA. Upstream
//! publishes it as the ConfigMap `kube-root-ca.crt` (key `ca.crt`) in every
//! namespace, and puts it back if it is changed or deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::Ctx;

pub const NAME: &str = "kube-root-ca.crt";

pub fn start(ctx: Arc<Ctx>, ca_pem: String) {
    let q = crate::queue::Queue::new("root_ca_cert_publisher", ctx.metrics.clone());
    let qq = q.clone();
    ctx.namespaces.on_change(move |n| qq.add(n.metadata.name.clone().unwrap_or_default()));
    let qq = q.clone();
    ctx.configmaps.on_change(move |cm| {
        if cm.metadata.name.as_deref() == Some(NAME) {
            qq.add(cm.metadata.namespace.clone().unwrap_or_default());
        }
    });
    let ca = Arc::new(ca_pem);
    crate::queue::run_workers(q, 1, move |ns| {
        let (ctx, ca) = (ctx.clone(), ca.clone());
        async move { sync(&ctx, &ns, &ca).await }
    });
}

async fn sync(ctx: &Ctx, ns: &str, ca: &str) -> Result<Option<Duration>> {
    let Some(n) = ctx.namespaces.get(None, ns) else { return Ok(None) };
    if n.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let data: BTreeMap<String, String> = [("ca.crt".to_string(), ca.to_string())].into();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let r = match ctx.configmaps.get(Some(ns), NAME) {
        Some(cm) if cm.data.as_ref() == Some(&data) => return Ok(None),
        Some(cm) => {
            let mut cm = (*cm).clone();
            cm.data = Some(data);
            api.replace(NAME, &PostParams::default(), &cm).await.map(|_| ())
        }
        None => {
            let cm = ConfigMap { metadata: ObjectMeta { name: Some(NAME.into()), ..Default::default() }, data: Some(data), ..Default::default() };
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
    };
    match r {
        Ok(()) => tracing::info!(namespace = %ns, "published {NAME}"),
        Err(kube::Error::Api(e)) if matches!(e.code, 403 | 404 | 409) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(None)
}
