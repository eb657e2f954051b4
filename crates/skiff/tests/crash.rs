//! Crash test: `skiff store` is killed with SIGKILL at random moments while
//! clients write, many times over, in the same data directory.
//!
//! After every restart:
//! - every acknowledged write is there (a write in flight at the kill may
//!   or may not be: it was never acknowledged);
//! - the history is consistent: revisions run 2, 3, 4, … with no gap, each
//!   writer's values appear in order with none lost or repeated, and the two
//!   keys of every txn changed in the same revision (nothing half-applied).
//!
//! A small `--snapshot-count` makes kills land during snapshots and log
//! purges too. SKIFF_CRASH_ITERATIONS overrides the number of kills.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use etcdpb::kv_client::KvClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::*;
use rand::Rng;
use tonic::transport::Channel;

const WRITERS: usize = 8;

mod common;
use common::SkiffStore;

async fn start(dir: &std::path::Path) -> (SkiffStore, Channel) {
    let server = SkiffStore::start(dir, &["--snapshot-count", "300"]);
    let ch = Channel::from_shared(server.url()).unwrap().connect().await.expect("connect to skiff store");
    (server, ch)
}

fn key(w: usize) -> Bytes {
    Bytes::from(format!("crash/w{w}"))
}
fn shadow(w: usize) -> Bytes {
    Bytes::from(format!("crash/w{w}/shadow"))
}

/// One writer: values seq, seq+1, … on its own key; even values also go to
/// a shadow key in the same txn. Records the last acknowledged value.
async fn writer(ch: Channel, w: usize, mut seq: u64, acked: Arc<Mutex<Vec<u64>>>) {
    let mut kv = KvClient::new(ch);
    loop {
        let value = Bytes::from(seq.to_string());
        let ok = if seq.is_multiple_of(2) {
            let ops = [key(w), shadow(w)]
                .into_iter()
                .map(|k| RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest { key: k, value: value.clone(), ..Default::default() })),
                })
                .collect();
            kv.txn(TxnRequest { success: ops, ..Default::default() }).await.is_ok()
        } else {
            kv.put(PutRequest { key: key(w), value, ..Default::default() }).await.is_ok()
        };
        if !ok {
            return; // the server is gone
        }
        acked.lock().unwrap()[w] = seq;
        seq += 1;
    }
}

async fn current(ch: &Channel, k: Bytes) -> Option<u64> {
    let r = KvClient::new(ch.clone()).range(RangeRequest { key: k, ..Default::default() }).await.unwrap().into_inner();
    r.kvs.first().map(|kv| std::str::from_utf8(&kv.value).unwrap().parse().unwrap())
}

/// Read the whole history through a watch from revision 1 and check it.
async fn check_history(ch: &Channel) {
    let head = KvClient::new(ch.clone())
        .range(RangeRequest { key: Bytes::from("crash/"), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from("crash/"),
            range_end: skiff_store::prefix_end(b"crash/"),
            start_revision: 1,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = WatchClient::new(ch.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut by_rev: BTreeMap<i64, Vec<(Bytes, u64)>> = BTreeMap::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while by_rev.keys().next_back().copied().unwrap_or(1) < head {
            let resp = stream.message().await.unwrap().expect("watch stream ended");
            assert!(!resp.canceled, "history watch cancelled: {}", resp.cancel_reason);
            for e in resp.events {
                let kv = e.kv.unwrap();
                assert_eq!(e.r#type, 0, "this test never deletes");
                by_rev.entry(kv.mod_revision).or_default().push((kv.key, std::str::from_utf8(&kv.value).unwrap().parse().unwrap()));
            }
        }
    })
    .await
    .expect("reading the history timed out");
    drop(tx);
    // Revisions 2..=head, each present: no gaps.
    let revs: Vec<i64> = by_rev.keys().copied().collect();
    assert_eq!(revs, (2..=head).collect::<Vec<_>>(), "revisions must be contiguous");
    let mut last: Vec<u64> = vec![0; WRITERS];
    for (rev, changes) in &by_rev {
        let main: Vec<_> = changes.iter().filter(|(k, _)| !k.ends_with(b"/shadow")).collect();
        assert_eq!(main.len(), 1, "revision {rev} holds one writer's change: {changes:?}");
        let (k, v) = main[0];
        let w: usize = std::str::from_utf8(&k[7..]).unwrap().parse().unwrap();
        assert_eq!(*v, last[w] + 1, "writer {w}: value {v} follows {} (revision {rev})", last[w]);
        last[w] = *v;
        if v % 2 == 0 {
            assert_eq!(changes.len(), 2, "txn at revision {rev} applied whole: {changes:?}");
            assert_eq!(changes[1], (shadow(w), *v));
        } else {
            assert_eq!(changes.len(), 1);
        }
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let iterations: usize = std::env::var("SKIFF_CRASH_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let mut acked_total: Vec<u64> = vec![0; WRITERS];
    let mut rng = rand::rng();
    for it in 0..iterations {
        let (server, ch) = start(dir.path()).await;
        // Recovery: each writer's value is its last acknowledged one, or one past it.
        let mut next = [1u64; WRITERS];
        for w in 0..WRITERS {
            let v = current(&ch, key(w)).await.unwrap_or(0);
            let a = acked_total[w];
            assert!(v == a || v == a + 1, "iteration {it}: writer {w} recovered {v}, acknowledged {a}");
            next[w] = v + 1;
        }
        check_history(&ch).await;
        let acked = Arc::new(Mutex::new(next.iter().map(|n| n - 1).collect::<Vec<_>>()));
        let tasks: Vec<_> = (0..WRITERS).map(|w| tokio::spawn(writer(ch.clone(), w, next[w], acked.clone()))).collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        drop(server); // SIGKILL, then reap
        for t in tasks {
            t.await.unwrap();
        }
        acked_total = acked.lock().unwrap().clone();
        assert!(acked_total.iter().all(|&a| a > 0) || it > 0, "writers made no progress");
    }
    let (_server, ch) = start(dir.path()).await;
    for w in 0..WRITERS {
        let v = current(&ch, key(w)).await.unwrap_or(0);
        assert!(v == acked_total[w] || v == acked_total[w] + 1);
    }
    check_history(&ch).await;
    eprintln!("{iterations} kills; acknowledged writes per writer: {acked_total:?}");
}
