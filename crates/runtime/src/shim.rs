//! Containers outlive the agent. `runc run` runs under a small `sh` keeper
//! in its own session, with its stdio on FIFOs in the bundle that the keeper
//! also holds open (so a dead agent means blocked output, never SIGPIPE);
//! the keeper writes runc's exit status to `<bundle>/exit`. Whichever agent
//! is running reads the FIFOs into the CRI log and polls for that file, so a
//! restarted agent picks up where the last one stopped. A container with
//! `tty: true` or `stdinOnce: true` has a keeper that can do more,
//! `skiff keeper` (`keeper.rs`), with the same FIFOs and exit file plus a
//! `control` FIFO (terminal resizes, closing stdin).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub fn fifo_paths(bundle: &Path) -> [PathBuf; 3] {
    [bundle.join("stdout"), bundle.join("stderr"), bundle.join("stdin")]
}

fn mkfifo(p: &Path) -> Result<()> {
    if p.exists() {
        return Ok(());
    }
    let c = std::ffi::CString::new(p.display().to_string())?;
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        bail!("mkfifo {}: {}", p.display(), std::io::Error::last_os_error());
    }
    Ok(())
}

/// How a container is kept.
pub struct Keeper<'a> {
    pub runc: &'a str,
    /// runc's `--root` (its state directory).
    pub runc_root: &'a Path,
    /// The skiff binary, whose `keeper` subcommand keeps terminal and stdinOnce containers.
    pub exe: &'a Path,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// Start the keeper; returns once it is spawned (not once runc is running).
pub fn spawn(k: &Keeper, bundle: &Path, id: &str) -> Result<tokio::process::Child> {
    let [out, err, input] = fifo_paths(bundle);
    for p in [&out, &err, &input] {
        mkfifo(p)?;
    }
    let flag = |b: bool| if b { "1" } else { "0" };
    let mut c = if k.tty || (k.stdin && k.stdin_once) {
        mkfifo(&bundle.join("control"))?;
        let mut c = tokio::process::Command::new(k.exe);
        c.arg("keeper").arg(k.runc).arg(k.runc_root).arg(bundle).arg(id).arg(flag(k.stdin)).arg(flag(k.tty));
        // Its own complaints (runc's go to the stderr FIFO); the agent may be gone.
        c.stderr(std::fs::File::create(bundle.join("keeper.log")).context("creating keeper.log")?);
        c
    } else {
        let mut c = sh_keeper(k.runc, k.runc_root, bundle, id, k.stdin);
        c.stderr(Stdio::null());
        c
    };
    c.stdin(Stdio::null()).stdout(Stdio::null());
    // Out of the agent's process group (a Ctrl-C or a signal to the agent's
    // group leaves running containers alone). Not setsid in a pre_exec hook:
    // that forces a fork of the agent, where a process group still lets the
    // standard library use posix_spawn.
    c.process_group(0);
    c.spawn().context("starting the container keeper")
}

/// `runc run` in the foreground under `sh`, stdio on the FIFOs.
fn sh_keeper(runc: &str, runc_root: &Path, bundle: &Path, id: &str, stdin: bool) -> tokio::process::Command {
    let [out, err, input] = fifo_paths(bundle);
    // fds 3-5 keep a reader and writer on every FIFO for the keeper's life.
    let stdin_from = if stdin { "\"$4\"" } else { "/dev/null" };
    let script = format!("exec 3<>\"$2\" 4<>\"$3\" 5<>\"$4\"; \"$1\" --root \"$7\" run --keep --pid-file \"$5/pid\" --bundle \"$5\" \"$6\" <{stdin_from} >\"$2\" 2>\"$3\"; echo $? >\"$5/exit.tmp\" && mv \"$5/exit.tmp\" \"$5/exit\"");
    let mut c = tokio::process::Command::new("sh");
    c.arg("-c").arg(script).arg("skiff-keeper").arg(runc).arg(&out).arg(&err).arg(&input).arg(bundle).arg(id).arg(runc_root);
    c
}

/// Ask a `skiff keeper` for `r` (see `keeper`). Fails when no
/// keeper is reading its control FIFO.
pub fn control(bundle: &Path, r: &crate::keeper::Request) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(bundle.join("control")).context("opening the keeper's control FIFO")?;
    f.write_all(r.line().as_bytes())?;
    Ok(())
}

/// The container's init PID, once runc has created it (`--pid-file`).
pub fn pid(bundle: &Path) -> Option<u32> {
    std::fs::read_to_string(bundle.join("pid")).ok()?.trim().parse().ok()
}

/// Whether `pid` is still runc's own init, waiting to exec the container's
/// process (true until `runc run` starts the container).
pub fn still_runc_init(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let mut args = cmd.split(|b| *b == 0);
            let argv0 = args.next().unwrap_or_default();
            argv0.ends_with(b"runc") && args.next() == Some(b"init")
        }
        // Gone: it ran and exited (the exit file will say how).
        Err(_) => false,
    }
}

/// runc's exit status, once the keeper has written it.
pub fn exit_code(bundle: &Path) -> Option<i32> {
    std::fs::read_to_string(bundle.join("exit")).ok()?.trim().parse().ok()
}

/// Read ends of the output FIFOs. While the keeper lives it holds a writer,
/// so these reach EOF only when it ends.
pub fn open_outputs(bundle: &Path) -> Result<(tokio::net::unix::pipe::Receiver, tokio::net::unix::pipe::Receiver)> {
    let [out, err, _] = fifo_paths(bundle);
    let o = tokio::net::unix::pipe::OpenOptions::new().open_receiver(&out)?;
    let e = tokio::net::unix::pipe::OpenOptions::new().open_receiver(&err)?;
    Ok((o, e))
}

/// Marks a bundle whose container's input has ended (stdinOnce).
pub const STDIN_CLOSED: &str = "stdin-closed";

/// The write end of the container's stdin FIFO. Opened read-write: a
/// write-only open fails while the keeper has not opened its end yet.
pub fn open_stdin(bundle: &Path) -> Result<tokio::net::unix::pipe::Sender> {
    Ok(tokio::net::unix::pipe::OpenOptions::new().read_write(true).open_sender(fifo_paths(bundle)[2].clone())?)
}
