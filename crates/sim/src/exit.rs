//! Simulated container exits, so Job-like workloads can finish on sim nodes.
//!
//! Why: sim pods never run a process, so nothing would ever complete. A pod
//! can ask to "exit" with two annotations:
//! - `sim.skiff.dev/exit-after: 2s` (also `500ms`, `1m`): time from Running to the exit;
//! - `sim.skiff.dev/exit-code: 1` (default 0).
//!
//! On exit every container is reported terminated with that code, and the
//! pod goes `Succeeded` (code 0) or `Failed` (otherwise). Simplification: a
//! real kubelet restarts the containers of a `restartPolicy: OnFailure` pod
//! that failed, and of every `Always` pod; sim ignores the annotations on
//! `Always` pods and fails `OnFailure` pods like `Never` ones.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

pub const EXIT_AFTER: &str = "sim.skiff.dev/exit-after";
pub const EXIT_CODE: &str = "sim.skiff.dev/exit-code";

/// When and how the pod should exit, if it asked to.
pub fn planned(pod: &Pod) -> Option<(Duration, i32)> {
    let a = pod.metadata.annotations.as_ref()?;
    let after = parse_duration(a.get(EXIT_AFTER)?)?;
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    if policy == "Always" {
        return None;
    }
    let code = a.get(EXIT_CODE).and_then(|c| c.trim().parse().ok()).unwrap_or(0);
    Some((after, code))
}

/// `500ms`, `2s`, `1m`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(n) = s.strip_suffix("ms") {
        return n.parse().ok().map(Duration::from_millis);
    }
    if let Some(n) = s.strip_suffix('s') {
        return n.parse::<f64>().ok().filter(|v| *v >= 0.0).map(Duration::from_secs_f64);
    }
    if let Some(n) = s.strip_suffix('m') {
        return n.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60));
    }
    s.parse::<f64>().ok().filter(|v| *v >= 0.0).map(Duration::from_secs_f64)
}

/// The status a kubelet reports once every container exited with `code`.
pub fn exited_status(pod: &Pod, code: i32) -> Value {
    let now = serde_json::to_value(crate::now()).unwrap();
    let reason = if code == 0 { "Completed" } else { "Error" };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let started = pod.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| serde_json::to_value(t).unwrap()).unwrap_or(now.clone());
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": format!("sim://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("sim://{uid}-{}", c.name), "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now,
                    "containerID": format!("sim://{uid}-{}", c.name)}},
            })
        })
        .collect();
    let cond = |t: &str, st: &str| json!({"type": t, "status": st, "lastProbeTime": null, "lastTransitionTime": now, "reason": if st == "False" { "PodCompleted" } else { "" }});
    json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": [cond("PodReadyToStartContainers", "False"), cond("Initialized", "True"), cond("Ready", "False"), cond("ContainersReady", "False"), cond("PodScheduled", "True")],
        "containerStatuses": containers,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_plans() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("x"), None);
        let mut p: Pod = serde_json::from_value(json!({"metadata": {"annotations": {EXIT_AFTER: "1s", EXIT_CODE: "3"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}})).unwrap();
        assert_eq!(planned(&p), Some((Duration::from_secs(1), 3)));
        let st = exited_status(&p, 3);
        assert_eq!(st["status"]["phase"], "Failed");
        assert_eq!(st["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);
        p.spec.as_mut().unwrap().restart_policy = Some("Always".into());
        assert_eq!(planned(&p), None);
    }
}
