//! A private Debian containerd for the runs that drive one: its own root,
//! state, socket, runc root and CNI bridge (so a system containerd is left
//! alone), the CRI plugin with `restrict_oom_score_adj` (this kernel refuses
//! negative values to us) and a sandbox image the caller imports locally, so
//! nothing is pulled. On drop: its containers, containerd, its shims, mounts
//! and bridge.
//!
//! One copy for two users: `bench pod-startup --containerd` has it as a
//! module, and the integration test `crates/skiff/tests/kubelet_containerd.rs`
//! includes this same file with `#[path]` (a binary crate cannot be linked
//! from a test, and a crate of its own for one file would be more weight than
//! it carries). So it uses only what both have: std, anyhow, serde_json.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

/// What differs between users, so that they can run side by side: the CNI
/// bridge and its subnet (the node's pod CIDR), and the sandbox image name.
pub struct Setup {
    pub bridge: &'static str,
    pub subnet: &'static str,
    pub pause: &'static str,
}

pub struct Containerd {
    child: Child,
    dir: PathBuf,
    bridge: &'static str,
}

impl Containerd {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// containerd's own PID (the bench measures its memory).
    #[allow(dead_code)] // unused by the integration test that includes this file
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `ctr` against this containerd, in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ctr").arg("-a").arg(self.socket()).args(["-n", "k8s.io"]).args(args).output()
    }

    /// Write the configuration under `dir`, start containerd and wait (up to
    /// 20 s) until it answers.
    pub fn start(dir: &Path, setup: &Setup) -> Result<Containerd> {
        let d = dir.display();
        std::fs::create_dir_all(dir.join("cni"))?;
        let cni = json!({"cniVersion": "1.0.0", "name": setup.bridge, "plugins": [
            {"type": "bridge", "bridge": setup.bridge, "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": setup.subnet}]], "dataDir": format!("{d}/ipam")}},
            {"type": "loopback"}]});
        std::fs::write(dir.join(format!("cni/10-{}.conflist", setup.bridge)), cni.to_string())?;
        // The streaming server on loopback, any port: the kubelet dials the URL it returns.
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#,
            pause = setup.pause
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd").arg("--config").arg(dir.join("config.toml")).stdout(Stdio::null()).stderr(log).spawn().context("start containerd (apt-get install containerd)")?;
        let c = Containerd { child, dir: dir.to_owned(), bridge: setup.bridge };
        let t0 = Instant::now();
        while !c.ctr(&["version"]).is_ok_and(|o| o.status.success()) {
            ensure!(t0.elapsed() < Duration::from_secs(20), "containerd did not answer within 20 s; see {}", dir.join("containerd.log").display());
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    /// Import an OCI-layout tarball into the CRI's namespace (unpacked for overlayfs).
    pub fn import(&self, tarball: &Path) -> Result<()> {
        let out = self.ctr(&["images", "import", &tarball.display().to_string()])?;
        ensure!(out.status.success(), "ctr images import: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// PIDs of this containerd's shims (they name its socket on their command line).
    pub fn shims(&self) -> Vec<u32> {
        let sock = self.socket().display().to_string();
        let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
        dir.flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).to_string();
                (cmd.contains("containerd-shim") && cmd.contains(&sock)).then_some(pid)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Containers outlive containerd and their shims: kill them through it first.
        let tasks = self.ctr(&["tasks", "ls", "-q"]).map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
        for t in tasks.lines().filter(|t| !t.is_empty()) {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", t]);
        }
        // Shims are daemons of their own: found before containerd goes, killed after.
        let shims = self.shims();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in shims {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let dir = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        for m in mounts.lines().rev().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&dir)) {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = Command::new("ip").args(["link", "del", self.bridge]).stderr(Stdio::null()).status();
    }
}
