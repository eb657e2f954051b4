//! etcd's Watch service: many watchers multiplexed on one bidirectional stream.
//!
//! Each watcher runs as its own task pulling from the store (see
//! [`crate::store::Watcher`]) and pushing responses into the stream's
//! outgoing queue. A client that stops reading stalls only its own stream.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use etcdpb::*;
use futures::Stream;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::store::{WatchEnd, WatchOptions};

pub struct WatchService(pub Ctx);

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Responses queued per stream before a watcher waits for the client to read.
const STREAM_QUEUE: usize = 256;

#[tonic::async_trait]
impl watch_server::Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        self.0.count("Watch");
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(session(self.0.clone(), req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

/// One client stream: reads create/cancel/progress requests until the client goes away.
async fn session(ctx: Ctx, mut input: Streaming<WatchRequest>, tx: Out) {
    let watchers: Arc<Mutex<HashMap<i64, JoinHandle<()>>>> = Default::default();
    let mut next_id: i64 = 0;
    loop {
        let msg = tokio::select! {
            m = input.message() => m,
            _ = tx.closed() => break,
        };
        let req = match msg {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => break,
        };
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    let taken = watchers.lock();
                    while taken.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id += 1;
                    next_id - 1
                };
                let rev = ctx.store.revision();
                let duplicate = watchers.lock().contains_key(&id);
                if duplicate {
                    let resp = WatchResponse {
                        header: ctx.header(rev),
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                    continue;
                }
                // "\0" is the smallest key: an empty key means "from the start".
                let key = if c.key.is_empty() { Bytes::from_static(&[0]) } else { c.key.clone() };
                let opts = WatchOptions {
                    key,
                    range_end: c.range_end.clone(),
                    start_revision: c.start_revision,
                    prev_kv: c.prev_kv,
                    no_put: c.filters.contains(&(watch_create_request::FilterType::Noput as i32)),
                    no_delete: c.filters.contains(&(watch_create_request::FilterType::Nodelete as i32)),
                };
                let watcher = ctx.store.watch(opts);
                let created = WatchResponse { header: ctx.header(rev), watch_id: id, created: true, ..Default::default() };
                // "created" goes out before any event of this watcher.
                if tx.send(Ok(created)).await.is_err() {
                    break;
                }
                let task = tokio::spawn(run_watcher(ctx.clone(), id, watcher, c.progress_notify, tx.clone(), watchers.clone()));
                watchers.lock().insert(id, task);
            }
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                let removed = watchers.lock().remove(&c.watch_id);
                if let Some(task) = removed {
                    task.abort();
                    let resp = WatchResponse {
                        header: ctx.header(ctx.store.revision()),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                // Not tied to one watcher: the client hands it to all of them.
                let resp = WatchResponse { header: ctx.header(ctx.store.revision()), watch_id: -1, ..Default::default() };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            None => {}
        }
    }
    let tasks: Vec<_> = watchers.lock().drain().map(|(_, t)| t).collect();
    for task in tasks {
        task.abort();
    }
}

async fn run_watcher(
    ctx: Ctx,
    id: i64,
    mut watcher: crate::store::Watcher,
    progress_notify: bool,
    tx: Out,
    watchers: Arc<Mutex<HashMap<i64, JoinHandle<()>>>>,
) {
    let mut ticker = tokio::time::interval(ctx.progress_interval);
    ticker.tick().await;
    let mut sent_since_tick = false;
    loop {
        let resp = tokio::select! {
            r = watcher.next() => match r {
                Ok(batch) => {
                    sent_since_tick = true;
                    WatchResponse { header: ctx.header(batch.revision), watch_id: id, events: batch.events, ..Default::default() }
                }
                Err(end) => {
                    let compact_revision = match &end {
                        WatchEnd::Compacted { compact_revision } => *compact_revision,
                        _ => 0,
                    };
                    if end != WatchEnd::Stopped {
                        let reason = match &end {
                            WatchEnd::Compacted { .. } => "etcdserver: mvcc: required revision has been compacted".to_string(),
                            other => other.to_string(),
                        };
                        tracing::debug!(watch_id = id, %reason, "watch cancelled");
                        let resp = WatchResponse {
                            header: ctx.header(ctx.store.revision()),
                            watch_id: id,
                            canceled: true,
                            compact_revision,
                            cancel_reason: reason,
                            ..Default::default()
                        };
                        let _ = tx.send(Ok(resp)).await;
                    }
                    watchers.lock().remove(&id);
                    return;
                }
            },
            _ = ticker.tick(), if progress_notify => {
                let quiet = !std::mem::take(&mut sent_since_tick);
                match watcher.synced_revision() {
                    Some(rev) if quiet => WatchResponse { header: ctx.header(rev), watch_id: id, ..Default::default() },
                    _ => continue,
                }
            }
        };
        if tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
}
