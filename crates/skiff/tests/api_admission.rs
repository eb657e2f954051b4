//! Admission, allocation and subresources through real kubectl: Service
//! cluster IPs and node ports, pod defaulting and priority, binding,
//! graceful deletion, eviction with PodDisruptionBudgets, scale, and
//! validation errors.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::{Kubectl, SkiffServer};

fn create(k: &Kubectl, dir: &Path, name: &str, json: &str) -> std::process::Output {
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, json).unwrap();
    k.run(&["create", "-f", f.to_str().unwrap(), "--validate=false"])
}

fn create_ok(k: &Kubectl, dir: &Path, name: &str, json: &str) {
    let out = create(k, dir, name, json);
    assert!(out.status.success(), "create {name}: {}", String::from_utf8_lossy(&out.stderr));
}

fn create_err(k: &Kubectl, dir: &Path, name: &str, json: &str) -> String {
    let out = create(k, dir, name, json);
    assert!(!out.status.success(), "create {name} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// POST a body to a subresource with `kubectl create --raw`.
fn post_raw(k: &Kubectl, dir: &Path, path: &str, json: &str) -> std::process::Output {
    let f = dir.join("raw.json");
    std::fs::write(&f, json).unwrap();
    k.run(&["create", "--raw", path, "-f", f.to_str().unwrap()])
}

fn jp(k: &Kubectl, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let o = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &o]);
    k.ok(&args)
}

#[test]
fn services_get_unique_cluster_ips_and_node_ports() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--service-node-port-range", "30000-30009"]);
    let k = Kubectl::new(31, &server.kubeconfig);
    assert_eq!(jp(&k, &["svc", "kubernetes"], "{.spec.clusterIP}"), "10.96.0.1");
    let mut ips = HashSet::new();
    for i in 0..12 {
        k.ok(&["create", "service", "clusterip", &format!("s{i}"), "--tcp=80:8080"]);
        let ip = jp(&k, &["svc", &format!("s{i}")], "{.spec.clusterIP}");
        let parsed: std::net::Ipv4Addr = ip.parse().unwrap();
        let o = parsed.octets();
        assert!(o[0] == 10 && (96..112).contains(&o[1]), "{ip} is outside 10.96.0.0/12");
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        assert_eq!(jp(&k, &["svc", &format!("s{i}")], "{.spec.clusterIPs[0]}"), ip);
    }
    assert_eq!(jp(&k, &["svc", "s0"], "{.spec.ports[0].targetPort} {.spec.ports[0].protocol} {.spec.sessionAffinity} {.spec.ipFamilyPolicy}"), "8080 TCP None SingleStack");

    // A requested IP that is taken, or out of range, is a 422 with upstream's words.
    let taken = jp(&k, &["svc", "s0"], "{.spec.clusterIP}");
    let svc = |name: &str, extra: &str| format!(r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"ports":[{{"port":80}}]{extra}}}}}"#);
    let e = create_err(&k, dir.path(), "dup", &svc("dup", &format!(r#","clusterIP":"{taken}""#)));
    assert!(e.contains(&format!("failed to allocate IP {taken}: provided IP is already allocated")), "{e}");
    let e = create_err(&k, dir.path(), "out", &svc("out", r#","clusterIP":"192.168.0.1""#));
    assert!(e.contains("is not in the valid range. The range of valid IPs is 10.96.0.0/12"), "{e}");
    // Deleting a Service frees its IP at once.
    k.ok(&["delete", "svc", "s0"]);
    create_ok(&k, dir.path(), "reuse", &svc("reuse", &format!(r#","clusterIP":"{taken}""#)));
    // Headless services get no IP.
    create_ok(&k, dir.path(), "headless", &svc("headless", r#","clusterIP":"None""#));
    assert_eq!(jp(&k, &["svc", "headless"], "{.spec.clusterIPs[0]}"), "None");

    // Node ports come from the configured range, are unique, and are checked when requested.
    let mut ports = HashSet::new();
    for i in 0..5 {
        k.ok(&["create", "service", "nodeport", &format!("np{i}"), "--tcp=80:80"]);
        let p: u16 = jp(&k, &["svc", &format!("np{i}")], "{.spec.ports[0].nodePort}").parse().unwrap();
        assert!((30000..=30009).contains(&p), "{p}");
        assert!(ports.insert(p), "node port {p} handed out twice");
    }
    let used = *ports.iter().next().unwrap();
    let e = create_err(&k, dir.path(), "npdup", &svc("npdup", &format!(r#","type":"NodePort","ports":[{{"port":80,"nodePort":{used}}}]"#)).replace(r#""ports":[{"port":80}],"#, ""));
    assert!(e.contains(&format!("spec.ports[0].nodePort: Invalid value: {used}: provided port is already allocated")), "{e}");
    let e = create_err(&k, dir.path(), "nprange", &svc("nprange", r#","type":"NodePort","ports":[{"port":80,"nodePort":31000}]"#).replace(r#""ports":[{"port":80}],"#, ""));
    assert!(e.contains("provided port is not in the valid range. The range of valid ports is 30000-30009"), "{e}");
    // Turning a NodePort service into ClusterIP gives its port back; the IP stays.
    let ip = jp(&k, &["svc", "np0"], "{.spec.clusterIP}");
    let p0 = jp(&k, &["svc", "np0"], "{.spec.ports[0].nodePort}");
    k.ok(&["patch", "svc", "np0", "--type=merge", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    assert_eq!(jp(&k, &["svc", "np0"], "{.spec.clusterIP}|{.spec.ports[0].nodePort}"), format!("{ip}|"));
    create_ok(&k, dir.path(), "npre", &svc("npre", &format!(r#","type":"NodePort","ports":[{{"port":80,"nodePort":{p0}}}]"#)).replace(r#""ports":[{"port":80}],"#, ""));
    // The cluster IP is immutable.
    let e = k.err(&["patch", "svc", "np0", "--type=merge", "-p", r#"{"spec":{"clusterIP":"10.96.0.77","clusterIPs":["10.96.0.77"]}}"#]);
    assert!(e.contains("may not change once set"), "{e}");
    // Allocations survive a restart (they are in the store, not in memory).
    drop(k);
    let port = server.port;
    server.stop();
    let server = SkiffServer::start_with(dir.path(), port, &["--service-node-port-range", "30000-30009"]);
    let k = Kubectl::new(31, &server.kubeconfig);
    let e = create_err(&k, dir.path(), "dup2", &svc("dup2", &format!(r#","clusterIP":"{ip}""#)));
    assert!(e.contains("provided IP is already allocated"), "{e}");
}

#[test]
fn pods_are_defaulted_and_get_priority_from_their_class() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    k.ok(&["run", "p", "--image=busybox:1.36", "--restart=Never"]);
    let got = jp(&k, &["pod", "p"], "{.spec.restartPolicy} {.spec.dnsPolicy} {.spec.schedulerName} {.spec.terminationGracePeriodSeconds} {.spec.serviceAccountName} {.spec.priority} {.status.phase} {.status.qosClass} {.spec.containers[0].imagePullPolicy}");
    assert_eq!(got, "Never ClusterFirst default-scheduler 30 default 0 Pending BestEffort IfNotPresent");
    let tol = jp(&k, &["pod", "p"], "{range .spec.tolerations[*]}{.key}:{.effect}:{.tolerationSeconds} {end}");
    assert_eq!(tol, "node.kubernetes.io/not-ready:NoExecute:300 node.kubernetes.io/unreachable:NoExecute:300 ");
    // The system classes exist; a pod naming one gets its value.
    assert_eq!(jp(&k, &["priorityclass", "system-node-critical"], "{.value}"), "2000001000");
    k.ok(&["create", "priorityclass", "high", "--value=1000"]);
    let pod = |name: &str, extra: &str| format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox","resources":{{"limits":{{"cpu":"1","memory":"64Mi"}}}}}}]{extra}}}}}"#);
    create_ok(&k, dir.path(), "hi", &pod("hi", r#","priorityClassName":"high""#));
    assert_eq!(jp(&k, &["pod", "hi"], "{.spec.priority} {.spec.preemptionPolicy} {.status.qosClass} {.spec.containers[0].resources.requests.cpu}"), "1000 PreemptLowerPriority Guaranteed 1");
    let e = create_err(&k, dir.path(), "nope", &pod("nope", r#","priorityClassName":"nope""#));
    assert!(e.contains(r#"pods "nope" is forbidden: no PriorityClass with name nope was found"#), "{e}");
    // A global default class applies to pods that name none.
    k.ok(&["create", "priorityclass", "dflt", "--value=7", "--global-default=true"]);
    create_ok(&k, dir.path(), "d", &pod("d", ""));
    assert_eq!(jp(&k, &["pod", "d"], "{.spec.priority} {.spec.priorityClassName}"), "7 dflt");
    // Validation: a pod needs an image; a running pod's spec is immutable except images.
    let e = create_err(&k, dir.path(), "noimg", r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"noimg"},"spec":{"containers":[{"name":"c"}]}}"#);
    assert!(e.contains(r#"Pod "noimg" is invalid: spec.containers[0].image: Required value"#), "{e}");
    // Label keys and values are validated as upstream does.
    let e = create_err(&k, dir.path(), "badlabel", r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"badlabel","labels":{"ok":"-bad-"}},"spec":{"containers":[{"name":"c","image":"i"}]}}"#);
    assert!(e.contains(r#"metadata.labels: Invalid value: "-bad-": a valid label must be an empty string"#), "{e}");
    let e = create_err(&k, dir.path(), "badkey", r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"badkey","annotations":{"a/b/c":"x"}},"spec":{"containers":[{"name":"c","image":"i"}]}}"#);
    assert!(e.contains(r#"metadata.annotations: Invalid value: "a/b/c""#), "{e}");
    k.ok(&["set", "image", "pod/p", "p=busybox:1.37"]);
    let e = k.err(&["patch", "pod", "p", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/containers/0/name","value":"q"}]"#]);
    assert!(e.contains("Forbidden: pod updates may not change fields other than"), "{e}");
}

#[test]
fn binding_graceful_deletion_and_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(30, &server.kubeconfig);
    for p in ["a", "b", "c"] {
        k.ok(&["run", p, "--image=busybox", "--labels=app=web"]);
    }
    let bind = |pod: &str, node: &str| post_raw(&k, dir.path(), &format!("/api/v1/namespaces/default/pods/{pod}/binding"), &format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{pod}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{node}"}}}}"#));
    let out = bind("a", "n1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(jp(&k, &["pod", "a"], "{.spec.nodeName} {.status.conditions[0].type}={.status.conditions[0].status}"), "n1 PodScheduled=True");
    // A pod is bound once.
    let out = bind("a", "n2");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(r#"pod a is already assigned to node \"n1\""#) || String::from_utf8_lossy(&out.stderr).contains("pod a is already assigned to node"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(bind("b", "n1").status.success());

    // An unscheduled pod goes at once; a bound one waits for its kubelet.
    k.ok(&["delete", "pod", "c"]);
    assert!(k.err(&["get", "pod", "c"]).contains("NotFound"));
    k.ok(&["delete", "pod", "a", "--wait=false"]);
    assert_eq!(jp(&k, &["pod", "a"], "{.metadata.deletionGracePeriodSeconds}"), "30");
    assert!(!jp(&k, &["pod", "a"], "{.metadata.deletionTimestamp}").is_empty());
    // A shorter grace period may replace it; zero (what a kubelet sends when done) removes the pod.
    k.ok(&["delete", "pod", "a", "--grace-period=5", "--wait=false"]);
    assert_eq!(jp(&k, &["pod", "a"], "{.metadata.deletionGracePeriodSeconds}"), "5");
    k.ok(&["delete", "pod", "a", "--grace-period=0", "--force"]);
    assert!(k.err(&["get", "pod", "a"]).contains("NotFound"));

    // Eviction honours the PodDisruptionBudget selecting the pod.
    k.ok(&["patch", "pod", "b", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Running"}}"#]);
    k.ok(&["create", "pdb", "web", "--selector=app=web", "--min-available=1"]);
    let evict = || post_raw(&k, dir.path(), "/api/v1/namespaces/default/pods/b/eviction", r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"b","namespace":"default"}}"#);
    let out = evict();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("Cannot evict pod as it would violate the pod's disruption budget") || e.contains("TooManyRequests") || e.contains("429"), "{e}");
    k.ok(&["patch", "pdb", "web", "--subresource=status", "--type=merge", "-p", r#"{"status":{"observedGeneration":1,"disruptionsAllowed":0,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}"#]);
    assert!(!evict().status.success());
    k.ok(&["patch", "pdb", "web", "--subresource=status", "--type=merge", "-p", r#"{"status":{"disruptionsAllowed":1,"currentHealthy":2}}"#]);
    let out = evict();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(jp(&k, &["pdb", "web"], "{.status.disruptionsAllowed}"), "0");
    assert!(!jp(&k, &["pdb", "web"], "{.status.disruptedPods.b}").is_empty());
    assert!(!jp(&k, &["pod", "b"], "{.metadata.deletionTimestamp}").is_empty(), "the evicted pod is terminating");
}

#[test]
fn scale_validation_and_workload_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(29, &server.kubeconfig);
    k.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2"]);
    assert_eq!(jp(&k, &["deploy", "web"], "{.spec.strategy.type} {.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.progressDeadlineSeconds} {.spec.template.spec.containers[0].imagePullPolicy}"), "RollingUpdate 25% 10 600 IfNotPresent");
    k.ok(&["scale", "deploy", "web", "--replicas=5"]);
    assert_eq!(jp(&k, &["deploy", "web"], "{.spec.replicas} {.metadata.generation}"), "5 2");
    let scale = k.ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]);
    let v: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(v["kind"], "Scale");
    assert_eq!(v["apiVersion"], "autoscaling/v1");
    assert_eq!(v["spec"]["replicas"], 5);
    assert_eq!(v["status"]["selector"], "app=web");
    let e = k.err(&["scale", "deploy", "web", "--current-replicas=3", "--replicas=4"]);
    assert!(e.contains("Expected replicas to be 3, was 5") || e.contains("precondition"), "{e}");
    // The selector must select the template, and may not change.
    let bad = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"bad"},"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"y"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#;
    let e = create_err(&k, dir.path(), "bad", bad);
    assert!(e.contains(r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"y"}: `selector` does not match template `labels`"#), "{e}");
    let e = k.err(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"z"}},"template":{"metadata":{"labels":{"app":"z"}}}}}"#]);
    assert!(e.contains("field is immutable"), "{e}");
    // Jobs get a generated selector and labels.
    k.ok(&["create", "job", "j", "--image=busybox"]);
    let uid = jp(&k, &["job", "j"], "{.metadata.uid}");
    assert_eq!(jp(&k, &["job", "j"], "{.spec.selector.matchLabels.batch\\.kubernetes\\.io/controller-uid}"), uid);
    assert_eq!(jp(&k, &["job", "j"], "{.spec.template.metadata.labels.job-name} {.spec.backoffLimit} {.spec.completions}"), "j 6 1");
    // Cascading deletes are accepted in all three forms.
    for (i, cascade) in ["background", "foreground", "orphan"].iter().enumerate() {
        let name = format!("d{i}");
        k.ok(&["create", "deployment", &name, "--image=nginx"]);
        k.ok(&["delete", "deployment", &name, &format!("--cascade={cascade}")]);
    }
    // Bad DeleteOptions are a 400.
    let e = k.err(&["delete", "--raw", "/apis/apps/v1/namespaces/default/deployments/web?propagationPolicy=Sideways"]);
    assert!(e.contains("Unsupported value") || e.contains("BadRequest"), "{e}");
}
