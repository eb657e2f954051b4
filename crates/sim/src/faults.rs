//! Injected failures, so controllers and the scheduler can be tested and
//! measured against nodes that die and containers that crash (what kwok
//! does with its stages, reduced to the cases that matter here).
//!
//! - **Node failures**: `fail_nodes` nodes (the first ones by index) stop at
//!   `fail_nodes_after` from start: their Leases are no longer renewed and
//!   their pods are no longer driven, exactly as if the kubelet died. With
//!   `recover_nodes_after`, they come back that long after failing: the
//!   kubelet posts Ready status again and catches up on their pods.
//! - **Container crashes**: a `pod_failure_rate` fraction of pods (picked by
//!   a hash of the UID, so a run is reproducible) never get a healthy
//!   container: a `restartPolicy: Always` pod runs with its containers in
//!   CrashLoopBackOff (not Ready), any other pod fails with exit code 1.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::Config;

pub(crate) struct Faults {
    start: Instant,
    fail_nodes: usize,
    after: Duration,
    recover_after: Option<Duration>,
    pod_failure_rate: f64,
}

impl Faults {
    pub(crate) fn new(config: &Config) -> Faults {
        Faults {
            start: Instant::now(),
            fail_nodes: config.fail_nodes,
            after: config.fail_nodes_after,
            recover_after: config.recover_nodes_after,
            pod_failure_rate: config.pod_failure_rate,
        }
    }

    /// Whether node `i` is dead at `now`.
    pub(crate) fn node_down_at(&self, i: usize, now: Instant) -> bool {
        if i >= self.fail_nodes {
            return false;
        }
        let t = now.saturating_duration_since(self.start);
        t >= self.after && self.recover_after.is_none_or(|r| t < self.after + r)
    }

    pub(crate) fn node_down(&self, i: usize) -> bool {
        self.node_down_at(i, Instant::now())
    }

    /// Whether this pod's containers crash (stable for a UID).
    pub(crate) fn pod_fails(&self, uid: &str) -> bool {
        if self.pod_failure_rate <= 0.0 {
            return false;
        }
        let h = uid.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
        ((h % 1_000_000) as f64) < self.pod_failure_rate * 1_000_000.0
    }
}

/// The status of a pod whose containers crash on start (see the module doc).
pub(crate) fn crashed_status(pod: &Pod, running: &Value) -> Value {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    if policy != "Always" {
        return crate::exit::exited_status(pod, 1);
    }
    let now = serde_json::to_value(crate::now()).unwrap();
    let mut status = running.clone();
    let st = &mut status["status"];
    for c in st["conditions"].as_array_mut().into_iter().flatten() {
        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
            c["status"] = json!("False");
            c["reason"] = json!("ContainersNotReady");
        }
    }
    for c in st["containerStatuses"].as_array_mut().into_iter().flatten() {
        let id = c["containerID"].clone();
        c["ready"] = json!(false);
        c["started"] = json!(false);
        c["restartCount"] = json!(1);
        c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
            "message": format!("back-off 10s restarting failed container={} pod={}", c["name"].as_str().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or(""))}});
        c["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now, "containerID": id}});
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_fail_and_recover_on_schedule() {
        let c = Config {
            fail_nodes: 2,
            fail_nodes_after: Duration::from_secs(10),
            recover_nodes_after: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let f = Faults::new(&c);
        let at = |s: u64| f.start + Duration::from_secs(s);
        assert!(!f.node_down_at(0, at(9)));
        assert!(f.node_down_at(0, at(10)) && f.node_down_at(1, at(14)));
        assert!(!f.node_down_at(2, at(12)), "only the first two fail");
        assert!(!f.node_down_at(1, at(15)), "recovered");
        let forever = Faults::new(&Config { fail_nodes: 1, ..Default::default() });
        assert!(forever.node_down_at(0, forever.start + Duration::from_secs(3600)));
    }

    #[test]
    fn a_stable_fraction_of_pods_crash() {
        let f = Faults::new(&Config { pod_failure_rate: 0.25, ..Default::default() });
        let n = (0..4000).filter(|i| f.pod_fails(&format!("uid-{i}"))).count();
        assert!((800..1200).contains(&n), "{n} of 4000 at 25%");
        assert_eq!(f.pod_fails("uid-7"), f.pod_fails("uid-7"));
        assert!(!Faults::new(&Config::default()).pod_fails("uid-7"));
    }

    #[test]
    fn crashing_pods_look_like_crash_loops_or_failures() {
        let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap();
        let running = json!({"status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [{"name": "c", "ready": true, "containerID": "sim://u-c", "state": {"running": {}}}]}});
        let s = crashed_status(&pod, &running);
        assert_eq!(s["status"]["phase"], "Running");
        assert_eq!(s["status"]["conditions"][0]["status"], "False");
        assert_eq!(s["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(s["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
        pod.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        assert_eq!(crashed_status(&pod, &running)["status"]["phase"], "Failed");
    }
}
