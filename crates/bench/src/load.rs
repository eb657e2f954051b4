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

use crate::stats::{histogram, record, Figures};

pub const VALUE: [u8; 256] = [b'v'; 256];

/// Run `ops` requests from `clients` concurrent clients spread over `channels`;
/// `op(client, i)` issues request number `i`.
async fn closed_loop<F, Fut>(channels: &[Channel], clients: usize, ops: u64, op: F) -> Result<Figures>
where
    F: Fn(KvClient<Channel>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let kv = KvClient::new(channels[c % channels.len()].clone()).max_decoding_message_size(64 << 20);
        let (next, op) = (next.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let t = Instant::now();
                op(kv.clone(), i).await?;
                record(&mut h, t.elapsed());
            }
            Ok::<_, tonic::Status>(h)
        }));
    }
    let mut all = histogram();
    for t in tasks {
        all.add(t.await?.context("request failed")?)?;
    }
    Ok(Figures::from(&all, ops, start.elapsed()))
}

/// Puts of 256-byte values to distinct keys.
pub async fn puts(channels: &[Channel], clients: usize, ops: u64, tag: &str) -> Result<Figures> {
    let tag = tag.to_string();
    closed_loop(channels, clients, ops, move |mut kv, i| {
        let key = Bytes::from(format!("put/{tag}/{i:010}"));
        async move {
            kv.put(PutRequest { key, value: Bytes::from_static(&VALUE), ..Default::default() }).await?;
            Ok(())
        }
    })
    .await
}

/// Load `n` keys under `prefix` with txns of 100 puts from 16 clients.
pub async fn load(channels: &[Channel], prefix: &str, n: u64) -> Result<()> {
    let prefix = prefix.to_string();
    let batches = n.div_ceil(100);
    closed_loop(channels, 16, batches, move |mut kv, b| {
        let ops = (b * 100..((b + 1) * 100).min(n))
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: Bytes::from(format!("{prefix}{i:010}")),
                    value: Bytes::from_static(&VALUE),
                    ..Default::default()
                })),
            })
            .collect();
        async move {
            kv.txn(TxnRequest { success: ops, ..Default::default() }).await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Single-key gets of the keys `load` wrote under `prefix`.
pub async fn gets(channels: &[Channel], clients: usize, ops: u64, prefix: &str, keys: u64) -> Result<Figures> {
    let prefix = prefix.to_string();
    closed_loop(channels, clients, ops, move |mut kv, i| {
        let key = Bytes::from(format!("{prefix}{:010}", (i * 7919) % keys));
        async move {
            let r = kv.range(RangeRequest { key, ..Default::default() }).await?.into_inner();
            assert_eq!(r.kvs.len(), 1);
            Ok(())
        }
    })
    .await
}

/// Ranges over a whole prefix of `keys` keys.
pub async fn prefix_ranges(channels: &[Channel], clients: usize, ops: u64, prefix: &str, keys: usize) -> Result<Figures> {
    let key = Bytes::from(prefix.to_string());
    let range_end = skiff_prefix_end(prefix);
    closed_loop(channels, clients, ops, move |mut kv, _| {
        let req = RangeRequest { key: key.clone(), range_end: range_end.clone(), ..Default::default() };
        async move {
            let r = kv.range(req).await?.into_inner();
            assert_eq!(r.kvs.len(), keys);
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
        let mut stream = WatchClient::new(ch.clone())
            .max_decoding_message_size(64 << 20)
            .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
            .await?
            .into_inner();
        // Wait until every watcher on this stream is created.
        let mut created = 0;
        while created < n {
            let r = stream.message().await?.context("watch stream closed")?;
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
        kv.put(PutRequest { key: Bytes::from(format!("{prefix}{}", i % 10)), value: Bytes::from(sent.to_string()), ..Default::default() })
            .await?;
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
