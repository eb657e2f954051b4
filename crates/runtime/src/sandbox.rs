//! Pod sandboxes: a pause process started in new network, IPC and UTS
//! namespaces (containers join them through `/proc/<pid>/ns/*`), wired to
//! the node bridge by Debian's CNI `bridge` + `host-local` plugins.

use anyhow::{bail, Context, Result};
use skiff_cri as cri;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

pub struct Sandbox {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub pause: Option<Child>,
    pub pid: u32,
    pub ip: String,
    pub ready: bool,
    pub created_at: i64,
}

impl Sandbox {
    pub fn proc_dir(&self) -> String {
        format!("/proc/{}", self.pid)
    }
}

/// Start the pause process in its own namespaces, with the pod's hostname.
pub fn spawn_pause(exe: &std::path::Path, hostname: &str) -> Result<Child> {
    let host = std::ffi::CString::new(hostname.chars().take(63).collect::<String>())?;
    let mut cmd = Command::new(exe);
    cmd.arg("pause").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::sethostname(host.as_ptr(), host.as_bytes().len());
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {} pause", exe.display()))
}

/// The network config handed to the CNI plugins.
pub fn cni_config(bridge: &str, subnet: &str, data_dir: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "0.4.0", "name": "skiff", "type": "bridge", "bridge": bridge,
        "isGateway": true, "ipMasq": false, "hairpinMode": true,
        "ipam": {"type": "host-local", "subnet": subnet, "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir},
    })
}

/// Run one CNI plugin command; returns its stdout (the result JSON).
pub fn cni(cfg: &crate::Config, plugin: &str, command: &str, id: &str, netns: &str, ifname: &str, conf: &serde_json::Value) -> Result<serde_json::Value> {
    let mut child = Command::new(cfg.cni_bin.join(plugin))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", &cfg.cni_bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running CNI plugin {plugin}"))?;
    child.stdin.take().context("stdin")?.write_all(conf.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("CNI {plugin} {command}: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

/// Attach the sandbox to the node network; returns its IPv4 address.
pub fn network_up(cfg: &crate::Config, id: &str, pid: u32) -> Result<String> {
    let netns = format!("/proc/{pid}/ns/net");
    let data = cfg.root.join("cni").display().to_string();
    cni(cfg, "loopback", "ADD", id, &netns, "lo", &serde_json::json!({"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}))?;
    let res = cni(cfg, "bridge", "ADD", id, &netns, "eth0", &cni_config(&cfg.bridge, &cfg.pod_cidr, &data))?;
    let addr = res["ips"][0]["address"].as_str().context("CNI result without an address")?;
    Ok(addr.split('/').next().unwrap_or(addr).to_string())
}

/// Release the sandbox's address (and its veth, if the namespace still exists).
pub fn network_down(cfg: &crate::Config, id: &str, pid: u32) {
    let netns = if pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists() { format!("/proc/{pid}/ns/net") } else { String::new() };
    let data = cfg.root.join("cni").display().to_string();
    if let Err(e) = cni(cfg, "bridge", "DEL", id, &netns, "eth0", &cni_config(&cfg.bridge, &cfg.pod_cidr, &data)) {
        tracing::warn!(sandbox = id, "network teardown: {e:#}");
    }
}
