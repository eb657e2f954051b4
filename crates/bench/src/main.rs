//! `bench`: measures Skiff against its real peers on this machine, driven by
//! the same client in the same run, and prints Markdown tables.
//!
//! `bench store` compares `skiff store` with Debian's etcd 3.4, both
//! single-member with fsync on.

mod load;
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
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
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

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    format!("{cores} cores, {} GiB RAM, Linux {}", mem_kb / 1024 / 1024, kernel.trim())
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
    let mut report = format!(
        "Command: `{}`\n\nMachine: {}\n\nServers: Skiff `{}` ({}); etcd `{}` ({}); both single-member on loopback, fsync on, fresh data dirs.\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine(),
        servers[0].version,
        args.skiff_bin.display(),
        servers[1].version,
        args.etcd_bin.display(),
    );
    // Problems that should not abort the run but must not go unnoticed.
    let mut problems: Vec<String> = Vec::new();

    // Writes.
    let mut t = Table::new(format!("Puts (256-byte values, distinct keys, {secs} s per step)"));
    for clients in [1usize, 16, 256] {
        let mut f = Vec::new();
        for (s, ch) in servers.iter().zip(&chans) {
            progress(&format!("{}: puts from {clients} clients for {secs} s", s.name));
            f.push(load::puts(conns(ch, clients), clients, span, &clients.to_string()).await?);
        }
        t.row(format!("puts/s, {clients} clients"), f[0].ops_per_sec, f[1].ops_per_sec, "higher");
        t.row(format!("p50 ms, {clients} clients"), f[0].p50_ms, f[1].p50_ms, "lower");
        t.row(format!("p99 ms, {clients} clients"), f[0].p99_ms, f[1].p99_ms, "lower");
    }
    report += &t.markdown();

    // Reads.
    let keys = if q { 1_000 } else { 10_000 };
    let mut t = Table::new(format!("Ranges (16 clients, {secs} s per step)"));
    let mut gets = Vec::new();
    let mut pref = Vec::new();
    for (s, ch) in servers.iter().zip(&chans) {
        progress(&format!("{}: loading {keys} keys for reads", s.name));
        load::load(ch, "get/", keys).await?;
        load::load(ch, "pref/", 100).await?;
        progress(&format!("{}: single-key gets", s.name));
        gets.push(load::gets(conns(ch, 16), 16, span, "get/", keys).await?);
        progress(&format!("{}: 100-key prefix ranges", s.name));
        pref.push(load::prefix_ranges(conns(ch, 16), 16, span, "pref/", 100).await?);
    }
    t.row("single-key gets/s", gets[0].ops_per_sec, gets[1].ops_per_sec, "higher");
    t.row("single-key get p50 ms", gets[0].p50_ms, gets[1].p50_ms, "lower");
    t.row("single-key get p99 ms", gets[0].p99_ms, gets[1].p99_ms, "lower");
    t.row("100-key ranges/s", pref[0].ops_per_sec, pref[1].ops_per_sec, "higher");
    t.row("100-key range p50 ms", pref[0].p50_ms, pref[1].p50_ms, "lower");
    t.row("100-key range p99 ms", pref[0].p99_ms, pref[1].p99_ms, "lower");
    report += &t.markdown();

    // Watch fan-out.
    let (watchers, puts) = (1_000, if q { 20 } else { 100 });
    let mut t = Table::new(format!("Watch fan-out ({watchers} watchers on one prefix, {puts} puts, one every 20 ms)"));
    let mut fan = Vec::new();
    for (s, ch) in servers.iter().zip(&chans) {
        progress(&format!("{}: {watchers} watchers, {puts} puts", s.name));
        let f = load::watch_fanout(&ch[..10], watchers, puts, Duration::from_millis(20)).await?;
        if f.delivered != f.expected {
            let msg = format!("{}: watch fan-out delivered {} of {} events", s.name, f.delivered, f.expected);
            progress(&format!("PROBLEM: {msg}"));
            problems.push(msg);
        }
        fan.push(f);
    }
    t.row(format!("events delivered (of {})", fan[0].expected), fan[0].delivered as f64, fan[1].delivered as f64, "equal");
    t.row("delivery p50 ms", fan[0].latency.p50_ms, fan[1].latency.p50_ms, "lower");
    t.row("delivery p99 ms", fan[0].latency.p99_ms, fan[1].latency.p99_ms, "lower");
    report += &t.markdown();

    // Memory.
    let n = args.keys.unwrap_or(if q { 50_000 } else { 1_000_000 });
    let mut t = Table::new(format!("Resident memory ({n} keys of 256 bytes loaded, scaled to 1M keys)"));
    let mut mem = Vec::new();
    for (s, ch) in servers.iter().zip(&chans) {
        let before = s.rss()?;
        progress(&format!("{}: loading {n} keys (RSS before {} MiB)", s.name, before >> 20));
        let f = load::load(ch, "mem/", n).await?;
        progress(&format!("{}: loaded at {:.0} keys/s", s.name, f.ops_per_sec * 100.0));
        // Let background work (compaction of request buffers, snapshots) settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = s.rss()?;
        progress(&format!("{}: RSS after {} MiB", s.name, after >> 20));
        mem.push((after.saturating_sub(before)) as f64 * 1e6 / n as f64 / (1 << 20) as f64);
    }
    t.row("MiB per 1M keys", mem[0], mem[1], "lower");
    report += &t.markdown();
    if !problems.is_empty() {
        report += "\n### Problems\n\n";
        for p in &problems {
            report += &format!("- {p}\n");
        }
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
    }
    Ok(())
}
