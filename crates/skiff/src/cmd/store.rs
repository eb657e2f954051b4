//! `skiff store`: the store alone, on the etcd v3 gRPC API, with etcd's flag names.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use skiff_store::grpc::{self, Ctx, Identity};
use skiff_store::cluster::ClusterConfig;
use skiff_store::{Config, Store};

use super::urls;

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(flatten)]
    cluster: ClusterFlags,
    /// Path to the data directory (default: `<name>.etcd`, as etcd).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    listen_client_urls: String,
    /// Client URLs advertised to the rest of the cluster (shown by `member list`).
    #[arg(long, default_value = "http://localhost:2379")]
    advertise_client_urls: String,
    /// URLs to serve Prometheus /metrics and /health on (plain HTTP).
    #[arg(long)]
    listen_metrics_urls: Option<String>,
    /// Applied entries that trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    snapshot_count: u64,
    /// Largest request the server accepts, in bytes.
    #[arg(long, default_value_t = 1536 * 1024)]
    max_request_bytes: usize,
    /// Most operations a txn request may hold.
    #[arg(long, default_value_t = 128)]
    max_txn_ops: usize,
    /// Interval between progress notifications to idle watchers that asked for them.
    #[arg(long = "experimental-watch-progress-notify-interval", default_value = "10m", value_parser = parse_duration)]
    progress_notify_interval: Duration,
    /// Cancel a watcher that is more than this many revisions behind (0: never).
    #[arg(long, default_value_t = 1_000_000)]
    watch_max_lag: i64,
}

/// etcd's clustering flags, shared by `skiff store` and `skiff server`
/// (every `skiff server` member is also a member of the Raft cluster).
#[derive(Args, Debug, Clone)]
pub struct ClusterFlags {
    /// Human-readable name of this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Peer URLs advertised to the rest of the cluster (shown by `member list`).
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// URLs to listen on for peer (Raft) traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// The founding members, `name=peer-url,...` (default: this member alone).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to found a cluster, `existing` to join one after `etcdctl member add`.
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Milliseconds between Raft heartbeats (one Raft tick).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Milliseconds without a leader before a member campaigns.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
}

impl ClusterFlags {
    /// Open the store as these flags say: alone (no Raft round) when the
    /// cluster is this member only, else as a Raft member. Returns the store
    /// and how the etcd API should name this member.
    pub fn open(&self, config: Config, advertise_client_urls: Vec<String>) -> Result<(Store, Identity)> {
        let data_dir = config.data_dir.clone();
        let initial = match &self.initial_cluster {
            Some(c) => parse_initial_cluster(c)?,
            None => vec![(self.name.clone(), urls::list(&self.initial_advertise_peer_urls))],
        };
        let clustered = initial.len() > 1 || self.initial_cluster_state == "existing";
        if !clustered {
            let store = Store::open(config).with_context(|| format!("opening store in {}", data_dir.display()))?;
            let id = Identity::new(&self.name, urls::list(&self.initial_advertise_peer_urls), advertise_client_urls);
            return Ok((store, id));
        }
        if !initial.iter().any(|(n, _)| *n == self.name) {
            bail!("--initial-cluster has no member named {:?} (--name)", self.name);
        }
        if self.election_timeout < 2 * self.heartbeat_interval.max(1) {
            bail!("--election-timeout must be at least twice --heartbeat-interval");
        }
        let cluster = ClusterConfig {
            name: self.name.clone(),
            initial,
            new_cluster: self.initial_cluster_state == "new",
            listen_peer: urls::listen_addrs("--listen-peer-urls", &self.listen_peer_urls)?,
            client_urls: advertise_client_urls.clone(),
            tick_ms: self.heartbeat_interval.max(1),
            election_ticks: self.election_timeout / self.heartbeat_interval.max(1),
        };
        let peer_urls = cluster.self_peer_urls();
        let store = Store::open_cluster(config, cluster)
            .with_context(|| format!("opening clustered store in {}", data_dir.display()))?;
        let status = store.cluster().expect("clustered store").clone();
        Ok((store, Identity::for_cluster(&status, peer_urls, advertise_client_urls)))
    }
}

/// Parse `--initial-cluster`: `name=url` pairs; a name may repeat for several URLs.
pub fn parse_initial_cluster(s: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            bail!("--initial-cluster: {part:?} is not name=url");
        };
        urls::listen_addrs("--initial-cluster", url)?;
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        bail!("--initial-cluster: no members");
    }
    Ok(out)
}

/// Parse Go-style durations: `500ms`, `10s`, `10m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

pub async fn run(args: StoreArgs) -> Result<()> {
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.cluster.name)));
    let listen = urls::listen_addrs("--listen-client-urls", &args.listen_client_urls)?;
    let metrics = match &args.listen_metrics_urls {
        Some(u) => urls::listen_addrs("--listen-metrics-urls", u)?,
        None => vec![],
    };
    let mut config = Config::new(&data_dir);
    config.snapshot_count = args.snapshot_count.max(1);
    config.max_request_bytes = args.max_request_bytes;
    config.max_txn_ops = args.max_txn_ops;
    config.watch_max_lag = args.watch_max_lag;
    let (store, id) = args.cluster.open(config, urls::list(&args.advertise_client_urls))?;
    let ctx = Ctx { store: store.clone(), id, progress_interval: args.progress_notify_interval };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for addr in listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, name = %args.cluster.name, "serving etcd v3 API");
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(grpc::serve(ctx.clone(), listener, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    for addr in metrics {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(grpc::serve_metrics(store.clone(), listener));
    }
    super::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Open watch streams can keep a graceful shutdown waiting; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(3), futures_join(servers)).await;
    drop(ctx);
    drop(store);
    Ok(())
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>) {
    for h in handles {
        let _ = h.await;
    }
}


#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn initial_cluster() {
        let c = super::parse_initial_cluster("a=http://127.0.0.1:1,b=http://127.0.0.1:2,a=http://127.0.0.1:3").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].1, vec!["http://127.0.0.1:1", "http://127.0.0.1:3"]);
        assert!(super::parse_initial_cluster("a").is_err());
        assert!(super::parse_initial_cluster("a=ftp://x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5x").is_err());
    }
}
