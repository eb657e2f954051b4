//! The second [`Kv`]: an external etcd (3.4 or later) over its v3 gRPC API,
//! for `skiff server --etcd-servers`. Only what etcd offers is used —
//! ranges, txns with mod_revision compares, watches from a revision with
//! prev_kv, compaction — so objects written by either backend look the same.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcdpb::kv_client::KvClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::{watch_request, CompactionRequest, RangeRequest, RangeResponse, TxnRequest, TxnResponse, WatchCreateRequest, WatchProgressRequest, WatchRequest};
use futures::StreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::kv::{Kv, KvError, WatchEvents, WatchStream};

#[derive(Clone)]
pub struct Remote {
    channel: Channel,
}

impl Remote {
    /// Connect lazily to the first reachable of `endpoints` (`http://host:port`).
    pub fn connect(endpoints: &[String]) -> anyhow::Result<Remote> {
        let eps: Vec<Endpoint> = endpoints
            .iter()
            .map(|e| Endpoint::from_shared(e.clone()).map(|e| e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true)))
            .collect::<Result<_, _>>()?;
        if eps.is_empty() {
            anyhow::bail!("no etcd endpoints given");
        }
        Ok(Remote { channel: Channel::balance_list(eps.into_iter()) })
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone()).max_decoding_message_size(256 << 20).max_encoding_message_size(16 << 20)
    }
}

/// etcd's errors as the API server's.
fn status(s: tonic::Status) -> KvError {
    let m = s.message();
    if m.contains("required revision has been compacted") {
        KvError::Compacted(0)
    } else if m.contains("future revision") {
        KvError::FutureRevision
    } else if m.contains("request is too large") || s.code() == tonic::Code::ResourceExhausted {
        KvError::TooLarge
    } else {
        KvError::Other(format!("etcd: {m}"))
    }
}

#[async_trait]
impl Kv for Remote {
    async fn range(&self, r: RangeRequest) -> Result<RangeResponse, KvError> {
        Ok(self.kv().range(r).await.map_err(status)?.into_inner())
    }

    async fn txn(&self, t: TxnRequest) -> Result<TxnResponse, KvError> {
        Ok(self.kv().txn(t).await.map_err(status)?.into_inner())
    }

    async fn compact(&self, revision: i64) -> Result<(), KvError> {
        self.kv().compact(CompactionRequest { revision, physical: false }).await.map_err(status)?;
        Ok(())
    }

    /// One gRPC watch stream per call. With `progress`, a progress request
    /// is sent every interval; etcd answers with an empty response carrying
    /// the revision everything has been sent up to.
    fn watch(&self, key: Bytes, range_end: Bytes, start_revision: i64, progress: Option<Duration>) -> WatchStream {
        let channel = self.channel.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(4);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest { key, range_end, start_revision, prev_kv: true, ..Default::default() })),
        };
        let stream = futures::stream::once(async move {
            if tx.send(create).await.is_err() {
                return futures::stream::iter(vec![Err(KvError::Other("etcd watch closed".into()))]).boxed();
            }
            if let Some(every) = progress {
                let tx = tx.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(every).await;
                        let req = WatchRequest { request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                        if tx.send(req).await.is_err() {
                            return;
                        }
                    }
                });
            }
            let mut client = WatchClient::new(channel).max_decoding_message_size(256 << 20);
            let responses = match client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
                Ok(r) => r.into_inner(),
                Err(e) => return futures::stream::iter(vec![Err(status(e))]).boxed(),
            };
            // Keep the request sender alive as long as the responses are read.
            let _keep = tx;
            futures::stream::unfold((responses, Some(_keep)), |(mut responses, keep)| async move {
                loop {
                    let resp = match responses.next().await? {
                        Ok(r) => r,
                        Err(e) => return Some((Err(status(e)), (responses, None))),
                    };
                    if resp.compact_revision > 0 {
                        return Some((Err(KvError::Compacted(resp.compact_revision)), (responses, None)));
                    }
                    if resp.canceled {
                        return Some((Err(KvError::Other(format!("etcd watch canceled: {}", resp.cancel_reason))), (responses, None)));
                    }
                    if resp.created && resp.events.is_empty() {
                        continue;
                    }
                    let revision = resp.header.map(|h| h.revision).unwrap_or(0);
                    return Some((Ok(WatchEvents { events: resp.events, revision }), (responses, keep)));
                }
            })
            .boxed()
        })
        .flatten();
        stream.boxed()
    }
}
