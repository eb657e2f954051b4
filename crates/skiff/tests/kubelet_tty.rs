//! End to end: containers with `tty: true` (issue 7). Real kubectl runs on a
//! pseudo-terminal this test opens (kubectl's `-t` wants its stdin to be a
//! terminal) and drives a shell in a real pod: `kubectl attach -it` with
//! 1.29 (SPDY) and 1.33 (WebSocket), window resizes, detaching and
//! re-attaching across an agent restart, `kubectl run -i -t`, and
//! `stdinOnce`. Needs root (skipped otherwise), like kubelet.rs.

mod common;

use common::node::{apply, build_busybox_image, is_root, spawn_agent, wait_pod};
use common::{free_port, wait_for_port, Kubectl, SkiffServer};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODE: &str = "skiff-tt";

/// A kubectl whose stdin, stdout and stderr are the slave side of a new
/// pseudo-terminal (and its controlling terminal); the test types on the master.
struct Term {
    master: File,
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Term {
    fn spawn(k: &Kubectl, args: &[&str]) -> Term {
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

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).to_string()
    }

    /// Where the output is now: later waits look only past it.
    fn mark(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Typed keys: a line ends with Enter (`\r`), as on a real terminal.
    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    fn wait_for(&self, what: &str, since: usize) -> String {
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
    fn resize(&self, cols: u16, rows: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        assert_eq!(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) }, 0);
    }

    fn wait(mut self) -> std::process::ExitStatus {
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
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, command: &[&str], stdin_once: bool, tty: bool) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": NODE, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "c", "image": "busybox:skiff-test", "command": command, "stdin": true, "stdinOnce": stdin_once, "tty": tty}]}})
    .to_string()
}

/// `kubectl attach -it`: a terminal that says it is one, runs commands, and follows resizes.
fn attach_tty(k: &Kubectl, pod: &str, resize_to: (u16, u16)) -> Term {
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

fn container_status(k: &Kubectl, pod: &str) -> serde_json::Value {
    let p = wait_pod(k, pod, "its container to terminate", |p| !p["status"]["containerStatuses"][0]["state"]["terminated"].is_null());
    p["status"]["containerStatuses"][0]["state"]["terminated"].clone()
}

#[test]
fn tty_containers() {
    if !is_root() {
        eprintln!("skipping: the tty end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = build_busybox_image(d);
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let out = Command::new(skiff).args(["images", "import"]).arg(&image).arg("--runtime-root").arg(d.join("runtime")).output().unwrap();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let server = SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]);
    let kport = free_port();
    let start_agent = || spawn_agent(&server.kubeconfig, d, NODE, kport, "skifftt0", "10.244.247.0/24", &[]);
    let mut agent = Some(start_agent());
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // One shell, attached to by SPDY and WebSocket kubectls in turn;
        // each leaves without ending it.
        apply(&k, &pod("t", &["sh"], false, true));
        wait_pod(&k, "t", "Running", |p| p["status"]["phase"] == "Running");
        for (minor, size) in [(29, (100, 30)), (33, (132, 43))] {
            attach_tty(&Kubectl::new(minor, &server.kubeconfig), "t", size).kill();
            assert_eq!(k.ok(&["get", "pod", "t", "-o", "jsonpath={.status.phase}"]), "Running");
        }
        // A terminal has one stream: it went to the CRI log as stdout.
        let logs = k.ok(&["logs", "t"]);
        assert!(logs.contains("hi-3") && logs.contains("/dev/pts/0"), "{logs}");
        let log_file = std::fs::read_to_string(std::fs::read_dir(d.join("pods")).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with("default_t_")).unwrap().path().join("c/0.log")).unwrap();
        assert!(log_file.lines().all(|l| l.split(' ').nth(1) == Some("stdout")), "{log_file}");

        // The terminal's keeper outlives the agent: a new agent attaches to the same shell.
        drop(agent.take());
        agent = Some(start_agent());
        wait_for_port(kport, Duration::from_secs(30));
        let mut t = attach_tty(&k, "t", (90, 20));
        let m = t.mark();
        t.send("echo after-$((2*3)); exit 3\r");
        t.wait_for("after-6", m);
        t.wait();
        let term = container_status(&k, "t");
        assert_eq!(term["exitCode"], 3, "{term}");
        let p = wait_pod(&k, "t", "Failed", |p| p["status"]["phase"] == "Failed");
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);

        // `kubectl run -i -t` (stdin, stdinOnce and tty all true).
        let overrides = format!(r#"{{"apiVersion": "v1", "spec": {{"nodeName": "{NODE}"}}}}"#);
        let mut t = Term::spawn(&k, &["run", "-i", "-t", "r", "--image=busybox:skiff-test", "--restart=Never", "--overrides", &overrides, "--", "sh"]);
        t.wait_for("If you don't see a command prompt, try pressing enter.", 0);
        let m = t.mark();
        t.send("[ -t 0 ] && [ -t 1 ] && echo run-tty-$((40+2)); exit\r");
        t.wait_for("run-tty-42", m);
        t.wait();
        assert_eq!(container_status(&k, "r")["exitCode"], 0);
        let p = k.ok(&["get", "pod", "r", "-o", "json"]);
        let p: serde_json::Value = serde_json::from_str(&p).unwrap();
        let c = &p["spec"]["containers"][0];
        assert_eq!((c["stdin"].as_bool(), c["stdinOnce"].as_bool(), c["tty"].as_bool()), (Some(true), Some(true), Some(true)));

        // stdinOnce: when the first attached client closes its input, the
        // container's input ends after what it sent (the shell reads EOF and
        // exits 0), with a terminal or without. kubectl without -t sends a
        // plain stream, closed at the end of its stdin.
        for (minor, name, tty) in [(29, "o29", true), (33, "o33", true), (29, "p29", false), (33, "p33", false)] {
            apply(&k, &pod(name, &["sh", "-c", "sh; echo input-ended"], true, tty));
            wait_pod(&k, name, "Running", |p| p["status"]["phase"] == "Running");
            let k = Kubectl::new(minor, &server.kubeconfig);
            let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["attach", "-i", name, "-c", "c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            c.stdin.take().unwrap().write_all(b"echo once-$((2+3))\n").unwrap();
            // kubectl ends when the container does; if its input never ends, neither does kubectl.
            let pid = c.id();
            let (done, waiting) = std::sync::mpsc::channel::<()>();
            let watchdog = std::thread::spawn(move || {
                if waiting.recv_timeout(Duration::from_secs(60)).is_err() {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            });
            let out = c.wait_with_output().unwrap();
            let _ = done.send(());
            watchdog.join().unwrap();
            assert!(out.status.code().is_some(), "{}: the container's input did not end when kubectl's did", k.bin);
            assert!(String::from_utf8_lossy(&out.stdout).contains("once-5"), "{}: {}{}", k.bin, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(container_status(&k, name)["exitCode"], 0, "{}", k.bin);
            let logs = k.ok(&["logs", name]);
            assert!(logs.contains("once-5") && logs.contains("input-ended"), "{logs}");
        }
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    // Finished pods leave the API at once; give the agent time to remove
    // their sandboxes (pause processes) before it goes.
    let sandboxes = d.join("runtime/sandboxes");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&sandboxes).map(|r| r.count() > 0).unwrap_or(false) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(agent);
    let _ = Command::new("ip").args(["link", "del", "skifftt0"]).status();
    let _ = Command::new("sh").arg("-c").arg(format!("grep -o '{}[^ ]*rootfs' /proc/mounts | xargs -r umount -l", d.join("runtime").display())).status();
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}
