//! Watch semantics on the in-process store: order, exactly-once delivery
//! while catching up, resume from a revision, the compaction error, slow
//! watchers, prev_kv and filters.

use std::time::Duration;

use bytes::Bytes;
use etcdpb::*;
use skiff_store::{prefix_end, Config, Store, WatchEnd, WatchOptions, Watcher};

fn open(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Store {
    let mut c = Config::new(dir);
    tweak(&mut c);
    Store::open(c).unwrap()
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: Bytes::from(key.to_owned()), value: Bytes::from(value.to_owned()), ..Default::default() }
}

fn prefix(p: &str, start_revision: i64) -> WatchOptions {
    WatchOptions {
        key: Bytes::from(p.to_owned()),
        range_end: prefix_end(p.as_bytes()),
        start_revision,
        ..Default::default()
    }
}

/// Collect events until one at or past `until` arrives (bounded by a timeout).
async fn collect(w: &mut Watcher, until: i64) -> Vec<Event> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let b = w.next().await.expect("watch ended early");
            assert!(!b.events.is_empty(), "empty batch");
            let done = b.events.last().unwrap().kv.as_ref().unwrap().mod_revision >= until;
            out.extend(b.events);
            if done {
                break;
            }
        }
    })
    .await
    .expect("events did not arrive in time");
    out
}

fn revs(evs: &[Event]) -> Vec<(i64, Bytes)> {
    evs.iter().map(|e| (e.kv.as_ref().unwrap().mod_revision, e.kv.as_ref().unwrap().key.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_while_writing_delivers_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    // Some history before the watcher exists.
    for i in 0..300 {
        store.put(put(&format!("w/{}", i % 17), &i.to_string())).await.unwrap();
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 300..1500 {
                if i % 10 == 0 {
                    // A txn that writes three keys in one revision.
                    let ops = (0..3)
                        .map(|j| RequestOp { request: Some(request_op::Request::RequestPut(put(&format!("w/t{j}"), &i.to_string()))) })
                        .collect();
                    last = store.txn(TxnRequest { success: ops, ..Default::default() }).await.unwrap().header.unwrap().revision;
                } else if i % 7 == 0 {
                    last = store
                        .delete_range(DeleteRangeRequest { key: Bytes::from(format!("w/{}", i % 17)), ..Default::default() })
                        .await
                        .unwrap()
                        .header
                        .unwrap()
                        .revision;
                } else {
                    last = store.put(put(&format!("w/{}", i % 17), &i.to_string())).await.unwrap().header.unwrap().revision;
                }
                // Unrelated keys must not show up.
                store.put(put("other", "x")).await.unwrap();
            }
            last
        })
    };
    let mut from_start = store.watch(prefix("w/", 1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut mid = store.watch(prefix("w/", 0));
    let last = writer.await.unwrap();
    let all = collect(&mut from_start, last).await;

    // Exactly what the store's history says, in revision order, no duplicates, no gaps.
    let mut want = Vec::new();
    store.with_state(|sm| {
        let (changes, _) = sm.changes_since(1, &skiff_store::KeyRange::new(&Bytes::from("w/"), &prefix_end(b"w/")), usize::MAX).unwrap();
        want = changes.iter().map(|c| (c.kv.mod_revision, c.kv.key.clone())).collect::<Vec<_>>();
    });
    assert_eq!(revs(&all), want);
    assert!(revs(&all).windows(2).all(|w| w[0].0 <= w[1].0));
    // 1200 writes on the prefix after the first 300: the txn revisions carry three events each.
    let txn_revs = all.iter().filter(|e| e.kv.as_ref().unwrap().key.starts_with(b"w/t")).count();
    assert_eq!(txn_revs, 120 * 3);

    // The watcher started mid-way sees a suffix of the same sequence, with nothing missing.
    let tail = collect(&mut mid, last).await;
    let tail_revs = revs(&tail);
    let start = all.iter().position(|e| e.kv.as_ref().unwrap().mod_revision == tail_revs[0].0).unwrap();
    assert_eq!(revs(&all[start..]), tail_revs);
}

#[tokio::test]
async fn resume_from_revision_and_prev_kv_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    let r1 = store.put(put("k", "1")).await.unwrap().header.unwrap().revision;
    let r2 = store.put(put("k", "2")).await.unwrap().header.unwrap().revision;
    let r3 = store.delete_range(DeleteRangeRequest { key: Bytes::from("k"), ..Default::default() }).await.unwrap().header.unwrap().revision;

    let mut w = store.watch(WatchOptions { key: Bytes::from("k"), start_revision: r2, prev_kv: true, ..Default::default() });
    let evs = collect(&mut w, r3).await;
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].r#type, 0);
    assert_eq!(evs[0].kv.as_ref().unwrap().value, "2");
    assert_eq!(evs[0].prev_kv.as_ref().unwrap().value, "1");
    assert_eq!(evs[0].prev_kv.as_ref().unwrap().mod_revision, r1);
    assert_eq!(evs[1].r#type, 1, "delete event");
    let del = evs[1].kv.as_ref().unwrap();
    assert_eq!((del.mod_revision, del.version, del.create_revision, del.value.len()), (r3, 0, 0, 0));
    assert_eq!(evs[1].prev_kv.as_ref().unwrap().value, "2");

    let mut only_deletes = store.watch(WatchOptions { key: Bytes::from("k"), start_revision: r1, no_put: true, ..Default::default() });
    let evs = collect(&mut only_deletes, r3).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].r#type, 1);

    // A watcher on a future revision waits for it.
    let mut future = store.watch(WatchOptions { key: Bytes::from("k"), start_revision: r3 + 2, ..Default::default() });
    store.put(put("k", "skipped")).await.unwrap();
    let r5 = store.put(put("k", "seen")).await.unwrap().header.unwrap().revision;
    let evs = collect(&mut future, r5).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kv.as_ref().unwrap().value, "seen");
}

#[tokio::test]
async fn compacted_revision_cancels_with_compact_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    for i in 0..10 {
        store.put(put("c", &i.to_string())).await.unwrap();
    }
    store.compact(8).await.unwrap();
    let mut w = store.watch(WatchOptions { key: Bytes::from("c"), start_revision: 3, ..Default::default() });
    assert_eq!(w.next().await, Err(WatchEnd::Compacted { compact_revision: 8 }));
    // At the compaction revision itself the watch still works.
    let mut ok = store.watch(WatchOptions { key: Bytes::from("c"), start_revision: 8, ..Default::default() });
    let evs = collect(&mut ok, 11).await;
    assert_eq!(evs.iter().map(|e| e.kv.as_ref().unwrap().mod_revision).collect::<Vec<_>>(), vec![8, 9, 10, 11]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_blocks_nobody_and_is_cancelled_when_too_far_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |c| c.watch_max_lag = 500);
    let mut slow = store.watch(prefix("s/", 0));
    let mut fast = store.watch(prefix("s/", 0));
    // The fast watcher keeps up, concurrently with the writes.
    let fast = tokio::spawn(async move {
        let mut n = 0;
        while n < 2000 {
            n += fast.next().await.expect("fast watcher keeps up").events.len();
        }
        n
    });
    // The slow watcher is never polled while 2,000 writes go through.
    let writes = async {
        let mut last = 0;
        for i in 0..2000 {
            last = store.put(put(&format!("s/{}", i % 50), "v")).await.unwrap().header.unwrap().revision;
        }
        last
    };
    let last = tokio::time::timeout(Duration::from_secs(60), writes).await.expect("writers were blocked");
    assert!(last > 2000);
    assert_eq!(tokio::time::timeout(Duration::from_secs(20), fast).await.unwrap().unwrap(), 2000);
    match slow.next().await {
        Err(WatchEnd::TooSlow { lag, max }) => {
            assert_eq!(max, 500);
            assert!(lag > 500, "lag {lag}");
        }
        other => panic!("slow watcher should be cancelled, got {other:?}"),
    }
    let msg = WatchEnd::TooSlow { lag: 1999, max: 500 }.to_string();
    assert!(msg.contains("1999 revisions behind"), "{msg}");
}

#[tokio::test]
async fn progress_reports_synced_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), |_| {});
    let mut w = store.watch(prefix("p/", 0));
    let r = store.put(put("unrelated", "x")).await.unwrap().header.unwrap().revision;
    // Synced: nothing pending for it, so a progress notification may report the head.
    assert_eq!(w.synced_revision(), Some(r));
    let r2 = store.put(put("p/1", "x")).await.unwrap().header.unwrap().revision;
    assert_eq!(w.synced_revision(), None, "an event is pending");
    let b = w.next().await.unwrap();
    assert_eq!(b.revision, r2);
    assert_eq!(w.synced_revision(), Some(r2));
}
