//! End to end: `kubectl exec`, `attach` and `port-forward` through the API
//! server and the kubelet into real containers, with the kubectl versions
//! that upgrade to SPDY/3.1 (1.27, 1.29) and to WebSocket (1.33). Needs root
//! (skipped otherwise), like kubelet.rs. Exec then checks what the
//! downward API and projected volumes put in the container.

mod common;

use common::node::{apply, attach, build_busybox_image, is_root, port_forward, spawn_agent, wait_pod, wait_sandboxes_gone};
use common::{free_port, wait_for_port, Kubectl, SkiffServer};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POD: &str = r#"{"apiVersion": "v1", "kind": "Pod",
  "metadata": {"name": "x", "labels": {"app": "x"}, "annotations": {"batch.kubernetes.io/job-completion-index": "3"}},
  "spec": {"nodeName": "skiff-st", "terminationGracePeriodSeconds": 1,
    "volumes": [
      {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}, {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
      {"name": "all", "projected": {"sources": [{"configMap": {"name": "cm"}}, {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
    "containers": [{"name": "c", "image": "busybox:skiff-test", "stdin": true,
      "env": [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}],
      "volumeMounts": [{"name": "info", "mountPath": "/etc/info"}, {"name": "all", "mountPath": "/etc/all"}],
      "command": ["sh", "-c", "nc -ll -p 8080 -e echo hi & echo started; while read l; do echo \"got $l\"; done"]}]}}"#;

/// Poll `cmd` in the pod until its output is `want`.
fn exec_until(k: &Kubectl, cmd: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let out = k.run(&["exec", "x", "--", "sh", "-c", cmd]);
        let got = String::from_utf8_lossy(&out.stdout).to_string();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{cmd}: {got:?}, want {want:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Downward API env and volumes, projected volumes, and their updates.
fn downward(k: &Kubectl) {
    assert_eq!(k.ok(&["exec", "x", "--", "sh", "-c", "echo $JOB_COMPLETION_INDEX"]), "3\n");
    assert_eq!(k.ok(&["exec", "x", "--", "cat", "/etc/info/name", "/etc/all/ns", "/etc/all/k"]), "xdefaultv1");
    exec_until(k, "cat /etc/info/labels", "app=\"x\"");
    k.ok(&["label", "pod", "x", "tier=gold"]);
    exec_until(k, "cat /etc/info/labels", "app=\"x\"\ntier=\"gold\"");
    k.ok(&["patch", "configmap", "cm", "-p", r#"{"data": {"k": "v2"}}"#]);
    exec_until(k, "cat /etc/all/k", "v2");
    let err = String::from_utf8_lossy(&k.run(&["exec", "x", "--", "sh", "-c", "echo no > /etc/all/k"]).stderr).to_string();
    assert!(err.contains("Read-only file system"), "{err}");
}

/// `kubectl exec` with every upgrade flavour: output, stderr, exit codes, stdin, a terminal.
fn exec(k: &Kubectl) {
    let out = k.run(&["exec", "x", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}: {}", k.bin, String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("err\n"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(k.ok(&["exec", "x", "-c", "c", "--", "cat", "/proc/1/cmdline"]).split('\0').next(), Some("sh"));

    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["exec", "-i", "x", "--", "sh", "-c", "cat; echo done"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"hello\nworld\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\ndone\n");

    // Bulk both ways: more than any flow-control window.
    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["exec", "-i", "x", "--", "wc", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut input = c.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || input.write_all(&vec![b'z'; 3 << 20]).unwrap());
    let out = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (3 << 20).to_string(), "{}", k.bin);
    let out = k.run(&["exec", "x", "--", "head", "-c", "5000000", "/dev/zero"]);
    assert_eq!(out.stdout.len(), 5_000_000, "{}", k.bin);

    // -t needs kubectl's own stdin to be a terminal: run it under script(1).
    let cmd = format!("{} exec -it x -- sh -c 'tty; exit 4'", k.bin);
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).env("KUBECONFIG", &k.kubeconfig).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{}: {text}", k.bin);
    assert_eq!(out.status.code(), Some(4), "{text}");

    let err = k.err(&["exec", "x", "-c", "nope", "--", "true"]);
    assert!(err.contains("container nope is not valid for pod x"), "{err}");
}

/// Memory pressure (made by the agent's hidden override of the observed
/// memory.available): MemoryPressure goes True and pods are evicted one per
/// monitoring period, BestEffort before Guaranteed, Failed with reason Evicted.
fn eviction(k: &Kubectl, memory_file: &std::path::Path) {
    let g = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "g"}, "spec": {"nodeName": "skiff-st", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox:skiff-test", "command": ["sleep", "3600"], "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}]}}"#;
    let be = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "be"}, "spec": {"nodeName": "skiff-st", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox:skiff-test", "command": ["sleep", "3600"]}]}}"#;
    apply(k, g);
    apply(k, be);
    for p in ["g", "be"] {
        wait_pod(k, p, "Running", |p| p["status"]["phase"] == "Running");
    }
    assert_eq!(k.ok(&["get", "node", "skiff-st", "-o", "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status}"]), "False");
    std::fs::write(memory_file, "1Mi").unwrap();
    let evicted = |p: &serde_json::Value| p["status"]["phase"] == "Failed" && p["status"]["reason"] == "Evicted";
    let first = wait_pod(k, "be", "eviction", evicted);
    assert!(first["status"]["message"].as_str().unwrap().starts_with("The node was low on resource: memory. Threshold quantity: 100Mi, available: 1024Ki."), "{:#}", first["status"]);
    let node = k.ok(&["get", "node", "skiff-st", "-o", "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status}"]);
    assert_eq!(node, "True");
    let last = wait_pod(k, "g", "eviction", evicted);
    let when = |p: &serde_json::Value| p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget").unwrap()["lastTransitionTime"].as_str().unwrap().to_string();
    let x = wait_pod(k, "x", "eviction", evicted);
    assert!(when(&first) < when(&last) && when(&x) < when(&last), "Guaranteed evicted last: be {} x {} g {}", when(&first), when(&x), when(&last));
}

#[test]
fn exec_attach_and_port_forward() {
    if !is_root() {
        eprintln!("skipping: the streaming end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = build_busybox_image(d);
    let runtime_root = d.join("runtime");
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let out = Command::new(skiff).args(["images", "import"]).arg(&image).arg("--runtime-root").arg(&runtime_root).output().unwrap();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let server = SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]);
    let kport = free_port();
    let memory_file = d.join("memory-available");
    let start_agent = || spawn_agent(&server.kubeconfig, d, "skiff-st", kport, "skiffst0", "10.244.251.0/24", &["--eviction-memory-available-file", memory_file.to_str().unwrap(), "--eviction-monitoring-period", "2"]);
    let mut agent = Some(start_agent());
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        k.ok(&["create", "configmap", "cm", "--from-literal=k=v1"]);
        apply(&k, POD);
        wait_pod(&k, "x", "Running", |p| p["status"]["phase"] == "Running");
        downward(&k);
        for minor in [27, 29, 33] {
            let k = Kubectl::new(minor, &server.kubeconfig);
            exec(&k);
            port_forward(&k, "x");
            attach(&k, "x");
        }
        // A restarted agent adopts the running pod: same container, no restart.
        k.ok(&["exec", "x", "--", "touch", "/tmp/before-restart"]);
        let before = wait_pod(&k, "x", "Running", |p| p["status"]["phase"] == "Running");
        drop(agent.take());
        agent = Some(start_agent());
        wait_for_port(kport, Duration::from_secs(30));
        std::thread::sleep(Duration::from_secs(3));
        let after = wait_pod(&k, "x", "Running", |p| p["status"]["phase"] == "Running");
        let cs = |p: &serde_json::Value| p["status"]["containerStatuses"][0].clone();
        assert_eq!(cs(&after)["containerID"], cs(&before)["containerID"], "{:#}", after["status"]);
        assert_eq!(cs(&after)["restartCount"], 0);
        assert_eq!(cs(&after)["state"]["running"]["startedAt"], cs(&before)["state"]["running"]["startedAt"]);
        k.ok(&["exec", "x", "--", "test", "-f", "/tmp/before-restart"]);
        attach(&Kubectl::new(33, &server.kubeconfig), "x");
        eviction(&k, &d.join("memory-available"));
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    wait_sandboxes_gone(&runtime_root);
    drop(agent);
    let _ = Command::new("ip").args(["link", "del", "skiffst0"]).status();
    let _ = Command::new("sh").arg("-c").arg(format!("grep -o '{}[^ ]*rootfs' /proc/mounts | xargs -r umount -l", runtime_root.display())).status();
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}

/// The API server's answers before any kubelet is involved (no root needed).
#[test]
fn streaming_requests_are_checked_by_the_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), free_port(), &["--disable-agent"]);
    let k = Kubectl::new(33, &server.kubeconfig);
    apply(&k, r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}"#);
    for minor in [27, 33] {
        let k = Kubectl::new(minor, &server.kubeconfig);
        let err = k.err(&["exec", "p", "--", "true"]);
        assert!(err.contains("pod p does not have a host assigned"), "1.{minor}: {err}");
        let err = k.err(&["exec", "p", "-c", "nope", "--", "true"]);
        assert!(err.contains("container nope is not valid for pod p"), "1.{minor}: {err}");
        let err = k.err(&["port-forward", "pod/nothere", "8080"]);
        assert!(err.contains("pods \"nothere\" not found"), "1.{minor}: {err}");
    }
    let err = k.err(&["get", "--raw", "/api/v1/namespaces/default/pods/p/exec?command=true"]);
    assert!(err.contains("Upgrade request required"), "{err}");
    let err = k.err(&["get", "--raw", "/api/v1/namespaces/default/pods/nothere/attach"]);
    assert!(err.contains("pods \"nothere\" not found"), "{err}");
}
