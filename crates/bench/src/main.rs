//! `bench`: measures Skiff against its real peers on this machine, driven by
//! the same client in the same run, and prints Markdown tables.
//!
//! `bench store` compares `skiff store` with Debian's etcd 3.4, both
//! single-member with fsync on.

/// mimalloc, as the `skiff` binary: the load generators share the machine's
/// two cores with what they measure, and a profile of `bench scheduler` had
/// over a quarter of the bench's own CPU in glibc's malloc and free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod apiserver;
mod busybox;
mod endpoints;
mod cluster;
mod load;
mod mounts;
mod noise;
mod containerd;
mod pod_startup;
mod scheduler;
mod rollout;
mod scheduler_cycle;
mod server;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use server::Server;
use stats::Table;

#[derive(Parser)]
#[command(name = "bench", about = "Skiff benchmarks against real peers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Skiff's store against Debian's etcd over the etcd v3 API.
    Store(StoreArgs),
    /// 3-member skiff store cluster against a 3-member etcd cluster: puts at 1/64/512 clients, linearizable gets.
    StoreCluster(cluster::ClusterArgs),
    /// The Kubernetes API of `skiff server`: creates, gets, lists, watch fan-out, fixed-rate writes.
    Apiserver(apiserver::ApiArgs),
    /// scheduler_perf's SchedulingBasic: sim nodes, then pods; pods/s and p99 latency.
    Scheduler(scheduler::SchedulerArgs),
    /// The scheduling algorithm alone, in process (no API server): cycles/s and per-cycle latency.
    SchedulerCycle(scheduler_cycle::CycleArgs),
    /// A Deployment of R replicas on sim nodes: create, then a rolling update; time, API requests, controller CPU.
    Rollout(rollout::RolloutArgs),
    /// A Service over a ReplicaSet on sim nodes: how fast Endpoints and EndpointSlices follow.
    Endpoints(endpoints::EndpointsArgs),
    /// Pod startup latency on one real node (root): one at a time, a burst at once, the agent's RSS.
    PodStartup(pod_startup::PodStartupArgs),
}

#[derive(clap::Args)]
struct StoreArgs {
    /// The skiff binary (build it with `cargo build --release -p skiff`).
    #[arg(long, default_value = "target/release/skiff")]
    skiff_bin: PathBuf,
    /// The etcd binary (Debian package etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// A short run (under a minute) for smoke tests.
    #[arg(long)]
    quick: bool,
    /// Keys loaded for the memory measurement (default 1,000,000; 50,000 with --quick).
    #[arg(long)]
    keys: Option<u64>,
    /// Measured seconds per throughput step, after a warm-up of a tenth of it
    /// (default 10; 1.5 with --quick).
    #[arg(long)]
    step_secs: Option<f64>,
    /// Run only these sections (comma-separated), e.g. `--only watch` to
    /// repeat one measurement; default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
enum Section {
    Puts,
    Ranges,
    Watch,
    Memory,
}

/// Progress on stderr, stamped with seconds since start, so a slow step shows.
fn progress(msg: &str) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64();
    eprintln!("bench [{t:6.1}s]: {msg}");
}

/// The connections `clients` clients share: one per 16 clients, as a client
/// library pooling HTTP/2 connections would; the same for both servers.
fn conns(ch: &[tonic::transport::Channel], clients: usize) -> &[tonic::transport::Channel] {
    &ch[..ch.len().min(clients.div_ceil(16))]
}

/// nproc, CPU model, RAM and kernel: enough to tell whether two reports are
/// comparable.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    format!("nproc {cores} ({cpu}), {} GiB RAM, Linux {}", mem_kb / 1024 / 1024, kernel.trim())
}

/// Logs the other processes' CPU share during a step, so a skewed step shows
/// while the run is still going.
fn note(noise: &mut noise::Tracker, name: &str, from: noise::Sample) {
    let share = noise.step(name, from);
    if share > 5.0 {
        progress(&format!("note: other processes used {share:.1}% of the CPU during {name}"));
    }
}

/// Server CPU time per request over a step, warm-up included. On a machine
/// where the client shares the cores, throughput ratios are squeezed by the
/// client's own cost; this is the server's cost alone.
fn cpu_us_per_op(s: &Server, cpu_before: f64, f: &load::Figures) -> f64 {
    (s.cpu_secs() - cpu_before) * 1e6 / f.total_ops.max(1) as f64
}

/// Which server goes first in step `k`. Alternating removes a systematic
/// bias: whoever runs second inherits the first one's dirty page cache and
/// any background work (compaction, GC) it left behind.
fn order(k: usize) -> [usize; 2] {
    if k.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

/// One line of the goal check: a throughput step with both servers' figures.
struct Goal {
    name: String,
    skiff: load::Figures,
    etcd: load::Figures,
}

async fn store(args: StoreArgs) -> Result<String> {
    let q = args.quick;
    let secs = args.step_secs.unwrap_or(if q { 1.5 } else { 10.0 });
    anyhow::ensure!(secs > 0.0 && secs <= 600.0, "--step-secs must be in (0, 600]");
    let span = load::Span::Timed { warmup: Duration::from_secs_f64(secs / 10.0), measure: Duration::from_secs_f64(secs) };
    progress("starting skiff and etcd");
    let mut servers = [Server::skiff(&args.skiff_bin)?, Server::etcd(&args.etcd_bin)?];
    let mut chans = Vec::new();
    for s in &mut servers {
        // One HTTP/2 connection per 16 clients, up to 16; same for both servers.
        chans.push(s.channels(16).await?);
    }
    progress("both servers ready");
    let mut noise = noise::Tracker::new(servers.iter().map(Server::pid).collect());
    let mut report = format!(
        "Command: `{}`\n\nMachine: {}\n\nServers: Skiff `{}` ({}); etcd `{}` ({}); both single-member on loopback, fsync on, fresh data dirs, \
         running side by side on the same machine as the client (the idle one costs little). Each step runs both servers one after \
         the other, alternating which goes first.\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine(),
        servers[0].version,
        args.skiff_bin.display(),
        servers[1].version,
        args.etcd_bin.display(),
    );
    // Problems that should not abort the run but must not go unnoticed.
    let mut problems: Vec<String> = Vec::new();
    let mut goals: Vec<Goal> = Vec::new();
    let mut step = 0usize;

    let run = |sec: Section| args.only.is_empty() || args.only.contains(&sec);

    // Writes.
    if run(Section::Puts) {
        let mut t = Table::new(format!("Puts (256-byte values, distinct keys, closed loop, {secs} s per step after a {:.1} s warm-up)", secs / 10.0));
        for clients in [1usize, 16, 256] {
            let mut f = [load::Figures::default(); 2];
            let mut c = [0.0; 2];
            for i in order(step) {
                let (s, ch) = (&servers[i], &chans[i]);
                progress(&format!("{}: puts from {clients} clients over {} connections for {secs} s", s.name, conns(ch, clients).len()));
                let (from, cpu) = (noise.sample(), s.cpu_secs());
                f[i] = load::puts(conns(ch, clients), clients, span, &clients.to_string()).await?;
                c[i] = cpu_us_per_op(s, cpu, &f[i]);
                note(&mut noise, &format!("{}: puts, {clients} clients", s.name), from);
            }
            step += 1;
            t.row(format!("puts/s, {clients} clients"), f[0].ops_per_sec, f[1].ops_per_sec, "higher");
            t.row(format!("p50 ms, {clients} clients"), f[0].p50_ms, f[1].p50_ms, "lower");
            t.row(format!("p99 ms, {clients} clients"), f[0].p99_ms, f[1].p99_ms, "lower");
            t.row(format!("server CPU µs per put, {clients} clients"), c[0], c[1], "lower");
            goals.push(Goal { name: format!("puts, {clients} clients"), skiff: f[0], etcd: f[1] });
        }
        report += &t.markdown();
    }

    // Reads.
    if run(Section::Ranges) {
        let keys = if q { 1_000 } else { 10_000 };
        let mut t = Table::new(format!("Ranges (16 clients over one connection, {secs} s per step; gets over {keys} keys)"));
        let mut gets = [load::Figures::default(); 2];
        let mut gets_cpu = [0.0; 2];
        let mut pref_cpu = [0.0; 2];
        let mut pref = [load::Figures::default(); 2];
        for (s, ch) in servers.iter().zip(&chans) {
            progress(&format!("{}: loading {keys} keys for reads", s.name));
            load::load(ch, "get/", keys).await?;
            load::load(ch, "pref/", 100).await?;
        }
        for i in order(step) {
            let (s, ch) = (&servers[i], &chans[i]);
            progress(&format!("{}: single-key gets", s.name));
            let (from, cpu) = (noise.sample(), s.cpu_secs());
            gets[i] = load::gets(conns(ch, 16), 16, span, "get/", keys).await?;
            gets_cpu[i] = cpu_us_per_op(s, cpu, &gets[i]);
            note(&mut noise, &format!("{}: gets", s.name), from);
        }
        step += 1;
        for i in order(step) {
            let (s, ch) = (&servers[i], &chans[i]);
            progress(&format!("{}: 100-key prefix ranges", s.name));
            let (from, cpu) = (noise.sample(), s.cpu_secs());
            pref[i] = load::prefix_ranges(conns(ch, 16), 16, span, "pref/", 100).await?;
            pref_cpu[i] = cpu_us_per_op(s, cpu, &pref[i]);
            note(&mut noise, &format!("{}: prefix ranges", s.name), from);
        }
        step += 1;
        t.row("single-key gets/s", gets[0].ops_per_sec, gets[1].ops_per_sec, "higher");
        t.row("single-key get p50 ms", gets[0].p50_ms, gets[1].p50_ms, "lower");
        t.row("single-key get p99 ms", gets[0].p99_ms, gets[1].p99_ms, "lower");
        t.row("server CPU µs per get", gets_cpu[0], gets_cpu[1], "lower");
        t.row("100-key ranges/s", pref[0].ops_per_sec, pref[1].ops_per_sec, "higher");
        t.row("100-key range p50 ms", pref[0].p50_ms, pref[1].p50_ms, "lower");
        t.row("100-key range p99 ms", pref[0].p99_ms, pref[1].p99_ms, "lower");
        t.row("server CPU µs per 100-key range", pref_cpu[0], pref_cpu[1], "lower");
        goals.push(Goal { name: "single-key gets, 16 clients".into(), skiff: gets[0], etcd: gets[1] });
        goals.push(Goal { name: "100-key ranges, 16 clients".into(), skiff: pref[0], etcd: pref[1] });
        report += &t.markdown();
    }

    // Watch fan-out. Its p99 is set by the slowest ~1% of deliveries, i.e.
    // by a handful of puts, so the full run uses enough puts (500, 10 s) for
    // the tail to be more than one unlucky put.
    if run(Section::Watch) {
        let (watchers, puts, gap) = (1_000usize, if q { 20 } else { 500 }, Duration::from_millis(20));
        let streams = 10;
        let mut t = Table::new(format!(
            "Watch fan-out ({watchers} watchers on one prefix over {streams} streams on {streams} connections, {puts} puts, one every {} ms; \
             latency from just before the put is sent to each watcher receiving the event)",
            gap.as_millis()
        ));
        let mut fan: [Option<load::FanOut>; 2] = [None, None];
        for i in order(step) {
            let (s, ch) = (&servers[i], &chans[i]);
            progress(&format!("{}: {watchers} watchers, {puts} puts", s.name));
            let from = noise.sample();
            let f = load::watch_fanout(&ch[..streams], watchers, puts, gap).await?;
            note(&mut noise, &format!("{}: watch fan-out", s.name), from);
            if f.delivered != f.expected {
                let msg = format!("{}: watch fan-out delivered {} of {} events", s.name, f.delivered, f.expected);
                progress(&format!("PROBLEM: {msg}"));
                problems.push(msg);
            }
            fan[i] = Some(f);
        }
        step += 1;
        let [Some(fs), Some(fe)] = fan else { unreachable!("both servers ran") };
        t.row(format!("events delivered (of {})", fs.expected), fs.delivered as f64, fe.delivered as f64, "equal");
        t.row("delivery p50 ms", fs.latency.p50_ms, fe.latency.p50_ms, "lower");
        t.row("delivery p99 ms", fs.latency.p99_ms, fe.latency.p99_ms, "lower");
        report += &t.markdown();
    }

    // Memory.
    if run(Section::Memory) {
        let n = args.keys.unwrap_or(if q { 50_000 } else { 1_000_000 });
        anyhow::ensure!(n > 0, "--keys must be positive");
        let mut t = Table::new(format!(
            "Resident memory (VmRSS growth while loading {n} new keys of 256 bytes in txns of 100 puts from 16 clients, scaled to 1M keys)"
        ));
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let per_m = |before: u64, after: u64| mib(after.saturating_sub(before)) * 1e6 / n as f64;
        let mut mem = [(0.0, 0.0, 0.0, 0.0); 2];
        for i in order(step) {
            let s = &servers[i];
            let before = s.rss()?;
            progress(&format!("{}: loading {n} keys (RSS before {:.0} MiB)", s.name, mib(before.total)));
            let from = noise.sample();
            let f = load::load(&chans[i], "mem/", n).await?;
            note(&mut noise, &format!("{}: memory load", s.name), from);
            progress(&format!("{}: loaded at {:.0} keys/s", s.name, f.ops_per_sec * load::TXN_PUTS as f64));
            // Let background work (freeing request buffers, snapshots) settle.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = s.rss()?;
            progress(&format!("{}: RSS after {:.0} MiB (anon {:.0}, file {:.0})", s.name, mib(after.total), mib(after.anon), mib(after.file)));
            mem[i] = (per_m(before.total, after.total), per_m(before.anon, after.anon), mib(after.total), f.ops_per_sec * load::TXN_PUTS as f64);
        }
        t.row("VmRSS MiB per 1M keys", mem[0].0, mem[1].0, "lower");
        t.row("RssAnon (anonymous) MiB per 1M keys", mem[0].1, mem[1].1, "lower");
        t.row("VmRSS MiB after loading", mem[0].2, mem[1].2, "lower");
        t.row("load rate, keys/s", mem[0].3, mem[1].3, "higher");
        report += &t.markdown();
    }

    // The project's goal: at least 1.5x etcd's throughput, p99 no worse.
    if !goals.is_empty() {
        report += "### Goal check (Skiff >= 1.5x etcd throughput, p99 no worse)\n\n\
                   | workload | throughput Skiff/etcd | p99 Skiff/etcd | >= 1.5x | p99 no worse |\n|---|---:|---:|---|---|\n";
        for g in &goals {
            let tput = g.skiff.ops_per_sec / g.etcd.ops_per_sec.max(1e-9);
            let p99 = g.skiff.p99_ms / g.etcd.p99_ms.max(1e-9);
            let yes = |b: bool| if b { "yes" } else { "**no**" };
            report += &format!("| {} | {tput:.2} | {p99:.2} | {} | {} |\n", g.name, yes(tput >= 1.5), yes(p99 <= 1.0));
        }
        report += "\n";
    }

    let (run, worst, worst_step) = noise.summary();
    report += &format!(
        "Other processes on the machine used {run:.1}% of its CPU capacity during the run (worst step: {worst:.1}%, {worst_step}).\n\n"
    );
    if worst > 10.0 {
        problems.push(format!(
            "other processes used up to {worst:.1}% of the machine's CPU during a step ({worst_step}); figures may be skewed"
        ));
    }
    if !problems.is_empty() {
        report += "### Problems\n\n";
        for p in &problems {
            report += &format!("- {p}\n");
        }
        report += "\n";
    }
    progress("done; stopping servers");
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Store(args) => {
            let out = args.out.clone();
            // On Ctrl-C, drop the run so the servers' Drop guards stop them.
            let report = tokio::select! {
                r = store(args) => r?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            };
            println!("{report}");
            if let Some(path) = out {
                std::fs::write(path, &report)?;
            }
        }
        Cmd::StoreCluster(args) => {
            let out = args.out_path();
            let report = tokio::select! {
                r = cluster::run(args) => r?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            };
            print!("{report}");
            if let Some(p) = out {
                std::fs::write(p, &report)?;
            }
        }
        Cmd::Apiserver(args) => {
            let report = tokio::select! {
                r = apiserver::run(args) => r?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            };
            println!("{report}");
        }
        Cmd::SchedulerCycle(args) => scheduler_cycle::run(args)?,
        Cmd::Rollout(args) => tokio::select! {
            r = rollout::run(args) => r?,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        },
        Cmd::Scheduler(args) => tokio::select! {
            r = scheduler::run(args) => r?,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        },
        Cmd::Endpoints(args) => tokio::select! {
            r = endpoints::run(args) => r?,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        },
        Cmd::PodStartup(args) => {
            let report = tokio::select! {
                r = pod_startup::run(args) => r?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
            };
            println!("{report}");
            // Every child is stopped by now (run's guards), but the runtime's
            // shutdown waits on a blocking task left by the clients; nothing
            // is left to clean up, so do not wait for it.
            std::process::exit(0);
        }
    }
    Ok(())
}
