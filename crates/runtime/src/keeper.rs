//! `skiff keeper`: what keeps a container that needs more than the `sh`
//! keeper in `shim.rs` can do: one with `tty: true`, or with `stdinOnce`.
//! Like the `sh` keeper it outlives the agent, holds both ends of the
//! container's FIFOs (so a missing agent means blocked output, never EOF or
//! SIGPIPE, and any later agent can open them again) and writes the exit
//! status to `<bundle>/exit`.
//!
//! - A terminal: runc gives the process a new pseudo-terminal. In the
//!   foreground runc would relay it to runc's own terminal, which a daemon
//!   does not have, so runc runs detached and hands the pty master over
//!   `--console-socket` to this process. Being the child subreaper, it
//!   inherits the container's init once runc exits and collects its status.
//!   The master's output goes to the `stdout` FIFO (a terminal has one
//!   stream), the `stdin` FIFO goes into the master.
//! - Otherwise runc runs in the foreground with its stdio on the FIFOs,
//!   stdin through a pipe this process feeds.
//!
//! Requests come on the `control` FIFO, one a line: `resize <cols> <rows>`
//! (TIOCSWINSZ on the master; the kernel then sends SIGWINCH to the
//! terminal's foreground process group) and `close-stdin` (for stdinOnce:
//! this process lets go of its writer on the `stdin` FIFO, so once the
//! agent's is closed too, what was written is read to its end and then the
//! container's input ends: the pipe is closed, or a terminal gets its EOF
//! character, which is how a terminal's input ends).

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The console socket's name in the bundle. runc dials it relative to the
/// bundle (our working directory), which keeps it under `sun_path`'s 108 bytes.
const SOCKET: &str = "console.sock";

/// Entry point: `keeper <runc> <runc root> <bundle> <id> <stdin: 0|1> <tty: 0|1>`. Never returns.
pub fn main(args: &[String]) -> ! {
    let [runc, runc_root, bundle, id, stdin, tty] = args else {
        eprintln!("usage: skiff keeper <runc> <runc root> <bundle> <id> <stdin: 0|1> <tty: 0|1>");
        std::process::exit(2)
    };
    let bundle = Path::new(bundle);
    let runc = Runc { bin: runc, root: Path::new(runc_root) };
    let code = run(&runc, bundle, id, stdin == "1", tty == "1").unwrap_or_else(|e| {
        eprintln!("skiff keeper: {e:#}");
        255
    });
    // The exit file is the agent's signal that the container has ended.
    let _ = std::fs::write(bundle.join("exit.tmp"), format!("{code}\n")).and_then(|_| std::fs::rename(bundle.join("exit.tmp"), bundle.join("exit")));
    std::process::exit(0)
}

/// The runc binary and its `--root`.
struct Runc<'a> {
    bin: &'a str,
    root: &'a Path,
}

impl Runc<'_> {
    fn command(&self) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--root").arg(self.root);
        c
    }
}

fn rw(name: &str) -> Result<File> {
    OpenOptions::new().read(true).write(true).open(name).with_context(|| format!("opening {name}"))
}

/// The `stdin` FIFO's read end, and a writer on it that keeps it from
/// reaching EOF until `close-stdin`.
fn stdin_fifo() -> Result<(File, File)> {
    // Non-blocking, or opening a FIFO's read end waits for a writer.
    let r = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("stdin").context("opening stdin")?;
    let w = OpenOptions::new().write(true).open("stdin").context("opening stdin")?;
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, 0) };
    Ok((r, w))
}

fn run(runc: &Runc, bundle: &Path, id: &str, stdin: bool, tty: bool) -> Result<i32> {
    std::env::set_current_dir(bundle).with_context(|| format!("entering {}", bundle.display()))?;
    let out = rw("stdout")?;
    let err = rw("stderr")?;
    let control = rw("control")?;
    let (input, hold) = stdin_fifo()?;
    if tty {
        return run_tty(runc, bundle, id, stdin, (out, err, input, hold, control));
    }
    let mut child = runc.command()
        .args(["run", "--keep", "--pid-file"])
        .arg(bundle.join("pid"))
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("running {}", runc.bin))?;
    if let Some(to) = child.stdin.take() {
        // Ends at the FIFO's EOF; dropping `to` is the container's end of input.
        std::thread::spawn(move || copy(input, to));
    }
    std::thread::spawn(move || serve_control(control, None, hold));
    let st = child.wait()?;
    // runc reports the container's status as its own (128+signal when killed).
    Ok(st.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0)))
}

fn run_tty(runc: &Runc, bundle: &Path, id: &str, stdin: bool, (out, err, input, hold, control): (File, File, File, File, File)) -> Result<i32> {
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        bail!("becoming a subreaper: {}", std::io::Error::last_os_error());
    }
    let _ = std::fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET).context("binding the console socket")?;
    listener.set_nonblocking(true)?;
    let mut child = runc.command()
        .args(["run", "--detach", "--console-socket", SOCKET, "--pid-file"])
        .arg(bundle.join("pid"))
        .arg("--bundle")
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        // runc's own complaints go where the `sh` keeper puts them: the stderr FIFO.
        .stdout(Stdio::from(err.try_clone()?))
        .stderr(Stdio::from(err))
        .spawn()
        .with_context(|| format!("running {}", runc.bin))?;
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
        let mut to = master.try_clone()?;
        std::thread::spawn(move || {
            copy(input, &mut to);
            // The FIFO's end (stdinOnce): type the terminal's EOF character.
            let mut t: libc::termios = unsafe { std::mem::zeroed() };
            let veof = if unsafe { libc::tcgetattr(to.as_raw_fd(), &mut t) } == 0 { t.c_cc[libc::VEOF] } else { 4 };
            let _ = to.write_all(&[veof]);
        });
    }
    let m = master.try_clone()?;
    std::thread::spawn(move || serve_control(control, Some(m), hold));
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
    CloseStdin,
}

impl Request {
    pub fn parse(line: &str) -> Option<Request> {
        let mut w = line.split_whitespace();
        match (w.next()?, w.next(), w.next()) {
            ("resize", Some(c), Some(r)) if w.next().is_none() => Some(Request::Resize { cols: c.parse().ok()?, rows: r.parse().ok()? }),
            ("close-stdin", None, None) => Some(Request::CloseStdin),
            _ => None,
        }
    }

    /// The line that asks for this (atomic on a FIFO: far below PIPE_BUF).
    pub fn line(&self) -> String {
        match self {
            Request::Resize { cols, rows } => format!("resize {cols} {rows}\n"),
            Request::CloseStdin => "close-stdin\n".into(),
        }
    }
}

fn serve_control(control: File, master: Option<File>, hold: File) {
    let mut hold = Some(hold);
    for line in BufReader::new(control).lines() {
        let Ok(line) = line else { return };
        match Request::parse(&line) {
            Some(Request::Resize { cols, rows }) => {
                if let Some(m) = &master {
                    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            Some(Request::CloseStdin) => hold = None,
            None => eprintln!("skiff keeper: ignoring control request {line:?}"),
        }
    }
    drop(hold);
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
        for r in [Request::Resize { cols: 132, rows: 43 }, Request::CloseStdin] {
            assert_eq!(Request::parse(r.line().trim_end()), Some(r));
        }
        assert_eq!(Request::parse("close-stdin now"), None);
        assert_eq!(Request::parse("resize 80"), None);
        assert_eq!(Request::parse("resize 80 x"), None);
        assert_eq!(Request::parse("resize 80 24 1"), None);
        assert_eq!(Request::parse(""), None);
    }
}
