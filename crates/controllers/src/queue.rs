//! A rate-limited work queue, the shape of client-go's `workqueue`.
//!
//! Why: controllers must never process the same object concurrently, must
//! collapse bursts of events for one object into one sync, and must retry
//! failures with a growing delay rather than spinning. Keys are
//! `namespace/name` (or `name` for cluster-scoped objects).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

/// Per-item exponential backoff as upstream's default controller rate limiter:
/// 5ms doubled on each failure, capped at 1000s.
pub fn backoff(failures: u32) -> Duration {
    let ms = 5u64.saturating_mul(1u64 << failures.min(30));
    Duration::from_millis(ms.min(1_000_000))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub name: String,
}

/// The workqueue metrics upstream exports (`workqueue_depth`, `workqueue_adds_total`, `workqueue_retries_total`).
#[derive(Clone, Default)]
pub struct QueueMetrics {
    pub depth: Family<QueueLabel, Gauge>,
    pub adds: Family<QueueLabel, Counter>,
    pub retries: Family<QueueLabel, Counter>,
}

impl QueueMetrics {
    pub fn register(&self, reg: &mut Registry) {
        reg.register("workqueue_depth", "Current depth of the work queue", self.depth.clone());
        reg.register("workqueue_adds", "Total number of adds handled by the work queue", self.adds.clone());
        reg.register("workqueue_retries", "Total number of retries handled by the work queue", self.retries.clone());
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

pub struct Queue {
    label: QueueLabel,
    state: Mutex<State>,
    notify: Notify,
    metrics: QueueMetrics,
}

impl Queue {
    pub fn new(name: &str, metrics: QueueMetrics) -> Arc<Queue> {
        Arc::new(Queue { label: QueueLabel { name: name.to_owned() }, state: Mutex::default(), notify: Notify::new(), metrics })
    }

    /// Queue `key` unless it is already waiting; a key being processed is
    /// re-queued when its processing is done.
    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.state.lock();
        self.metrics.adds.get_or_create(&self.label).inc();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            self.metrics.depth.get_or_create(&self.label).set(s.queue.len() as i64);
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, after: Duration) {
        let key = key.into();
        if after.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            q.add(key);
        });
    }

    /// Re-queue after the key's backoff, and count the failure.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) {
        let n = {
            let mut s = self.state.lock();
            let n = s.failures.entry(key.to_owned()).or_insert(0);
            *n += 1;
            *n - 1
        };
        self.metrics.retries.get_or_create(&self.label).inc();
        self.add_after(key.to_owned(), backoff(n));
    }

    /// Forget a key's failures (after a successful sync).
    pub fn forget(&self, key: &str) {
        self.state.lock().failures.remove(key);
    }

    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Wait for the next key; the caller must call `done` with it.
    pub async fn get(&self) -> String {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if let Some(k) = s.queue.pop_front() {
                    s.dirty.remove(&k);
                    s.processing.insert(k.clone());
                    self.metrics.depth.get_or_create(&self.label).set(s.queue.len() as i64);
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut s = self.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_owned());
            self.metrics.depth.get_or_create(&self.label).set(s.queue.len() as i64);
            drop(s);
            self.notify.notify_one();
        }
    }
}

/// Run `workers` tasks taking keys from `queue` and calling `sync`.
/// `Ok(Some(d))` re-queues the key after `d`; `Err` re-queues it rate-limited.
pub fn run_workers<F, Fut>(queue: Arc<Queue>, workers: usize, sync: F) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Option<Duration>>> + Send + 'static,
{
    (0..workers)
        .map(|_| {
            let queue = queue.clone();
            let sync = sync.clone();
            tokio::spawn(async move {
                loop {
                    let key = queue.get().await;
                    match sync(key.clone()).await {
                        Ok(again) => {
                            queue.forget(&key);
                            if let Some(d) = again {
                                queue.add_after(key.clone(), d);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(queue = %queue.label.name, %key, error = %format!("{e:#}"), "sync failed, retrying");
                            queue.add_rate_limited(&key);
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(10), Duration::from_millis(5120));
        assert_eq!(backoff(40), Duration::from_secs(1000));
    }

    #[tokio::test]
    async fn dedups_and_requeues_while_processing() {
        let q = Queue::new("t", QueueMetrics::default());
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.get().await;
        assert_eq!(k, "a");
        q.add("a"); // while processing: not queued twice, not handed to another worker
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "b");
        q.done("a");
        assert_eq!(q.get().await, "a");
    }
}
