//! The scheduling queue (upstream's PriorityQueue): activeQ ordered by
//! priority then arrival, backoffQ for pods that failed recently
//! (exponential backoff 1s..10s), and unschedulablePods that wait for a
//! cluster event that could make them schedulable (or 5 minutes).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framework::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// podMaxInUnschedulablePodsDuration.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    Active,
    Backoff,
    Unschedulable,
    /// Popped; its scheduling cycle is running.
    InFlight,
}

/// Cluster events that may make unschedulable pods schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    AssignedPodAdd,
    AssignedPodDelete,
}

impl ClusterEvent {
    /// Does this event concern a pod rejected by `plugin`? (Upstream's
    /// EventsToRegister, coarsely: node changes concern everyone.)
    fn concerns(self, plugin: &str) -> bool {
        match self {
            ClusterEvent::NodeAdd | ClusterEvent::NodeUpdate => true,
            ClusterEvent::AssignedPodDelete => matches!(plugin, "NodeResourcesFit" | "NodePorts" | "PodTopologySpread" | "InterPodAffinity" | "DefaultPreemption"),
            ClusterEvent::AssignedPodAdd => matches!(plugin, "PodTopologySpread" | "InterPodAffinity"),
        }
    }
}

pub struct Entry {
    pub info: Arc<PodInfo>,
    pub place: Where,
    pub attempts: u32,
    /// When the pod first entered the queue (for end-to-end latency).
    pub first_seen: Instant,
    seq: u64,
    backoff_until: Instant,
    since: Instant,
    pub plugins: Vec<&'static str>,
}

#[derive(Default)]
pub struct Queue {
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    backoff: BTreeSet<(Instant, String)>,
    pods: HashMap<String, Entry>,
    /// Keys of the pods in unschedulablePods (so events need not scan everything).
    unsched: std::collections::HashSet<String>,
    seq: u64,
    /// Scheduling cycle counter, and the cycle of the last move request:
    /// a pod failing in a cycle that started before a move goes to backoff,
    /// not unschedulable, so the event is not lost.
    cycle: u64,
    move_cycle: u64,
}

fn backoff_for(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        d *= 2;
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

impl Queue {
    pub fn len(&self) -> (usize, usize, usize) {
        (self.active.len(), self.backoff.len(), self.unsched.len())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    fn push_active(&mut self, key: &str) {
        self.seq += 1;
        let e = self.pods.get_mut(key).unwrap();
        e.place = Where::Active;
        e.seq = self.seq;
        self.active.insert((Reverse(e.info.priority), e.seq, key.to_string()));
    }

    fn unlink(&mut self, key: &str) {
        self.unsched.remove(key);
        if let Some(e) = self.pods.get(key) {
            match e.place {
                Where::Active => {
                    self.active.remove(&(Reverse(e.info.priority), e.seq, key.to_string()));
                }
                Where::Backoff => {
                    self.backoff.remove(&(e.backoff_until, key.to_string()));
                }
                _ => {}
            }
        }
    }

    /// A new or updated pending pod. Returns true if it became active.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>) -> bool {
        let key = info.key.clone();
        if let Some(e) = self.pods.get(&key) {
            let place = e.place;
            self.unlink(&key);
            let e = self.pods.get_mut(&key).unwrap();
            let spec_changed = e.info.pod.spec != info.pod.spec || e.info.labels != info.labels;
            e.info = info;
            match place {
                Where::Active => self.push_active(&key),
                Where::Backoff => {
                    self.backoff.insert((e.backoff_until, key));
                }
                Where::Unschedulable if spec_changed => return self.requeue(&key, Instant::now()),
                Where::Unschedulable => {
                    self.unsched.insert(key);
                }
                Where::InFlight => {}
            }
            return place == Where::Active;
        }
        let now = Instant::now();
        self.pods.insert(key.clone(), Entry { info, place: Where::Active, attempts: 0, first_seen: now, seq: 0, backoff_until: now, since: now, plugins: vec![] });
        self.push_active(&key);
        true
    }

    pub fn delete(&mut self, key: &str) {
        self.unlink(key);
        self.pods.remove(key);
    }

    /// Next pod to schedule, highest priority first, FIFO within a priority.
    pub fn pop(&mut self) -> Option<(Arc<PodInfo>, u32, Instant)> {
        let (_, _, key) = self.active.pop_first()?;
        self.cycle += 1;
        let e = self.pods.get_mut(&key).unwrap();
        e.place = Where::InFlight;
        e.attempts += 1;
        Some((e.info.clone(), e.attempts, e.first_seen))
    }

    /// The cycle for `key` ended with the pod assumed on a node.
    pub fn done(&mut self, key: &str) {
        self.pods.remove(key);
    }

    /// The cycle ended without a node: park the pod until a relevant event.
    pub fn unschedulable(&mut self, key: &str, plugins: Vec<&'static str>) {
        let moved = self.move_cycle >= self.cycle;
        let Some(e) = self.pods.get_mut(key) else { return };
        let now = Instant::now();
        e.plugins = plugins;
        e.backoff_until = now + backoff_for(e.attempts);
        e.since = now;
        if moved {
            e.place = Where::Backoff;
            self.backoff.insert((e.backoff_until, key.to_string()));
        } else {
            e.place = Where::Unschedulable;
            self.unsched.insert(key.to_string());
        }
    }

    /// Retry after backoff (errors, failed bindings). Re-adds the pod if the
    /// queue had forgotten it.
    pub fn backoff(&mut self, info: Arc<PodInfo>, attempts: u32, first_seen: Instant) {
        let key = info.key.clone();
        self.unlink(&key);
        let until = Instant::now() + backoff_for(attempts.max(1));
        self.pods.insert(key.clone(), Entry { info, place: Where::Backoff, attempts, first_seen, seq: 0, backoff_until: until, since: until, plugins: vec![] });
        self.backoff.insert((until, key));
    }

    fn requeue(&mut self, key: &str, now: Instant) -> bool {
        self.unsched.remove(key);
        let e = self.pods.get_mut(key).unwrap();
        if e.backoff_until > now {
            e.place = Where::Backoff;
            self.backoff.insert((e.backoff_until, key.to_string()));
            false
        } else {
            self.push_active(key);
            true
        }
    }

    /// A cluster event: move the unschedulable pods it concerns. Returns
    /// how many became active.
    pub fn on_event(&mut self, ev: ClusterEvent) -> usize {
        self.move_cycle = self.cycle;
        let pods = &self.pods;
        let keys: Vec<String> = self.unsched.iter().filter(|k| pods.get(*k).is_some_and(|e| e.plugins.is_empty() || e.plugins.iter().any(|p| ev.concerns(p)))).cloned().collect();
        let now = Instant::now();
        keys.iter().filter(|k| self.requeue(k, now)).count()
    }

    /// Periodic: finished backoffs become active; pods unschedulable for
    /// too long are retried anyway. Returns how many became active.
    pub fn flush(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some((until, key)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop_first();
            self.push_active(&key);
            n += 1;
        }
        let pods = &self.pods;
        let stale: Vec<String> = self.unsched.iter().filter(|k| pods.get(*k).is_some_and(|e| now.duration_since(e.since) >= MAX_UNSCHEDULABLE)).cloned().collect();
        for k in stale {
            n += self.requeue(&k, now) as usize;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::pod;
    use serde_json::json;

    fn info(name: &str, prio: i32) -> Arc<PodInfo> {
        let p = pod(json!({"metadata": {"name": name, "namespace": "default"}, "spec": {}}));
        Arc::new(PodInfo::new(p.pod, prio))
    }

    #[test]
    fn priority_then_fifo() {
        let mut q = Queue::default();
        q.add_or_update(info("low", 0));
        q.add_or_update(info("high", 100));
        q.add_or_update(info("low2", 0));
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|p| p.0.key.clone())).collect();
        assert_eq!(order, vec!["default/high", "default/low", "default/low2"]);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff_for(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_waits_for_relevant_event() {
        let mut q = Queue::default();
        q.add_or_update(info("p", 0));
        q.pop().unwrap();
        q.unschedulable("default/p", vec!["NodeAffinity"]);
        assert_eq!(q.len(), (0, 0, 1));
        // A pod deletion does not concern node affinity.
        assert_eq!(q.on_event(ClusterEvent::AssignedPodDelete), 0);
        assert_eq!(q.len(), (0, 0, 1));
        // A node add does; still backing off (1s), so it goes to backoffQ, then active.
        assert_eq!(q.on_event(ClusterEvent::NodeAdd), 0);
        assert_eq!(q.len(), (0, 1, 0));
        assert_eq!(q.flush(Instant::now() + Duration::from_secs(2)), 1);
        assert_eq!(q.pop().unwrap().1, 2);
    }

    #[test]
    fn event_during_cycle_is_not_lost() {
        let mut q = Queue::default();
        q.add_or_update(info("p", 0));
        q.pop().unwrap();
        q.on_event(ClusterEvent::NodeAdd);
        q.unschedulable("default/p", vec!["NodeResourcesFit"]);
        assert_eq!(q.len(), (0, 1, 0));
    }
}
