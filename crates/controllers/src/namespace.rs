//! The namespace controller.
//!
//! Why: deleting a namespace must delete everything in it. The API server
//! marks the namespace Terminating (deletionTimestamp, spec.finalizers
//! `kubernetes`); this controller discovers every namespaced resource type,
//! deletes all objects of each in the namespace, waits until none is left,
//! and then removes the `kubernetes` finalizer through the
//! `namespaces/<ns>/finalize` subresource so the API server can remove the
//! namespace itself.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{verbs, Discovery, Scope};

use crate::Ctx;

pub struct NamespaceController {
    ctx: Arc<Ctx>,
}

impl NamespaceController {
    pub fn start(ctx: Arc<Ctx>) {
        let q = crate::queue::Queue::new("namespace", ctx.metrics.clone());
        let qq = q.clone();
        ctx.namespaces.on_change(move |n| {
            if n.metadata.deletion_timestamp.is_some() {
                qq.add(n.metadata.name.clone().unwrap_or_default());
            }
        });
        let c = Arc::new(NamespaceController { ctx });
        crate::queue::run_workers(q, 2, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        });
    }

    async fn sync(&self, name: &str) -> Result<Option<Duration>> {
        let Some(ns) = self.ctx.namespaces.get(None, name) else { return Ok(None) };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let fins: Vec<String> = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !fins.iter().any(|f| f == "kubernetes") {
            return Ok(None);
        }
        let client = self.ctx.client.clone();
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut remaining = 0usize;
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if !matches!(caps.scope, Scope::Namespaced) || !caps.supports_operation(verbs::LIST) || !caps.supports_operation(verbs::DELETE) {
                    continue;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, &ar);
                let items = match api.list(&ListParams::default()).await {
                    Ok(l) => l.items,
                    Err(e) => {
                        tracing::warn!(namespace = %name, resource = %ar.plural, error = %e, "cannot list while deleting namespace");
                        continue;
                    }
                };
                if items.is_empty() {
                    continue;
                }
                remaining += items.len();
                for o in items {
                    if o.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let n = o.metadata.name.clone().unwrap_or_default();
                    match api.delete(&n, &DeleteParams::background()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if remaining > 0 {
            tracing::info!(namespace = %name, remaining, "waiting for namespace contents to be deleted");
            return Ok(Some(Duration::from_secs(1)));
        }
        let mut ns = (*ns).clone();
        if let Some(s) = ns.spec.as_mut() {
            s.finalizers = Some(fins.into_iter().filter(|f| f != "kubernetes").collect());
        }
        let body = serde_json::to_vec(&ns)?;
        let req = http::Request::put(format!("/api/v1/namespaces/{name}/finalize")).header("content-type", "application/json").body(body)?;
        match client.request::<Namespace>(req).await {
            Ok(_) => tracing::info!(namespace = %name, "namespace emptied and finalized"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}
