//! The OCI runtime spec (`config.json`) runc runs a container from. Pure, so
//! it is unit-tested: what the container sees (namespaces shared with the pod
//! sandbox, cgroup placement and limits, mounts, process) is decided here.

use serde_json::{json, Value};

/// Everything the spec depends on.
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// The process gets a new pseudo-terminal as its stdio (`tty: true`).
    pub terminal: bool,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// `/proc/<pause pid>` of the sandbox; its net, ipc and uts namespaces are joined.
    pub sandbox_proc: Option<String>,
    /// cgroupfs-style path, `/kubepods/<qos>/pod<uid>/<container id>`.
    pub cgroups_path: String,
    pub memory_limit: i64,
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub oom_score_adj: i64,
    /// Bind mounts: (container path, host path, read-only).
    pub mounts: Vec<(String, String, bool)>,
}

/// Capabilities a container gets by default (the set Docker and containerd give).
const CAPS: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/// Build `config.json` for runc.
pub fn build(i: &SpecInput) -> Value {
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    match &i.sandbox_proc {
        Some(p) => {
            for (t, f) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
                namespaces.push(json!({"type": t, "path": format!("{p}/ns/{f}")}));
            }
        }
        None => namespaces.extend([json!({"type": "network"}), json!({"type": "ipc"}), json!({"type": "uts"})]),
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for (dst, src, ro) in &i.mounts {
        let mut opts = vec!["rbind", "rprivate"];
        if *ro {
            opts.push("ro");
        }
        mounts.push(json!({"destination": dst, "type": "bind", "source": src, "options": opts}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if i.memory_limit > 0 {
        resources["memory"] = json!({"limit": i.memory_limit});
    }
    let mut cpu = serde_json::Map::new();
    if i.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(i.cpu_shares));
    }
    if i.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(i.cpu_quota));
        cpu.insert("period".into(), json!(if i.cpu_period > 0 { i.cpu_period } else { 100_000 }));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": i.terminal,
            "user": {"uid": i.uid, "gid": i.gid},
            "args": i.args,
            "env": i.env,
            "cwd": if i.cwd.is_empty() { "/" } else { &i.cwd },
            "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
            "oomScoreAdj": i.oom_score_adj,
        },
        "root": {"path": "rootfs", "readonly": false},
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": i.cgroups_path,
            "resources": resources,
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn joins_sandbox_namespaces_and_sets_limits() {
        let i = SpecInput {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            sandbox_proc: Some("/proc/42".into()),
            cgroups_path: "/kubepods/burstable/podabc/c1".into(),
            memory_limit: 64 << 20,
            cpu_shares: 256,
            cpu_quota: 50_000,
            mounts: vec![("/data".into(), "/var/lib/x".into(), true)],
            ..Default::default()
        };
        let s = build(&i);
        assert_eq!(s["process"]["args"][2], "echo hi");
        assert_eq!(s["process"]["cwd"], "/");
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(build(&SpecInput { terminal: true, ..i.clone() })["process"]["terminal"], true);
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/proc/42/ns/net"})));
        assert!(ns.contains(&json!({"type": "pid"})));
        assert!(s.get("hostname").is_none(), "a joined UTS namespace cannot take a hostname");
        assert_eq!(s["linux"]["cgroupsPath"], "/kubepods/burstable/podabc/c1");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"], json!({"shares": 256, "quota": 50_000, "period": 100_000}));
        let m = s["mounts"].as_array().unwrap().last().unwrap();
        assert_eq!(m["options"], json!(["rbind", "rprivate", "ro"]));
    }
}
