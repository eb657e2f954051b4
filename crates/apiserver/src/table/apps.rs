//! apps/v1: Deployment, ReplicaSet, StatefulSet, DaemonSet, ControllerRevision.

use serde_json::{json, Value};

use super::{age, arr, col, containers_images, format_label_selector, format_labels, int, name, s, selector_string, wide, Column, Printer, AGE, CONTAINERS_DOC, IMAGES_DOC, NAME};

const READY_DOC: &str = "Number of the pod with ready state";

pub(super) fn printer(kind: &str) -> Option<Printer> {
    let (columns, cells): (Vec<Column>, super::Cells) = match kind {
        "Deployment" => (
            vec![
                NAME,
                col("Ready", "string", READY_DOC),
                col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                AGE,
                wide("Containers", "string", CONTAINERS_DOC),
                wide("Images", "string", IMAGES_DOC),
                wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
            ],
            |o, now| {
                let (c, i) = containers_images(&o["spec"]["template"]["spec"]);
                let st = &o["status"];
                vec![
                    name(o),
                    json!(format!("{}/{}", int(&st["readyReplicas"]), replicas(o))),
                    json!(int(&st["updatedReplicas"])),
                    json!(int(&st["availableReplicas"])),
                    age(o, now),
                    c,
                    i,
                    json!(selector_string(&o["spec"]["selector"])),
                ]
            },
        ),
        "ReplicaSet" => (
            vec![
                NAME,
                col("Desired", "integer", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
                col("Current", "integer", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
                col("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
                AGE,
                wide("Containers", "string", CONTAINERS_DOC),
                wide("Images", "string", IMAGES_DOC),
                wide("Selector", "string", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ],
            |o, now| {
                let (c, i) = containers_images(&o["spec"]["template"]["spec"]);
                let st = &o["status"];
                vec![name(o), json!(replicas(o)), json!(int(&st["replicas"])), json!(int(&st["readyReplicas"])), age(o, now), c, i, json!(format_label_selector(&o["spec"]["selector"]))]
            },
        ),
        "StatefulSet" => (
            vec![NAME, col("Ready", "string", READY_DOC), AGE, wide("Containers", "string", CONTAINERS_DOC), wide("Images", "string", IMAGES_DOC)],
            |o, now| {
                let (c, i) = containers_images(&o["spec"]["template"]["spec"]);
                vec![name(o), json!(format!("{}/{}", int(&o["status"]["readyReplicas"]), replicas(o))), age(o, now), c, i]
            },
        ),
        "DaemonSet" => (
            vec![
                NAME,
                col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
                col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
                col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
                col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
                col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
                col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
                AGE,
                wide("Containers", "string", CONTAINERS_DOC),
                wide("Images", "string", IMAGES_DOC),
                wide("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ],
            |o, now| {
                let (c, i) = containers_images(&o["spec"]["template"]["spec"]);
                let st = &o["status"];
                vec![
                    name(o),
                    json!(int(&st["desiredNumberScheduled"])),
                    json!(int(&st["currentNumberScheduled"])),
                    json!(int(&st["numberReady"])),
                    json!(int(&st["updatedNumberScheduled"])),
                    json!(int(&st["numberAvailable"])),
                    json!(format_labels(&o["spec"]["template"]["spec"]["nodeSelector"])),
                    age(o, now),
                    c,
                    i,
                    json!(format_label_selector(&o["spec"]["selector"])),
                ]
            },
        ),
        "ControllerRevision" => (
            vec![
                NAME,
                col("Controller", "string", "Controller of the object"),
                col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
                AGE,
            ],
            |o, now| vec![name(o), json!(controller_of(o)), json!(int(&o["revision"])), age(o, now)],
        ),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

/// spec.replicas, which defaults to 1.
fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// `kind.group/name` of the controlling owner, `<none>` without one.
fn controller_of(o: &Value) -> String {
    let Some(r) = arr(&o["metadata"]["ownerReferences"]).iter().find(|r| r["controller"].as_bool() == Some(true)) else {
        return "<none>".into();
    };
    let api_version = s(&r["apiVersion"]);
    let group = if api_version.contains('/') { api_version.split('/').next().unwrap_or("") } else { "" };
    let kind = s(&r["kind"]);
    let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    if gk.is_empty() { s(&r["name"]).to_string() } else { format!("{}/{}", gk.to_lowercase(), s(&r["name"])) }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cells, headers};
    use serde_json::json;

    fn names(kind: &str) -> Vec<String> {
        headers("apps", kind).into_iter().map(|h| h.0).collect()
    }

    fn template() -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}], "nodeSelector": {"disk": "ssd"}}})
    }

    #[test]
    fn deployment_and_replicaset() {
        assert_eq!(names("Deployment"), ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(90)}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(cells("apps", "Deployment", &d), [json!("web"), json!("2/3"), json!(3), json!(2), json!("90s"), json!("web,log"), json!("nginx:1.25,busybox"), json!("app=web")]);
        let empty = json!({"metadata": {"name": "d"}, "spec": {"replicas": 0}});
        assert_eq!(cells("apps", "Deployment", &empty)[1..4], [json!("0/0"), json!(0), json!(0)]);
        assert_eq!(names("ReplicaSet"), ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        let rs = json!({"metadata": {"name": "web-1"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}}, "template": template()}, "status": {"replicas": 2, "readyReplicas": 1}});
        let c = cells("apps", "ReplicaSet", &rs);
        assert_eq!(c[1..4], [json!(2), json!(2), json!(1)]);
        assert_eq!(c[7], "app=web,pod-template-hash=abc");
    }

    #[test]
    fn statefulset_daemonset_revision() {
        assert_eq!(names("StatefulSet"), ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]);
        let s = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 1}});
        assert_eq!(cells("apps", "StatefulSet", &s)[1], "1/3");
        assert_eq!(names("DaemonSet"), ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        let ds = json!({"metadata": {"name": "agent", "creationTimestamp": ago(5)}, "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template()},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(cells("apps", "DaemonSet", &ds), [json!("agent"), json!(2), json!(2), json!(1), json!(2), json!(1), json!("disk=ssd"), json!("5s"), json!("web,log"), json!("nginx:1.25,busybox"), json!("app=agent")]);
        assert_eq!(names("ControllerRevision"), ["NAME", "CONTROLLER", "REVISION", "AGE"]);
        let cr = json!({"metadata": {"name": "db-1", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 2});
        assert_eq!(cells("apps", "ControllerRevision", &cr)[1..3], [json!("statefulset.apps/db"), json!(2)]);
        assert_eq!(cells("apps", "ControllerRevision", &json!({"metadata": {"name": "x"}}))[1], "<none>");
    }
}
