//! The API server's view of its backing store: exactly what etcd's API
//! offers (ranges, txns with compares on mod_revision, watch from a
//! revision, compaction), so the embedded store and an external etcd are
//! interchangeable implementations.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcdpb::{Event, RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use futures::stream::BoxStream;
use skiff_store::{Store, StoreError, WatchEnd, WatchOptions};

#[derive(Debug, Clone, thiserror::Error)]
pub enum KvError {
    /// The revision asked for is older than the last compaction.
    #[error("required revision has been compacted (compacted at {0})")]
    Compacted(i64),
    #[error("required revision is a future revision")]
    FutureRevision,
    /// The write is larger than the store accepts (etcd's 1.5 MiB request limit).
    #[error("etcdserver: request is too large")]
    TooLarge,
    #[error("storage error: {0}")]
    Other(String),
}

impl From<StoreError> for KvError {
    fn from(e: StoreError) -> KvError {
        match e {
            StoreError::Compacted => KvError::Compacted(0),
            StoreError::FutureRev => KvError::FutureRevision,
            StoreError::RequestTooLarge => KvError::TooLarge,
            other => KvError::Other(other.to_string()),
        }
    }
}

/// A batch of watch events and the revision the watcher has seen up to.
pub struct WatchEvents {
    pub events: Vec<Event>,
    pub revision: i64,
}

pub type WatchStream = BoxStream<'static, Result<WatchEvents, KvError>>;

#[async_trait]
pub trait Kv: Send + Sync + 'static {
    async fn range(&self, r: RangeRequest) -> Result<RangeResponse, KvError>;
    async fn txn(&self, t: TxnRequest) -> Result<TxnResponse, KvError>;
    async fn compact(&self, revision: i64) -> Result<(), KvError>;
    /// Changes to keys in `[key, range_end)` from `start_revision` on, with
    /// prev_kv. With `progress`, a quiet watch yields an empty batch whose
    /// revision everything has been delivered up to (for bookmarks).
    fn watch(&self, key: Bytes, range_end: Bytes, start_revision: i64, progress: Option<Duration>) -> WatchStream;
}

/// The embedded store, called in-process.
pub struct Embedded(pub Store);

#[async_trait]
impl Kv for Embedded {
    async fn range(&self, r: RangeRequest) -> Result<RangeResponse, KvError> {
        // A member of a Raft cluster may lag the leader: confirm with a
        // ReadIndex round first, as etcd does for a linearizable range (a
        // one-member store returns at once).
        if !r.serializable {
            self.0.linearizable_barrier().await?;
        }
        Ok(self.0.range(&r)?)
    }

    async fn txn(&self, t: TxnRequest) -> Result<TxnResponse, KvError> {
        Ok(self.0.txn(t).await?)
    }

    async fn compact(&self, revision: i64) -> Result<(), KvError> {
        self.0.compact(revision).await?;
        Ok(())
    }

    fn watch(&self, key: Bytes, range_end: Bytes, start_revision: i64, progress: Option<Duration>) -> WatchStream {
        let watcher = self.0.watch(WatchOptions { key, range_end, start_revision, prev_kv: true, ..Default::default() });
        Box::pin(futures::stream::unfold(Some(watcher), move |w| async move {
            let mut w = w?;
            let result = match progress {
                Some(every) => tokio::select! {
                    r = w.next() => r,
                    _ = tokio::time::sleep(every) => match w.synced_revision() {
                        // Everything up to `rev` has been delivered: a bookmark may say so.
                        Some(rev) => return Some((Ok(WatchEvents { events: vec![], revision: rev }), Some(w))),
                        None => w.next().await,
                    },
                },
                None => w.next().await,
            };
            match result {
                Ok(b) => Some((Ok(WatchEvents { events: b.events, revision: b.revision }), Some(w))),
                Err(WatchEnd::Compacted { compact_revision }) => Some((Err(KvError::Compacted(compact_revision)), None)),
                Err(e) => Some((Err(KvError::Other(e.to_string())), None)),
            }
        }))
    }
}
