//! ControllerRevisions: the template history of StatefulSets and DaemonSets
//! (upstream's `controller/history`).
//!
//! Why: a StatefulSet (or DaemonSet) updates pods in place by name, so it
//! cannot keep old templates in old ReplicaSets the way a Deployment does.
//! Instead each distinct template is stored as an immutable ControllerRevision
//! named `<owner>-<hash>` with a growing `revision` number; pods carry the
//! revision name in the `controller-revision-hash` label, which is how the
//! controller tells old pods from updated ones and rebuilds old pods from the
//! "current" revision while a partitioned rollout is in progress.

use std::sync::Arc;

use anyhow::{bail, Result};
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::deployment_util::{fnv32a, safe_encode};
use crate::util::controller_ref;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision data upstream stores: a strategic-merge patch that replaces the template.
pub fn patch_of(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_default();
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision holds.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Upstream's HashControllerRevision: FNV-1a of the data (+ collisionCount), safe-encoded.
pub fn hash(data: &Value, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(data).unwrap_or_default();
    if let Some(c) = collision_count.filter(|c| *c != 0) {
        bytes.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// A new (not yet stored) revision of `owner` holding `template`.
pub fn new_revision(owner: &ObjectMeta, oref: OwnerReference, template: &PodTemplateSpec, revision: i64, collision_count: Option<i32>) -> ControllerRevision {
    let data = patch_of(template);
    let h = hash(&data, collision_count);
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), h.clone());
    let mut prefix = owner.name.clone().unwrap_or_default();
    prefix.truncate(223);
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}-{h}")),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![oref]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Revisions the owner controls, oldest first.
pub fn owned(revs: &[Arc<ControllerRevision>], uid: &str) -> Vec<Arc<ControllerRevision>> {
    let mut v: Vec<_> = revs.iter().filter(|r| controller_ref(&r.metadata).is_some_and(|o| o.uid == uid)).cloned().collect();
    v.sort_by(|a, b| a.revision.cmp(&b.revision).then(a.metadata.name.cmp(&b.metadata.name)));
    v
}

pub fn next_revision(revs: &[Arc<ControllerRevision>]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Store `want` as the newest revision: reuse an equal stored one (bumping
/// its number if it is not the newest, as a rollback does), else create it.
/// A name clash with different data is a hash collision: the caller bumps
/// collisionCount and retries.
pub async fn ensure(client: &kube::Client, revs: &[Arc<ControllerRevision>], want: ControllerRevision) -> Result<ControllerRevision> {
    let ns = want.metadata.namespace.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let equal: Vec<_> = revs.iter().filter(|r| r.data.as_ref().map(|d| &d.0) == want.data.as_ref().map(|d| &d.0)).collect();
    if let Some(last) = equal.last() {
        if revs.last().map(|r| &r.metadata.name) == Some(&last.metadata.name) {
            return Ok(last.as_ref().clone());
        }
        let name = last.metadata.name.clone().unwrap_or_default();
        let p = json!({"revision": want.revision});
        return Ok(api.patch(&name, &PatchParams::default(), &Patch::Merge(&p)).await?);
    }
    match api.create(&PostParams::default(), &want).await {
        Ok(r) => Ok(r),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let name = want.metadata.name.clone().unwrap_or_default();
            let have = api.get(&name).await?;
            if have.data.as_ref().map(|d| &d.0) == want.data.as_ref().map(|d| &d.0) && controller_ref(&have.metadata) == want.metadata.owner_references.as_ref().and_then(|o| o.first()) {
                return Ok(have);
            }
            bail!(Collision)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("controller revision hash collision")]
pub struct Collision;

/// Delete the oldest revisions beyond `limit` that no live object uses.
pub async fn truncate(client: &kube::Client, revs: &[Arc<ControllerRevision>], in_use: &(dyn Fn(&str) -> bool + Sync), limit: i32) -> Result<()> {
    let unused: Vec<_> = revs.iter().filter(|r| !in_use(r.metadata.name.as_deref().unwrap_or(""))).collect();
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    for r in unused.into_iter().take(excess) {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
        match api.delete(r.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_round_trips_template_and_hash_tracks_content() {
        let t: PodTemplateSpec = serde_json::from_value(json!({"metadata": {"labels": {"app": "w"}}, "spec": {"containers": [{"name": "c", "image": "a:1"}]}})).unwrap();
        let owner = ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), uid: Some("u".into()), ..Default::default() };
        let oref = crate::util::owner_ref("apps/v1", "StatefulSet", &owner);
        let r = new_revision(&owner, oref.clone(), &t, 1, None);
        assert_eq!(r.data.as_ref().unwrap().0["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&r).unwrap(), t);
        let h = r.metadata.labels.as_ref().unwrap()[HASH_LABEL].clone();
        assert_eq!(r.metadata.name.as_deref(), Some(format!("web-{h}").as_str()));
        let mut t2 = t.clone();
        t2.spec.as_mut().unwrap().containers[0].image = Some("a:2".into());
        assert_ne!(new_revision(&owner, oref.clone(), &t2, 2, None).metadata.name, r.metadata.name);
        assert_ne!(new_revision(&owner, oref, &t, 1, Some(1)).metadata.name, r.metadata.name);
    }
}
