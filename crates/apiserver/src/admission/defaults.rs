//! Defaulting: the values upstream's `SetDefaults_*` functions fill in, so
//! that objects read back look as they do on a real cluster
//! (`kubectl get -o yaml` shows the same fields).

use serde_json::{json, Map, Value};

/// Set `obj[key]` if it is absent or null.
fn def(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), v);
        }
    }
}

fn ensure_obj<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    def(obj, key, json!({}));
    &mut obj[key]
}

/// Apply `f` to each element of `obj[key]`, if it is a list. (Indexing a
/// `Value` mutably would insert a null for a missing key.)
fn each(obj: &mut Value, key: &str, f: impl Fn(&mut Value)) {
    if let Some(a) = obj.get_mut(key).and_then(Value::as_array_mut) {
        a.iter_mut().for_each(f);
    }
}

/// Upstream: `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(p: &mut Value) {
    if !p.is_object() {
        return;
    }
    def(p, "timeoutSeconds", json!(1));
    def(p, "periodSeconds", json!(10));
    def(p, "successThreshold", json!(1));
    def(p, "failureThreshold", json!(3));
    if p["httpGet"].is_object() {
        def(&mut p["httpGet"], "scheme", json!("HTTP"));
        def(&mut p["httpGet"], "path", json!("/"));
    }
    if p["grpc"].is_object() {
        def(&mut p["grpc"], "service", json!(""));
    }
}

fn container(c: &mut Value, pod_level: bool) {
    let image = c["image"].as_str().unwrap_or("").to_string();
    if !image.is_empty() {
        def(c, "imagePullPolicy", json!(pull_policy(&image)));
    }
    def(c, "terminationMessagePath", json!("/dev/termination-log"));
    def(c, "terminationMessagePolicy", json!("File"));
    def(c, "resources", json!({}));
    each(c, "ports", |p| def(p, "protocol", json!("TCP")));
    for pr in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(pr) {
            probe(p);
        }
    }
    // A pod's requests default to its limits (upstream does this for pods,
    // not templates, so a template's spec reads back unchanged).
    if pod_level {
        let limits = c["resources"]["limits"].as_object().cloned();
        if let Some(limits) = limits {
            let req = ensure_obj(&mut c["resources"], "requests");
            for (k, v) in limits {
                def(req, &k, v);
            }
        }
    }
}

fn volume(v: &mut Value) {
    for src in ["configMap", "secret"] {
        if v[src].is_object() {
            def(&mut v[src], "defaultMode", json!(420));
        }
    }
    if v["downwardAPI"].is_object() {
        def(&mut v["downwardAPI"], "defaultMode", json!(420));
    }
    if v["projected"].is_object() {
        def(&mut v["projected"], "defaultMode", json!(420));
    }
    if v["hostPath"].is_object() {
        def(&mut v["hostPath"], "type", json!(""));
    }
}

/// `SetDefaults_PodSpec` and its children. `pod_level` is true for a Pod
/// itself, false for a template inside a workload.
pub fn pod_spec(spec: &mut Value, pod_level: bool) {
    if !spec.is_object() {
        return;
    }
    def(spec, "restartPolicy", json!("Always"));
    def(spec, "dnsPolicy", json!("ClusterFirst"));
    def(spec, "terminationGracePeriodSeconds", json!(30));
    def(spec, "securityContext", json!({}));
    def(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        each(spec, list, |c| container(c, pod_level));
    }
    each(spec, "volumes", volume);
    if pod_level {
        def(spec, "enableServiceLinks", json!(true));
        // The ServiceAccount admission plugin: every pod runs as some account.
        let sa = spec["serviceAccountName"].as_str().or(spec["serviceAccount"].as_str()).filter(|s| !s.is_empty()).unwrap_or("default").to_string();
        spec["serviceAccountName"] = json!(sa);
        spec["serviceAccount"] = json!(sa);
        default_tolerations(spec);
    }
}

/// The DefaultTolerationSeconds admission plugin: tolerate not-ready and
/// unreachable nodes for 300 s, unless the pod already says otherwise. This
/// is what makes pods leave a dead node after five minutes.
fn default_tolerations(spec: &mut Value) {
    let mut tols = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        let covered = tols.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or("");
            let k = t["key"].as_str().unwrap_or("");
            (effect.is_empty() || effect == "NoExecute") && (k == key || (k.is_empty() && t["operator"] == "Exists"))
        });
        if !covered {
            tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec["tolerations"] = Value::Array(tols);
}

/// Kubernetes' QoS class from requests and limits (cpu and memory only).
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"].iter().flat_map(|l| spec[*l].as_array().into_iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let r = &c["resources"];
        for res in ["cpu", "memory"] {
            let req = r["requests"][res].as_str().map(str::to_string).or_else(|| r["requests"][res].as_i64().map(|n| n.to_string()));
            let lim = r["limits"][res].as_str().map(str::to_string).or_else(|| r["limits"][res].as_i64().map(|n| n.to_string()));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            // Requests default to limits, so only limits need be present and equal.
            match (req, lim) {
                (Some(a), Some(b)) if crate::quantity::parse(&a) == crate::quantity::parse(&b) => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn template(t: &mut Value) {
    if t.is_object() {
        pod_spec(&mut t["spec"], false);
    }
}

fn rolling(s: &mut Value, keys: &[(&str, Value)]) {
    let r = ensure_obj(s, "rollingUpdate");
    for (k, v) in keys {
        def(r, k, v.clone());
    }
}

/// Apply the defaults for `kind`. `uid` is the object's (Jobs use it in
/// their generated selector).
pub fn apply(kind: &str, obj: &mut Value) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let uid = obj_uid(obj);
    let spec = &mut obj["spec"];
    match kind {
        "Pod" => {
            pod_spec(spec, true);
            let qos = qos_class(&obj["spec"]);
            let status = ensure_obj(obj, "status");
            def(status, "phase", json!("Pending"));
            status["qosClass"] = json!(qos);
        }
        "PodTemplate" => template(&mut obj["template"]),
        "ReplicationController" => {
            def(spec, "replicas", json!(1));
            // An RC's selector defaults to its template's labels.
            if spec["selector"].as_object().is_none_or(Map::is_empty) {
                if let Some(l) = spec["template"]["metadata"]["labels"].as_object().cloned() {
                    spec["selector"] = Value::Object(l);
                }
            }
            template(&mut spec["template"]);
        }
        "ReplicaSet" => {
            def(spec, "replicas", json!(1));
            template(&mut spec["template"]);
        }
        "Deployment" => {
            def(spec, "replicas", json!(1));
            def(spec, "revisionHistoryLimit", json!(10));
            def(spec, "progressDeadlineSeconds", json!(600));
            let st = ensure_obj(spec, "strategy");
            def(st, "type", json!("RollingUpdate"));
            if st["type"] == "RollingUpdate" {
                rolling(st, &[("maxUnavailable", json!("25%")), ("maxSurge", json!("25%"))]);
            }
            template(&mut spec["template"]);
        }
        "StatefulSet" => {
            def(spec, "replicas", json!(1));
            def(spec, "podManagementPolicy", json!("OrderedReady"));
            def(spec, "revisionHistoryLimit", json!(10));
            let st = ensure_obj(spec, "updateStrategy");
            def(st, "type", json!("RollingUpdate"));
            if st["type"] == "RollingUpdate" {
                rolling(st, &[("partition", json!(0))]);
            }
            let ret = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy");
            def(ret, "whenDeleted", json!("Retain"));
            def(ret, "whenScaled", json!("Retain"));
            each(spec, "volumeClaimTemplates", |t| {
                def(t, "apiVersion", json!("v1"));
                def(t, "kind", json!("PersistentVolumeClaim"));
                let s = ensure_obj(t, "spec");
                def(s, "volumeMode", json!("Filesystem"));
                def(t, "status", json!({"phase": "Pending"}));
            });
            template(&mut spec["template"]);
        }
        "DaemonSet" => {
            def(spec, "revisionHistoryLimit", json!(10));
            let st = ensure_obj(spec, "updateStrategy");
            def(st, "type", json!("RollingUpdate"));
            if st["type"] == "RollingUpdate" {
                rolling(st, &[("maxUnavailable", json!(1)), ("maxSurge", json!(0))]);
            }
            template(&mut spec["template"]);
        }
        "Job" => job_spec(spec, &name, uid),
        "CronJob" => {
            def(spec, "concurrencyPolicy", json!("Allow"));
            def(spec, "suspend", json!(false));
            def(spec, "successfulJobsHistoryLimit", json!(3));
            def(spec, "failedJobsHistoryLimit", json!(1));
            if spec["jobTemplate"]["spec"].is_object() {
                template(&mut spec["jobTemplate"]["spec"]["template"]);
            }
        }
        "Service" => service(spec),
        "Namespace" => {
            // Upstream labels every namespace with its own name, immutably.
            let labels = ensure_obj(ensure_obj(obj, "metadata"), "labels");
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        "Secret" => def(obj, "type", json!("Opaque")),
        "PriorityClass" => def(obj, "preemptionPolicy", json!("PreemptLowerPriority")),
        "PersistentVolumeClaim" => {
            def(spec, "volumeMode", json!("Filesystem"));
            def(obj, "status", json!({"phase": "Pending"}));
        }
        "PersistentVolume" => {
            def(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            def(spec, "volumeMode", json!("Filesystem"));
            def(obj, "status", json!({"phase": "Pending"}));
        }
        _ => {}
    }
    prune_nulls(obj);
}

/// Drop null members. The typed round trip before defaulting has already
/// removed every null a client sent, so any null now is a placeholder that
/// indexing a missing key inserted, not data.
fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

fn obj_uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

/// Job defaults, including the selector upstream generates from the Job's
/// uid (unless `manualSelector`), and the labels it puts on the template.
fn job_spec(spec: &mut Value, name: &str, uid: String) {
    if !spec.is_object() {
        return;
    }
    let (c, p) = (spec["completions"].as_i64(), spec["parallelism"].as_i64());
    if c.is_none() && p.is_none() {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    def(spec, "parallelism", json!(1));
    def(spec, "backoffLimit", json!(6));
    def(spec, "completionMode", json!("NonIndexed"));
    def(spec, "suspend", json!(false));
    def(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if spec["manualSelector"] != json!(true) && !uid.is_empty() && spec["selector"].is_null() {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let meta = ensure_obj(ensure_obj(&mut spec["template"], "metadata"), "labels");
        for (k, v) in [("batch.kubernetes.io/controller-uid", &uid), ("batch.kubernetes.io/job-name", &name.to_string()), ("controller-uid", &uid), ("job-name", &name.to_string())] {
            meta[k] = json!(v);
        }
    }
    template(&mut spec["template"]);
}

fn service(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    def(spec, "type", json!("ClusterIP"));
    def(spec, "sessionAffinity", json!("None"));
    let ty = spec["type"].as_str().unwrap_or("").to_string();
    if ty != "ExternalName" {
        def(spec, "ipFamilies", json!(["IPv4"]));
        def(spec, "ipFamilyPolicy", json!("SingleStack"));
        def(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        def(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        def(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    each(spec, "ports", |p| {
        def(p, "protocol", json!("TCP"));
        let port = p["port"].clone();
        def(p, "targetPort", port);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies() {
        assert_eq!(pull_policy("busybox"), "Always");
        assert_eq!(pull_policy("busybox:latest"), "Always");
        assert_eq!(pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(pull_policy("localhost:5000/busybox:1"), "IfNotPresent");
        assert_eq!(pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pod_defaults() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply("Pod", &mut pod);
        let s = &pod["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["serviceAccountName"], "default");
        assert_eq!(s["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][0]["resources"]["requests"]["cpu"], "1");
        assert_eq!(s["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(s["tolerations"][0]["tolerationSeconds"], 300);
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        assert_eq!(pod["status"]["phase"], "Pending");
    }

    #[test]
    fn tolerations_not_duplicated() {
        let mut pod = json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn qos() {
        let c = |r: Value| json!({"containers": [{"resources": r}]});
        assert_eq!(qos_class(&c(json!({}))), "BestEffort");
        assert_eq!(qos_class(&c(json!({"requests": {"cpu": "100m"}}))), "Burstable");
        assert_eq!(qos_class(&c(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&c(json!({"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&c(json!({"limits": {"cpu": "1"}}))), "Burstable");
    }

    #[test]
    fn workload_defaults() {
        let mut d = json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["replicas"], 1);
        assert!(d["spec"]["template"]["spec"].get("enableServiceLinks").is_none());
        let mut j = json!({"metadata": {"name": "j", "uid": "u1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}});
        apply("Job", &mut j);
        assert_eq!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], "u1");
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        assert_eq!(j["spec"]["completions"], 1);
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("Service", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
    }
}
#[cfg(test)]
mod idempotence {
    use super::*;

    /// Defaulting then the typed round trip must be a fixed point, or every
    /// no-op update would change the stored object (and bump generation).
    #[test]
    fn defaults_survive_the_typed_round_trip() {
        for (kind, plural, group, obj) in [
            ("Deployment", "deployments", "apps", json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": 80}}}], "volumes": [{"name": "v", "configMap": {"name": "c"}}]}}}})),
            ("Pod", "pods", "", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})),
            ("Service", "services", "", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})),
            ("StatefulSet", "statefulsets", "apps", json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"selector": {}, "template": {"spec": {"containers": []}}, "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {}}]}})),
            ("Job", "jobs", "batch", json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}})),
        ] {
            let res = crate::resources::RESOURCES.iter().find(|r| r.plural == plural && r.group == group).unwrap();
            let mut o = obj.clone();
            apply(kind, &mut o);
            let (typed, _) = crate::typed::check(res, &o).unwrap();
            let mut again = typed.clone();
            apply(kind, &mut again);
            assert_eq!(o, typed, "{kind}: the typed round trip changed defaulted fields");
            assert_eq!(typed, again, "{kind}: defaulting is not idempotent");
        }
    }
}
