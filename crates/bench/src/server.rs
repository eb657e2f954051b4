//! Starting the servers under test, each on free loopback ports with a fresh
//! data directory, and killing them whatever happens.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tonic::transport::Channel;

pub struct Server {
    pub name: &'static str,
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub fn skiff(bin: &Path) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["store", "--name", "bench", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url, "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { name: "skiff", child, port, _dir: dir })
    }

    pub fn etcd(bin: &Path) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let peer = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let purl = format!("http://127.0.0.1:{peer}");
        let child = Command::new(bin)
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &format!("bench={purl}"), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Server { name: "etcd", child, port, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    /// Open `n` separate HTTP/2 connections, once the server answers.
    pub async fn channels(&self, n: usize) -> Result<Vec<Channel>> {
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(ch) = Channel::from_shared(url.clone())?.connect().await {
                let mut kv = etcdpb::kv_client::KvClient::new(ch.clone());
                let probe = etcdpb::RangeRequest { key: "probe".into(), ..Default::default() };
                if kv.range(probe).await.is_ok() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("{} on port {} did not become ready", self.name, self.port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Channel::from_shared(url.clone())?.connect().await?);
        }
        Ok(out)
    }
}
