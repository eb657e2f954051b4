//! The scheduler end to end: real `skiff server`, `skiff sim` nodes and
//! `skiff scheduler` processes, driven and inspected with real kubectl.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{http_get, wait_until as wait_for, Kubectl, SkiffProc as Proc, SkiffServer};

fn create(k: &Kubectl, dir: &Path, obj: serde_json::Value) {
    let f = dir.join(format!("obj-{}.json", rand::random::<u64>()));
    std::fs::write(&f, obj.to_string()).unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
}

fn pod(name: &str, cpu: &str, spec_extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": name}}, "spec": spec})
}

fn get(k: &Kubectl, name: &str) -> Option<serde_json::Value> {
    let out = k.run(&["get", "pod", name, "-o", "json"]);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The node a pod is bound to, once it is Running (sim drives it).
fn running_on(k: &Kubectl, name: &str) -> String {
    wait_for(&format!("pod {name} Running"), Duration::from_secs(30), || {
        let p = get(k, name)?;
        (p["status"]["phase"] == "Running").then(|| p["spec"]["nodeName"].as_str().unwrap().to_string())
    })
}

// Fields drop in order: the processes (printing their logs if the test
// failed) and the server go before the directory that holds the logs.
struct Cluster {
    procs: Vec<Proc>,
    _server: SkiffServer,
    k: Kubectl,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = SkiffServer::start(&dir.path().join("server"));
        let k = Kubectl::new(33, &server.kubeconfig);
        Cluster { procs: vec![], _server: server, k, dir }
    }
    fn spawn(&mut self, log: &str, args: &[&str]) -> usize {
        let p = Proc::start(&self.k.kubeconfig, &self.dir.path().join(log), args);
        self.procs.push(p);
        self.procs.len() - 1
    }
    fn sim(&mut self, log: &str, args: &[&str]) {
        let mut a = vec!["sim"];
        a.extend_from_slice(args);
        self.spawn(log, &a);
    }
    fn wait_nodes(&self, n: usize) {
        wait_for(&format!("{n} nodes"), Duration::from_secs(90), || (self.k.ok(&["get", "nodes", "-o", "name"]).lines().count() >= n).then_some(()));
    }
}

#[test]
fn pods_land_where_upstream_puts_them_and_pending_reasons_are_upstreams() {
    let mut c = Cluster::start();
    c.sim("sim-w.log", &["--nodes", "2", "--node-prefix", "w-", "--cpu", "4", "--memory", "8Gi", "--labels", "disk=ssd"]);
    c.sim("sim-cp.log", &["--nodes", "1", "--node-prefix", "cp-", "--cpu", "4", "--memory", "8Gi", "--taints", "node-role.kubernetes.io/control-plane:NoSchedule"]);
    c.wait_nodes(3);
    c.spawn("scheduler.log", &["scheduler", "--leader-elect=false"]);
    let (k, dir) = (&c.k, c.dir.path().to_path_buf());

    // nodeSelector: only the w- nodes have disk=ssd.
    create(k, &dir, pod("selector", "100m", serde_json::json!({"nodeSelector": {"disk": "ssd"}})));
    assert!(running_on(k, "selector").starts_with("w-"));
    // Required node affinity + toleration: only the control-plane node.
    create(k, &dir, pod("cp-only", "100m", serde_json::json!({
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["cp-0"]}]}]}}}})));
    assert_eq!(running_on(k, "cp-only"), "cp-0");
    // Untolerated taint: two 3-cpu pods cannot share a 4-cpu node, and cp-0 is tainted → one on each w- node.
    create(k, &dir, pod("big-a", "3", serde_json::json!({})));
    create(k, &dir, pod("big-b", "3", serde_json::json!({})));
    let (a, b) = (running_on(k, "big-a"), running_on(k, "big-b"));
    assert!(a.starts_with("w-") && b.starts_with("w-") && a != b, "{a} {b}");
    // Pod anti-affinity by hostname with a pod on w-0 keeps the pod off w-0.
    let on_w0 = if a == "w-0" { "big-a" } else { "big-b" };
    create(k, &dir, pod("anti", "100m", serde_json::json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": on_w0}}, "topologyKey": "kubernetes.io/hostname"}]}}})));
    assert_ne!(running_on(k, "anti"), "w-0");
    let p = get(k, "selector").unwrap();
    assert!(p["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty()), "{p}");
    let conds: Vec<&str> = p["status"]["conditions"].as_array().unwrap().iter().filter(|c| c["status"] == "True").map(|c| c["type"].as_str().unwrap()).collect();
    for want in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(conds.contains(&want), "{conds:?}");
    }

    // Unschedulable: 2 cpu fits nowhere (w- nodes have < 1 cpu left, cp-0 is tainted).
    create(k, &dir, pod("pending", "2", serde_json::json!({})));
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. \
                preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.";
    let cond = wait_for("PodScheduled=False", Duration::from_secs(30), || {
        let p = get(k, "pending")?;
        p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled" && c["status"] == "False").cloned()
    });
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(cond["message"], want);
    let describe = wait_for("FailedScheduling event", Duration::from_secs(30), || {
        let d = k.ok(&["describe", "pod", "pending"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(describe.contains("Warning  FailedScheduling") && describe.contains("default-scheduler"), "{describe}");
    assert!(describe.contains("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."), "{describe}");
    assert!(describe.contains("Status:           Pending"), "{describe}");

    // A new node that fits: the pending pod is requeued by the node-add event and lands there.
    c.sim("sim-extra.log", &["--nodes", "1", "--node-prefix", "extra-", "--cpu", "4", "--memory", "8Gi"]);
    assert_eq!(running_on(&c.k, "pending"), "extra-0");
    // Deletion: sim finishes the graceful delete.
    c.k.ok(&["delete", "pod", "selector", "--wait=true", "--timeout=30s"]);
    assert!(get(&c.k, "selector").is_none());
}

#[test]
fn preemption_by_priority_class() {
    let mut c = Cluster::start();
    c.sim("sim.log", &["--nodes", "1", "--cpu", "2", "--memory", "8Gi"]);
    c.wait_nodes(1);
    let metrics_port = common::free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    c.spawn("scheduler.log", &["scheduler", "--leader-elect=false", "--metrics-address", &metrics_addr]);
    let (k, dir) = (&c.k, c.dir.path().to_path_buf());
    create(k, &dir, serde_json::json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}, "value": 1000}));
    create(k, &dir, pod("low", "1500m", serde_json::json!({})));
    assert_eq!(running_on(k, "low"), "sim-node-0");
    create(k, &dir, pod("high", "1500m", serde_json::json!({"priorityClassName": "high"})));
    // The low pod is evicted (gracefully, then finished by sim) and the high one takes its place.
    assert_eq!(running_on(k, "high"), "sim-node-0");
    assert!(get(k, "low").is_none(), "the victim is gone");
    let high = get(k, "high").unwrap();
    assert_eq!(high["spec"]["priority"], 1000);
    let events = k.ok(&["get", "events", "-o", "json"]);
    let ev: serde_json::Value = serde_json::from_str(&events).unwrap();
    let reasons: Vec<(&str, &str)> = ev["items"].as_array().unwrap().iter().map(|e| (e["involvedObject"]["name"].as_str().unwrap(), e["reason"].as_str().unwrap())).collect();
    assert!(reasons.contains(&("low", "Preempted")), "{reasons:?}");
    assert!(reasons.contains(&("high", "FailedScheduling")), "{reasons:?}");
    assert!(reasons.contains(&("high", "Scheduled")), "{reasons:?}");

    // Prometheus metrics count what happened.
    let metrics = http_get(metrics_port, "/metrics");
    for want in [
        "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 2",
        "scheduler_preemption_victims_total 1",
        "scheduler_scheduling_attempt_duration_seconds_bucket",
        "leader_election_master_status 1",
    ] {
        assert!(metrics.contains(want), "{want} not in {metrics}");
    }
}

#[test]
fn leader_failover_with_three_schedulers() {
    let mut c = Cluster::start();
    c.sim("sim.log", &["--nodes", "2"]);
    c.wait_nodes(2);
    let fast = ["--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "500ms"];
    let mut pids = vec![];
    for i in 0..3 {
        let mut a = vec!["scheduler"];
        a.extend_from_slice(&fast);
        let idx = c.spawn(&format!("scheduler-{i}.log"), &a);
        pids.push((idx, c.procs[idx].0.id()));
    }
    let holder = |k: &Kubectl| -> Option<u32> {
        let out = k.run(&["get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}"]);
        let id = String::from_utf8(out.stdout).ok()?;
        id.split('_').nth(1)?.parse().ok()
    };
    let first = wait_for("a leader", Duration::from_secs(30), || holder(&c.k));
    assert!(pids.iter().any(|p| p.1 == first));
    create(&c.k, c.dir.path(), pod("before", "100m", serde_json::json!({})));
    running_on(&c.k, "before");
    // Kill the leader without letting it release the lease: another must take over after it expires.
    let idx = pids.iter().find(|p| p.1 == first).unwrap().0;
    c.procs[idx].0.kill().unwrap();
    let second = wait_for("a new leader", Duration::from_secs(30), || holder(&c.k).filter(|h| *h != first));
    assert!(pids.iter().any(|p| p.1 == second));
    create(&c.k, c.dir.path(), pod("after", "100m", serde_json::json!({})));
    running_on(&c.k, "after");
    let transitions = c.k.ok(&["get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.leaseTransitions}"]);
    assert_eq!(transitions, "1");
}

/// `skiff server` runs the scheduler itself (as upstream's control plane
/// does): no separate process, and it holds the kube-scheduler Lease.
#[test]
fn server_runs_the_scheduler_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(&dir.path().join("server"), common::free_port(), &["+scheduler"]);
    let k = Kubectl::new(33, &server.kubeconfig);
    let _sim = Proc::start(&k.kubeconfig, &dir.path().join("sim.log"), &["sim", "--nodes", "2", "--node-prefix", "s-"]);
    wait_for("2 nodes", Duration::from_secs(60), || (k.ok(&["get", "nodes", "-o", "name"]).lines().count() >= 2).then_some(()));
    create(&k, dir.path(), pod("placed", "100m", serde_json::json!({})));
    assert!(running_on(&k, "placed").starts_with("s-"));
    let holder = k.ok(&["get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert!(!holder.trim().is_empty(), "the in-process scheduler holds the lease");
    let events = k.ok(&["get", "events", "--field-selector", "involvedObject.name=placed,reason=Scheduled", "-o", "name"]);
    assert_eq!(events.lines().count(), 1, "one Scheduled event: {events}");
}
