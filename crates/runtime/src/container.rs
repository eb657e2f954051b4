//! Containers: an overlayfs root over the image's layers, a runc bundle with
//! our spec, and `runc run` in the foreground under a task that copies its
//! output to the CRI log file and records the exit code when it ends
//! (runc exits with the container's status, 128+signal when killed).

use crate::{images::ImageRecord, spec, timefmt::now_nanos, Runtime};
use anyhow::{bail, Context, Result};
use skiff_cri as cri;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub config: cri::ContainerConfig,
    pub image: ImageRecord,
    pub state: cri::ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// runc reported an OOM kill in the container's memory cgroup.
    pub oom: bool,
    /// cgroupfs path of the container (`/kubepods/.../<id>`).
    pub cgroup: String,
    pub log_path: String,
    pub bundle: PathBuf,
    /// Flips to true when the container process has ended.
    pub exited: watch::Receiver<bool>,
    pub(crate) exited_tx: Option<watch::Sender<bool>>,
    /// Live output, for `attach`.
    pub output: crate::logs::Output,
    /// The process's stdin when the container was created with `stdin: true`.
    pub stdin: Option<Arc<tokio::sync::Mutex<tokio::net::unix::pipe::Sender>>>,
}

impl Container {
    /// A container recorded by an earlier agent.
    pub fn restored(m: crate::persist::ContainerMeta, config: cri::ContainerConfig) -> Container {
        let (tx, rx) = watch::channel(false);
        let state = cri::ContainerState::try_from(m.state).unwrap_or(cri::ContainerState::ContainerUnknown);
        Container {
            id: m.id,
            sandbox_id: m.sandbox_id,
            config,
            image: m.image,
            state,
            created_at: m.created_at,
            started_at: m.started_at,
            finished_at: m.finished_at,
            exit_code: m.exit_code,
            reason: m.reason,
            message: String::new(),
            oom: false,
            cgroup: m.cgroup,
            log_path: m.log_path,
            bundle: m.bundle,
            exited: rx,
            exited_tx: Some(tx),
            output: tokio::sync::broadcast::channel(256).0,
            stdin: None,
        }
    }
}

/// Process arguments with Kubernetes' override rules: `command` replaces the
/// image's entrypoint (and drops its cmd), `args` replaces the cmd.
pub fn process_args(command: &[String], args: &[String], img: &ImageRecord) -> Vec<String> {
    let ep = if command.is_empty() { img.entrypoint.clone() } else { command.to_vec() };
    let rest = if !args.is_empty() { args.to_vec() } else if command.is_empty() { img.cmd.clone() } else { vec![] };
    ep.into_iter().chain(rest).collect()
}

/// Image env first, then the container's (later wins, by key).
pub fn merge_env(image: &[String], container: &[cri::KeyValue]) -> Vec<String> {
    let mut out: Vec<String> = image.to_vec();
    for kv in container {
        out.retain(|e| e.split('=').next() != Some(kv.key.as_str()));
        out.push(format!("{}={}", kv.key, kv.value));
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    out
}

/// A terminal container gets `TERM=xterm` unless it sets TERM itself (as containerd does).
fn terminal_env(mut env: Vec<String>, tty: bool) -> Vec<String> {
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    env
}

/// The root filesystem at `<bundle>/rootfs` (the bundle is in memory), with
/// its writable layer in `rw` (on disk: what the container writes stays there).
fn mount_overlay(lower: &[PathBuf], rw: &Path, bundle: &Path) -> Result<()> {
    for d in [rw.join("upper"), rw.join("work"), bundle.join("rootfs")] {
        std::fs::create_dir_all(d)?;
    }
    // overlayfs lists the top layer first.
    let lowers: Vec<String> = lower.iter().rev().map(|p| p.display().to_string()).collect();
    let opts = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), rw.join("upper").display(), rw.join("work").display());
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let target = c(&bundle.join("rootfs").display().to_string());
    let r = unsafe { libc::mount(c("overlay").as_ptr(), target.as_ptr(), c("overlay").as_ptr(), 0, c(&opts).as_ptr().cast()) };
    if r != 0 {
        bail!("mounting overlay at {}: {}", bundle.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// Detach the container's root filesystem.
fn unmount(bundle: &Path) {
    crate::tmpfs::unmount(&bundle.join("rootfs"));
}

/// How many processes the kernel OOM-killed in a container's memory cgroup
/// (v1 `memory.oom_control`, v2 `memory.events`).
pub fn oom_kills(cgroup: &str) -> u64 {
    let v1 = format!("/sys/fs/cgroup/memory{cgroup}/memory.oom_control");
    let v2 = format!("/sys/fs/cgroup{cgroup}/memory.events");
    let text = std::fs::read_to_string(v1).or_else(|_| std::fs::read_to_string(v2)).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// oom_score_adj may only be lowered with CAP_SYS_RESOURCE, which this
/// machine lacks: never ask for less than Skiff's own.
fn allowed_oom_score_adj(want: i64) -> i64 {
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    want.max(own)
}

impl Runtime {
    pub fn create_container(&self, sandbox_id: &str, config: cri::ContainerConfig) -> Result<String> {
        let (proc_dir, cgroup_parent, log_dir) = {
            let sbs = self.sandboxes.lock();
            let sb = sbs.get(sandbox_id).context("no such sandbox")?;
            let l = sb.config.linux.as_ref().map(|l| l.cgroup_parent.clone()).unwrap_or_default();
            (sb.proc_dir(), l, sb.config.log_directory.clone())
        };
        let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let image = self.images.find(&image_name).with_context(|| format!("image {image_name} not found"))?;
        let id = crate::new_id();
        let bundle = self.cfg.bundle(&id);
        let rw = self.cfg.rw_dir(&id);
        let lowers: Vec<PathBuf> = image.layers.iter().map(|h| self.images.layer_dir(h)).collect();
        if let Err(e) = mount_overlay(&lowers, &rw, &bundle) {
            let _ = std::fs::remove_dir_all(&bundle);
            let _ = std::fs::remove_dir_all(&rw);
            return Err(e);
        }
        let linux = config.linux.clone().unwrap_or_default();
        let res = linux.resources.unwrap_or_default();
        let sc = linux.security_context.unwrap_or_default();
        let (img_uid, img_gid) = match image.user.split_once(':') {
            Some((u, g)) => (u.parse().unwrap_or(0), g.parse().unwrap_or(0)),
            None => (image.user.parse().unwrap_or(0), 0),
        };
        let parent = if cgroup_parent.is_empty() { "/skiff".to_string() } else { cgroup_parent };
        let input = spec::SpecInput {
            args: process_args(&config.command, &config.args, &image),
            env: terminal_env(merge_env(&image.env, &config.envs), config.tty),
            terminal: config.tty,
            cwd: if config.working_dir.is_empty() { image.working_dir.clone() } else { config.working_dir.clone() },
            uid: sc.run_as_user.map(|v| v.value as u32).unwrap_or(img_uid),
            gid: sc.run_as_group.map(|v| v.value as u32).unwrap_or(img_gid),
            sandbox_proc: Some(proc_dir),
            cgroups_path: format!("{}/{id}", parent.trim_end_matches('/')),
            memory_limit: res.memory_limit_in_bytes,
            cpu_shares: res.cpu_shares,
            cpu_quota: res.cpu_quota,
            cpu_period: res.cpu_period,
            oom_score_adj: allowed_oom_score_adj(res.oom_score_adj),
            mounts: config.mounts.iter().map(|m| (m.container_path.clone(), m.host_path.clone(), m.readonly)).collect(),
        };
        if input.args.is_empty() {
            unmount(&bundle);
            let _ = std::fs::remove_dir_all(&bundle);
            let _ = std::fs::remove_dir_all(&rw);
            bail!("no command specified");
        }
        crate::cpuset::prepare(&input.cgroups_path);
        std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec::build(&input))?)?;
        let log_path = if config.log_path.is_empty() { String::new() } else { Path::new(&log_dir).join(&config.log_path).display().to_string() };
        let (tx, rx) = watch::channel(false);
        let c = Container {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            config,
            image,
            state: cri::ContainerState::ContainerCreated,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            oom: false,
            cgroup: input.cgroups_path.clone(),
            log_path,
            bundle,
            exited: rx,
            exited_tx: Some(tx),
            output: tokio::sync::broadcast::channel(256).0,
            stdin: None,
        };
        crate::persist::save_container(&c);
        self.containers.lock().insert(id.clone(), c);
        Ok(id)
    }

    /// Returns once runc reports the container running (or it has already exited),
    /// so that exec (probes, postStart) can follow at once.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        // Spawning the keeper, making FIFOs and opening logs are blocking
        // calls; on the async workers they stalled every other pod's CRI
        // calls during a burst of starts.
        let rt = self.clone();
        let cid = id.to_string();
        let (bundle, holds, mut exited) = tokio::task::spawn_blocking(move || rt.launch(&cid)).await??;
        // Running = runc wrote the init's PID and that process has exec'd the
        // container's command. Watched through the pid file and /proc, not
        // by polling `runc state`: each runc call costs a Go process start,
        // and a burst of pods polling it saturated the CPU.
        let mut running = false;
        for _ in 0..2000 {
            if *exited.borrow_and_update() {
                running = true;
                break;
            }
            if crate::shim::pid(&bundle).is_some_and(|p| !crate::shim::still_runc_init(p)) {
                running = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !running {
            tracing::warn!(container = id, "no sign of the container running after 10 s");
        }
        drop(holds);
        Ok(())
    }

    /// The blocking half of a start: the keeper (and runc under it) spawned,
    /// the container marked running and supervised. Returns the bundle, the
    /// FIFO writers held until the container runs, and its exit signal.
    fn launch(&self, id: &str) -> Result<(PathBuf, Vec<std::fs::File>, watch::Receiver<bool>)> {
        let (bundle, stdin, stdin_once, tty) = {
            let cs = self.containers.lock();
            let c = cs.get(id).context("no such container")?;
            if c.state != cri::ContainerState::ContainerCreated {
                bail!("container {id} is not in the created state");
            }
            (c.bundle.clone(), c.config.stdin, c.config.stdin_once, c.config.tty)
        };
        for f in ["exit", "pid", crate::shim::STDIN_CLOSED] {
            let _ = std::fs::remove_file(bundle.join(f));
        }
        let runc_root = self.cfg.runc_root();
        let keeper = crate::shim::Keeper { runc: &self.cfg.runc, runc_root: &runc_root, exe: &self.cfg.pause_exe, stdin, stdin_once, tty };
        let mut keeper = crate::shim::spawn(&keeper, &bundle, id)?;
        // Until the keeper opens the FIFOs itself, our readers must not see
        // EOF: hold a writer on each until the container runs.
        let holds: Vec<std::fs::File> = crate::shim::fifo_paths(&bundle)[..2].iter().filter_map(|p| std::fs::OpenOptions::new().read(true).write(true).open(p).ok()).collect();
        tokio::spawn(async move {
            let _ = keeper.wait().await;
        });
        {
            let mut cs = self.containers.lock();
            if let Some(c) = cs.get_mut(id) {
                c.state = cri::ContainerState::ContainerRunning;
                c.started_at = now_nanos();
                crate::persist::save_container(c);
            }
        }
        let exited = self.supervise(id)?;
        Ok((bundle, holds, exited))
    }

    /// Follow a started container: pump its output FIFOs into the CRI log
    /// (and attached clients), open its stdin, and record its exit when the
    /// keeper writes it. Used at start and when a restarted agent adopts a
    /// running container.
    pub fn supervise(&self, id: &str) -> Result<watch::Receiver<bool>> {
        let (bundle, log_path, output, wants_stdin, cgroup, exited, tx) = {
            let mut cs = self.containers.lock();
            let c = cs.get_mut(id).context("no such container")?;
            (c.bundle.clone(), c.log_path.clone(), c.output.clone(), c.config.stdin, c.cgroup.clone(), c.exited.clone(), c.exited_tx.take().context("already supervised")?)
        };
        let file = if log_path.is_empty() {
            std::fs::OpenOptions::new().write(true).open("/dev/null")?
        } else {
            if let Some(d) = Path::new(&log_path).parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?
        };
        let file = Arc::new(parking_lot::Mutex::new(file));
        let (o, e) = crate::shim::open_outputs(&bundle)?;
        let out = tokio::spawn(crate::logs::pump(o, "stdout", file.clone(), output.clone()));
        let err = tokio::spawn(crate::logs::pump(e, "stderr", file, output));
        if wants_stdin
            && !bundle.join(crate::shim::STDIN_CLOSED).exists()
            && let Ok(w) = crate::shim::open_stdin(&bundle)
                && let Some(c) = self.containers.lock().get_mut(id) {
                    c.stdin = Some(Arc::new(tokio::sync::Mutex::new(w)));
                }
        let containers = self.containers.clone();
        let mut delete = self.runc();
        let id = id.to_string();
        delete.args(["delete", "-f", &id]).stderr(Stdio::null());
        tokio::spawn(async move {
            let code = loop {
                if let Some(c) = crate::shim::exit_code(&bundle) {
                    break c;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let _ = out.await;
                let _ = err.await;
            })
            .await;
            let oom = code != 0 && oom_kills(&cgroup) > 0;
            let _ = delete.status().await;
            tracing::info!(container = %id, code, oom, "container exited");
            if let Some(c) = containers.lock().get_mut(&id) {
                c.state = cri::ContainerState::ContainerExited;
                c.finished_at = now_nanos();
                c.exit_code = code;
                c.oom = oom;
                c.stdin = None;
                c.reason = match (code, c.oom) {
                    (0, _) => "Completed".into(),
                    (_, true) => "OOMKilled".into(),
                    _ => "Error".into(),
                };
                crate::persist::save_container(c);
            }
            let _ = tx.send(true);
        });
        Ok(exited)
    }

    /// A runc command with its state in ours (`--root`): every runc call
    /// must name it, or runc looks in its default `/run/runc`.
    pub fn runc(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.cfg.runc);
        c.arg("--root").arg(self.cfg.runc_root());
        c
    }

    async fn runc_kill(&self, id: &str, sig: &str) {
        let _ = self.runc().args(["kill", id, sig]).stdout(Stdio::null()).stderr(Stdio::null()).status().await;
    }

    /// SIGTERM, wait up to `timeout` seconds, then SIGKILL.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<()> {
        let mut rx = {
            let cs = self.containers.lock();
            let c = cs.get(id).context("no such container")?;
            if c.state != cri::ContainerState::ContainerRunning {
                return Ok(());
            }
            c.exited.clone()
        };
        if timeout > 0 {
            self.runc_kill(id, "TERM").await;
            if tokio::time::timeout(Duration::from_secs(timeout as u64), rx.wait_for(|e| *e)).await.is_ok() {
                return Ok(());
            }
        }
        for _ in 0..10 {
            self.runc_kill(id, "KILL").await;
            if tokio::time::timeout(Duration::from_secs(1), rx.wait_for(|e| *e)).await.is_ok() {
                return Ok(());
            }
        }
        bail!("container {id} did not stop")
    }

    /// Run `cmd` in the running container (`runc exec`); a timeout of 0 means none.
    pub async fn exec_sync(&self, id: &str, cmd: &[String], timeout: i64) -> Result<(Vec<u8>, Vec<u8>, i32)> {
        if self.containers.lock().get(id).is_none_or(|c| c.state != cri::ContainerState::ContainerRunning) {
            bail!("container {id} is not running");
        }
        let child = self.runc().arg("exec").arg(id).args(cmd).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).output();
        let out = if timeout > 0 {
            tokio::time::timeout(Duration::from_secs(timeout as u64), child).await.map_err(|_| anyhow::anyhow!("command timed out after {timeout}s"))??
        } else {
            child.await?
        };
        let code = out.status.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0));
        Ok((out.stdout, out.stderr, code))
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        if !self.containers.lock().contains_key(id) {
            return Ok(());
        }
        self.stop_container(id, 0).await?;
        let c = self.containers.lock().remove(id);
        if let Some(c) = c {
            let _ = self.runc().args(["delete", "-f", id]).stderr(Stdio::null()).status().await;
            unmount(&c.bundle);
            let _ = std::fs::remove_dir_all(&c.bundle);
            let _ = std::fs::remove_dir_all(self.cfg.rw_dir(id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn command_and_args_override_image() {
        let img = ImageRecord { entrypoint: vec!["/ep".into()], cmd: vec!["c1".into()], ..Default::default() };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(process_args(&[], &[], &img), s(&["/ep", "c1"]));
        assert_eq!(process_args(&[], &s(&["a"]), &img), s(&["/ep", "a"]));
        assert_eq!(process_args(&s(&["sh"]), &[], &img), s(&["sh"]));
        assert_eq!(process_args(&s(&["sh"]), &s(&["-c", "x"]), &img), s(&["sh", "-c", "x"]));
    }
    #[test]
    fn env_merges_by_key() {
        let env = merge_env(&["PATH=/bin".into(), "A=1".into()], &[cri::KeyValue { key: "A".into(), value: "2".into() }]);
        assert_eq!(env, vec!["PATH=/bin".to_string(), "A=2".into()]);
        assert_eq!(terminal_env(env.clone(), false), env);
        assert_eq!(terminal_env(env.clone(), true).last().unwrap(), "TERM=xterm");
        assert_eq!(terminal_env(vec!["TERM=vt100".into()], true), vec!["TERM=vt100".to_string()]);
    }
}
