//! Periodic compaction of the store's history, as kube-apiserver does:
//! every interval, compact to the revision that was current one interval
//! ago, so watchers and paginated lists get one full interval to finish.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use etcdpb::RangeRequest;

use crate::kv::Kv;

pub async fn run(kv: Arc<dyn Kv>, interval: Duration) {
    let mut previous: Option<i64> = None;
    loop {
        tokio::time::sleep(interval).await;
        let head = match kv.range(RangeRequest { key: Bytes::from_static(b"/compact_rev_probe"), ..Default::default() }).await {
            Ok(r) => r.header.map(|h| h.revision).unwrap_or(0),
            Err(e) => {
                tracing::warn!("compactor: reading the revision failed: {e}");
                continue;
            }
        };
        if let Some(rev) = previous {
            match kv.compact(rev).await {
                Ok(()) => tracing::debug!(revision = rev, "compacted"),
                // Already compacted at or past it (another member, or nothing new).
                Err(crate::kv::KvError::Compacted(_)) => {}
                Err(e) => tracing::warn!(revision = rev, "compaction failed: {e}"),
            }
        }
        previous = Some(head);
    }
}
