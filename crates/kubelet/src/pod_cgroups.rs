//! Pod-level cgroups (`/kubepods/<qos>/pod<uid>`): finding a pod's, for its
//! usage (`stats.rs`), and removing it, as upstream's pod container manager
//! does once a pod has terminated.
//!
//! The runtime (runc, through the embedded runtime or containerd) creates a
//! pod's cgroup as the parent of its containers' and removes only the
//! containers' own; the pod level is the kubelet's to clean up. Left
//! behind, they pile up in every hierarchy, and on cgroup v1 each one makes
//! every later cpuset change dearer (the kernel walks all cpusets when it
//! rebuilds scheduling domains). A removal that fails (tasks still inside)
//! is left for the next sweep.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";
/// Where pod cgroups live under each hierarchy (see `resources::pod_cgroup`).
const QOS_PARENTS: [&str; 3] = ["kubepods", "kubepods/burstable", "kubepods/besteffort"];

/// The directories a cgroupfs path has: one per v1 hierarchy, or the v2 one.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()]; // cgroup v2
    }
    std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// The pod's cgroup (cgroupfs syntax), if it exists under one of the QoS
/// parents. Looked up by uid rather than recomputed from the pod's QoS
/// class: the stats path sees CRI sandboxes, not pod objects, and a runtime
/// that ignores the kubelet's cgroup parent simply has none here.
pub fn find(uid: &str) -> Option<String> {
    find_under(Path::new(ROOT), uid)
}

fn find_under(root: &Path, uid: &str) -> Option<String> {
    if uid.is_empty() || uid.contains('/') || uid.contains("..") {
        return None;
    }
    // The memory controller is where usage is read: on v1 its hierarchy, on v2 the unified tree.
    let base = if root.join("cgroup.controllers").exists() { root.to_path_buf() } else { root.join("memory") };
    QOS_PARENTS.iter().map(|p| format!("/{p}/pod{uid}")).find(|cg| base.join(cg.trim_start_matches('/')).is_dir())
}

/// Remove `dir` and any empty cgroups below it, deepest first; errors
/// (busy, already gone) are ignored.
fn remove_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Remove a terminated pod's cgroup (cgroupfs syntax, e.g. `/kubepods/besteffort/pod<uid>`).
pub fn remove(pod_cgroup: &str) {
    let rel = pod_cgroup.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    for h in hierarchies() {
        let dir = h.join(rel);
        if dir.exists() {
            remove_tree(&dir);
        }
    }
}

/// Remove every empty pod cgroup (at start: pods that ended while no agent
/// was watching). A live pod's cgroup holds its containers' and stays; one
/// that is empty between its containers is made again by the runtime.
pub fn sweep() -> usize {
    let mut removed = 0;
    for h in hierarchies() {
        for parent in QOS_PARENTS {
            for e in std::fs::read_dir(h.join(parent)).into_iter().flatten().flatten() {
                let name = e.file_name();
                // Only empty pod cgroups: one with containers' cgroups in it
                // may be a live pod of another agent on this machine, whose
                // runc is about to join a process to them.
                if name.to_str().is_some_and(|n| n.starts_with("pod")) && std::fs::remove_dir(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_cgroup_is_found_under_its_qos_parent_on_v1_and_v2() {
        let v1 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v1.path().join("memory/kubepods/burstable/podu1")).unwrap();
        std::fs::create_dir_all(v1.path().join("memory/kubepods/podu2")).unwrap();
        std::fs::create_dir_all(v1.path().join("cpu/kubepods/besteffort/podu3")).unwrap();
        assert_eq!(find_under(v1.path(), "u1").as_deref(), Some("/kubepods/burstable/podu1"));
        assert_eq!(find_under(v1.path(), "u2").as_deref(), Some("/kubepods/podu2"));
        assert_eq!(find_under(v1.path(), "u3"), None, "no memory cgroup, nothing to read usage from");
        assert_eq!(find_under(v1.path(), ""), None);
        assert_eq!(find_under(v1.path(), "../kubepods/podu2"), None);
        let v2 = tempfile::tempdir().unwrap();
        std::fs::write(v2.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::create_dir_all(v2.path().join("kubepods/besteffort/podu4")).unwrap();
        assert_eq!(find_under(v2.path(), "u4").as_deref(), Some("/kubepods/besteffort/podu4"));
    }
}
