//! End to end: the workload controllers (StatefulSet, Job, DaemonSet,
//! CronJob) inside `skiff server`, with a `skiff scheduler` and `skiff sim`
//! nodes that drive bound pods to Running/Ready (and, for Jobs, to an exit
//! through the sim.skiff.dev/exit-* annotations), all driven with real kubectl.

mod common;

use std::time::{Duration, Instant};

use common::{Kubectl, SkiffProc, SkiffServer};
use serde_json::{json, Value};

struct Cluster {
    _server: SkiffServer,
    dir: tempfile::TempDir,
    k: Kubectl,
    _procs: Vec<SkiffProc>,
}

impl Cluster {
    /// A server, a scheduler and `nodes` sim nodes whose pods start after `startup`.
    fn start(nodes: usize, startup: &str) -> Cluster {
        Self::start_with(nodes, startup, &[])
    }

    fn start_with(nodes: usize, startup: &str, sim_extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = SkiffServer::start(&dir.path().join("server"));
        let k = Kubectl::new(33, &server.kubeconfig);
        let kc = server.kubeconfig.clone();
        let n = nodes.to_string();
        let mut sim = vec!["sim", "--nodes", &n, "--pod-startup-delay", startup];
        sim.extend_from_slice(sim_extra);
        let procs = vec![
            SkiffProc::start(&kc, &dir.path().join("scheduler.log"), &["scheduler", "--leader-elect=false"]),
            SkiffProc::start(&kc, &dir.path().join("sim.log"), &sim),
        ];
        let c = Cluster { _server: server, dir, k, _procs: procs };
        wait_for("nodes", Duration::from_secs(60), || c.k.ok(&["get", "nodes", "-o", "name"]).lines().count() >= nodes);
        wait_for("default service account", Duration::from_secs(90), || c.k.run(&["get", "sa", "default"]).status.success());
        c
    }

    /// One more `skiff sim` process (e.g. differently labelled or tainted nodes).
    fn sim(&mut self, log: &str, args: &[&str]) {
        let mut a = vec!["sim"];
        a.extend_from_slice(args);
        self._procs.push(SkiffProc::start(&self.k.kubeconfig, &self.dir.path().join(log), &a));
    }

    fn create(&self, obj: Value) {
        let f = self.dir.path().join(format!("obj-{}.json", rand::random::<u64>()));
        std::fs::write(&f, obj.to_string()).unwrap();
        self.k.ok(&["create", "-f", f.to_str().unwrap()]);
    }

    fn get(&self, what: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(what);
        a.extend(["-o", "json"]);
        let out = self.k.run(&a);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    fn jp(&self, what: &[&str], path: &str) -> String {
        let mut a = vec!["get"];
        a.extend_from_slice(what);
        let p = format!("jsonpath={path}");
        a.extend(["-o", &p]);
        self.k.ok(&a)
    }

    /// Pods matching `selector`: name → (phase, ready, terminating, labels).
    fn pods(&self, selector: &str) -> Vec<Value> {
        self.get(&["pods", "-l", selector]).map(|v| v["items"].as_array().unwrap().clone()).unwrap_or_default()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn name(p: &Value) -> &str {
    p["metadata"]["name"].as_str().unwrap()
}

fn running_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"].as_array().is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn label<'a>(p: &'a Value, k: &str) -> &'a str {
    p["metadata"]["labels"][k].as_str().unwrap_or("")
}

fn container(image: &str) -> Value {
    json!([{"name": "c", "image": image}])
}

fn sts(name: &str, replicas: i32, extra: Value) -> Value {
    let mut spec = json!({
        "replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": container("nginx:1.25")}},
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec})
}

/// OrderedReady: a pod exists only if every lower ordinal is Running and Ready.
fn assert_ordered(pods: &[Value], set: &str) {
    for p in pods {
        let ord: usize = name(p).strip_prefix(&format!("{set}-")).unwrap().parse().unwrap();
        for q in pods {
            let o: usize = name(q).strip_prefix(&format!("{set}-")).unwrap().parse().unwrap();
            if o < ord {
                assert!(running_ready(q) || !p["metadata"]["deletionTimestamp"].is_null(), "{} exists while {} is not ready", name(p), name(q));
            }
        }
        for o in 0..ord {
            assert!(pods.iter().any(|q| name(q) == format!("{set}-{o}")), "{} exists without {set}-{o}", name(p));
        }
    }
}

#[test]
fn statefulset_ordered_identity_claims_rolling_update_partition_and_scale_down() {
    let c = Cluster::start(2, "1s");
    c.create(sts("web", 3, json!({
        "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"},
        "revisionHistoryLimit": 0,
    })));
    // Created one at a time, each after its predecessor is Running and Ready.
    wait_for("3 ready", Duration::from_secs(60), || {
        let pods = c.pods("app=web");
        assert_ordered(&pods, "web");
        pods.len() == 3 && pods.iter().all(running_ready)
    });
    let out = c.k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    // The API server defaults rollingUpdate.partition to 0, so kubectl reports the partitioned form.
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");
    let rev1 = c.jp(&["sts", "web"], "{.status.updateRevision}");
    assert_eq!(c.jp(&["sts", "web"], "{.status.currentRevision}"), rev1);
    assert_eq!(c.jp(&["controllerrevision", &rev1], "{.revision}"), "1");
    assert_eq!(c.jp(&["sts", "web"], "{.status.replicas} {.status.readyReplicas} {.status.availableReplicas} {.status.currentReplicas} {.status.updatedReplicas}"), "3 3 3 3 3");
    for p in c.pods("app=web") {
        let n = name(&p).to_string();
        assert_eq!(label(&p, "statefulset.kubernetes.io/pod-name"), n);
        assert_eq!(label(&p, "apps.kubernetes.io/pod-index"), n.strip_prefix("web-").unwrap());
        assert_eq!(label(&p, "controller-revision-hash"), rev1);
        assert_eq!(p["spec"]["hostname"], n.as_str());
        assert_eq!(p["spec"]["subdomain"], "web");
        let claim = format!("www-{n}");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "www").unwrap()["persistentVolumeClaim"]["claimName"], claim.as_str());
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        // whenDeleted=Retain: the claim has no owner.
        assert_eq!(c.jp(&["pvc", &claim], "{.metadata.labels.app} {.metadata.ownerReferences}"), "web ");
    }

    // A rolling update replaces pods from the highest ordinal down, one at a time.
    let uids = |c: &Cluster| -> Vec<(String, String)> { c.pods("app=web").iter().map(|p| (name(p).to_string(), p["metadata"]["uid"].as_str().unwrap().to_string())).collect() };
    let before = uids(&c);
    c.k.ok(&["set", "image", "sts/web", "c=nginx:1.26"]);
    let mut order: Vec<String> = vec![];
    wait_for("rolled", Duration::from_secs(90), || {
        let pods = c.pods("app=web");
        let terminating: Vec<_> = pods.iter().filter(|p| !p["metadata"]["deletionTimestamp"].is_null()).collect();
        assert!(terminating.len() <= 1, "more than one pod replaced at a time");
        for p in &pods {
            let n = name(p).to_string();
            let was = before.iter().find(|(b, _)| *b == n).map(|(_, u)| u.as_str());
            if was != p["metadata"]["uid"].as_str() && !order.contains(&n) {
                order.push(n);
            }
        }
        order.len() == 3 && pods.len() == 3 && pods.iter().all(running_ready)
    });
    assert_eq!(order, ["web-2", "web-1", "web-0"]);
    let out = c.k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete: 3 new pods"), "{out}");
    let rev2 = c.jp(&["sts", "web"], "{.status.updateRevision}");
    assert_ne!(rev2, rev1);
    wait_for("current = update", Duration::from_secs(20), || c.jp(&["sts", "web"], "{.status.currentRevision}") == rev2);
    assert!(c.pods("app=web").iter().all(|p| label(p, "controller-revision-hash") == rev2 && p["spec"]["containers"][0]["image"] == "nginx:1.26"));

    // Partition 2: only web-2 moves to the new revision.
    c.k.ok(&["patch", "sts", "web", "-p", r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#]);
    c.k.ok(&["set", "image", "sts/web", "c=nginx:1.27"]);
    let out = c.k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete: 1 new pods have been updated"), "{out}");
    let rev3 = c.jp(&["sts", "web"], "{.status.updateRevision}");
    std::thread::sleep(Duration::from_secs(2));
    let pods = c.pods("app=web");
    let revs: Vec<(&str, &str)> = pods.iter().map(|p| (name(p), label(p, "controller-revision-hash"))).collect();
    assert_eq!(revs, [("web-0", rev2.as_str()), ("web-1", rev2.as_str()), ("web-2", rev3.as_str())]);
    assert_eq!(c.jp(&["sts", "web"], "{.status.currentRevision} {.status.updatedReplicas} {.status.currentReplicas}"), format!("{rev2} 1 2"));
    // A deleted old-revision pod below the partition comes back at the current revision.
    let old_uid = c.jp(&["pod", "web-0"], "{.metadata.uid}");
    c.k.ok(&["delete", "pod", "web-0", "--wait=false"]);
    wait_for("web-0 back", Duration::from_secs(90), || {
        c.get(&["pod", "web-0"]).is_some_and(|p| p["metadata"]["uid"] != old_uid.as_str() && running_ready(&p) && label(&p, "controller-revision-hash") == rev2)
    });
    assert_eq!(c.jp(&["pod", "web-0"], "{.spec.containers[0].image}"), "nginx:1.26");
    // revisionHistoryLimit 0: revisions no pod uses (and neither current nor update) are pruned.
    wait_for("history pruned", Duration::from_secs(20), || c.k.run(&["get", "controllerrevision", &rev1]).status.code() == Some(1));
    assert!(c.k.run(&["get", "controllerrevision", &rev2]).status.success());

    // Scale down to 1: web-2 goes before web-1; whenScaled=Delete makes the pod own its claim.
    c.k.ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_for("scaled down", Duration::from_secs(60), || {
        let pods = c.pods("app=web");
        if pods.iter().any(|p| name(p) == "web-1" && !p["metadata"]["deletionTimestamp"].is_null()) {
            assert!(!pods.iter().any(|p| name(p) == "web-2"), "web-1 deleted before web-2 was gone");
        }
        pods.len() == 1
    });
    let owners = c.get(&["pvc", "www-web-2"]).map(|v| v["metadata"]["ownerReferences"].clone());
    // The claim is either already collected, or owned by the pod that went away.
    if let Some(o) = owners {
        assert_eq!((o[0]["kind"].as_str(), o[0]["name"].as_str()), (Some("Pod"), Some("web-2")), "{o}");
    }
    assert!(c.k.run(&["get", "pvc", "www-web-0"]).status.success());
    wait_for("status 1", Duration::from_secs(20), || c.jp(&["sts", "web"], "{.status.replicas} {.status.readyReplicas}") == "1 1");
    let _ = c.log("sim.log");
}

#[test]
fn statefulset_parallel_and_on_delete() {
    let c = Cluster::start(1, "2s");
    c.create(sts("par", 3, json!({"podManagementPolicy": "Parallel", "updateStrategy": {"type": "OnDelete"},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]})));
    // Parallel: all three exist before any is running (sim starts them after 2s).
    wait_for("3 pods", Duration::from_secs(30), || c.pods("app=par").len() == 3);
    assert!(c.pods("app=par").iter().filter(|p| running_ready(p)).count() < 3, "pods were created in parallel, not one by one");
    wait_for("3 ready", Duration::from_secs(30), || c.pods("app=par").iter().filter(|p| running_ready(p)).count() == 3);
    // whenDeleted=Delete: the claims are owned by the set.
    assert_eq!(c.jp(&["pvc", "data-par-1"], "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"), "StatefulSet/par");
    let rev1 = c.jp(&["sts", "par"], "{.status.updateRevision}");
    // OnDelete: nothing changes until a pod is deleted; the new pod has the new revision.
    c.k.ok(&["set", "image", "sts/par", "c=nginx:1.26"]);
    wait_for("new update revision", Duration::from_secs(20), || c.jp(&["sts", "par"], "{.status.updateRevision}") != rev1);
    std::thread::sleep(Duration::from_secs(2));
    assert!(c.pods("app=par").iter().all(|p| label(p, "controller-revision-hash") == rev1));
    let err = String::from_utf8(c.k.run(&["rollout", "status", "sts/par", "--timeout=5s"]).stderr).unwrap();
    assert!(err.contains("rollout status is only available for RollingUpdate strategy type"), "{err}");
    // --wait=false: sim finishes a deletion within milliseconds and the controller recreates the
    // pod at once, so kubectl's own wait (GET, then a list by name) can see only the new pod.
    c.k.ok(&["delete", "pod", "par-1", "--wait=false"]);
    let rev2 = c.jp(&["sts", "par"], "{.status.updateRevision}");
    wait_for("par-1 updated", Duration::from_secs(30), || c.get(&["pod", "par-1"]).is_some_and(|p| running_ready(&p) && label(&p, "controller-revision-hash") == rev2));
    assert_eq!(c.jp(&["pod", "par-1"], "{.spec.containers[0].image}"), "nginx:1.26");
    assert_eq!(c.jp(&["pod", "par-0"], "{.metadata.labels.controller-revision-hash}"), rev1);
    wait_for("status", Duration::from_secs(20), || c.jp(&["sts", "par"], "{.status.updatedReplicas} {.status.currentReplicas}") == "1 2");
}

fn job(name: &str, spec: Value, exit_after: &str, exit_code: i32) -> Value {
    let mut s = json!({"template": {"metadata": {"annotations": {"sim.skiff.dev/exit-after": exit_after, "sim.skiff.dev/exit-code": exit_code.to_string()}},
        "spec": {"restartPolicy": "Never", "containers": container("busybox")}}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": s})
}

fn conditions(c: &Cluster, job: &str) -> String {
    c.jp(&["job", job], "{range .status.conditions[*]}{.type}={.reason} {end}")
}

#[test]
fn job_completions_parallelism_indexed_and_ttl() {
    let c = Cluster::start(2, "0s");
    // 4 completions, 2 at a time; each pod exits 0 after 1s.
    c.create(job("work", json!({"completions": 4, "parallelism": 2, "ttlSecondsAfterFinished": 3}), "1s", 0));
    let mut max_active = 0;
    wait_for("complete", Duration::from_secs(90), || {
        let active = c.pods("job-name=work").iter().filter(|p| p["status"]["phase"] != "Succeeded" && p["status"]["phase"] != "Failed").count();
        max_active = max_active.max(active);
        c.jp(&["job", "work"], "{.status.conditions[?(@.type==\"Complete\")].status}") == "True"
    });
    assert!(max_active <= 2, "parallelism exceeded: {max_active}");
    assert_eq!(conditions(&c, "work"), "SuccessCriteriaMet=CompletionsReached Complete=CompletionsReached ");
    assert_eq!(c.jp(&["job", "work"], "{.status.succeeded} {.status.failed} {.status.active}"), "4 0 0");
    assert!(!c.jp(&["job", "work"], "{.status.completionTime}").is_empty());
    let pods = c.pods("job-name=work");
    assert_eq!(pods.len(), 4);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert!(p["metadata"]["finalizers"].is_null(), "tracking finalizer left on {}", name(p));
        assert!(name(p).starts_with("work-"));
    }
    // ttlSecondsAfterFinished: deleted (foreground) 3s after finishing.
    wait_for("ttl", Duration::from_secs(60), || c.get(&["job", "work"]).is_none_or(|j| !j["metadata"]["deletionTimestamp"].is_null()));

    // Indexed: one pod per index, with the index annotation, label, hostname and env var.
    c.create(job("idx", json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}), "1s", 0));
    wait_for("indexed complete", Duration::from_secs(60), || c.jp(&["job", "idx"], "{.status.conditions[?(@.type==\"Complete\")].status}") == "True");
    assert_eq!(c.jp(&["job", "idx"], "{.status.completedIndexes} {.status.succeeded}"), "0-2 3");
    let mut idx: Vec<String> = c.pods("job-name=idx").iter().map(|p| {
        let i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"].as_str().unwrap().to_string();
        assert_eq!(label(p, "batch.kubernetes.io/job-completion-index"), i);
        assert_eq!(p["spec"]["hostname"], format!("idx-{i}").as_str());
        assert!(name(p).starts_with(&format!("idx-{i}-")));
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "metadata.annotations['batch.kubernetes.io/job-completion-index']");
        i
    }).collect();
    idx.sort();
    assert_eq!(idx, ["0", "1", "2"]);
}

#[test]
fn job_backoff_limit_and_active_deadline() {
    let c = Cluster::start(1, "0s");
    // Every pod fails: backoffLimit 1 allows 2 failures' worth of pods, then FailureTarget and Failed.
    c.create(job("fails", json!({"backoffLimit": 1}), "500ms", 1));
    // A pod that would run for 10 minutes, with a 3s deadline.
    c.create(job("slow", json!({"activeDeadlineSeconds": 3}), "600s", 0));
    wait_for("deadline", Duration::from_secs(60), || c.jp(&["job", "slow"], "{.status.conditions[?(@.type==\"Failed\")].status}") == "True");
    assert_eq!(conditions(&c, "slow"), "FailureTarget=DeadlineExceeded Failed=DeadlineExceeded ");
    assert!(c.pods("job-name=slow").iter().all(|p| !p["metadata"]["deletionTimestamp"].is_null() || p["status"]["phase"] == "Failed") || c.pods("job-name=slow").is_empty());
    wait_for("backoff limit", Duration::from_secs(90), || c.jp(&["job", "fails"], "{.status.conditions[?(@.type==\"Failed\")].status}") == "True");
    assert_eq!(conditions(&c, "fails"), "FailureTarget=BackoffLimitExceeded Failed=BackoffLimitExceeded ");
    assert_eq!(c.jp(&["job", "fails"], "{.status.failed} {.status.succeeded} {.status.active}"), "2 0 0");
    assert_eq!(c.pods("job-name=fails").len(), 2);
    let msg = c.jp(&["job", "fails"], "{.status.conditions[?(@.type==\"Failed\")].message}");
    assert_eq!(msg, "Job has reached the specified backoff limit");
}

fn ds(name: &str, extra: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": container("fluentd:1")}}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": spec})
}

fn nodes_of(c: &Cluster, sel: &str) -> Vec<String> {
    let mut v: Vec<String> = c.pods(sel).iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string()).collect();
    v.sort();
    v
}

#[test]
fn daemonset_one_pod_per_eligible_node_taints_selectors_and_rolling_update() {
    let mut c = Cluster::start_with(2, "1s", &["--node-prefix", "a-", "--labels", "disk=ssd"]);
    c.sim("sim-t.log", &["--nodes", "1", "--node-prefix", "t-", "--taints", "dedicated=x:NoSchedule", "--pod-startup-delay", "1s"]);
    wait_for("3 nodes", Duration::from_secs(60), || c.k.ok(&["get", "nodes", "-o", "name"]).lines().count() == 3);
    c.create(ds("logs", json!({})));
    let out = c.k.ok(&["rollout", "status", "ds/logs", "--timeout=60s"]);
    assert!(out.contains("daemon set \"logs\" successfully rolled out"), "{out}");
    // Not on the tainted node.
    assert_eq!(nodes_of(&c, "app=logs"), ["a-0", "a-1"]);
    assert_eq!(c.jp(&["ds", "logs"], "{.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.numberAvailable} {.status.updatedNumberScheduled} {.status.numberMisscheduled}"), "2 2 2 2 2 0");
    let p = &c.pods("app=logs")[0];
    let tol: Vec<String> = p["spec"]["tolerations"].as_array().unwrap().iter().map(|t| format!("{}:{}", t["key"].as_str().unwrap(), t["effect"].as_str().unwrap())).collect();
    for want in ["node.kubernetes.io/not-ready:NoExecute", "node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/disk-pressure:NoSchedule", "node.kubernetes.io/memory-pressure:NoSchedule", "node.kubernetes.io/pid-pressure:NoSchedule", "node.kubernetes.io/unschedulable:NoSchedule"] {
        assert!(tol.contains(&want.to_string()), "{want} missing from {tol:?}");
    }
    let pinned = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"][0];
    assert_eq!((pinned["key"].as_str(), pinned["values"][0].as_str()), (Some("metadata.name"), p["spec"]["nodeName"].as_str()));
    assert!(!label(p, "controller-revision-hash").is_empty());
    assert_eq!(label(p, "pod-template-generation"), "1");

    // A toleration for the taint adds the third node.
    c.k.ok(&["patch", "ds", "logs", "--type=json", "-p", r#"[{"op":"add","path":"/spec/template/spec/tolerations","value":[{"key":"dedicated","operator":"Exists"}]}]"#]);
    let out = c.k.ok(&["rollout", "status", "ds/logs", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for("3 daemons", Duration::from_secs(30), || nodes_of(&c, "app=logs") == ["a-0", "a-1", "t-0"]);

    // Rolling update with maxUnavailable 1: never more than one node without an available daemon.
    c.k.ok(&["set", "image", "ds/logs", "c=fluentd:2"]);
    wait_for("rolled", Duration::from_secs(90), || {
        let pods = c.pods("app=logs");
        let avail = pods.iter().filter(|p| running_ready(p)).count();
        assert!(avail >= 2, "more than maxUnavailable=1 daemons down: {avail} available");
        pods.len() == 3 && pods.iter().all(|p| running_ready(p) && p["spec"]["containers"][0]["image"] == "fluentd:2")
    });
    let out = c.k.ok(&["rollout", "status", "ds/logs", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(c.k.ok(&["rollout", "history", "ds/logs"]).lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 3);

    // nodeSelector: only the matching nodes.
    c.create(ds("ssd", json!({"template": {"metadata": {"labels": {"app": "ssd"}}, "spec": {"nodeSelector": {"disk": "ssd"}, "containers": container("x:1"),
        "tolerations": [{"operator": "Exists"}]}}})));
    wait_for("ssd daemons", Duration::from_secs(60), || nodes_of(&c, "app=ssd") == ["a-0", "a-1"]);
    // Labelling a node away removes its daemon.
    c.k.ok(&["label", "node", "a-1", "disk=hdd", "--overwrite"]);
    wait_for("ssd daemon leaves a-1", Duration::from_secs(60), || nodes_of(&c, "app=ssd") == ["a-0"]);
    wait_for("ssd status", Duration::from_secs(20), || c.jp(&["ds", "ssd"], "{.status.desiredNumberScheduled} {.status.numberReady}") == "1 1");
}

#[test]
fn cronjob_runs_on_schedule_manual_jobs_and_history_limit() {
    let c = Cluster::start(1, "0s");
    let tmpl = json!({"metadata": {"labels": {"cron": "tick"}}, "spec": {"template": {"metadata": {"labels": {"cron": "tick"}, "annotations": {"sim.skiff.dev/exit-after": "500ms"}},
        "spec": {"restartPolicy": "Never", "containers": container("busybox")}}}});
    c.create(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
        "spec": {"schedule": "*/1 * * * *", "successfulJobsHistoryLimit": 1, "jobTemplate": tmpl}}));
    // Manual runs: kubectl copies the template and points the Job at the CronJob.
    c.k.ok(&["create", "job", "--from=cronjob/tick", "manual-1"]);
    wait_for("manual-1 complete", Duration::from_secs(60), || c.jp(&["job", "manual-1"], "{.status.conditions[?(@.type==\"Complete\")].status}") == "True");
    assert_eq!(c.jp(&["job", "manual-1"], "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}"), "CronJob/tick manual");
    wait_for("lastSuccessfulTime", Duration::from_secs(30), || !c.jp(&["cronjob", "tick"], "{.status.lastSuccessfulTime}").is_empty());
    let succeeded_before = c.jp(&["cronjob", "tick"], "{.status.lastSuccessfulTime}");
    c.k.ok(&["create", "job", "--from=cronjob/tick", "manual-2"]);
    wait_for("manual-2 complete", Duration::from_secs(60), || match c.get(&["job", "manual-2"]) {
        Some(j) => j["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete" && c["status"] == "True")),
        // A scheduled run may finish meanwhile and the history limit prune manual-2: only after a newer success.
        None => c.jp(&["cronjob", "tick"], "{.status.lastSuccessfulTime}") != succeeded_before,
    });
    // successfulJobsHistoryLimit 1: the older finished Job goes.
    wait_for("history limit", Duration::from_secs(30), || c.get(&["job", "manual-1"]).is_none_or(|j| !j["metadata"]["deletionTimestamp"].is_null()));
    // The schedule: within a minute a Job named <cronjob>-<minutes since epoch> appears and is recorded.
    wait_for("scheduled job", Duration::from_secs(90), || !c.jp(&["cronjob", "tick"], "{.status.lastScheduleTime}").is_empty());
    let last = c.jp(&["cronjob", "tick"], "{.status.lastScheduleTime}");
    let out = std::process::Command::new("date").args(["-u", "-d", &last, "+%s"]).output().unwrap();
    let secs: i64 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    assert_eq!(secs % 60, 0, "{last}");
    let job = format!("tick-{}", secs / 60);
    assert_eq!(c.jp(&["job", &job], "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}"), last);
    wait_for("scheduled job complete", Duration::from_secs(60), || c.jp(&["job", &job], "{.status.conditions[?(@.type==\"Complete\")].status}") == "True");
    wait_for("active cleared", Duration::from_secs(30), || c.jp(&["cronjob", "tick"], "{.status.active}").is_empty());
}

fn deployment(name: &str, labels: Value, image: &str, replicas: i32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {"containers": container(image)}}}})
}

/// The pods a Service's selector picks, as `<track>` labels.
fn service_tracks(c: &Cluster, svc: &str) -> Vec<String> {
    let sel = c.jp(&["svc", svc], "{.spec.selector}");
    let sel: serde_json::Map<String, Value> = serde_json::from_str(&sel).unwrap();
    let s: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
    let mut v: Vec<String> = c.pods(&s.join(",")).iter().filter(|p| running_ready(p)).map(|p| label(p, "track").to_string()).collect();
    v.sort();
    v
}

#[test]
fn releases_blue_green_and_canary() {
    let c = Cluster::start(2, "0s");
    // Blue-green: two complete Deployments; the Service's selector flips between them.
    c.create(deployment("blue", json!({"app": "shop", "track": "blue"}), "shop:1", 2));
    c.create(deployment("green", json!({"app": "shop", "track": "green"}), "shop:2", 2));
    for d in ["blue", "green"] {
        c.k.ok(&["rollout", "status", &format!("deploy/{d}"), "--timeout=60s"]);
    }
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop"}, "spec": {"selector": {"app": "shop", "track": "blue"}, "ports": [{"port": 80}]}}));
    assert_eq!(service_tracks(&c, "shop"), ["blue", "blue"]);
    c.k.ok(&["patch", "svc", "shop", "-p", r#"{"spec":{"selector":{"app":"shop","track":"green"}}}"#]);
    assert_eq!(service_tracks(&c, "shop"), ["green", "green"]);
    // Rolling back is the same switch.
    c.k.ok(&["patch", "svc", "shop", "-p", r#"{"spec":{"selector":{"app":"shop","track":"blue"}}}"#]);
    assert_eq!(service_tracks(&c, "shop"), ["blue", "blue"]);

    // Canary by Deployment: a second Deployment shares the Service's labels; traffic splits by replica count.
    c.create(deployment("api-stable", json!({"app": "api", "track": "stable"}), "api:1", 3));
    c.create(deployment("api-canary", json!({"app": "api", "track": "canary"}), "api:2", 1));
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}}));
    for d in ["api-stable", "api-canary"] {
        c.k.ok(&["rollout", "status", &format!("deploy/{d}"), "--timeout=60s"]);
    }
    assert_eq!(service_tracks(&c, "api"), ["canary", "stable", "stable", "stable"]);
    // Promote: the stable Deployment takes the new image, the canary goes.
    c.k.ok(&["set", "image", "deploy/api-stable", "c=api:2"]);
    c.k.ok(&["rollout", "status", "deploy/api-stable", "--timeout=60s"]);
    c.k.ok(&["delete", "deploy", "api-canary"]);
    wait_for("canary gone", Duration::from_secs(60), || service_tracks(&c, "api") == ["stable", "stable", "stable"]);

    // Canary by StatefulSet partition: only ordinals >= partition take the new template.
    c.create(sts("db", 3, json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}})));
    c.k.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    c.k.ok(&["set", "image", "sts/db", "c=nginx:1.26"]);
    let out = c.k.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete: 1 new pods"), "{out}");
    let images = || c.jp(&["pods", "-l", "app=db"], "{range .items[*]}{.metadata.name}={.spec.containers[0].image} {end}");
    assert_eq!(images(), "db-0=nginx:1.25 db-1=nginx:1.25 db-2=nginx:1.26 ");
    // Promote by lowering the partition to 0.
    c.k.ok(&["patch", "sts", "db", "-p", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#]);
    c.k.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    wait_for("all promoted", Duration::from_secs(60), || images() == "db-0=nginx:1.26 db-1=nginx:1.26 db-2=nginx:1.26 ");
}
