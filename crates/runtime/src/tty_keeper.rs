//! `skiff tty-keeper`: what keeps a `tty: true` container (the `sh` keeper
//! in `shim.rs` keeps the others). runc gives such a container a new
//! pseudo-terminal; in foreground mode runc would relay it to runc's own
//! terminal, which a daemon does not have, so instead runc runs detached and
//! hands the pty master over `--console-socket` to this process, which
//! outlives the agent like the `sh` keeper does:
//!
//! - it is the child subreaper, so once `runc run --detach` exits the
//!   container's init becomes its child and its exit status is ours to
//!   collect (written to `<bundle>/exit`, as the `sh` keeper does);
//! - it copies the master's output into the `stdout` FIFO (a terminal has
//!   one stream) and the `stdin` FIFO into the master;
//! - it applies what arrives on the `control` FIFO, one request a line:
//!   `resize <cols> <rows>` (TIOCSWINSZ on the master; the kernel then sends
//!   SIGWINCH to the terminal's foreground process group).
//!
//! It holds both ends of every FIFO, so a missing agent means blocked output,
//! never EOF or SIGPIPE, and any later agent can open them again.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The console socket's name in the bundle. runc dials it relative to the
/// bundle (our working directory), which keeps it under `sun_path`'s 108 bytes.
const SOCKET: &str = "console.sock";

/// Entry point: `tty-keeper <runc> <bundle> <id> <stdin: 0|1>`. Never returns.
pub fn main(args: &[String]) -> ! {
    let [runc, bundle, id, stdin] = args else {
        eprintln!("usage: skiff tty-keeper <runc> <bundle> <id> <stdin: 0|1>");
        std::process::exit(2)
    };
    let bundle = Path::new(bundle);
    let code = run(runc, bundle, id, stdin == "1").unwrap_or_else(|e| {
        eprintln!("skiff tty-keeper: {e:#}");
        255
    });
    // The exit file is the agent's signal that the container has ended.
    let _ = std::fs::write(bundle.join("exit.tmp"), format!("{code}\n")).and_then(|_| std::fs::rename(bundle.join("exit.tmp"), bundle.join("exit")));
    std::process::exit(0)
}

fn rw(name: &str) -> Result<File> {
    OpenOptions::new().read(true).write(true).open(name).with_context(|| format!("opening {name}"))
}

fn run(runc: &str, bundle: &Path, id: &str, stdin: bool) -> Result<i32> {
    std::env::set_current_dir(bundle).with_context(|| format!("entering {}", bundle.display()))?;
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!("becoming a subreaper: {}", std::io::Error::last_os_error());
    }
    let out = rw("stdout")?;
    let err = rw("stderr")?;
    let input = rw("stdin")?;
    let control = rw("control")?;
    let _ = std::fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET).context("binding the console socket")?;
    listener.set_nonblocking(true)?;
    let mut child = Command::new(runc)
        .args(["run", "--detach", "--console-socket", SOCKET, "--pid-file"])
        .arg(bundle.join("pid"))
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        // runc's own complaints go where the `sh` keeper puts them: the stderr FIFO.
        .stdout(Stdio::from(err.try_clone()?))
        .stderr(Stdio::from(err.try_clone()?))
        .spawn()
        .with_context(|| format!("running {runc}"))?;
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break Some(c),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if child.try_wait()?.is_some() {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("accepting on the console socket"),
        }
    };
    let master = match conn {
        Some(c) => Some(receive_fd(&c).context("receiving the pty master")?),
        None => None,
    };
    drop(listener);
    let _ = std::fs::remove_file(SOCKET);
    let status = child.wait()?;
    let Some(master) = master.filter(|_| status.success()) else {
        return Ok(status.code().unwrap_or(255).max(1));
    };
    let pid: i32 = std::fs::read_to_string(bundle.join("pid")).context("reading the pid file")?.trim().parse().context("parsing the pid file")?;
    let master = File::from(master);

    let (done_tx, done_rx) = mpsc::channel();
    let from = master.try_clone()?;
    std::thread::spawn(move || {
        copy(from, out);
        let _ = done_tx.send(());
    });
    if stdin {
        let to = master.try_clone()?;
        std::thread::spawn(move || copy(input, to));
    }
    let m = master.try_clone()?;
    std::thread::spawn(move || serve_control(control, m));
    let code = reap(pid);
    // The terminal's output ends when its last slave fd closes (the whole
    // pid namespace goes with init); do not wait on stragglers forever.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    Ok(code)
}

/// Wait for `pid` among our children (reaping any others that were
/// reparented to us), as a shell reports it: the exit code, or 128+signal.
fn reap(pid: i32) -> i32 {
    loop {
        let mut st = 0;
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r == pid {
            return if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) } else { 128 + libc::WTERMSIG(st) };
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                // Not our child after all: fall back to polling for it.
                while Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return 255;
            }
        }
    }
}

/// Copy until either side fails: a pty master reads EIO once every slave fd is closed.
fn copy(mut from: impl Read, mut to: impl Write) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// One control request: what a line on the `control` FIFO asks for.
#[derive(Debug, PartialEq)]
pub enum Request {
    Resize { cols: u16, rows: u16 },
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        let mut w = line.split_whitespace();
        match (w.next()?, w.next(), w.next()) {
            ("resize", Some(c), Some(r)) if w.next().is_none() => Some(Request::Resize { cols: c.parse().ok()?, rows: r.parse().ok()? }),
            _ => None,
        }
    }

    /// The line that asks for this (atomic on a FIFO: far below PIPE_BUF).
    pub fn line(&self) -> String {
        match self {
            Request::Resize { cols, rows } => format!("resize {cols} {rows}\n"),
        }
    }
}

fn serve_control(control: File, master: File) {
    for line in BufReader::new(control).lines() {
        let Ok(line) = line else { return };
        match Request::parse(&line) {
            Some(Request::Resize { cols, rows }) => {
                let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
            None => eprintln!("skiff tty-keeper: ignoring control request {line:?}"),
        }
    }
}

/// The file descriptor runc sends (SCM_RIGHTS) on the console socket.
fn receive_fd(conn: &UnixStream) -> Result<OwnedFd> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    // runc sends the pty's name as the message body.
    let mut name = [0u8; 4096];
    let mut iov = libc::iovec { iov_base: name.as_mut_ptr().cast(), iov_len: name.len() };
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    if unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) } < 0 {
        bail!("recvmsg: {}", std::io::Error::last_os_error());
    }
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() || unsafe { (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS } {
        bail!("runc sent no file descriptor");
    }
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32) };
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn control_requests_round_trip() {
        let r = Request::Resize { cols: 132, rows: 43 };
        assert_eq!(Request::parse(r.line().trim_end()), Some(r));
        assert_eq!(Request::parse("resize 80"), None);
        assert_eq!(Request::parse("resize 80 x"), None);
        assert_eq!(Request::parse("resize 80 24 1"), None);
        assert_eq!(Request::parse(""), None);
    }
}
