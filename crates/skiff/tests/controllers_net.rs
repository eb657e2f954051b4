//! End to end: the Endpoints, EndpointSlice, node lifecycle, node IPAM,
//! PodGC, garbage collector and ReplicationController controllers inside
//! `skiff server`, with `skiff sim` nodes and `skiff scheduler`, driven and
//! inspected with real kubectl.

mod common;

use std::time::Duration;

use common::{wait_until, Kubectl, SkiffProc, SkiffServer};
use serde_json::{json, Value};

struct Cluster {
    server: Option<SkiffServer>,
    dir: tempfile::TempDir,
    k: Kubectl,
    procs: Vec<SkiffProc>,
}

impl Cluster {
    fn start(extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let server = SkiffServer::start_with(&dir.path().join("server"), common::free_port(), extra);
        let k = Kubectl::new(33, &server.kubeconfig);
        Cluster { server: Some(server), dir, k, procs: vec![] }
    }
    fn spawn(&mut self, log: &str, args: &[&str]) -> usize {
        self.procs.push(SkiffProc::start(&self.k.kubeconfig, &self.dir.path().join(log), args));
        self.procs.len() - 1
    }
    fn create(&self, obj: Value) {
        let f = self.dir.path().join(format!("obj-{}.json", rand::random::<u64>()));
        std::fs::write(&f, obj.to_string()).unwrap();
        self.k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
    }
    fn get(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        let out = self.k.run(&a);
        out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
    }
    fn items(&self, args: &[&str]) -> Vec<Value> {
        self.get(args).map(|v| v["items"].as_array().cloned().unwrap_or_default()).unwrap_or_default()
    }
}

fn pod(name: &str, labels: Value, spec_extra: Value) -> Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]});
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec})
}

fn running(c: &Cluster, name: &str) -> Value {
    wait_until(&format!("pod {name} Running"), Duration::from_secs(60), || c.get(&["pod", name]).filter(|p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string()))
}

fn ips(addrs: &Value) -> Vec<String> {
    let mut v: Vec<String> = addrs.as_array().into_iter().flatten().map(|a| a["ip"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

fn slices(c: &Cluster, svc: &str) -> Vec<Value> {
    c.items(&["endpointslices", "-l", &format!("kubernetes.io/service-name={svc}")])
}

/// An endpoint as (ip, ready, serving, terminating).
type EndpointView = (String, bool, bool, bool);

/// Each slice's port numbers and endpoints.
fn slice_view(c: &Cluster, svc: &str) -> Vec<(Vec<i64>, Vec<EndpointView>)> {
    let mut out: Vec<_> = slices(c, svc)
        .iter()
        .map(|s| {
            let ports: Vec<i64> = s["ports"].as_array().into_iter().flatten().map(|p| p["port"].as_i64().unwrap()).collect();
            let mut eps: Vec<_> = s["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let c = &e["conditions"];
                    (e["addresses"][0].as_str().unwrap().to_string(), c["ready"] == true, c["serving"] == true, c["terminating"] == true)
                })
                .collect();
            eps.sort();
            (ports, eps)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn endpoints_and_slices_follow_pods_ports_readiness_and_termination() {
    let mut c = Cluster::start(&[]);
    c.spawn("sim.log", &["sim", "--nodes", "2"]);
    c.spawn("scheduler.log", &["scheduler", "--leader-elect=false"]);
    let named = |port: i64| json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "ports": [{"name": "http", "containerPort": port}]}]});
    c.create(pod("a", json!({"app": "web"}), named(8080)));
    c.create(pod("b", json!({"app": "web"}), named(9090)));
    c.create(pod("other", json!({"app": "other"}), named(8080)));
    let ip_a = running(&c, "a")["status"]["podIP"].as_str().unwrap().to_string();
    let ip_b = running(&c, "b")["status"]["podIP"].as_str().unwrap().to_string();
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}));

    // Endpoints: the named port resolved per pod, so two subsets.
    let ep = wait_until("endpoints of web", Duration::from_secs(30), || c.get(&["endpoints", "web"]).filter(|e| e["subsets"].as_array().is_some_and(|s| s.len() == 2)));
    let subsets = ep["subsets"].as_array().unwrap();
    let by_port = |p: i64| subsets.iter().find(|s| s["ports"][0]["port"] == p).unwrap().clone();
    assert_eq!(ips(&by_port(8080)["addresses"]), [ip_a.as_str()]);
    assert_eq!(ips(&by_port(9090)["addresses"]), [ip_b.as_str()]);
    assert_eq!(by_port(8080)["ports"][0]["name"], "http");
    assert_eq!(by_port(8080)["addresses"][0]["targetRef"]["name"], "a");
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");
    assert_eq!(ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"], "true");
    // Slices: one per port set, labelled, owned by the Service.
    wait_until("two slices", Duration::from_secs(30), || (slice_view(&c, "web").len() == 2).then_some(()));
    let svc_uid = c.get(&["service", "web"]).unwrap()["metadata"]["uid"].clone();
    for s in slices(&c, "web") {
        assert_eq!(s["addressType"], "IPv4");
        assert_eq!(s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
        assert_eq!(s["metadata"]["labels"]["tier"], "front");
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], svc_uid);
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert!(s["metadata"]["name"].as_str().unwrap().starts_with("web-"));
    }
    assert_eq!(slice_view(&c, "web"), [(vec![8080], vec![(ip_a.clone(), true, true, false)]), (vec![9090], vec![(ip_b.clone(), true, true, false)])]);

    // Not ready: notReadyAddresses; slice ready=false serving=false.
    let patch = r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#;
    c.k.ok(&["patch", "pod", "a", "--subresource=status", "--type=merge", "-p", patch]);
    wait_until("a not ready in endpoints", Duration::from_secs(30), || {
        let ep = c.get(&["endpoints", "web"])?;
        let s = ep["subsets"].as_array()?.iter().find(|s| s["ports"][0]["port"] == 8080)?.clone();
        (ips(&s["notReadyAddresses"]) == [ip_a.clone()] && s["addresses"].is_null()).then_some(())
    });
    wait_until("a not ready in slice", Duration::from_secs(30), || (slice_view(&c, "web")[0] == (vec![8080], vec![(ip_a.clone(), false, false, false)])).then_some(()));

    // Terminating (held by a finalizer): out of Endpoints, in the slice as terminating and still serving.
    c.k.ok(&["patch", "pod", "b", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/hold"]}}"#]);
    c.k.ok(&["delete", "pod", "b", "--wait=false"]);
    wait_until("b terminating in slice", Duration::from_secs(30), || (slice_view(&c, "web").get(1) == Some(&(vec![9090], vec![(ip_b.clone(), false, true, true)]))).then_some(()));
    let ep = c.get(&["endpoints", "web"]).unwrap();
    assert!(ep["subsets"].as_array().unwrap().iter().all(|s| s["ports"][0]["port"] != 9090), "{ep}");
    c.k.ok(&["patch", "pod", "b", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    wait_until("b gone from slices", Duration::from_secs(30), || (slice_view(&c, "web").len() == 1).then_some(()));

    // A Service without a selector is left to its user.
    assert!(c.get(&["endpoints", "manual"]).is_none());
    assert!(slices(&c, "manual").is_empty());

    // Headless, without ports: addresses only, hostname from hostname+subdomain, headless label.
    c.create(pod("h", json!({"app": "dns"}), json!({"hostname": "h0", "subdomain": "dns"})));
    let ip_h = running(&c, "h")["status"]["podIP"].as_str().unwrap().to_string();
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}, "spec": {"clusterIP": "None", "selector": {"app": "dns"}}}));
    let ep = wait_until("headless endpoints", Duration::from_secs(30), || c.get(&["endpoints", "dns"]).filter(|e| e["subsets"].is_array()));
    assert_eq!(ips(&ep["subsets"][0]["addresses"]), [ip_h.as_str()]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["hostname"], "h0");
    assert!(ep["subsets"][0]["ports"].is_null());
    assert_eq!(ep["metadata"]["labels"]["service.kubernetes.io/headless"], "");
    let s = wait_until("headless slice", Duration::from_secs(30), || slices(&c, "dns").into_iter().find(|s| s["endpoints"].as_array().is_some_and(|e| !e.is_empty())));
    assert_eq!(s["endpoints"][0]["hostname"], "h0");
    assert_eq!(s["metadata"]["labels"]["service.kubernetes.io/headless"], "");

    // 120 pods: slices of at most 100; Endpoints has them all.
    c.create(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "many"}, "spec": {"replicas": 120,
        "selector": {"matchLabels": {"app": "many"}},
        "template": {"metadata": {"labels": {"app": "many"}}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}));
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "many"}, "spec": {"selector": {"app": "many"}, "ports": [{"port": 80, "targetPort": 8080}]}}));
    wait_until("120 endpoints in slices of at most 100", Duration::from_secs(120), || {
        let mut sizes: Vec<usize> = slice_view(&c, "many").iter().map(|(_, e)| e.len()).collect();
        sizes.sort();
        (sizes.iter().sum::<usize>() == 120).then_some(sizes)
    })
    .iter()
    .for_each(|n| assert!(*n <= 100));
    assert_eq!(slice_view(&c, "many").len(), 2);
    wait_until("120 addresses", Duration::from_secs(30), || (ips(&c.get(&["endpoints", "many"])?["subsets"][0]["addresses"]).len() == 120).then_some(()));

    // No endpoints: one empty placeholder slice.
    c.k.ok(&["scale", "rs", "many", "--replicas=0"]);
    wait_until("placeholder slice", Duration::from_secs(60), || {
        let s = slices(&c, "many");
        (s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(|e| e.is_empty()) && s[0]["ports"].is_null()).then_some(())
    });
    wait_until("empty endpoints", Duration::from_secs(30), || c.get(&["endpoints", "many"])?["subsets"].as_array().is_none_or(|s| s.is_empty()).then_some(()));

    // Deleting the Service removes its Endpoints (controller) and slices (garbage collector).
    c.k.ok(&["delete", "service", "web"]);
    wait_until("endpoints of web gone", Duration::from_secs(30), || c.get(&["endpoints", "web"]).is_none().then_some(()));
    wait_until("slices of web gone", Duration::from_secs(30), || slices(&c, "web").is_empty().then_some(()));

    // The controllers' work queues are on the API server's /metrics.
    let m = c.k.ok(&["get", "--raw", "/metrics"]);
    for q in ["endpoint", "endpoint_slice", "garbage_collector"] {
        let line = m.lines().find(|l| l.starts_with(&format!("workqueue_adds_total{{name=\"{q}\"}}"))).unwrap_or_else(|| panic!("no adds for {q} in {m}"));
        assert!(line.split(' ').nth(1).unwrap().parse::<f64>().unwrap() > 0.0, "{line}");
    }
}

fn node_taints(c: &Cluster, node: &str) -> Vec<String> {
    let n = c.get(&["node", node]).unwrap();
    let mut v: Vec<String> = n["spec"]["taints"].as_array().into_iter().flatten().map(|t| format!("{}:{}", t["key"].as_str().unwrap(), t["effect"].as_str().unwrap())).collect();
    v.sort();
    v
}

fn ready_condition(c: &Cluster, node: &str) -> Value {
    let n = c.get(&["node", node]).unwrap();
    n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone()
}

#[test]
fn dead_node_goes_unknown_is_tainted_and_its_pods_move_after_toleration_seconds() {
    let mut c = Cluster::start(&["--node-monitor-grace-period", "6s", "--node-monitor-period", "1s"]);
    let sim_a = c.spawn("sim-a.log", &["sim", "--nodes", "1", "--node-prefix", "a-", "--lease-duration-seconds", "4"]);
    c.spawn("scheduler.log", &["scheduler", "--leader-elect=false"]);
    wait_until("node a-0", Duration::from_secs(60), || c.get(&["node", "a-0"]));
    let tol5 = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]);
    c.create(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "mover"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "mover"}},
        "template": {"metadata": {"labels": {"app": "mover"}}, "spec": {"tolerations": tol5, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}));
    // A pod with only the API server's default 300 s tolerations.
    c.create(pod("patient", json!({"app": "patient"}), json!({})));
    c.create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mover"}, "spec": {"selector": {"app": "mover"}, "ports": [{"port": 80}]}}));
    running(&c, "patient");
    let first: Vec<String> = wait_until("2 mover pods running on a-0", Duration::from_secs(60), || {
        let pods = c.items(&["pods", "-l", "app=mover"]);
        (pods.len() == 2 && pods.iter().all(|p| p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == "a-0"))
            .then(|| pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect())
    });
    // Healthy: no condition taints; IPAM gave the node a pod CIDR.
    assert!(node_taints(&c, "a-0").is_empty(), "{:?}", node_taints(&c, "a-0"));
    let cidr = wait_until("podCIDR of a-0", Duration::from_secs(30), || c.get(&["node", "a-0"])?["spec"]["podCIDR"].as_str().map(String::from));
    assert!(cidr.starts_with("10.244.") && cidr.ends_with("/24"), "{cidr}");
    c.spawn("sim-b.log", &["sim", "--nodes", "1", "--node-prefix", "b-", "--lease-duration-seconds", "4"]);
    wait_until("node b-0", Duration::from_secs(60), || c.get(&["node", "b-0"]));
    let cidr_b = wait_until("podCIDR of b-0", Duration::from_secs(30), || c.get(&["node", "b-0"])?["spec"]["podCIDR"].as_str().map(String::from));
    assert_ne!(cidr, cidr_b);

    // The node dies without a word.
    c.procs[sim_a].kill();
    wait_until("a-0 Ready=Unknown", Duration::from_secs(30), || (ready_condition(&c, "a-0")["status"] == "Unknown").then_some(()));
    let ready = ready_condition(&c, "a-0");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let n = c.get(&["node", "a-0"]).unwrap();
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cond = n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(cond["status"], "Unknown", "{t}");
    }
    wait_until("unreachable taints", Duration::from_secs(30), || {
        (node_taints(&c, "a-0") == ["node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"]).then_some(())
    });
    assert!(node_taints(&c, "b-0").is_empty());
    // The pods on it are no longer Ready, so the Service stops sending them traffic.
    wait_until("pods on a-0 not ready", Duration::from_secs(30), || {
        let ep = c.get(&["endpoints", "mover"])?;
        (ep["subsets"][0]["addresses"].is_null() && ep["subsets"][0]["notReadyAddresses"].as_array().is_some_and(|a| a.len() == 2)).then_some(())
    });
    // After 5 s of toleration: evicted (DisruptionTarget, deleting) and replaced on b-0.
    wait_until("replacements running on b-0", Duration::from_secs(60), || {
        let pods = c.items(&["pods", "-l", "app=mover"]);
        let fresh: Vec<_> = pods.iter().filter(|p| !first.contains(&p["metadata"]["name"].as_str().unwrap().to_string())).collect();
        (fresh.len() == 2 && fresh.iter().all(|p| p["spec"]["nodeName"] == "b-0" && p["status"]["phase"] == "Running")).then_some(())
    });
    for name in &first {
        // No kubelet finishes the deletion on a dead node: they stay Terminating, as upstream.
        let p = c.get(&["pod", name]).unwrap();
        assert!(p["metadata"]["deletionTimestamp"].is_string(), "{name} not being deleted");
        let dt = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").unwrap().clone();
        assert_eq!(dt["reason"], "DeletionByTaintManager");
    }
    // The pod with the default 300 s toleration is still there.
    let patient = c.get(&["pod", "patient"]).unwrap();
    assert!(patient["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(patient["spec"]["tolerations"].as_array().unwrap().iter().find(|t| t["key"] == "node.kubernetes.io/unreachable").unwrap()["tolerationSeconds"], 300);

    // The node comes back: Ready again, taints gone.
    c.spawn("sim-a2.log", &["sim", "--nodes", "1", "--node-prefix", "a-", "--lease-duration-seconds", "4"]);
    wait_until("a-0 Ready again", Duration::from_secs(30), || (ready_condition(&c, "a-0")["status"] == "True").then_some(()));
    wait_until("taints removed", Duration::from_secs(30), || node_taints(&c, "a-0").is_empty().then_some(()));
}

/// `skiff sim`'s injected failures: a node that dies on schedule (Ready goes
/// Unknown, its pods are not driven) and comes back (Ready again, and the
/// pod bound to it meanwhile starts), and containers that crash.
#[test]
fn sim_injects_node_failures_and_crashing_containers() {
    let mut c = Cluster::start(&["--node-monitor-grace-period", "6s", "--node-monitor-period", "1s"]);
    c.spawn("sim-f.log", &["sim", "--nodes", "2", "--node-prefix", "f-", "--lease-duration-seconds", "4",
        "--fail-nodes", "1", "--fail-nodes-after", "4s", "--recover-nodes-after", "20s"]);
    c.spawn("sim-crash.log", &["sim", "--nodes", "1", "--node-prefix", "crash-", "--pod-failure-rate", "1"]);
    wait_until("sim nodes", Duration::from_secs(60), || (c.get(&["node", "f-1"]).is_some() && c.get(&["node", "crash-0"]).is_some()).then_some(()));

    // Every pod on crash-0 crashes: CrashLoopBackOff (restartPolicy Always), or Failed.
    c.create(pod("crashy", json!({}), json!({"nodeName": "crash-0"})));
    c.create(pod("once", json!({}), json!({"nodeName": "crash-0", "restartPolicy": "Never"})));
    let crashy = wait_until("crashy in a crash loop", Duration::from_secs(30), || {
        let p = c.get(&["pod", "crashy"])?;
        (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(p)
    });
    assert_eq!(crashy["status"]["phase"], "Running");
    assert_eq!(crashy["status"]["containerStatuses"][0]["ready"], false);
    assert_eq!(crashy["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
    wait_until("once Failed", Duration::from_secs(30), || (c.get(&["pod", "once"])?["status"]["phase"] == "Failed").then_some(()));

    // f-0 dies on schedule; f-1 does not.
    wait_until("f-0 Ready=Unknown", Duration::from_secs(30), || (ready_condition(&c, "f-0")["status"] == "Unknown").then_some(()));
    assert_eq!(ready_condition(&c, "f-1")["status"], "True");
    // A pod bound to the dead node is not started...
    c.create(pod("waiting", json!({}), json!({"nodeName": "f-0", "tolerations": [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]})));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.get(&["pod", "waiting"]).unwrap()["status"]["phase"], "Pending");
    // ...until the node is back: Ready again, taints gone, the pod runs.
    wait_until("f-0 Ready again", Duration::from_secs(40), || (ready_condition(&c, "f-0")["status"] == "True").then_some(()));
    running(&c, "waiting");
    wait_until("taints removed", Duration::from_secs(30), || node_taints(&c, "f-0").is_empty().then_some(()));
}

fn cidr_of(c: &Cluster, node: &str) -> Option<String> {
    c.get(&["node", node])?["spec"]["podCIDR"].as_str().map(String::from)
}

fn bare_node(c: &Cluster, name: &str) {
    c.create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}));
}

#[test]
fn node_ipam_allocates_releases_and_recovers_after_restart() {
    let flags = ["--cluster-cidr", "10.100.0.0/23", "--node-cidr-mask-size", "24"];
    let mut c = Cluster::start(&flags);
    bare_node(&c, "n1");
    bare_node(&c, "n2");
    let c1 = wait_until("n1 cidr", Duration::from_secs(30), || cidr_of(&c, "n1"));
    let c2 = wait_until("n2 cidr", Duration::from_secs(30), || cidr_of(&c, "n2"));
    let mut got = [c1.clone(), c2.clone()];
    got.sort();
    assert_eq!(got, ["10.100.0.0/24", "10.100.1.0/24"]);
    assert_eq!(c.get(&["node", "n1"]).unwrap()["spec"]["podCIDRs"], json!([c1]));
    // Full: n3 waits until n1's block is released.
    bare_node(&c, "n3");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cidr_of(&c, "n3"), None);
    c.k.ok(&["delete", "node", "n1"]);
    assert_eq!(wait_until("n3 cidr", Duration::from_secs(30), || cidr_of(&c, "n3")), c1);
    // Restart: the allocations are recovered from the nodes, so n4 gets nothing.
    let port = c.server.as_ref().unwrap().port;
    c.server.take().unwrap().stop();
    let server = SkiffServer::start_with(&c.dir.path().join("server"), port, &flags);
    c.server = Some(server);
    wait_until("API back", Duration::from_secs(30), || c.get(&["nodes"]));
    bare_node(&c, "n4");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(cidr_of(&c, "n4"), None);
    c.k.ok(&["delete", "node", "n2"]);
    assert_eq!(wait_until("n4 cidr", Duration::from_secs(30), || cidr_of(&c, "n4")), c2);
}

fn set_phase(c: &Cluster, name: &str, phase: &str) {
    c.k.ok(&["patch", "pod", name, "--subresource=status", "--type=merge", "-p", &format!(r#"{{"status":{{"phase":"{phase}"}}}}"#)]);
}

#[test]
fn podgc_deletes_orphaned_and_the_oldest_terminated_pods() {
    let c = Cluster::start(&["--terminated-pod-gc-threshold", "2", "--pod-gc-period", "1s"]);
    bare_node(&c, "real");
    c.create(pod("orphan", json!({}), json!({"nodeName": "ghost"})));
    c.create(pod("kept", json!({}), json!({"nodeName": "real"})));
    for (i, phase) in ["Succeeded", "Failed", "Succeeded", "Failed"].iter().enumerate() {
        let name = format!("done-{i}");
        c.create(pod(&name, json!({}), json!({})));
        set_phase(&c, &name, phase);
        // Creation timestamps have second precision: keep the order unambiguous.
        std::thread::sleep(Duration::from_millis(1100));
    }
    wait_until("orphan deleted", Duration::from_secs(30), || c.get(&["pod", "orphan"]).is_none().then_some(()));
    wait_until("two oldest terminated deleted", Duration::from_secs(30), || {
        let names: Vec<String> = c.items(&["pods"]).iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        (names == ["done-2", "done-3", "kept"]).then_some(())
    });
}

fn owner(c: &Cluster, kind: &str, name: &str, block: bool) -> Value {
    let api = match kind {
        "ConfigMap" | "Secret" => "v1",
        "Job" => "batch/v1",
        _ => "apps/v1",
    };
    let uid = c.get(&[&kind.to_lowercase(), name]).unwrap()["metadata"]["uid"].clone();
    json!([{"apiVersion": api, "kind": kind, "name": name, "uid": uid, "blockOwnerDeletion": block}])
}

fn cm(name: &str, owners: Value, finalizers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}})
}

#[test]
fn garbage_collector_background_foreground_and_orphan_for_any_kind() {
    let c = Cluster::start(&[]);
    // Background: a ConfigMap and a Secret owned by a ConfigMap go with it, and so does a grandchild.
    c.create(cm("bg", json!([]), json!([])));
    c.create(cm("bg-child", owner(&c, "ConfigMap", "bg", false), json!([])));
    c.create(cm("bg-grandchild", owner(&c, "ConfigMap", "bg-child", false), json!([])));
    c.create(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bg-secret", "ownerReferences": owner(&c, "ConfigMap", "bg", false)}}));
    c.k.ok(&["delete", "configmap", "bg", "--cascade=background"]);
    wait_until("background cascade", Duration::from_secs(30), || {
        (c.get(&["configmap", "bg-child"]).is_none() && c.get(&["configmap", "bg-grandchild"]).is_none() && c.get(&["secret", "bg-secret"]).is_none()).then_some(())
    });

    // Foreground: the owner waits (foregroundDeletion) for a blocking dependent, here held by a finalizer.
    c.create(cm("fg", json!([]), json!([])));
    c.create(cm("fg-child", owner(&c, "ConfigMap", "fg", true), json!(["example.com/hold"])));
    c.k.ok(&["delete", "configmap", "fg", "--cascade=foreground", "--wait=false"]);
    wait_until("child being deleted", Duration::from_secs(30), || c.get(&["configmap", "fg-child"])?["metadata"]["deletionTimestamp"].is_string().then_some(()));
    let owner_obj = c.get(&["configmap", "fg"]).expect("owner waits for its blocking dependent");
    assert!(owner_obj["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(owner_obj["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    c.k.ok(&["patch", "configmap", "fg-child", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    wait_until("foreground done", Duration::from_secs(30), || (c.get(&["configmap", "fg"]).is_none() && c.get(&["configmap", "fg-child"]).is_none()).then_some(()));

    // Orphan: the dependent stays, without the reference.
    c.create(cm("or", json!([]), json!([])));
    c.create(cm("or-child", owner(&c, "ConfigMap", "or", true), json!([])));
    c.k.ok(&["delete", "configmap", "or", "--cascade=orphan"]);
    wait_until("owner gone", Duration::from_secs(30), || c.get(&["configmap", "or"]).is_none().then_some(()));
    let child = c.get(&["configmap", "or-child"]).expect("orphaned dependent stays");
    assert!(child["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()), "{child}");

    // A dependent with a live and a dead owner keeps living, without the dead reference.
    c.create(cm("live", json!([]), json!([])));
    c.create(cm("dead", json!([]), json!([])));
    let mut refs = owner(&c, "ConfigMap", "live", false).as_array().unwrap().clone();
    refs.extend(owner(&c, "ConfigMap", "dead", false).as_array().unwrap().clone());
    c.create(cm("two-owners", json!(refs), json!([])));
    c.k.ok(&["delete", "configmap", "dead"]);
    wait_until("dead reference dropped", Duration::from_secs(30), || {
        let r = c.get(&["configmap", "two-owners"])?["metadata"]["ownerReferences"].clone();
        (r.as_array()?.len() == 1 && r[0]["name"] == "live").then_some(())
    });
    // Across groups: a Job (batch/v1; no Job controller needed) owning a Pod, deleted in the foreground.
    c.create(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"}, "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}));
    let mut p = pod("batch-pod", json!({"job": "batch"}), json!({}));
    p["metadata"]["ownerReferences"] = owner(&c, "Job", "batch", true);
    c.create(p);
    c.k.ok(&["delete", "job", "batch", "--cascade=foreground"]);
    wait_until("job and its pod gone", Duration::from_secs(30), || (c.get(&["job", "batch"]).is_none() && c.get(&["pod", "batch-pod"]).is_none()).then_some(()));

    // A dependent created for an owner that never existed is collected.
    c.create(cm("dangling", json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "00000000-0000-0000-0000-000000000000"}]), json!([])));
    wait_until("dangling collected", Duration::from_secs(30), || c.get(&["configmap", "dangling"]).is_none().then_some(()));
}

#[test]
fn replication_controller_creates_adopts_scales_and_cascades() {
    let c = Cluster::start(&[]);
    c.create(pod("stray", json!({"app": "legacy"}), json!({})));
    c.create(json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "legacy"}, "spec": {"replicas": 3,
        "selector": {"app": "legacy"},
        "template": {"metadata": {"labels": {"app": "legacy"}}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}));
    wait_until("3 replicas", Duration::from_secs(30), || (c.get(&["rc", "legacy"])?["status"]["replicas"] == 3).then_some(()));
    std::thread::sleep(Duration::from_secs(1));
    let pods = c.items(&["pods", "-l", "app=legacy"]);
    assert_eq!(pods.len(), 3);
    let uid = c.get(&["rc", "legacy"]).unwrap()["metadata"]["uid"].clone();
    for p in &pods {
        let r = &p["metadata"]["ownerReferences"][0];
        assert_eq!((r["kind"].as_str(), r["apiVersion"].as_str(), &r["uid"], r["controller"].as_bool()), (Some("ReplicationController"), Some("v1"), &uid, Some(true)));
    }
    assert!(pods.iter().any(|p| p["metadata"]["name"] == "stray"), "the matching orphan is adopted");
    assert_eq!(c.get(&["rc", "legacy"]).unwrap()["status"]["observedGeneration"], 1);
    c.k.ok(&["scale", "rc", "legacy", "--replicas=1"]);
    wait_until("1 pod", Duration::from_secs(30), || (c.items(&["pods", "-l", "app=legacy"]).len() == 1).then_some(()));
    c.k.ok(&["delete", "rc", "legacy"]);
    wait_until("pods cascaded", Duration::from_secs(30), || c.items(&["pods", "-l", "app=legacy"]).is_empty().then_some(()));
}

#[test]
fn standalone_controller_manager_takes_the_node_flags() {
    let mut c = Cluster::start(&["--disable-controllers"]);
    c.spawn("cm.log", &["controller-manager", "--leader-elect=false", "--node-monitor-grace-period", "3s", "--node-monitor-period", "500ms", "--cluster-cidr", "10.50.0.0/16", "--node-cidr-mask-size", "26"]);
    bare_node(&c, "quiet");
    let now = "2026-01-01T00:00:00Z";
    let status = format!(r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#);
    c.k.ok(&["patch", "node", "quiet", "--subresource=status", "--type=merge", "-p", &status]);
    assert_eq!(wait_until("podCIDR", Duration::from_secs(30), || cidr_of(&c, "quiet")), "10.50.0.0/26");
    // Ready, but nothing renews it: Unknown after the 3 s grace period.
    wait_until("Ready=Unknown", Duration::from_secs(30), || (ready_condition(&c, "quiet")["status"] == "Unknown").then_some(()));
    assert_eq!(ready_condition(&c, "quiet")["reason"], "NodeStatusUnknown");
    // It is the only node: a full disruption, so no NoExecute taint; the NoSchedule one is there.
    wait_until("NoSchedule taint", Duration::from_secs(30), || (node_taints(&c, "quiet") == ["node.kubernetes.io/unreachable:NoSchedule"]).then_some(()));
}

fn has_no_execute(c: &Cluster, node: &str) -> bool {
    node_taints(c, node).iter().any(|t| t == "node.kubernetes.io/unreachable:NoExecute")
}

#[test]
fn no_execute_taints_follow_the_zone_eviction_rate() {
    let mut c = Cluster::start(&["--node-monitor-grace-period", "3s", "--node-monitor-period", "500ms", "--node-eviction-rate", "0.05"]);
    // One healthy node keeps the zone out of full disruption; two silent ones go Unknown together.
    c.spawn("sim.log", &["sim", "--nodes", "1", "--lease-duration-seconds", "4"]);
    wait_until("sim node", Duration::from_secs(60), || c.get(&["node", "sim-node-0"]));
    let now = "2026-01-01T00:00:00Z";
    let status = format!(r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#);
    for n in ["q1", "q2"] {
        bare_node(&c, n);
        c.k.ok(&["patch", "node", n, "--subresource=status", "--type=merge", "-p", &status]);
    }
    // 2 of 3 not ready is still a Normal zone (partial needs more than 2): 0.05 nodes/s, burst 1.
    let first = wait_until("a first NoExecute taint", Duration::from_secs(30), || ["q1", "q2"].into_iter().find(|n| has_no_execute(&c, n)));
    let second = if first == "q1" { "q2" } else { "q1" };
    // The second node goes Unknown in the same monitor pass or the next: its NoSchedule taint
    // arrives at once, its NoExecute one only when the limiter allows (20 s at 0.05/s).
    assert!(!has_no_execute(&c, second), "the second node must wait for the rate limiter");
    wait_until("the second node's NoSchedule taint alone", Duration::from_secs(10), || {
        (node_taints(&c, second) == ["node.kubernetes.io/unreachable:NoSchedule"]).then_some(())
    });
    wait_until("the second NoExecute taint", Duration::from_secs(40), || has_no_execute(&c, second).then_some(()));
    assert!(!has_no_execute(&c, "sim-node-0"));
}
