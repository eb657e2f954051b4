//! Pods: READY, STATUS and RESTARTS computed as upstream's printPod.

use serde_json::{json, Value};

use super::{arr, int, meta_since, or, s, wide, Column, Printer, AGE, NAME};
use crate::meta;

pub(super) fn printer(kind: &str) -> Option<Printer> {
    (kind == "Pod").then(|| Printer { columns: columns(), cells })
}

fn columns() -> Vec<Column> {
    vec![
        NAME,
        super::col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        super::col("Status", "string", "The aggregate status of the containers in this pod."),
        super::col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        AGE,
        wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"),
        wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled."),
        wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
    ]
}

/// Latest `lastState.terminated.finishedAt` (seconds), if later than `cur`.
fn later_restart(cur: Option<i64>, st: &Value) -> Option<i64> {
    let t = st["lastState"]["terminated"]["finishedAt"].as_str().and_then(meta::parse_rfc3339);
    match (cur, t) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn has_condition(o: &Value, ty: &str) -> bool {
    arr(&o["status"]["conditions"]).iter().any(|c| s(&c["type"]) == ty && s(&c["status"]) == "True")
}

fn cells(o: &Value, now: i64) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let init_specs = arr(&spec["initContainers"]);
    let restartable = |name: &str| init_specs.iter().any(|c| s(&c["name"]) == name && s(&c["restartPolicy"]) == "Always");
    let total = arr(&spec["containers"]).len() + init_specs.iter().filter(|c| s(&c["restartPolicy"]) == "Always").count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<i64> = None;
    let mut last_sidecar_restart: Option<i64> = None;

    let phase = s(&status["phase"]);
    let mut reason = or(s(&status["reason"]), phase).to_string();
    if arr(&status["conditions"]).iter().any(|c| s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, st) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        let cname = s(&st["name"]);
        restarts += int(&st["restartCount"]);
        last_restart = later_restart(last_restart, st);
        let sidecar = restartable(cname);
        if sidecar {
            sidecar_restarts += int(&st["restartCount"]);
            last_sidecar_restart = later_restart(last_sidecar_restart, st);
        }
        let term = &st["state"]["terminated"];
        let waiting = &st["state"]["waiting"];
        if term.is_object() && int(&term["exitCode"]) == 0 {
            continue;
        }
        if sidecar && st["started"].as_bool() == Some(true) {
            if st["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if term.is_object() {
            reason = if !s(&term["reason"]).is_empty() {
                format!("Init:{}", s(&term["reason"]))
            } else if int(&term["signal"]) != 0 {
                format!("Init:Signal:{}", int(&term["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(&term["exitCode"]))
            };
        } else if waiting.is_object() && !s(&waiting["reason"]).is_empty() && s(&waiting["reason"]) != "PodInitializing" {
            reason = format!("Init:{}", s(&waiting["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(o, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for st in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&st["restartCount"]);
            last_restart = later_restart(last_restart, st);
            let waiting = &st["state"]["waiting"];
            let term = &st["state"]["terminated"];
            if waiting.is_object() && !s(&waiting["reason"]).is_empty() {
                reason = s(&waiting["reason"]).to_string();
            } else if term.is_object() && !s(&term["reason"]).is_empty() {
                reason = s(&term["reason"]).to_string();
            } else if term.is_object() {
                reason = if int(&term["signal"]) != 0 {
                    format!("Signal:{}", int(&term["signal"]))
                } else {
                    format!("ExitCode:{}", int(&term["exitCode"]))
                };
            } else if st["ready"].as_bool() == Some(true) && st["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(o, "Ready") { "Running".into() } else { "NotReady".into() };
        }
    }

    let deleting = o["metadata"]["deletionTimestamp"].is_string();
    if deleting && s(&status["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", meta_since(t, now)),
        _ => restarts.to_string(),
    };

    let ip = arr(&status["podIPs"]).first().map(|p| s(&p["ip"])).unwrap_or("");
    let gates = arr(&spec["readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr(&status["conditions"]);
        let ok = gates
            .iter()
            .filter(|g| conds.iter().find(|c| c["type"] == g["conditionType"]).is_some_and(|c| s(&c["status"]) == "True"))
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        super::name(o),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        super::age(o, now),
        json!(or(ip, "<none>")),
        json!(or(s(&spec["nodeName"]), "<none>")),
        json!(or(s(&status["nominatedNodeName"]), "<none>")),
        json!(gates_cell),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cells, headers};
    use serde_json::{json, Value};

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": ago(300)}, "spec": spec, "status": status})
    }

    fn status_of(p: &Value) -> (String, String, String) {
        let c = cells("", "Pod", p);
        (c[1].as_str().unwrap().into(), c[2].as_str().unwrap().into(), c[3].as_str().unwrap().into())
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn columns() {
        let h: Vec<String> = headers("", "Pod").into_iter().map(|h| h.0).collect();
        assert_eq!(h, ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]);
    }

    #[test]
    fn running_and_pending() {
        let spec = json!({"containers": [{"name": "a", "image": "nginx"}], "nodeName": "n1"});
        let p = pod(spec.clone(), json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(200)}}}]}));
        assert_eq!(status_of(&p), t("1/1", "Running", "0"));
        let c = cells("", "Pod", &p);
        assert_eq!(c[4], "5m");
        assert_eq!(&c[5..], &[json!("10.0.0.5"), json!("n1"), json!("<none>"), json!("<none>")]);
        let pending = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}), json!({"phase": "Pending"}));
        assert_eq!(status_of(&pending), t("0/2", "Pending", "0"));
        assert_eq!(cells("", "Pod", &pending)[5], "<none>");
        let bare = pod(json!({"containers": [{"name": "a"}]}), Value::Null);
        assert_eq!(status_of(&bare), t("0/1", "", "0"));
    }

    #[test]
    fn waiting_reasons_and_restarts() {
        let spec = json!({"containers": [{"name": "a"}]});
        let creating = pod(spec.clone(), json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}));
        assert_eq!(status_of(&creating), t("0/1", "ContainerCreating", "0"));
        let crash = pod(spec.clone(), json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(125)}}}]}));
        assert_eq!(status_of(&crash), t("0/1", "CrashLoopBackOff", "5 (2m5s ago)"));
        let signal = pod(spec.clone(), json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}));
        assert_eq!(status_of(&signal), t("0/1", "Signal:9", "0"));
        let exit = pod(spec, json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]}));
        assert_eq!(status_of(&exit), t("0/1", "ExitCode:2", "0"));
    }

    #[test]
    fn completed_and_not_ready() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let done = pod(spec.clone(), json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        assert_eq!(status_of(&done), t("0/2", "Completed", "0"));
        // One container completed, the other still running: Running if the pod is Ready.
        let half = |ready: &str| pod(spec.clone(), json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}], "containerStatuses": [
            {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "ready": true, "state": {"running": {}}}]}));
        assert_eq!(status_of(&half("True")), t("1/2", "Running", "0"));
        assert_eq!(status_of(&half("False")), t("1/2", "NotReady", "0"));
        let evicted = pod(spec, json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(status_of(&evicted).1, "Evicted");
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let first = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 0, "state": {"running": {}}},
            {"name": "i2", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        assert_eq!(status_of(&first), t("0/1", "Init:0/2", "0"));
        let second = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        assert_eq!(status_of(&second).1, "Init:1/2");
        let crash = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}]}));
        assert_eq!(status_of(&crash), t("0/1", "Init:CrashLoopBackOff", "3 (30s ago)"));
        let failed = pod(spec.clone(), json!({"phase": "Failed", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}));
        assert_eq!(status_of(&failed).1, "Init:ExitCode:3");
        let err = pod(spec, json!({"phase": "Failed", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}));
        assert_eq!(status_of(&err).1, "Init:Error");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let spec = json!({"initContainers": [{"name": "side", "restartPolicy": "Always"}], "containers": [{"name": "a"}]});
        let p = pod(spec, json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}], "initContainerStatuses": [
            {"name": "side", "started": true, "ready": true, "restartCount": 2, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(7200)}}}],
            "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}));
        assert_eq!(status_of(&p), t("2/2", "Running", "2 (120m ago)"));
    }

    #[test]
    fn terminating_and_gates() {
        let mut p = pod(json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/ready"}, {"conditionType": "y"}]}),
            json!({"phase": "Running", "conditions": [{"type": "x/ready", "status": "True"}], "containerStatuses": [
                {"name": "a", "ready": true, "state": {"running": {}}}]}));
        assert_eq!(cells("", "Pod", &p)[8], "1/2");
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(status_of(&p).1, "Terminating");
        p["status"]["phase"] = json!("Succeeded");
        p["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        assert_eq!(status_of(&p).1, "Completed");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(status_of(&p).1, "Unknown");
        let gated = pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}));
        assert_eq!(status_of(&gated).1, "SchedulingGated");
    }
}
