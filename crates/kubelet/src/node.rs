//! The Node object: capacity from /proc, addresses, nodeInfo and the four
//! conditions; registration (create, or take over an existing Node), status
//! heartbeats, and the Lease in kube-node-lease renewed every 10 s.

use crate::client::Api;
use anyhow::Result;
use serde_json::{json, Value};
use skiff_runtime::timefmt::{now_nanos, rfc3339, rfc3339_nanos};
use std::time::Duration;

/// Total memory from /proc/meminfo, in bytes.
pub fn memory_bytes() -> i64 {
    meminfo("MemTotal:")
}

/// The memory the node reports allocatable: all of it but 100 MiB.
pub fn allocatable_memory() -> i64 {
    (memory_bytes() - (100 << 20)).max(0)
}

pub(crate) fn meminfo(key: &str) -> i64 {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.split_whitespace().next()?.parse::<i64>().ok()))).unwrap_or(0) * 1024
}

fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Size and free bytes of the filesystem holding `path`.
pub(crate) fn fs_stats(path: &str) -> (i64, i64) {
    let Ok(c) = std::ffi::CString::new(path) else { return (0, 0) };
    let mut s: libc_statvfs::Statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc_statvfs::statvfs(c.as_ptr(), &mut s) } != 0 {
        return (0, 0);
    }
    ((s.f_blocks * s.f_frsize) as i64, (s.f_bavail * s.f_frsize) as i64)
}

mod libc_statvfs {
    pub use libc::{statvfs, statvfs as Statvfs};
}

/// The conditions: memory and disk pressure as the eviction manager last
/// found them (`eviction.rs`), PID headroom from /proc.
pub fn conditions_with(now: &str, (memory, disk): (bool, bool)) -> Vec<Value> {
    let pid_max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
    let pids = std::fs::read_dir("/proc").map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count() as i64).unwrap_or(0);
    let c = |t: &str, bad: bool, ok_reason: &str, bad_reason: &str, msg: &str| {
        json!({"type": t, "status": if bad { "True" } else { "False" }, "reason": if bad { bad_reason } else { ok_reason }, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    vec![
        c("MemoryPressure", memory, "KubeletHasSufficientMemory", "KubeletHasInsufficientMemory", if memory { "kubelet has insufficient memory available" } else { "kubelet has sufficient memory available" }),
        c("DiskPressure", disk, "KubeletHasNoDiskPressure", "KubeletHasDiskPressure", if disk { "kubelet has disk pressure" } else { "kubelet has no disk pressure" }),
        c("PIDPressure", pids * 10 > pid_max * 9, "KubeletHasSufficientPID", "KubeletHasInsufficientPID", "kubelet has sufficient PID available"),
        json!({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}),
    ]
}

/// The full Node object for this machine; `runtime` is what the CRI's
/// Version reports, as `<name>://<version>` (e.g. `containerd://1.6.20`).
pub fn node_object(name: &str, ip: &str, port: u16, pod_cidr: &str, runtime: &str) -> Value {
    let now = rfc3339(now_nanos());
    let (disk, _) = fs_stats("/");
    let mem = memory_bytes();
    let capacity = json!({"cpu": cpus().to_string(), "memory": format!("{}Ki", mem / 1024), "pods": "110", "ephemeral-storage": format!("{}Ki", disk / 1024)});
    let allocatable = json!({"cpu": cpus().to_string(), "memory": format!("{}Ki", allocatable_memory() / 1024), "pods": "110", "ephemeral-storage": format!("{}Ki", disk / 10 * 9 / 1024)});
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default().trim().to_string();
    let os_image = std::fs::read_to_string("/etc/os-release").ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))).unwrap_or_default();
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "capacity": capacity, "allocatable": allocatable, "conditions": conditions_with(&now, (false, false)),
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {"machineID": machine_id, "systemUUID": machine_id, "bootID": std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim(),
                "kernelVersion": kernel, "osImage": os_image, "containerRuntimeVersion": runtime, "kubeletVersion": "v1.33.0-skiff",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")},
        },
    })
}

/// Create the Node, or update the existing one's status to ours.
pub async fn register(api: &Api, node: &Value) -> Result<()> {
    let name = node["metadata"]["name"].as_str().unwrap_or_default();
    let (code, v) = api.call("POST", "/api/v1/nodes", "application/json", Some(node)).await?;
    if code != 201 && code != 409 {
        anyhow::bail!("registering node {name}: {code} {}", v["message"]);
    }
    api.ok("PATCH", &format!("/api/v1/nodes/{name}/status"), "application/merge-patch+json", Some(&json!({"status": node["status"]}))).await?;
    tracing::info!(node = name, "node registered");
    Ok(())
}

/// Renew the node's Lease every 10 s, and the status heartbeat every minute.
pub async fn heartbeat(api: Api, name: String, pressure: std::sync::Arc<parking_lot::Mutex<(bool, bool)>>) {
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}");
    let mut tick = 0u64;
    loop {
        let n = rfc3339_nanos(now_nanos());
        let micro = format!("{}Z", &n[..26]);
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro}});
        let r = match api.get(&path).await {
            Ok((200, mut cur)) => {
                cur["spec"] = lease["spec"].clone();
                api.ok("PUT", &path, "application/json", Some(&cur)).await.map(|_| ())
            }
            Ok(_) => api.ok("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "application/json", Some(&lease)).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::warn!("renewing node lease: {e:#}");
        }
        if tick % 6 == 5 {
            let patch = json!({"status": {"conditions": conditions_with(&rfc3339(now_nanos()), *pressure.lock())}});
            if let Err(e) = api.ok("PATCH", &format!("/api/v1/nodes/{name}/status"), "application/merge-patch+json", Some(&patch)).await {
                tracing::warn!("node status heartbeat: {e:#}");
            }
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
