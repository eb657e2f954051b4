//! Helpers shared by the integration tests: start the real `skiff` binary.
#![allow(dead_code)]

pub mod node;
pub mod prom;
pub mod tty;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `skiff store` child process, killed (SIGKILL) and reaped on drop.
pub struct SkiffStore {
    pub child: Child,
    pub port: u16,
}

impl SkiffStore {
    /// Start `skiff store` on a free loopback port with `dir` as data dir, and
    /// wait until it accepts connections (it listens only after recovery).
    pub fn start(dir: &Path, extra: &[&str]) -> SkiffStore {
        SkiffStore::start_on(dir, free_port(), extra, &[])
    }

    /// [`SkiffStore::start`] on a given client port (a restarted cluster
    /// member keeps its address), with extra environment variables.
    pub fn start_on(dir: &Path, port: u16, extra: &[&str], envs: &[(&str, &str)]) -> SkiffStore {
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["store", "--data-dir"])
            .arg(dir)
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(extra)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start skiff store");
        let store = SkiffStore { child, port };
        wait_for_port(port, Duration::from_secs(20));
        store
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for SkiffStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on, never the same one twice in a test
/// binary. Its tests run in parallel threads, and the kernel can hand the
/// same free port to two of them before either's server has bound it: one
/// server then fails to start, its test waits for the port, finds the other
/// test's server there, and fails once that one stops.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listening on 127.0.0.1:{port} after {timeout:?}");
}

/// Debian's etcd (package etcd-server), single member on free loopback ports.
pub struct Etcd {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let peer = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let purl = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "diff", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("diff={purl}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (install etcd-server)");
        let e = Etcd { child, port, _dir: dir };
        wait_for_port(port, Duration::from_secs(20));
        e
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `skiff server` child process with its data directory's kubeconfig.
pub struct SkiffServer {
    pub child: Child,
    pub port: u16,
    pub kubeconfig: std::path::PathBuf,
    /// Its stderr (appended across restarts on the same data directory);
    /// printed when the test fails.
    pub log: std::path::PathBuf,
}

impl SkiffServer {
    pub fn start(dir: &Path) -> SkiffServer {
        Self::start_on(dir, free_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> SkiffServer {
        Self::start_with(dir, port, &[])
    }

    pub fn start_with(dir: &Path, port: u16, extra: &[&str]) -> SkiffServer {
        let s = Self::spawn_with(dir, port, extra);
        wait_for_port(port, Duration::from_secs(30));
        s
    }

    /// Start without waiting for the API port (a Raft member only serves
    /// once a quorum of its peers has started too).
    pub fn spawn_with(dir: &Path, port: u16, extra: &[&str]) -> SkiffServer {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("skiff-server.log");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--data-dir"])
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // Tests run many servers at once; only those that ask for this machine's agent (by naming its node) get one.
            .args(if extra.contains(&"--disable-agent") || extra.contains(&"--node-name") { &[][..] } else { &["--disable-agent"][..] })
            // Likewise the in-process scheduler: only for tests that pass the pseudo-flag `+scheduler`
            // (tests of `skiff scheduler` run their own, and most tests want pods to stay as created).
            .args(if extra.contains(&"+scheduler") || extra.contains(&"--disable-scheduler") { &[][..] } else { &["--disable-scheduler"][..] })
            .args(extra.iter().filter(|a| **a != "+scheduler"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start skiff server");
        SkiffServer { child, port, kubeconfig: dir.join("kubeconfig.yaml"), log }
    }

    /// SIGKILL now: no clean shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() > deadline {
                panic!("skiff server did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SkiffServer {
    fn drop(&mut self) {
        print_log_if_panicking(&format!("skiff server :{}", self.port), &mut self.child, &self.log);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When a test is failing, show the end of a child's log (and whether it had
/// already exited) in the test's output: CI keeps nothing else of a tempdir.
pub fn print_log_if_panicking(what: &str, child: &mut Child, log: &Path) {
    if !std::thread::panicking() {
        return;
    }
    let exited = match child.try_wait() {
        Ok(Some(st)) => format!(" (had exited: {st})"),
        _ => String::new(),
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    eprintln!("---- last {} lines of {what}{exited}, {} ----", tail.len(), log.display());
    for l in tail {
        eprintln!("{l}");
    }
}

/// kubectl of a given minor version, pointed at a kubeconfig.
pub struct Kubectl {
    pub bin: String,
    pub kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    pub fn new(minor: u32, kubeconfig: &Path) -> Kubectl {
        Kubectl { bin: format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"), kubeconfig: kubeconfig.to_owned() }
    }
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin).env("KUBECONFIG", &self.kubeconfig).args(args).output().expect("kubectl runs")
    }
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{} {args:?} failed: {}", self.bin, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{} {args:?} should fail", self.bin);
        String::from_utf8(out.stderr).unwrap()
    }
}

/// Another `skiff <args> --kubeconfig <kc>` child (sim, scheduler, controller-manager):
/// stderr to a log file, SIGKILLed and reaped on drop.
pub struct SkiffProc(pub Child, pub std::path::PathBuf);

impl SkiffProc {
    pub fn start(kubeconfig: &Path, log: &Path, args: &[&str]) -> SkiffProc {
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start skiff");
        SkiffProc(child, log.to_owned())
    }

    /// SIGKILL now (a crashed node: no goodbye).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for SkiffProc {
    fn drop(&mut self) {
        let what = format!("skiff {}", self.1.file_name().unwrap_or_default().to_string_lossy());
        print_log_if_panicking(&what, &mut self.0, &self.1);
        self.kill();
    }
}

/// Debian's etcdctl (v3 API) against `endpoints` (`host:port,…`: etcdctl 3.4
/// sends a URL scheme in the HTTP/2 authority, which hyper refuses).
pub fn etcdctl(endpoints: &str, args: &[&str]) -> std::process::Output {
    Command::new("/usr/bin/etcdctl").env("ETCDCTL_API", "3").args(["--endpoints", endpoints]).args(args).output().expect("run etcdctl")
}

/// A plain-HTTP GET on loopback (metrics endpoints); the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of an unlabelled Prometheus metric in a scrape.
pub fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{body}"))
}

/// Poll `f` every 200 ms until it returns Some, or panic after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
