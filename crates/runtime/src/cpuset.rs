//! Container cgroups in the cgroup v1 `cpuset` hierarchy, made before runc
//! makes them.
//!
//! On cgroup v1, runc creates each missing level of a container's
//! cgroupsPath in every hierarchy, and a new cpuset must get `cpuset.cpus`
//! and `cpuset.mems` (runc copies the parent's) before a task may join.
//! With `cpuset.sched_load_balance` at its default of 1, the kernel answers
//! every such write by rebuilding the scheduler domains under its global
//! cpuset lock (waiting out RCU grace periods): a burst of 50 pods made 100
//! rebuilds in a row, and both cores sat partly idle while runc processes
//! queued on that lock. A child cpuset with load balancing off changes
//! nothing about scheduling while its parent balances the same CPUs (the
//! kernel's cpuset documentation recommends exactly this), and with it off
//! *before* its CPUs are set, no rebuild happens. runc then finds the
//! levels present with cpus and mems set and leaves them alone.
//!
//! Best effort: on any error runc creates what is missing as before.

use std::path::{Path, PathBuf};

/// Where the v1 cpuset hierarchy is mounted on the machines we run on.
const ROOT: &str = "/sys/fs/cgroup/cpuset";

/// Create the missing levels of `cgroup` (e.g. `/kubepods/besteffort/pod<uid>/<id>`)
/// in the cpuset hierarchy, each without load balancing and with its parent's CPUs and memory nodes.
pub fn prepare(cgroup: &str) {
    let root = Path::new(ROOT);
    if !root.join("cpuset.cpus").exists() {
        return; // cgroup v2, or no v1 cpuset hierarchy
    }
    let mut dir = PathBuf::from(ROOT);
    for part in cgroup.split('/').filter(|p| !p.is_empty()) {
        let parent = dir.clone();
        dir.push(part);
        if dir.exists() {
            continue;
        }
        if let Err(e) = make_level(&parent, &dir) {
            tracing::debug!(cgroup = %dir.display(), error = %e, "preparing the cpuset cgroup; runc will create it");
            return;
        }
    }
}

fn make_level(parent: &Path, dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()), // another pod's worker made it
        Err(e) => return Err(e),
    }
    std::fs::write(dir.join("cpuset.sched_load_balance"), "0")?;
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let v = std::fs::read_to_string(parent.join(f))?;
        std::fs::write(dir.join(f), v.trim())?;
    }
    Ok(())
}
