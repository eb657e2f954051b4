//! Controller expectations (upstream's `ControllerExpectations`).
//!
//! Why: after a controller creates or deletes pods, its informer cache lags
//! the API server. Syncing again before the cache has seen those writes would
//! count the old pods and create (or delete) the same pods twice. So each
//! controller records the names it created/deleted and skips scaling until
//! the cache has observed them all, or until 5 minutes pass (upstream's
//! `ExpectationsTimeout`), whichever is first.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct Pending {
    adds: HashSet<String>,
    dels: HashSet<String>,
    since: Option<Instant>,
}

#[derive(Default)]
pub struct Expectations {
    m: Mutex<HashMap<String, Pending>>,
}

/// What the cache says about a pod name.
pub enum Seen {
    Absent,
    Present,
    Terminating,
}

impl Expectations {
    /// Are the expectations of `key` met, given `seen(name)` from the cache?
    pub fn satisfied(&self, key: &str, seen: impl Fn(&str) -> Seen) -> bool {
        let mut m = self.m.lock();
        let Some(p) = m.get_mut(key) else { return true };
        p.adds.retain(|n| matches!(seen(n), Seen::Absent));
        p.dels.retain(|n| matches!(seen(n), Seen::Present));
        let expired = p.since.is_some_and(|s| s.elapsed() > TIMEOUT);
        if (p.adds.is_empty() && p.dels.is_empty()) || expired {
            m.remove(key);
            return true;
        }
        false
    }

    pub fn expect_adds(&self, key: &str, names: impl IntoIterator<Item = String>) {
        let mut m = self.m.lock();
        let p = m.entry(key.to_owned()).or_default();
        p.adds.extend(names);
        p.since = Some(Instant::now());
    }

    pub fn expect_dels(&self, key: &str, names: impl IntoIterator<Item = String>) {
        let mut m = self.m.lock();
        let p = m.entry(key.to_owned()).or_default();
        p.dels.extend(names);
        p.since = Some(Instant::now());
    }

    pub fn forget(&self, key: &str) {
        self.m.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_cache_sees_creates_and_deletes() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs", |_| Seen::Absent));
        e.expect_adds("ns/rs", ["a".to_owned(), "b".to_owned()]);
        e.expect_dels("ns/rs", ["old".to_owned()]);
        let seen = |a: bool, b: bool, old: Seen| {
            move |n: &str| match n {
                "a" if a => Seen::Present,
                "b" if b => Seen::Present,
                "old" => match old {
                    Seen::Absent => Seen::Absent,
                    Seen::Present => Seen::Present,
                    Seen::Terminating => Seen::Terminating,
                },
                _ => Seen::Absent,
            }
        };
        assert!(!e.satisfied("ns/rs", seen(true, false, Seen::Present)));
        assert!(!e.satisfied("ns/rs", seen(true, true, Seen::Present)));
        assert!(e.satisfied("ns/rs", seen(true, true, Seen::Terminating)));
    }
}
