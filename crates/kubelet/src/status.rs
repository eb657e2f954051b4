//! Pod status from what the runtime reports: container states (with
//! lastState and restartCount from the previous instances), the phase and
//! the four conditions, by upstream's rules (kubelet's getPhase and
//! generateAPIPodStatus, simplified). Pure, so it is unit-tested.

use serde_json::{json, Value};
use skiff_cri as cri;
use skiff_runtime::timefmt::rfc3339;
use std::collections::HashMap;

pub struct Inputs<'a> {
    pub pod: &'a Value,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub start_time: &'a str,
    /// Every instance of each container (oldest first), by container name.
    pub instances: &'a HashMap<String, Vec<cri::ContainerStatus>>,
    /// Why a container is waiting (reason, message), e.g. CrashLoopBackOff.
    pub waiting: &'a HashMap<String, (String, String)>,
    /// Now, as metav1.Time, for condition transition times.
    pub now: &'a str,
    /// Containers with a readiness (or startup) probe: whether it passes.
    pub readiness: &'a HashMap<String, bool>,
    /// Old instances already removed from the runtime, by container name
    /// (they still count as restarts).
    pub pruned: &'a HashMap<String, usize>,
    /// The runtime's CRI name: containerIDs are `<runtime>://<id>`.
    pub runtime: &'a str,
}

const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;

fn terminated(s: &cri::ContainerStatus, runtime: &str) -> Value {
    json!({"terminated": {
        "exitCode": s.exit_code, "reason": s.reason, "startedAt": rfc3339(s.started_at),
        "finishedAt": rfc3339(s.finished_at), "containerID": format!("{runtime}://{}", s.id)}})
}

fn container_status(name: &str, spec: &Value, init: bool, i: &Inputs) -> Value {
    let inst = i.instances.get(name).map(Vec::as_slice).unwrap_or(&[]);
    let last = inst.last();
    let wait = i.waiting.get(name);
    let (state, last_state) = match (last, wait) {
        (Some(l), Some((r, m))) if l.state == EXITED => (json!({"waiting": {"reason": r, "message": m}}), terminated(l, i.runtime)),
        (Some(l), _) if l.state == RUNNING => (json!({"running": {"startedAt": rfc3339(l.started_at)}}), inst.len().checked_sub(2).map(|p| terminated(&inst[p], i.runtime)).unwrap_or(json!({}))),
        (Some(l), _) if l.state == EXITED => (terminated(l, i.runtime), inst.len().checked_sub(2).map(|p| terminated(&inst[p], i.runtime)).unwrap_or(json!({}))),
        (_, Some((r, m))) => (json!({"waiting": {"reason": r, "message": m}}), json!({})),
        _ => (json!({"waiting": {"reason": if init { "PodInitializing" } else { "ContainerCreating" }}}), json!({})),
    };
    let running = last.is_some_and(|l| l.state == RUNNING);
    let ready = if init && !is_sidecar(spec) { last.is_some_and(|l| l.state == EXITED && l.exit_code == 0) } else { running && i.readiness.get(name).copied().unwrap_or(true) };
    let mut s = json!({
        "name": name, "state": state, "lastState": last_state, "ready": ready,
        "restartCount": (inst.len() + i.pruned.get(name).copied().unwrap_or(0)).saturating_sub(1), "image": spec["image"], "imageID": last.map(|l| l.image_ref.clone()).unwrap_or_default(),
        "started": running,
    });
    if let Some(l) = last {
        s["containerID"] = json!(format!("{}://{}", i.runtime, l.id));
    }
    s
}

fn condition(t: &str, ok: bool, reason: Option<&str>, now: &str) -> Value {
    let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// A native sidecar: an init container with restartPolicy Always.
pub fn is_sidecar(c: &Value) -> bool {
    c["restartPolicy"] == "Always"
}

/// Whether every init container has run to success (sidecars: has started).
pub fn initialized(pod: &Value, instances: &HashMap<String, Vec<cri::ContainerStatus>>) -> bool {
    pod["spec"]["initContainers"].as_array().into_iter().flatten().all(|c| {
        let n = c["name"].as_str().unwrap_or("");
        let last = instances.get(n).and_then(|v| v.last());
        if is_sidecar(c) {
            return last.is_some();
        }
        last.is_some_and(|l| l.state == EXITED && l.exit_code == 0)
    })
}

/// The pod phase.
pub fn phase(pod: &Value, instances: &HashMap<String, Vec<cri::ContainerStatus>>) -> &'static str {
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let last = |n: &str| instances.get(n).and_then(|v| v.last());
    if !initialized(pod, instances) {
        let init_failed = pod["spec"]["initContainers"].as_array().into_iter().flatten().filter(|c| !is_sidecar(c)).any(|c| last(c["name"].as_str().unwrap_or("")).is_some_and(|l| l.state == EXITED && l.exit_code != 0));
        return if init_failed && policy == "Never" { "Failed" } else { "Pending" };
    }
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        match last(c["name"].as_str().unwrap_or("")) {
            Some(l) if l.state == RUNNING => running += 1,
            Some(l) if l.state == EXITED => {
                stopped += 1;
                if l.exit_code == 0 {
                    succeeded += 1;
                }
            }
            _ => pending += 1,
        }
    }
    if pending > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match policy {
            "Always" => "Running",
            "OnFailure" if succeeded < stopped => "Running",
            _ if succeeded == stopped => "Succeeded",
            _ => "Failed",
        }
    } else {
        "Pending"
    }
}

/// The whole `status` object for pods/status.
pub fn compute(i: &Inputs) -> Value {
    let pod = i.pod;
    let init: Vec<Value> = pod["spec"]["initContainers"].as_array().into_iter().flatten().map(|c| container_status(c["name"].as_str().unwrap_or(""), c, true, i)).collect();
    let app: Vec<Value> = pod["spec"]["containers"].as_array().into_iter().flatten().map(|c| container_status(c["name"].as_str().unwrap_or(""), c, false, i)).collect();
    let phase = phase(pod, i.instances);
    let inited = initialized(pod, i.instances);
    let all_ready = !app.is_empty() && app.iter().all(|c| c["ready"] == true);
    let done = matches!(phase, "Succeeded" | "Failed");
    let reason = if done { Some("PodCompleted") } else if all_ready { None } else { Some("ContainersNotReady") };
    let conditions = vec![
        condition("PodReadyToStartContainers", !i.pod_ip.is_empty(), None, i.now),
        condition("Initialized", inited || done, if inited || done { None } else { Some("ContainersNotInitialized") }, i.now),
        condition("Ready", all_ready, reason, i.now),
        condition("ContainersReady", all_ready, reason, i.now),
        condition("PodScheduled", true, None, i.now),
    ];
    let mut s = json!({
        "phase": phase, "conditions": conditions, "hostIP": i.host_ip, "hostIPs": [{"ip": i.host_ip}],
        "startTime": i.start_time, "containerStatuses": app, "qosClass": crate::resources::qos_class(pod),
    });
    if !init.is_empty() {
        s["initContainerStatuses"] = json!(init);
    }
    if !i.pod_ip.is_empty() {
        s["podIP"] = json!(i.pod_ip);
        s["podIPs"] = json!([{"ip": i.pod_ip}]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    fn st(id: &str, state: i32, code: i32) -> cri::ContainerStatus {
        cri::ContainerStatus { id: id.into(), state, exit_code: code, reason: if code == 0 { "Completed".into() } else { "Error".into() }, ..Default::default() }
    }
    fn pod(policy: &str) -> Value {
        json!({"metadata": {"uid": "u"}, "spec": {"restartPolicy": policy, "initContainers": [{"name": "i", "image": "b"}], "containers": [{"name": "a", "image": "b"}]}})
    }
    #[test]
    fn phases() {
        let mut m = HashMap::new();
        assert_eq!(phase(&pod("Always"), &m), "Pending");
        m.insert("i".to_string(), vec![st("1", EXITED, 1)]);
        assert_eq!(phase(&pod("Always"), &m), "Pending");
        assert_eq!(phase(&pod("Never"), &m), "Failed");
        m.insert("i".to_string(), vec![st("1", EXITED, 0)]);
        m.insert("a".to_string(), vec![st("2", RUNNING, 0)]);
        assert_eq!(phase(&pod("Always"), &m), "Running");
        m.insert("a".to_string(), vec![st("2", EXITED, 3)]);
        assert_eq!(phase(&pod("Always"), &m), "Running");
        assert_eq!(phase(&pod("OnFailure"), &m), "Running");
        assert_eq!(phase(&pod("Never"), &m), "Failed");
        m.insert("a".to_string(), vec![st("2", EXITED, 0)]);
        assert_eq!(phase(&pod("OnFailure"), &m), "Succeeded");
    }
    #[test]
    fn sidecars_count_as_initialized_once_started() {
        let p = json!({"spec": {"restartPolicy": "Never", "initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}});
        let mut m = HashMap::new();
        assert!(!initialized(&p, &m));
        m.insert("side".to_string(), vec![st("1", RUNNING, 0)]);
        assert!(initialized(&p, &m));
        m.insert("a".to_string(), vec![st("2", EXITED, 0)]);
        assert_eq!(phase(&p, &m), "Succeeded", "a running sidecar does not keep the pod going");
    }
    #[test]
    fn restarts_show_last_state_and_backoff() {
        let p = pod("Always");
        let mut m = HashMap::new();
        m.insert("i".to_string(), vec![st("1", EXITED, 0)]);
        m.insert("a".to_string(), vec![st("2", EXITED, 3), st("3", EXITED, 3)]);
        let mut w = HashMap::new();
        w.insert("a".to_string(), ("CrashLoopBackOff".to_string(), "back-off 10s".to_string()));
        let s = compute(&Inputs { pod: &p, pod_ip: "10.244.0.5", host_ip: "10.0.0.1", start_time: "t", instances: &m, waiting: &w, now: "n", readiness: &HashMap::new(), pruned: &[("a".to_string(), 2)].into(), runtime: "containerd" });
        let a = &s["containerStatuses"][0];
        assert_eq!(a["restartCount"], 3, "two pruned instances plus the two kept");
        assert_eq!(a["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(a["lastState"]["terminated"]["exitCode"], 3);
        assert_eq!(a["lastState"]["terminated"]["containerID"], "containerd://3", "waiting to restart: the last instance is the last state");
        assert_eq!(a["containerID"], "containerd://3");
        assert_eq!(a["ready"], false);
        assert_eq!(s["podIP"], "10.244.0.5");
        assert_eq!(s["initContainerStatuses"][0]["ready"], true);
        let ready = s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ContainersNotReady");
    }
}
