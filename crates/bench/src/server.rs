//! Starting the servers under test, each on free loopback ports with a fresh
//! data directory, and stopping them whatever happens (error, panic, Ctrl-C,
//! or the bench process itself being killed).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tonic::transport::{Channel, Endpoint};

/// Resident memory in bytes. `file` matters for etcd: its bbolt database is
/// mmapped, so touched pages of the file count towards VmRSS as well.
#[derive(Clone, Copy, Debug)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

pub struct Server {
    pub name: &'static str,
    child: Child,
    pub port: u16,
    /// `--version` output's first line, for the report.
    pub version: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    /// SIGTERM (a clean shutdown, as the servers expect), then SIGKILL if it
    /// is still running after a bounded wait.
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// SIGTERM, then SIGKILL if the child is still running after 5 s.
pub fn stop(child: &mut Child) {
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The child gets SIGKILL if the bench process dies, so a killed bench never
/// leaves servers behind. (Strictly, the signal fires when the *thread* that
/// spawned the child exits; the servers are spawned from the future that
/// `#[tokio::main]` blocks on, i.e. from the main thread, which lives as long
/// as the process.)
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

impl Server {
    pub fn skiff(bin: &Path) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let child = die_with_parent(
            Command::new(bin)
                .args(["--log-level", "warn", "store", "--name", "bench", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        )
        .spawn()
        .with_context(|| format!("starting {} (build it with cargo build --release -p skiff)", bin.display()))?;
        Ok(Server { name: "skiff", child, port, version: version(bin), _dir: dir })
    }

    pub fn etcd(bin: &Path) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let peer = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let purl = format!("http://127.0.0.1:{peer}");
        let child = die_with_parent(
            Command::new(bin)
                .args(["--name", "bench", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
                .args(["--initial-cluster", &format!("bench={purl}"), "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { name: "etcd", child, port, version: version(bin), _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system, all threads) the server has used so far, in
    /// seconds.
    pub fn cpu_secs(&self) -> f64 {
        crate::noise::process_cpu(&self.pid().to_string()) as f64 / crate::noise::ticks_per_sec()
    }

    /// Resident memory of the server process, from `/proc/PID/status`.
    pub fn rss(&self) -> Result<Rss> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> Result<u64> {
            let kb: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in /proc/{}/status", self.pid()))?;
            Ok(kb * 1024)
        };
        Ok(Rss { total: field("VmRSS:")?, anon: field("RssAnon:")?, file: field("RssFile:")? })
    }

    /// Wait (bounded) until the server answers a range, then open `n`
    /// separate HTTP/2 connections to it.
    pub async fn channels(&mut self, n: usize) -> Result<Vec<Channel>> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let endpoint = Endpoint::from_shared(url)?.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited before becoming ready: {status}", self.name);
            }
            if let Ok(ch) = endpoint.connect().await {
                let mut kv = etcdpb::kv_client::KvClient::new(ch);
                let probe = etcdpb::RangeRequest { key: "probe".into(), ..Default::default() };
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), kv.range(probe)).await {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("{} on port {} did not become ready within 30 s", self.name, self.port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(endpoint.connect().await?);
        }
        Ok(out)
    }
}
