//! Pod sandboxes: a pause process started in new network, IPC and UTS
//! namespaces (containers join them through `/proc/<pid>/ns/*`), wired to
//! the node bridge by [`crate::net`].

use anyhow::{Context, Result};
use skiff_cri as cri;
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

/// Attach the sandbox to the node network; returns its IPv4 address.
pub fn network_up(cfg: &crate::Config, id: &str, pid: u32) -> Result<String> {
    Ok(crate::net::attach(cfg, id, pid)?.to_string())
}

/// Release the sandbox's address and its veth.
pub fn network_down(cfg: &crate::Config, id: &str, _pid: u32) {
    crate::net::detach(cfg, id)
}
