//! Housekeeping when the agent starts: what is left of pods deleted from the
//! API while no agent was running here (a force delete, or a deletion by the
//! node lifecycle controller). No worker will ever be fed those pods, so no
//! one would stop their containers or remove their files. Upstream's kubelet
//! does the same in its pod cleanups: running sandboxes of unknown pods are
//! killed, then the pod directories (volumes unmounted first) and log
//! directories of pods it does not know are removed.
//!
//! The leftovers are found ([`find`]) before the pod watch starts, while the
//! only workers are those of the pods just listed; removing them ([`remove`])
//! takes seconds and runs in the background. Finding them later would count
//! a pod that arrived meanwhile as unknown and remove its new files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_cri as cri;

use crate::Ctx;

/// Seconds between SIGTERM and SIGKILL for an orphan's containers: its pod
/// (and so its grace period) is gone, so upstream's minimum, 2 s.
const ORPHAN_GRACE: i64 = 2;

/// What is left of pods that are not bound here any more.
#[derive(Debug, Default)]
pub struct Orphans {
    /// (sandbox id, `namespace/name`, pod uid).
    sandboxes: Vec<(String, String, String)>,
    /// `<root>/pods/<uid>`.
    pod_dirs: Vec<PathBuf>,
    /// `<logs>/<namespace>_<name>_<uid>`.
    log_dirs: Vec<PathBuf>,
}

/// The sandboxes, pod directories and log directories of pods not in `known`.
pub async fn find(ctx: &Ctx, known: &HashSet<String>) -> Orphans {
    let mut rt = ctx.rt.clone();
    let sandboxes = match rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await {
        Ok(r) => r.into_inner().items,
        Err(e) => {
            tracing::warn!("housekeeping: listing sandboxes: {e}");
            vec![]
        }
    };
    let sandboxes = sandboxes
        .into_iter()
        .filter_map(|sb| {
            let m = sb.metadata?;
            (!m.uid.is_empty() && !known.contains(&m.uid)).then(|| (sb.id, format!("{}/{}", m.namespace, m.name), m.uid))
        })
        .collect();
    let (root, logs, known) = (ctx.root_dir.clone(), ctx.log_root.clone(), known.clone());
    let (pod_dirs, log_dirs) = tokio::task::spawn_blocking(move || orphan_dirs(&root, &logs, &known)).await.unwrap_or_default();
    Orphans { sandboxes, pod_dirs, log_dirs }
}

/// Stop the orphans' containers (SIGTERM, then SIGKILL after 2 s), remove
/// their sandboxes (which removes the containers) and pod cgroups, then
/// their directories. Returns how many sandboxes were removed.
pub async fn remove(ctx: Arc<Ctx>, orphans: Orphans) -> usize {
    let mut rt = ctx.rt.clone();
    for (id, pod, uid) in &orphans.sandboxes {
        tracing::info!(%pod, %uid, sandbox = %id, "removing the sandbox of a pod that is gone");
        let filter = cri::ContainerFilter { pod_sandbox_id: id.clone(), ..Default::default() };
        let containers = rt.list_containers(cri::ListContainersRequest { filter: Some(filter) }).await.map(|r| r.into_inner().containers).unwrap_or_default();
        for c in containers {
            let _ = rt.stop_container(cri::StopContainerRequest { container_id: c.id, timeout: ORPHAN_GRACE }).await;
        }
        let _ = rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
        let _ = rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.clone() }).await;
        if let Some(cg) = crate::pod_cgroups::find(uid) {
            let _ = tokio::task::spawn_blocking(move || crate::pod_cgroups::remove(&cg)).await;
        }
    }
    let Orphans { sandboxes, pod_dirs, log_dirs } = orphans;
    let _ = tokio::task::spawn_blocking(move || {
        for d in pod_dirs {
            tracing::info!(dir = %d.display(), "removing the directory of a pod that is gone");
            crate::volumes::remove_dir(&d);
        }
        for d in log_dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    })
    .await;
    sandboxes.len()
}

/// The pod directories (`<root>/pods/<uid>`) and log directories
/// (`<logs>/<namespace>_<name>_<uid>`) of pods not in `known`.
fn orphan_dirs(root: &Path, logs: &Path, known: &HashSet<String>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let pod_dirs = std::fs::read_dir(root.join("pods")).into_iter().flatten().flatten().filter(|e| !known.contains(&*e.file_name().to_string_lossy())).map(|e| e.path()).collect();
    let log_dirs = std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.rsplit('_').next().is_some_and(|uid| !uid.is_empty() && uid != name && !known.contains(uid))
        })
        .map(|e| e.path())
        .collect();
    (pod_dirs, log_dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_pods_directories_are_orphans() {
        let d = tempfile::tempdir().unwrap();
        let (root, logs) = (d.path().join("kubelet"), d.path().join("logs"));
        for p in ["pods/u-live/volumes/a", "pods/u-gone/volumes/b"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        for p in ["default_web_u-live/c", "default_old_u-gone/c", "not-a-pod-dir"] {
            std::fs::create_dir_all(logs.join(p)).unwrap();
        }
        let (pods, logged) = orphan_dirs(&root, &logs, &["u-live".to_string()].into());
        assert_eq!(pods, [root.join("pods/u-gone")]);
        assert_eq!(logged, [logs.join("default_old_u-gone")], "a name without a uid part is left alone");
    }
}
