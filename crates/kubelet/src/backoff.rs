//! CrashLoopBackOff, with upstream's shape: the first restart after a crash
//! is immediate; each later one waits 10 s after the previous restart,
//! doubling up to 5 minutes.

use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
pub struct Backoff {
    delay: Option<Duration>,
    last_restart: Option<Instant>,
}

impl Backoff {
    /// How long until a restart is allowed (zero if now).
    pub fn remaining(&self, now: Instant) -> Duration {
        match (self.delay, self.last_restart) {
            (Some(d), Some(t)) => (t + d).saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// The delay in force, for the CrashLoopBackOff message.
    pub fn delay(&self) -> Duration {
        self.delay.unwrap_or(INITIAL)
    }

    /// A restart happened now: the next one waits longer.
    pub fn restarted(&mut self, now: Instant) {
        self.delay = Some(match self.delay {
            None => INITIAL,
            Some(d) => (d * 2).min(MAX),
        });
        self.last_restart = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn doubles_to_five_minutes() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(b.remaining(t0), Duration::ZERO, "first restart is immediate");
        b.restarted(t0);
        assert_eq!(b.remaining(t0 + Duration::from_secs(4)), Duration::from_secs(6));
        let mut t = t0;
        let mut seen = vec![];
        for _ in 0..8 {
            t += b.delay();
            assert_eq!(b.remaining(t), Duration::ZERO);
            b.restarted(t);
            seen.push(b.delay().as_secs());
        }
        assert_eq!(seen, vec![20, 40, 80, 160, 300, 300, 300, 300]);
    }
}
