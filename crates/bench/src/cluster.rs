//! `bench store-cluster`: a 3-member `skiff store` cluster against a
//! 3-member Debian etcd 3.4 cluster, both on loopback on this machine, with
//! the same client (the etcd v3 API), the same 256-byte values and fsync on.
//! Clients spread their connections over all three members, as etcd's
//! client balancer does, so followers forward writes to the leader in both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tonic::transport::{Channel, Endpoint};

use crate::server::{die_with_parent, free_port, stop, version};
use crate::stats::Table;
use crate::{conns, load, machine, progress};

#[derive(clap::Args)]
pub struct ClusterArgs {
    /// The skiff binary (build it with `cargo build --release -p skiff`).
    #[arg(long, default_value = "target/release/skiff")]
    skiff_bin: PathBuf,
    /// The etcd binary (Debian package etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Measured seconds per step, after a warm-up of a tenth of it.
    #[arg(long, default_value_t = 10.0)]
    step_secs: f64,
    /// Leader kills per cluster for the failover step (0: skip it).
    #[arg(long, default_value_t = 5)]
    failovers: usize,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl ClusterArgs {
    pub fn out_path(&self) -> Option<PathBuf> {
        self.out.clone()
    }
}

pub struct Cluster {
    pub name: &'static str,
    bin: PathBuf,
    children: Vec<Child>,
    ports: Vec<u16>,
    peers: Vec<u16>,
    initial: String,
    pub version: String,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            stop(c);
        }
    }
}

const MEMBERS: usize = 3;

impl Cluster {
    fn start(name: &'static str, bin: &Path) -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let ports: Vec<u16> = (0..MEMBERS).map(|_| free_port()).collect::<Result<_>>()?;
        let peers: Vec<u16> = (0..MEMBERS).map(|_| free_port()).collect::<Result<_>>()?;
        let initial =
            (0..MEMBERS).map(|i| format!("m{i}=http://127.0.0.1:{}", peers[i])).collect::<Vec<_>>().join(",");
        let mut c = Cluster { name, bin: bin.to_owned(), children: vec![], ports, peers, initial, version: version(bin), _dir: dir };
        for i in 0..MEMBERS {
            let child = c.spawn(i)?;
            c.children.push(child);
        }
        Ok(c)
    }

    /// Start member `i` (again, after a kill: same flags, same data dir).
    fn spawn(&self, i: usize) -> Result<Child> {
        let url = format!("http://127.0.0.1:{}", self.ports[i]);
        let purl = format!("http://127.0.0.1:{}", self.peers[i]);
        let mut cmd = Command::new(&self.bin);
        if self.name == "skiff" {
            cmd.args(["--log-level", "warn", "store"]);
        }
        cmd.args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self._dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &purl, "--initial-advertise-peer-urls", &purl])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.name == "etcd" {
            cmd.args(["--log-level", "warn"]);
        }
        die_with_parent(&mut cmd).spawn().with_context(|| format!("starting {}", self.bin.display()))
    }

    /// `(leader, member id)` as member `i` reports them; zeros when unreachable.
    async fn status(&self, i: usize) -> (u64, u64) {
        let Ok(e) = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.ports[i])) else { return (0, 0) };
        let e = e.connect_timeout(Duration::from_millis(200)).timeout(Duration::from_millis(500));
        let Ok(ch) = e.connect().await else { return (0, 0) };
        match etcdpb::maintenance_client::MaintenanceClient::new(ch).status(etcdpb::StatusRequest {}).await {
            Ok(r) => {
                let r = r.into_inner();
                (r.leader, r.header.map(|h| h.member_id).unwrap_or(0))
            }
            Err(_) => (0, 0),
        }
    }

    /// The index of the member all of `among` agree leads, if they do.
    async fn agreed_leader(&self, among: &[usize]) -> Option<usize> {
        let mut leader = None;
        let mut ids = vec![];
        for &i in among {
            let (l, me) = self.status(i).await;
            if l == 0 || leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
            ids.push((me, i));
        }
        let l = leader?;
        ids.iter().find(|(me, _)| *me == l).map(|(_, i)| *i)
    }

    /// SIGKILL the leader; how long until the survivors agree on a new one
    /// (polled every 10 ms). The killed member is restarted afterwards and
    /// the cluster is whole again before this returns.
    async fn failover(&mut self) -> Result<Duration> {
        let all: Vec<usize> = (0..MEMBERS).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if let Some(l) = self.agreed_leader(&all).await {
                break l;
            }
            anyhow::ensure!(Instant::now() < deadline, "{}: no agreed leader", self.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = self.children[leader].kill();
        let _ = self.children[leader].wait();
        let killed = Instant::now();
        let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
        let took = loop {
            if self.agreed_leader(&rest).await.is_some() {
                break killed.elapsed();
            }
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(30), "{}: no new leader after killing m{leader}", self.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.children[leader] = self.spawn(leader)?;
        while self.agreed_leader(&all).await.is_none() {
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "{}: m{leader} did not rejoin", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(took)
    }

    /// Wait until the cluster takes a write, then open `n` connections spread over the members.
    async fn channels(&mut self, n: usize) -> Result<Vec<Channel>> {
        let endpoints: Vec<Endpoint> = self
            .ports
            .iter()
            .map(|p| Endpoint::from_shared(format!("http://127.0.0.1:{p}")).map(|e| e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true)))
            .collect::<Result<_, _>>()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        'members: for e in &endpoints {
            loop {
                for c in &mut self.children {
                    if let Some(status) = c.try_wait()? {
                        bail!("{} member exited before becoming ready: {status}", self.name);
                    }
                }
                if let Ok(ch) = e.connect().await {
                    let mut kv = etcdpb::kv_client::KvClient::new(ch);
                    let probe = etcdpb::PutRequest { key: "probe".into(), value: "x".into(), ..Default::default() };
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), kv.put(probe)).await {
                        continue 'members;
                    }
                }
                if Instant::now() > deadline {
                    bail!("{} cluster did not take writes within 30 s", self.name);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(endpoints[i % MEMBERS].connect().await?);
        }
        Ok(out)
    }
}

pub async fn run(args: ClusterArgs) -> Result<String> {
    let secs = args.step_secs;
    anyhow::ensure!(secs > 0.0 && secs <= 600.0, "--step-secs must be in (0, 600]");
    let span = load::Span::Timed { warmup: Duration::from_secs_f64(secs / 10.0), measure: Duration::from_secs_f64(secs) };
    progress("starting a 3-member skiff cluster and a 3-member etcd cluster");
    let mut clusters = [Cluster::start("skiff", &args.skiff_bin)?, Cluster::start("etcd", &args.etcd_bin)?];
    let mut chans = Vec::new();
    for c in &mut clusters {
        chans.push(c.channels(16).await?);
    }
    progress("both clusters ready");
    let mut report = format!(
        "Command: `{}`\n\nMachine: {}\n\nServers: Skiff `{}` ({}); etcd `{}` ({}); each 3 members on loopback (6 processes in all, \
         on the same machine as the client), fsync on, fresh data dirs; 16 connections spread over the 3 members. \
         Each step runs one cluster, then the other, alternating which goes first.\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine(),
        clusters[0].version,
        args.skiff_bin.display(),
        clusters[1].version,
        args.etcd_bin.display(),
    );
    let mut t = Table::new(format!("3-member clusters: puts (256-byte values) and linearizable gets, {secs} s per step"));
    let mut step = 0;
    for clients in [1usize, 64, 512] {
        let mut f = [load::Figures::default(); 2];
        for i in crate::order(step) {
            progress(&format!("{}: puts from {clients} clients", clusters[i].name));
            f[i] = load::puts(conns(&chans[i], clients), clients, span, &format!("c{clients}")).await?;
        }
        step += 1;
        t.row(format!("puts/s, {clients} clients"), f[0].ops_per_sec, f[1].ops_per_sec, "higher");
        t.row(format!("put p99 ms, {clients} clients"), f[0].p99_ms, f[1].p99_ms, "lower");
    }
    let keys = 10_000;
    for (c, ch) in clusters.iter().zip(&chans) {
        progress(&format!("{}: loading {keys} keys for reads", c.name));
        load::load(ch, "get/", keys).await?;
    }
    for clients in [16usize, 64] {
        let mut f = [load::Figures::default(); 2];
        for i in crate::order(step) {
            progress(&format!("{}: linearizable gets from {clients} clients", clusters[i].name));
            f[i] = load::gets(conns(&chans[i], clients), clients, span, "get/", keys).await?;
        }
        step += 1;
        t.row(format!("linearizable gets/s, {clients} clients"), f[0].ops_per_sec, f[1].ops_per_sec, "higher");
        t.row(format!("get p99 ms, {clients} clients"), f[0].p99_ms, f[1].p99_ms, "lower");
    }
    report += &t.markdown();
    if args.failovers > 0 {
        // Both at their defaults: 100 ms heartbeat, 1,000 ms election timeout.
        let mut times: [Vec<f64>; 2] = [vec![], vec![]];
        for round in 0..args.failovers {
            for i in crate::order(round) {
                progress(&format!("{}: failover {}/{}", clusters[i].name, round + 1, args.failovers));
                times[i].push(clusters[i].failover().await?.as_secs_f64() * 1000.0);
            }
        }
        let mut f = Table::new(format!(
            "Leader failover: SIGKILL the leader, until both survivors report the same new leader ({} kills each; election timeout 1,000 ms)",
            args.failovers
        ));
        let stat = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let (s50, e50) = (stat(&mut times[0], 0.5), stat(&mut times[1], 0.5));
        let (smax, emax) = (stat(&mut times[0], 1.0), stat(&mut times[1], 1.0));
        f.row("failover p50 ms", s50, e50, "lower");
        f.row("failover max ms", smax, emax, "lower");
        report += "\n";
        report += &f.markdown();
    }
    progress("done; stopping clusters");
    Ok(report)
}
