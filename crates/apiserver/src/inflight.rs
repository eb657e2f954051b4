//! Upstream's max-in-flight filter: at most `--max-requests-inflight`
//! reads and `--max-mutating-requests-inflight` writes run at once; the
//! rest get 429 with `Retry-After: 1` instead of queueing without bound,
//! so an overloaded server sheds load and stays responsive. Watches and
//! other long-running requests are not counted, as upstream.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub struct Inflight {
    reads: Arc<Semaphore>,
    writes: Arc<Semaphore>,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight::new(400, 200)
    }
}

impl Inflight {
    pub fn new(reads: usize, writes: usize) -> Inflight {
        Inflight { reads: Arc::new(Semaphore::new(reads.max(1))), writes: Arc::new(Semaphore::new(writes.max(1))) }
    }

    /// A slot for a request, or None when the server is full.
    pub fn try_acquire(&self, mutating: bool) -> Option<OwnedSemaphorePermit> {
        let sem = if mutating { &self.writes } else { &self.reads };
        sem.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_means_none_until_a_slot_frees() {
        let f = Inflight::new(1, 2);
        let r = f.try_acquire(false).unwrap();
        assert!(f.try_acquire(false).is_none());
        let _w1 = f.try_acquire(true).unwrap();
        let _w2 = f.try_acquire(true).unwrap();
        assert!(f.try_acquire(true).is_none());
        drop(r);
        assert!(f.try_acquire(false).is_some());
    }
}
