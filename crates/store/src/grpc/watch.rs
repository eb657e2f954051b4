//! etcd's Watch service: many watchers multiplexed on one bidirectional stream.
//!
//! One task drives a whole stream: when the head revision moves, it takes
//! the store's read lock once and collects the next batch of every watcher
//! on the stream (see [`crate::store::Watcher::next_in`]), then sends them.
//! With a thousand watchers that is one wakeup and one lock per stream, not
//! a thousand. A client that stops reading stalls only its own stream; the
//! store's writers never wait for it.

use std::collections::BTreeMap;
use std::pin::Pin;

use bytes::Bytes;
use etcdpb::*;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use crate::store::{WatchEnd, WatchOptions, Watcher};

pub struct WatchService(pub Ctx);

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

/// Responses queued per stream before the stream's task waits for the client to read.
const STREAM_QUEUE: usize = 256;

#[tonic::async_trait]
impl watch_server::Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Result<Response<WatchStream>, Status> {
        self.0.count("Watch");
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        tokio::spawn(Session::new(self.0.clone(), tx).run(req.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

struct Entry {
    watcher: Watcher,
    progress_notify: bool,
    /// Whether an event went out since the last progress tick.
    sent_since_tick: bool,
}

struct Session {
    ctx: Ctx,
    tx: Out,
    watchers: BTreeMap<i64, Entry>,
    next_id: i64,
}

/// The client went away; stop the session.
struct Gone;

impl Session {
    fn new(ctx: Ctx, tx: Out) -> Session {
        Session { ctx, tx, watchers: BTreeMap::new(), next_id: 0 }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Gone> {
        self.tx.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn run(mut self, mut input: Streaming<WatchRequest>) {
        let mut rev_rx = self.ctx.store.subscribe_revision();
        let mut ticker = tokio::time::interval(self.ctx.progress_interval);
        ticker.tick().await;
        loop {
            rev_rx.borrow_and_update();
            if self.deliver().await.is_err() {
                return;
            }
            let result = tokio::select! {
                m = input.message() => match m {
                    Ok(Some(req)) => self.handle(req).await,
                    Ok(None) | Err(_) => Err(Gone),
                },
                changed = rev_rx.changed() => changed.map_err(|_| Gone),
                _ = ticker.tick() => self.progress().await,
                _ = self.tx.closed() => Err(Gone),
            };
            if result.is_err() {
                return;
            }
        }
    }

    /// Send every watcher's pending events, until none is left.
    async fn deliver(&mut self) -> Result<(), Gone> {
        loop {
            let mut out = Vec::new();
            let mut ended = Vec::new();
            let mut more = false;
            {
                let store = self.ctx.store.clone();
                let watchers = &mut self.watchers;
                store.with_state(|sm| {
                    for (&id, e) in watchers.iter_mut() {
                        match e.watcher.next_in(sm) {
                            Ok(Some(batch)) => {
                                more |= batch.more;
                                e.sent_since_tick = true;
                                out.push((id, batch));
                            }
                            Ok(None) => {}
                            Err(end) => ended.push((id, end)),
                        }
                    }
                });
            }
            for (id, batch) in out {
                let resp = WatchResponse {
                    header: self.ctx.header(batch.revision),
                    watch_id: id,
                    events: batch.events,
                    ..Default::default()
                };
                self.send(resp).await?;
            }
            for (id, end) in ended {
                self.watchers.remove(&id);
                self.send(self.cancelled(id, &end)).await?;
            }
            if !more {
                return Ok(());
            }
        }
    }

    fn cancelled(&self, id: i64, end: &WatchEnd) -> WatchResponse {
        let (compact_revision, reason) = match end {
            WatchEnd::Compacted { compact_revision } => {
                (*compact_revision, "etcdserver: mvcc: required revision has been compacted".to_string())
            }
            other => (0, other.to_string()),
        };
        tracing::debug!(watch_id = id, %reason, "watch cancelled");
        if compact_revision != 0 {
            // etcd says only the compact revision; clients derive the message from it.
            return WatchResponse { header: self.ctx.header(0), watch_id: id, canceled: true, compact_revision, ..Default::default() };
        }
        WatchResponse {
            header: self.ctx.header(self.ctx.store.revision()),
            watch_id: id,
            canceled: true,
            compact_revision,
            cancel_reason: reason,
            ..Default::default()
        }
    }

    async fn handle(&mut self, req: WatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let resp = WatchResponse {
                        header: self.ctx.header(self.ctx.store.revision()),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                // Not tied to one watcher: the client hands it to all of them.
                let resp = WatchResponse { header: self.ctx.header(self.ctx.store.revision()), watch_id: -1, ..Default::default() };
                self.send(resp).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Gone> {
        let rev = self.ctx.store.revision();
        // "\0" is the smallest key: an empty key means "from the start".
        let key = if c.key.is_empty() { Bytes::from_static(&[0]) } else { c.key.clone() };
        // An empty range is refused before an ID is taken, as in etcd.
        if !c.range_end.is_empty() && c.range_end.as_ref() != [0] && c.range_end <= key {
            let resp = WatchResponse {
                header: self.ctx.header(rev),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: "mvcc: watcher range is empty".into(),
                ..Default::default()
            };
            return self.send(resp).await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        };
        if self.watchers.contains_key(&id) {
            let resp = WatchResponse {
                header: self.ctx.header(rev),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                ..Default::default()
            };
            return self.send(resp).await;
        }

        let opts = WatchOptions {
            key,
            range_end: c.range_end.clone(),
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&(watch_create_request::FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(watch_create_request::FilterType::Nodelete as i32)),
        };
        let watcher = self.ctx.store.watch(opts);
        // "created" goes out before any event of this watcher (the caller delivers next).
        self.send(WatchResponse { header: self.ctx.header(rev), watch_id: id, created: true, ..Default::default() }).await?;
        self.watchers.insert(id, Entry { watcher, progress_notify: c.progress_notify, sent_since_tick: false });
        Ok(())
    }

    /// Idle watchers that asked for progress notifications learn the head revision.
    async fn progress(&mut self) -> Result<(), Gone> {
        let mut out = Vec::new();
        {
            let store = self.ctx.store.clone();
            let watchers = &mut self.watchers;
            store.with_state(|sm| {
                for (&id, e) in watchers.iter_mut() {
                    let quiet = !std::mem::take(&mut e.sent_since_tick);
                    if e.progress_notify && quiet
                        && let Some(rev) = e.watcher.synced_revision_in(sm) {
                            out.push((id, rev));
                        }
                }
            });
        }
        for (id, rev) in out {
            self.send(WatchResponse { header: self.ctx.header(rev), watch_id: id, ..Default::default() }).await?;
        }
        Ok(())
    }
}
