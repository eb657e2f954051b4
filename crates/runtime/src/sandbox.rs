//! Pod sandboxes: a pause process started in new network, IPC and UTS
//! namespaces (containers join them through `/proc/<pid>/ns/*`), wired to
//! the node bridge by [`crate::net`].

use anyhow::{bail, Context, Result};
use skiff_cri as cri;
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

/// Start the pause process in its own namespaces, with the pod's hostname;
/// returns once they exist (pause says `ready`), so the network can be wired
/// into them. Spawned without a `pre_exec` hook: pause makes its namespaces
/// itself (see `pause::main`), so the agent is not forked.
pub fn spawn_pause(exe: &std::path::Path, hostname: &str) -> Result<Child> {
    let mut child = Command::new(exe)
        .arg("pause")
        .arg("--sandbox-hostname")
        .arg(hostname)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} pause", exe.display()))?;
    let mut line = String::new();
    let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().context("pause stdout")?), &mut line);
    if read.is_err() || line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        bail!("pause did not make the sandbox's namespaces ({status})");
    }
    Ok(child)
}
