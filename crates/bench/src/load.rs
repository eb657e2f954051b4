//! The measured workloads. Each takes a set of channels to one server, so
//! Skiff and etcd are driven by exactly the same client code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use etcdpb::kv_client::KvClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::*;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tonic::transport::Channel;

pub use crate::stats::Figures;
use crate::stats::{histogram, record};

pub const VALUE: [u8; 256] = [b'v'; 256];

/// Longest any single request may take before the run is declared failed.
const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// Keys per load txn (etcd's and Skiff's default limit is 128 ops).
pub const TXN_PUTS: u64 = 100;

/// How long a closed-loop step runs.
#[derive(Clone, Copy, Debug)]
pub enum Span {
    /// Exactly this many requests (loading data).
    Ops(u64),
    /// Requests until the time is up; those started during the warm-up are
    /// not measured (connections, caches and allocators settle first).
    Timed { warmup: Duration, measure: Duration },
}

/// Run requests from `clients` concurrent clients spread round-robin over
/// `channels` for `span`; `op(client, i)` issues request number `i` (each `i`
/// is used once, so keys derived from it are distinct).
async fn closed_loop<F, Fut>(channels: &[Channel], clients: usize, span: Span, op: F) -> Result<Figures>
where
    F: Fn(KvClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let (measure_from, end) = match span {
        Span::Ops(_) => (start, None),
        Span::Timed { warmup, measure } => (start + warmup, Some(start + warmup + measure)),
    };
    let mut tasks = Vec::new();
    for c in 0..clients {
        let kv = KvClient::new(channels[c % channels.len()].clone()).max_decoding_message_size(64 << 20);
        let (next, op) = (next.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut last_done = measure_from;
            let mut completed = 0u64;
            loop {
                let t = Instant::now();
                if end.is_some_and(|end| t >= end) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Span::Ops(ops) = span
                    && i >= ops
                {
                    break;
                }
                // Bounded: a stuck server fails the run instead of hanging it.
                match tokio::time::timeout(OP_TIMEOUT, op(kv.clone(), i)).await {
                    Ok(r) => r?,
                    Err(_) => return Err(tonic::Status::deadline_exceeded(format!("request {i} took over {OP_TIMEOUT:?}"))),
                }
                completed += 1;
                if t >= measure_from {
                    let done = Instant::now();
                    record(&mut h, done - t);
                    last_done = last_done.max(done);
                }
            }
            Ok::<_, tonic::Status>((h, last_done, completed))
        }));
    }
    let mut all = histogram();
    let mut last_done = measure_from;
    let mut completed = 0;
    for t in tasks {
        let (h, done, n) = t.await?.context("request failed")?;
        all.add(h)?;
        last_done = last_done.max(done);
        completed += n;
    }
    let ops = all.len();
    Ok(Figures { total_ops: completed, ..Figures::from(&all, ops, last_done.saturating_duration_since(measure_from)) })
}

/// Puts of 256-byte values to distinct keys.
pub async fn puts(channels: &[Channel], clients: usize, span: Span, tag: &str) -> Result<Figures> {
    let tag = tag.to_string();
    closed_loop(channels, clients, span, move |mut kv, i| {
        let key = Bytes::from(format!("put/{tag}/{i:010}"));
        async move {
            kv.put(PutRequest { key, value: Bytes::from_static(&VALUE), ..Default::default() }).await?;
            Ok(())
        }
    })
    .await
}

/// Load `n` keys under `prefix` with txns of `TXN_PUTS` puts from 16 clients.
pub async fn load(channels: &[Channel], prefix: &str, n: u64) -> Result<Figures> {
    let prefix = prefix.to_string();
    let batches = n.div_ceil(TXN_PUTS);
    closed_loop(channels, 16, Span::Ops(batches), move |mut kv, b| {
        let ops = (b * TXN_PUTS..((b + 1) * TXN_PUTS).min(n))
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: Bytes::from(format!("{prefix}{i:010}")),
                    value: Bytes::from_static(&VALUE),
                    ..Default::default()
                })),
            })
            .collect();
        async move {
            let r = kv.txn(TxnRequest { success: ops, ..Default::default() }).await?.into_inner();
            if !r.succeeded {
                return Err(tonic::Status::internal("load txn did not succeed"));
            }
            Ok(())
        }
    })
    .await
}

/// Single-key gets of the keys `load` wrote under `prefix`.
pub async fn gets(channels: &[Channel], clients: usize, span: Span, prefix: &str, keys: u64) -> Result<Figures> {
    let prefix = prefix.to_string();
    closed_loop(channels, clients, span, move |mut kv, i| {
        let key = Bytes::from(format!("{prefix}{:010}", (i * 7919) % keys));
        async move {
            let r = kv.range(RangeRequest { key, ..Default::default() }).await?.into_inner();
            if r.kvs.len() != 1 {
                return Err(tonic::Status::internal(format!("get returned {} keys, want 1", r.kvs.len())));
            }
            Ok(())
        }
    })
    .await
}

/// Ranges over a whole prefix of `keys` keys.
pub async fn prefix_ranges(channels: &[Channel], clients: usize, span: Span, prefix: &str, keys: usize) -> Result<Figures> {
    let key = Bytes::from(prefix.to_string());
    let range_end = skiff_prefix_end(prefix);
    closed_loop(channels, clients, span, move |mut kv, _| {
        let req = RangeRequest { key: key.clone(), range_end: range_end.clone(), ..Default::default() };
        async move {
            let r = kv.range(req).await?.into_inner();
            if r.kvs.len() != keys {
                return Err(tonic::Status::internal(format!("range returned {} keys, want {keys}", r.kvs.len())));
            }
            Ok(())
        }
    })
    .await
}

fn skiff_prefix_end(p: &str) -> Bytes {
    let mut b = p.as_bytes().to_vec();
    *b.last_mut().unwrap() += 1;
    Bytes::from(b)
}

pub struct FanOut {
    pub latency: Figures,
    pub delivered: u64,
    pub expected: u64,
}

/// `watchers` watchers on one prefix, spread over the channels' streams, then
/// `puts` puts under the prefix, one every `gap`. Latency runs from just
/// before a put is sent to each watcher receiving its event.
pub async fn watch_fanout(channels: &[Channel], watchers: usize, puts: u64, gap: Duration) -> Result<FanOut> {
    let origin = Instant::now();
    let prefix = "fan/";
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<Duration>();
    let per_stream = watchers.div_ceil(channels.len());
    let mut streams = Vec::new();
    let mut remaining = watchers;
    for ch in channels {
        let n = per_stream.min(remaining);
        remaining -= n;
        if n == 0 {
            break;
        }
        let (req_tx, req_rx) = mpsc::channel(n + 1);
        for _ in 0..n {
            req_tx
                .send(WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
                        key: Bytes::from(prefix),
                        range_end: skiff_prefix_end(prefix),
                        ..Default::default()
                    })),
                })
                .await?;
        }
        let mut client = WatchClient::new(ch.clone()).max_decoding_message_size(64 << 20);
        let call = client.watch(tokio_stream::wrappers::ReceiverStream::new(req_rx));
        let mut stream = tokio::time::timeout(OP_TIMEOUT, call).await.context("opening watch stream timed out")??.into_inner();
        // Wait (bounded) until every watcher on this stream is created.
        let mut created = 0;
        while created < n {
            let r = tokio::time::timeout(OP_TIMEOUT, stream.message())
                .await
                .with_context(|| format!("only {created} of {n} watchers created after {OP_TIMEOUT:?}"))??
                .context("watch stream closed")?;
            if r.created {
                created += 1;
            }
        }
        let lat_tx = lat_tx.clone();
        streams.push(tokio::spawn(async move {
            let _keep_open = req_tx;
            while let Ok(Some(r)) = stream.message().await {
                let now = origin.elapsed();
                for e in r.events {
                    let v = e.kv.map(|kv| kv.value).unwrap_or_default();
                    let sent: u64 = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    let _ = lat_tx.send(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
        }));
    }
    drop(lat_tx);
    let mut kv = KvClient::new(channels[0].clone());
    for i in 0..puts {
        let sent = origin.elapsed().as_nanos() as u64;
        let put = kv.put(PutRequest { key: Bytes::from(format!("{prefix}{}", i % 10)), value: Bytes::from(sent.to_string()), ..Default::default() });
        tokio::time::timeout(OP_TIMEOUT, put).await.context("watched put timed out")??;
        tokio::time::sleep(gap).await;
    }
    let expected = watchers as u64 * puts;
    let mut h: Histogram<u64> = histogram();
    let mut delivered = 0u64;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivered < expected {
        match tokio::time::timeout_at(deadline, lat_rx.recv()).await {
            Ok(Some(d)) => {
                record(&mut h, d);
                delivered += 1;
            }
            _ => break,
        }
    }
    for s in streams {
        s.abort();
    }
    Ok(FanOut { latency: Figures::from(&h, delivered, start.elapsed()), delivered, expected })
}
