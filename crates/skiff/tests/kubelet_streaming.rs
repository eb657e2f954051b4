//! End to end: `kubectl exec`, `attach` and `port-forward` through the API
//! server and the kubelet into real containers, with the kubectl versions
//! that upgrade to SPDY/3.1 (1.27, 1.29) and to WebSocket (1.33). Needs root
//! (skipped otherwise), like kubelet.rs. Exec then checks what the
//! downward API and projected volumes put in the container.

mod common;

use common::node::{apply, attach, import_busybox, is_root, port_forward, spawn_agent, unmount_all_under, wait_pod, wait_sandboxes_gone};
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

/// `curl` the kubelet's HTTPS port (its certificate is self-signed: `-k`):
/// the status code, then the body.
fn kubelet_get(kport: u16, path: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("curl").args(["-sk", "-w", "\n%{http_code}"]).args(args).arg(format!("https://127.0.0.1:{kport}{path}")).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// `openssl` with its output checked.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A client certificate for `subject` signed by the CA `<ca>.crt`/`.key` in
/// `dir`; returns curl's arguments to present it.
fn client_cert(dir: &std::path::Path, name: &str, subject: &str, ca: &str) -> Vec<String> {
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(dir, &["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", subject]);
    openssl(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", &format!("{ca}.crt"), "-CAkey", &format!("{ca}.key"), "-CAcreateserial", "-days", "1", "-extfile", "client.ext", "-out", &format!("{name}.crt")]);
    cert_args(&dir.join(format!("{name}.crt")), &dir.join(format!("{name}.key")))
}

fn cert_args(crt: &std::path::Path, key: &std::path::Path) -> Vec<String> {
    vec!["--cert".into(), crt.display().to_string(), "--key".into(), key.display().to_string()]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The kubelet's port answers only /healthz without a credential
/// (upstream's --anonymous-auth=false): 401 without a certificate or with
/// one from another CA, 403 for a cluster-CA identity that is not allowed,
/// 200 for the API server's kubelet-client certificate and the admin token.
fn kubelet_api_requires_credentials(kport: u16, server_dir: &std::path::Path, d: &std::path::Path) {
    let certs = d.join("client-certs");
    std::fs::create_dir_all(&certs).unwrap();
    let pki = server_dir.join("pki");
    assert_eq!(kubelet_get(kport, "/healthz", &[]), ("200".into(), "ok".into()));
    let logs = "/containerLogs/default/x/c";
    assert_eq!(kubelet_get(kport, logs, &[]), ("401".into(), "Unauthorized\n".into()));
    assert_eq!(kubelet_get(kport, "/metrics", &[]).0, "401");
    assert_eq!(kubelet_get(kport, "/exec/default/x/c?command=true&stdout=1", &["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"]).0, "401");
    // Plain HTTP is not served any more.
    let plain = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:{kport}/healthz")]).output().unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");

    // Another CA, even naming the API server's identity: not authenticated.
    openssl(&certs, &["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.crt", "-subj", "/CN=other-ca", "-days", "1"]);
    let impostor = client_cert(&certs, "impostor", "/O=system:masters/CN=kube-apiserver-kubelet-client", "other-ca");
    assert_eq!(kubelet_get(kport, logs, &strs(&impostor)), ("401".into(), "Unauthorized\n".into()));

    // The cluster CA's, for a user who is not allowed: authenticated, then 403.
    std::fs::copy(pki.join("ca.crt"), certs.join("cluster-ca.crt")).unwrap();
    std::fs::copy(pki.join("ca.key"), certs.join("cluster-ca.key")).unwrap();
    let jane = client_cert(&certs, "jane", "/O=devs/CN=jane", "cluster-ca");
    let (code, body) = kubelet_get(kport, "/metrics", &strs(&jane));
    assert_eq!((code.as_str(), body.trim()), ("403", "Forbidden (user=jane, verb=get, resource=nodes, subresource=metrics)"));

    // The API server's own client certificate, and the admin's token (what a Prometheus scrape would present).
    let api = cert_args(&pki.join("apiserver-kubelet-client.crt"), &pki.join("apiserver-kubelet-client.key"));
    let (code, body) = kubelet_get(kport, "/metrics", &strs(&api));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("kubelet_running_pods"), "{body}");
    let token = std::fs::read_to_string(pki.join("admin.token")).unwrap();
    let (code, body) = kubelet_get(kport, "/metrics", &["-H", &format!("Authorization: Bearer {}", token.trim())]);
    assert_eq!(code, "200", "{body}");
    assert_eq!(kubelet_get(kport, "/metrics", &["-H", "Authorization: Bearer not-the-token"]).0, "401");
}

/// `--kubelet-certificate-authority`: the API server refuses a kubelet whose
/// serving certificate that CA did not issue, and talks to it once given
/// the kubelet's own (self-signed) certificate. Returns the server, left
/// running with that CA (the agent keeps its certificate across restarts).
fn kubelet_certificate_authority(server: SkiffServer, d: &std::path::Path, k: &Kubectl) -> SkiffServer {
    let port = server.port;
    let restart = |server: SkiffServer, ca: &std::path::Path| {
        assert!(server.stop().success());
        SkiffServer::start_with(&d.join("server"), port, &["--disable-agent", "--kubelet-certificate-authority", ca.to_str().unwrap()])
    };
    let server = restart(server, &d.join("client-certs/other-ca.crt"));
    let err = k.err(&["logs", "x"]);
    assert!(err.contains("invalid peer certificate"), "{err}");
    let err = k.err(&["exec", "x", "--", "true"]);
    assert!(err.contains("error dialing backend") && err.contains("invalid peer certificate"), "{err}");
    let server = restart(server, &d.join("kubelet/pki/kubelet.crt"));
    assert!(k.ok(&["logs", "x"]).starts_with("started\n"));
    assert_eq!(k.ok(&["exec", "x", "--", "echo", "verified"]), "verified\n");
    server
}

#[test]
fn exec_attach_and_port_forward() {
    if !is_root() {
        eprintln!("skipping: the streaming end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runtime_root = d.join("runtime");
    import_busybox(d, &runtime_root);
    // An Option: the test restarts the server, and it must outlive the test body for the cleanup below.
    let mut server = Some(SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]));
    let kubeconfig = server.as_ref().unwrap().kubeconfig.clone();
    let kport = free_port();
    let memory_file = d.join("memory-available");
    let start_agent = || spawn_agent(&kubeconfig, d, "skiff-st", kport, "skiffst0", "10.244.251.0/24", &["--eviction-memory-available-file", memory_file.to_str().unwrap(), "--eviction-monitoring-period", "2"]);
    let mut agent = Some(start_agent());
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &kubeconfig);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        kubelet_api_requires_credentials(kport, &d.join("server"), d);
        k.ok(&["create", "configmap", "cm", "--from-literal=k=v1"]);
        apply(&k, POD);
        wait_pod(&k, "x", "Running", |p| p["status"]["phase"] == "Running");
        // pods/log goes through the API server's TLS client certificate too.
        common::wait_until("kubectl logs x", Duration::from_secs(20), || k.ok(&["logs", "x"]).starts_with("started\n").then_some(()));
        downward(&k);
        for minor in [27, 29, 33] {
            let k = Kubectl::new(minor, &kubeconfig);
            exec(&k);
            port_forward(&k, "x");
            attach(&k, "x");
        }
        server = Some(kubelet_certificate_authority(server.take().unwrap(), d, &k));
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
        attach(&Kubectl::new(33, &kubeconfig), "x");
        eviction(&k, &d.join("memory-available"));
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    wait_sandboxes_gone(&runtime_root);
    drop(agent);
    drop(server);
    let _ = Command::new("ip").args(["link", "del", "skiffst0"]).status();
    unmount_all_under(d);
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
