//! Housekeeping when the agent starts: what is left of pods deleted from the
//! API while no agent was running here (a force delete, or a deletion by the
//! node lifecycle controller). No worker will ever be fed those pods, so no
//! one would stop their containers or remove their files. Upstream's kubelet
//! does the same in its pod cleanups: running sandboxes of unknown pods are
//! killed, then the pod directories (volumes unmounted first) and log
//! directories of pods it does not know are removed.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use skiff_cri as cri;

use crate::Ctx;

/// Seconds between SIGTERM and SIGKILL for an orphan's containers: its pod
/// (and so its grace period) is gone, so upstream's minimum, 2 s.
const ORPHAN_GRACE: i64 = 2;

/// Stop and remove every sandbox (and its containers) whose pod uid is not
/// in `known`, then remove the pod and log directories of unknown pods.
/// Returns how many sandboxes were removed.
pub async fn remove_orphans(ctx: Arc<Ctx>, known: HashSet<String>) -> usize {
    let mut rt = ctx.rt.clone();
    let sandboxes = match rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await {
        Ok(r) => r.into_inner().items,
        Err(e) => {
            tracing::warn!("housekeeping: listing sandboxes: {e}");
            return 0;
        }
    };
    let mut removed = 0;
    for sb in sandboxes {
        let (name, namespace, uid) = sb.metadata.as_ref().map(|m| (m.name.clone(), m.namespace.clone(), m.uid.clone())).unwrap_or_default();
        if uid.is_empty() || known.contains(&uid) {
            continue;
        }
        tracing::info!(pod = %format!("{namespace}/{name}"), %uid, sandbox = %sb.id, "removing the sandbox of a pod that is gone");
        let filter = cri::ContainerFilter { pod_sandbox_id: sb.id.clone(), ..Default::default() };
        let containers = rt.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await.map(|r| r.into_inner().containers).unwrap_or_default();
        for c in containers {
            let _ = rt.stop_container(cri::StopContainerRequest { container_id: c.id.clone(), timeout: ORPHAN_GRACE }).await;
            let _ = rt.remove_container(cri::RemoveContainerRequest { container_id: c.id }).await;
        }
        let _ = rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sb.id.clone() }).await;
        let _ = rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb.id.clone() }).await;
        if let Some(cg) = crate::pod_cgroups::find(&uid) {
            let _ = tokio::task::spawn_blocking(move || crate::pod_cgroups::remove(&cg)).await;
        }
        removed += 1;
    }
    let (root, logs) = (ctx.root_dir.clone(), ctx.log_root.clone());
    let _ = tokio::task::spawn_blocking(move || remove_dirs(&root, &logs, &known)).await;
    removed
}

/// The pod directories (`<root>/pods/<uid>`) and log directories
/// (`<logs>/<namespace>_<name>_<uid>`) of pods not in `known`.
fn remove_dirs(root: &Path, logs: &Path, known: &HashSet<String>) {
    for e in std::fs::read_dir(root.join("pods")).into_iter().flatten().flatten() {
        let uid = e.file_name().to_string_lossy().to_string();
        if !known.contains(&uid) {
            tracing::info!(%uid, "removing the directory of a pod that is gone");
            crate::volumes::remove_dir(&e.path());
        }
    }
    for e in std::fs::read_dir(logs).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(uid) = name.rsplit('_').next().filter(|u| !u.is_empty() && *u != name) else { continue };
        if !known.contains(uid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_pods_directories_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let (root, logs) = (d.path().join("kubelet"), d.path().join("logs"));
        for p in ["pods/u-live/volumes/a", "pods/u-gone/volumes/b"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        for p in ["default_web_u-live/c", "default_old_u-gone/c", "not-a-pod-dir"] {
            std::fs::create_dir_all(logs.join(p)).unwrap();
        }
        remove_dirs(&root, &logs, &["u-live".to_string()].into());
        assert!(root.join("pods/u-live/volumes/a").is_dir());
        assert!(!root.join("pods/u-gone").exists());
        assert!(logs.join("default_web_u-live/c").is_dir());
        assert!(!logs.join("default_old_u-gone").exists());
        assert!(logs.join("not-a-pod-dir").is_dir(), "a name without a uid part is left alone");
    }
}
