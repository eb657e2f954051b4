//! The ReplicationController controller (core/v1), ReplicaSet's ancestor.
//!
//! Why: RCs are still served and still used. Upstream runs the ReplicaSet
//! controller's code for them through a conversion; so do we: an RC is seen
//! as a ReplicaSet whose selector is its equality-only `spec.selector`
//! (defaulting to the template's labels) and the shared code adopts,
//! creates, deletes and reports status, writing owner references of kind
//! ReplicationController and the status to `replicationcontrollers/status`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch, PatchParams};

use crate::informer::key_of;
use crate::replicaset::{Flavor, ReplicaSetController};
use crate::Ctx;

pub static REPLICATION_CONTROLLER: Flavor = Flavor {
    queue: "replicationmanager",
    component: "replication-controller",
    api_version: "v1",
    kind: "ReplicationController",
    get: |ctx, ns, name| ctx.rcs.get(Some(ns), name).map(|rc| Arc::new(as_replica_set(&rc))),
    list_ns: |ctx, ns| ctx.rcs.list_ns(ns).iter().map(|rc| Arc::new(as_replica_set(rc))).collect(),
    patch_status: |client, ns, name, patch| {
        Box::pin(async move { Api::<ReplicationController>::namespaced(client.clone(), ns).patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await.map(|_| ()) })
    },
};

pub fn start(ctx: Arc<Ctx>) {
    let rcs = ctx.rcs.clone();
    ReplicaSetController::start_flavor(ctx, &REPLICATION_CONTROLLER, move |f| rcs.on_change(move |rc| f(key_of(rc))));
}

/// The RC as the ReplicaSet the shared code works on.
pub fn as_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let selector = spec.selector.clone().filter(|s| !s.is_empty()).or(template_labels);
    let st = rc.status.clone().unwrap_or_default();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            // No selector and no template labels selects nothing: an empty matchLabels would select everything.
            selector: LabelSelector { match_labels: selector.clone(), match_expressions: if selector.is_none() { Some(vec![nothing()]) } else { None } },
            template: spec.template,
        }),
        status: Some(ReplicaSetStatus {
            replicas: st.replicas,
            fully_labeled_replicas: st.fully_labeled_replicas,
            ready_replicas: st.ready_replicas,
            available_replicas: st.available_replicas,
            observed_generation: st.observed_generation,
            ..Default::default()
        }),
    }
}

fn nothing() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement { key: "skiff.dev/no-selector".into(), operator: "In".into(), values: Some(vec![]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::selector_matches;
    use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationControllerSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn selector_defaults_to_template_labels() {
        let labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
        let rc = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                replicas: Some(2),
                template: Some(PodTemplateSpec { metadata: Some(ObjectMeta { labels: Some(labels.clone()), ..Default::default() }), spec: None }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let rs = as_replica_set(&rc);
        let sel = rs.spec.unwrap().selector;
        assert!(selector_matches(Some(&sel), Some(&labels)));
        assert!(!selector_matches(Some(&sel), Some(&Default::default())));
        let none = as_replica_set(&ReplicationController::default()).spec.unwrap().selector;
        assert!(!selector_matches(Some(&none), Some(&labels)));
    }
}
