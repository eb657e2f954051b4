//! kubectl on a pseudo-terminal the test opens, for `-t` (kubectl wants
//! its stdin to be a terminal): type into it, read what it shows, resize it.

use super::Kubectl;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kubectl whose stdin, stdout and stderr are the slave side of a new
/// pseudo-terminal (and its controlling terminal); the test types on the master.
pub struct Term {
    master: File,
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Term {
    pub fn spawn(k: &Kubectl, args: &[&str]) -> Term {
        let (mut m, mut s) = (0, 0);
        let ws = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
        assert_eq!(unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) }, 0);
        let (master, slave) = unsafe { (File::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let mut c = Command::new(&k.bin);
        c.env("KUBECONFIG", &k.kubeconfig).args(args);
        c.stdin(Stdio::from(slave.try_clone().unwrap())).stdout(Stdio::from(slave.try_clone().unwrap())).stderr(Stdio::from(slave));
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        drop(c);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut r, s) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    return;
                }
                s.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term { master, child, seen }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).to_string()
    }

    /// Where the output is now: later waits look only past it.
    pub fn mark(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Typed keys: a line ends with Enter (`\r`), as on a real terminal.
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    pub fn wait_for(&self, what: &str, since: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = String::from_utf8_lossy(&self.seen.lock().unwrap()[since..]).to_string();
            if t.contains(what) {
                return t;
            }
            assert!(Instant::now() < deadline, "waiting for {what:?}; the terminal shows:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resize the terminal; the kernel tells kubectl with SIGWINCH.
    pub fn resize(&self, cols: u16, rows: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    }

    pub fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "kubectl did not exit; the terminal shows:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Go away without ending the shell (as closing the terminal would).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kubectl attach -it`: a terminal that says it is one, runs commands, and follows resizes.
pub fn attach_tty(k: &Kubectl, pod: &str, resize_to: (u16, u16)) -> Term {
    let mut t = Term::spawn(k, &["attach", "-it", pod, "-c", "c"]);
    t.wait_for("If you don't see a command prompt, try pressing enter.", 0);
    let m = t.mark();
    t.send("tty; [ -t 0 ] && echo is-a-tty; echo hi-$((1+2))\r");
    let out = t.wait_for("hi-3", m);
    assert!(out.contains("/dev/pts/0") && out.contains("is-a-tty"), "{}: {out}", k.bin);
    // The size kubectl sends first, then a resize it notices on SIGWINCH.
    let m = t.mark();
    t.send("stty size\r");
    t.wait_for("24 80", m);
    let (cols, rows) = resize_to;
    t.resize(cols, rows);
    let want = format!("{rows} {cols}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = t.mark();
        t.send("stty size\r");
        std::thread::sleep(Duration::from_millis(500));
        if String::from_utf8_lossy(&t.seen.lock().unwrap()[m..]).contains(&want) {
            break;
        }
        assert!(Instant::now() < deadline, "{}: the resize to {want} never reached the shell:\n{}", k.bin, t.text());
    }
    t
}

