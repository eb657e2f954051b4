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

use anyhow::{ensure, Result};
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
    /// Keys loaded for the memory measurement.
    #[arg(long)]
    keys: Option<u64>,
    /// Also write the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
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
    let servers = [Server::skiff(&args.skiff_bin)?, Server::etcd(&args.etcd_bin)?];
    let mut chans = Vec::new();
    for s in &servers {
        chans.push(s.channels(16).await?);
    }
    let mut report = format!(
        "Command: `{}`\n\nMachine: {}\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        machine()
    );

    // Writes.
    let mut t = Table::new("Puts (256-byte values, distinct keys)");
    for (clients, ops) in [(1usize, if q { 300 } else { 2_000 }), (16, if q { 3_000 } else { 20_000 }), (256, if q { 10_000 } else { 100_000 })] {
        let mut f = Vec::new();
        for (s, ch) in servers.iter().zip(&chans) {
            progress(&format!("{}: {ops} puts from {clients} clients", s.name));
            let n = ch.len().min(clients.div_ceil(16).max(1));
            f.push(load::puts(&ch[..n], clients, ops, &clients.to_string()).await?);
        }
        t.row(format!("puts/s, {clients} clients"), f[0].ops_per_sec, f[1].ops_per_sec, "higher");
        t.row(format!("p50 ms, {clients} clients"), f[0].p50_ms, f[1].p50_ms, "lower");
        t.row(format!("p99 ms, {clients} clients"), f[0].p99_ms, f[1].p99_ms, "lower");
    }
    report += &t.markdown();

    // Reads.
    let keys = if q { 1_000 } else { 10_000 };
    let mut t = Table::new("Ranges (16 clients)");
    let mut gets = Vec::new();
    let mut pref = Vec::new();
    for (s, ch) in servers.iter().zip(&chans) {
        progress(&format!("{}: loading {keys} keys for reads", s.name));
        load::load(ch, "get/", keys).await?;
        load::load(ch, "pref/", 100).await?;
        progress(&format!("{}: single-key gets", s.name));
        gets.push(load::gets(ch, 16, if q { 5_000 } else { 100_000 }, "get/", keys).await?);
        progress(&format!("{}: 100-key prefix ranges", s.name));
        pref.push(load::prefix_ranges(ch, 16, if q { 1_000 } else { 20_000 }, "pref/", 100).await?);
    }
    t.row("single-key gets/s", gets[0].ops_per_sec, gets[1].ops_per_sec, "higher");
    t.row("single-key get p99 ms", gets[0].p99_ms, gets[1].p99_ms, "lower");
    t.row("100-key ranges/s", pref[0].ops_per_sec, pref[1].ops_per_sec, "higher");
    t.row("100-key range p99 ms", pref[0].p99_ms, pref[1].p99_ms, "lower");
    report += &t.markdown();

    // Watch fan-out.
    let (watchers, puts) = (1_000, if q { 20 } else { 100 });
    let mut t = Table::new(format!("Watch fan-out ({watchers} watchers on one prefix, {puts} puts, one every 20 ms)"));
    let mut fan = Vec::new();
    for (s, ch) in servers.iter().zip(&chans) {
        progress(&format!("{}: {watchers} watchers, {puts} puts", s.name));
        let f = load::watch_fanout(&ch[..10], watchers, puts, Duration::from_millis(20)).await?;
        ensure!(f.delivered == f.expected, "{}: delivered {} of {} events", s.name, f.delivered, f.expected);
        fan.push(f);
    }
    t.row("events delivered", fan[0].delivered as f64, fan[1].delivered as f64, "equal");
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
        load::load(ch, "mem/", n).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = s.rss()?;
        progress(&format!("{}: RSS after {} MiB", s.name, after >> 20));
        mem.push((after.saturating_sub(before)) as f64 * 1e6 / n as f64 / (1 << 20) as f64);
    }
    t.row("MiB per 1M keys", mem[0], mem[1], "lower");
    report += &t.markdown();
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Store(args) => {
            let out = args.out.clone();
            let report = store(args).await?;
            println!("{report}");
            if let Some(path) = out {
                std::fs::write(path, &report)?;
            }
        }
    }
    Ok(())
}
