//! Restart, snapshot and corruption behaviour of the in-process store, and
//! lease expiry. (Killing a real process mid-write is in the skiff crate's
//! crash test.)

use std::time::Duration;

use bytes::Bytes;
use etcdpb::*;
use skiff_store::{Config, Store, WatchOptions};

fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest { key: Bytes::from(key.to_owned()), value: Bytes::from(value.to_owned()), lease, ..Default::default() }
}

fn all_at(store: &Store, revision: i64) -> Result<RangeResponse, skiff_store::StoreError> {
    store.range(&RangeRequest {
        key: Bytes::from_static(&[0]),
        range_end: Bytes::from_static(&[0]),
        revision,
        ..Default::default()
    })
}

/// Every read a client could make of the store's history.
fn fingerprint(store: &Store) -> Vec<String> {
    let mut out = vec![format!("rev={} compact={}", store.revision(), store.compact_revision())];
    for r in 1..=store.revision() {
        out.push(format!("{r}: {:?}", all_at(store, r).map(|r| r.kvs)));
    }
    out.push(format!("leases={:?}", store.lease_ids()));
    out
}

async fn reopen(store: Store, config: Config) -> Store {
    drop(store);
    // Dropping the last handle joins the writer thread, so the files are closed.
    Store::open(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_recovers_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path());
    let store = Store::open(config.clone()).unwrap();
    let lease = store.lease_grant(42, 600).await.unwrap().id;
    for i in 0..200 {
        store.put(put(&format!("k/{}", i % 13), &format!("v{i}"), if i % 5 == 0 { lease } else { 0 })).await.unwrap();
        if i % 17 == 0 {
            store.delete_range(DeleteRangeRequest { key: Bytes::from(format!("k/{}", i % 13)), ..Default::default() }).await.unwrap();
        }
    }
    store.compact(50).await.unwrap();
    let before = fingerprint(&store);
    let store = reopen(store, config.clone()).await;
    assert_eq!(fingerprint(&store), before);
    // Writes continue from the recovered revision.
    let r = store.put(put("after", "restart", 0)).await.unwrap().header.unwrap().revision;
    assert_eq!(r, before[0].split(' ').next().unwrap().trim_start_matches("rev=").parse::<i64>().unwrap() + 1);
    let ttl = store.lease_time_to_live(lease, true);
    assert_eq!(ttl.granted_ttl, 600);
    assert!(!ttl.keys.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_truncate_the_log_and_restore_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.snapshot_count = 100;
    let store = Store::open(config.clone()).unwrap();
    for i in 0..1000 {
        store.put(put(&format!("s/{}", i % 37), &format!("v{i}"), 0)).await.unwrap();
    }
    // Snapshots are written in the background; wait for one to land.
    let wal_dir = dir.path().join("member/wal");
    let snap_dir = dir.path().join("member/snap");
    let segments = || std::fs::read_dir(&wal_dir).unwrap().count();
    let snapshots = || std::fs::read_dir(&snap_dir).unwrap().count();
    // (A newer snapshot lands before the older one is removed: wait for both.)
    for _ in 0..100 {
        if store.metrics().snapshots.get() > 0 && segments() <= 3 && snapshots() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(store.metrics().snapshots.get() > 0, "no snapshot was taken");
    assert!(segments() <= 3, "old log segments were not purged: {}", segments());
    assert_eq!(snapshots(), 1, "older snapshots are dropped");
    let before = fingerprint(&store);
    let store = reopen(store, config.clone()).await;
    assert_eq!(fingerprint(&store), before);

    // A forced snapshot, then a restart with no log after it.
    store.snapshot().await.unwrap();
    let before = fingerprint(&store);
    let store = reopen(store, config).await;
    assert_eq!(fingerprint(&store), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshot_is_reported_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(dir.path());
    let store = Store::open(config.clone()).unwrap();
    for i in 0..50 {
        store.put(put(&format!("c/{i}"), "value", 0)).await.unwrap();
    }
    store.snapshot().await.unwrap();
    drop(store);
    let snap = std::fs::read_dir(dir.path().join("member/snap")).unwrap().next().unwrap().unwrap().path();
    let mut data = std::fs::read(&snap).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&snap, data).unwrap();
    let err = Store::open(config).err().expect("a corrupt snapshot must fail the open");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("snapshot"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_deletes_its_keys_in_one_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    // TTL 1 is raised to etcd's minimum of 2 seconds.
    let short = store.lease_grant(0, 1).await.unwrap();
    assert_eq!(short.ttl, 2);
    let kept = store.lease_grant(0, 2).await.unwrap();
    store.put(put("l/a", "1", short.id)).await.unwrap();
    let r = store.put(put("l/b", "2", short.id)).await.unwrap().header.unwrap().revision;
    store.put(put("l/kept", "3", kept.id)).await.unwrap();
    let mut w = store.watch(WatchOptions {
        key: Bytes::from("l/"),
        range_end: skiff_store::prefix_end(b"l/"),
        start_revision: r + 2,
        ..Default::default()
    });
    // Keep one lease alive while the other expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let batch = loop {
        assert_eq!(store.lease_keep_alive(kept.id), Some(2));
        tokio::select! {
            b = w.next() => break b.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "lease never expired");
    };
    let keys: Vec<_> = batch.events.iter().map(|e| (e.r#type, e.kv.as_ref().unwrap().key.clone())).collect();
    assert_eq!(keys, vec![(1, Bytes::from("l/a")), (1, Bytes::from("l/b"))]);
    let revs: Vec<_> = batch.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect();
    assert_eq!(revs[0], revs[1], "both keys go in one revision");
    assert_eq!(store.lease_time_to_live(short.id, false).ttl, -1);
    assert_eq!(store.lease_keep_alive(short.id), None);
    assert!(store.lease_time_to_live(kept.id, false).ttl > 0);
    assert_eq!(all_at(&store, 0).unwrap().kvs.len(), 1);
}
