//! How fast the node lifecycle controller may put NoExecute taints on
//! unhealthy nodes, per zone (upstream's zone states and rate limiters).
//!
//! Why: tainting a node NoExecute evicts its pods. If many nodes go bad at
//! once the cause is more likely the network or the control plane than the
//! nodes, and evicting everything would make it worse. So, as upstream:
//! - a zone (region + zone labels) is in FullDisruption when none of its
//!   nodes is Ready, PartialDisruption when more than 2 and at least
//!   `--unhealthy-zone-threshold` of them are not Ready, else Normal;
//! - Normal and FullDisruption zones taint at `--node-eviction-rate` nodes
//!   per second (burst 1); PartialDisruption zones at
//!   `--secondary-node-eviction-rate` if larger than
//!   `--large-cluster-size-threshold`, else not at all;
//! - if every zone is in FullDisruption, nothing is tainted NoExecute and
//!   existing NoExecute condition taints are removed.

use std::collections::HashMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

#[derive(Clone, Debug)]
pub struct EvictionRates {
    pub primary: f64,
    pub secondary: f64,
    pub unhealthy_threshold: f64,
    pub large_cluster: usize,
}

impl Default for EvictionRates {
    fn default() -> Self {
        EvictionRates { primary: 0.1, secondary: 0.01, unhealthy_threshold: 0.55, large_cluster: 50 }
    }
}

/// Upstream's zone key: region and zone labels (empty if unlabelled).
pub fn zone_of(n: &Node) -> String {
    let l = n.metadata.labels.as_ref();
    let get = |k: &str| l.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    format!("{}:\u{0}:{}", get("topology.kubernetes.io/region"), get("topology.kubernetes.io/zone"))
}

/// Upstream's ComputeZoneState, from each node's "is Ready" answer.
pub fn zone_state(ready: &[bool], unhealthy_threshold: f64) -> ZoneState {
    let not_ready = ready.iter().filter(|r| !**r).count();
    let ready_n = ready.len() - not_ready;
    if ready_n == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Token buckets (burst 1), one per zone.
#[derive(Default)]
pub struct ZoneLimiters {
    buckets: HashMap<String, (f64, Instant)>,
}

impl ZoneLimiters {
    /// Take a token for tainting a node in `zone` at `rate` per second.
    pub fn try_take(&mut self, zone: &str, rate: f64, now: Instant) -> bool {
        if rate <= 0.0 {
            // Upstream swaps in a limiter that never admits.
            return false;
        }
        let (tokens, last) = self.buckets.entry(zone.to_owned()).or_insert((1.0, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(1.0);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The tainting rate of a zone in `state` with `size` nodes.
pub fn rate(r: &EvictionRates, state: ZoneState, size: usize) -> f64 {
    match state {
        ZoneState::Normal | ZoneState::FullDisruption => r.primary,
        ZoneState::PartialDisruption if size > r.large_cluster => r.secondary,
        ZoneState::PartialDisruption => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zone_states_as_upstream() {
        assert_eq!(zone_state(&[true, false], 0.55), ZoneState::Normal);
        assert_eq!(zone_state(&[false, false], 0.55), ZoneState::FullDisruption);
        assert_eq!(zone_state(&[true, false, false], 0.55), ZoneState::Normal, "2 not ready is never partial");
        assert_eq!(zone_state(&[true, false, false, false], 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(&[true, true, false, false, false, true, true], 0.55), ZoneState::Normal);
    }

    #[test]
    fn rates_and_buckets() {
        let r = EvictionRates::default();
        assert_eq!(rate(&r, ZoneState::PartialDisruption, 10), 0.0);
        assert_eq!(rate(&r, ZoneState::PartialDisruption, 100), 0.01);
        assert_eq!(rate(&r, ZoneState::FullDisruption, 3), 0.1);
        let mut l = ZoneLimiters::default();
        let t0 = Instant::now();
        assert!(l.try_take("z", 0.1, t0), "burst of one");
        assert!(!l.try_take("z", 0.1, t0 + Duration::from_secs(5)));
        assert!(l.try_take("z", 0.1, t0 + Duration::from_secs(11)));
        assert!(l.try_take("other", 0.1, t0), "zones are separate");
        assert!(!l.try_take("stopped", 0.0, t0));
        assert!(!l.try_take("stopped", 0.0, t0 + Duration::from_secs(100)));
    }
}
