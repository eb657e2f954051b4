//! The Watch stream protocol over gRPC: several watchers on one stream, ids,
//! cancel, duplicate ids, progress requests and progress notifications.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::SkiffStore;
use etcdpb::kv_client::KvClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::*;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::Streaming;

fn create(key: &str, end: &str, start: i64, progress_notify: bool, watch_id: i64) -> WatchRequest {
    WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from(key.to_owned()),
            range_end: Bytes::from(end.to_owned()),
            start_revision: start,
            progress_notify,
            watch_id,
            ..Default::default()
        })),
    }
}

async fn next(s: &mut Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), s.message()).await.expect("no response in time").unwrap().expect("stream ended")
}

async fn put(kv: &mut KvClient<Channel>, k: &str, v: &str) -> i64 {
    kv.put(PutRequest { key: Bytes::from(k.to_owned()), value: Bytes::from(v.to_owned()), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let s = SkiffStore::start(dir.path(), &["--experimental-watch-progress-notify-interval", "300ms"]);
    let ch = Channel::from_shared(s.url()).unwrap().connect().await.unwrap();
    let mut kv = KvClient::new(ch.clone());
    let (tx, rx) = mpsc::channel(16);
    let mut stream = WatchClient::new(ch).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();

    // Ids are assigned from 0 on each stream.
    tx.send(create("a", "", 0, false, 0)).await.unwrap();
    let r = next(&mut stream).await;
    assert!(r.created && r.watch_id == 0 && !r.canceled);
    tx.send(create("b", "c", 0, true, 0)).await.unwrap();
    let r = next(&mut stream).await;
    assert!(r.created && r.watch_id == 1);
    // A chosen id, then the same id again.
    tx.send(create("z", "", 0, false, 7)).await.unwrap();
    assert_eq!(next(&mut stream).await.watch_id, 7);
    tx.send(create("z", "", 0, false, 7)).await.unwrap();
    let r = next(&mut stream).await;
    assert!(r.created && r.canceled && r.watch_id == -1, "{r:?}");
    assert_eq!(r.cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream");

    // Events are routed to the watcher whose range they fall in.
    let ra = put(&mut kv, "a", "1").await;
    let r = next(&mut stream).await;
    assert_eq!((r.watch_id, r.events.len(), r.header.unwrap().revision), (0, 1, ra));
    let rb = put(&mut kv, "b/x", "2").await;
    let r = next(&mut stream).await;
    assert_eq!((r.watch_id, r.events[0].kv.as_ref().unwrap().mod_revision), (1, rb));

    // Cancel watcher 0: it says so, then stays silent.
    tx.send(WatchRequest { request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 0 })) })
        .await
        .unwrap();
    let r = next(&mut stream).await;
    assert!(r.canceled && r.watch_id == 0);
    let rz = put(&mut kv, "z", "3").await;
    put(&mut kv, "a", "ignored").await;
    // Watcher 7 sees z; watcher 1 (progress_notify) may get a progress notification; 0 nothing.
    let mut saw_z = false;
    let mut progress = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (!saw_z || progress.is_none()) && tokio::time::Instant::now() < deadline {
        let r = next(&mut stream).await;
        assert_ne!(r.watch_id, 0, "a cancelled watcher got {r:?}");
        if r.watch_id == 7 {
            assert_eq!(r.events[0].kv.as_ref().unwrap().mod_revision, rz);
            saw_z = true;
        } else if r.watch_id == 1 && r.events.is_empty() {
            progress = Some(r.header.unwrap().revision);
        }
    }
    assert!(saw_z, "watcher 7 missed its event");
    let progress = progress.expect("idle watcher 1 should get a progress notification");
    // A tick can fall between the last two puts.
    assert!(progress == rz || progress == rz + 1, "progress at {progress}, head {}", rz + 1);

    // An explicit progress request is answered with watch id -1 and the head revision.
    tx.send(WatchRequest { request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})) })
        .await
        .unwrap();
    loop {
        let r = next(&mut stream).await;
        if r.watch_id == -1 {
            assert_eq!(r.header.unwrap().revision, rz + 1);
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_is_cancelled_with_the_compact_revision() {
    let dir = tempfile::tempdir().unwrap();
    let s = SkiffStore::start(dir.path(), &[]);
    let ch = Channel::from_shared(s.url()).unwrap().connect().await.unwrap();
    let mut kv = KvClient::new(ch.clone());
    for i in 0..5 {
        put(&mut kv, "k", &i.to_string()).await;
    }
    kv.compact(CompactionRequest { revision: 5, physical: false }).await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    let mut stream = WatchClient::new(ch).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    tx.send(create("k", "", 2, false, 0)).await.unwrap();
    assert!(next(&mut stream).await.created);
    let r = next(&mut stream).await;
    assert!(r.canceled);
    assert_eq!(r.compact_revision, 5);
    // As etcd: only the compact revision; clients derive the message from it.
    assert_eq!(r.cancel_reason, "");
}
