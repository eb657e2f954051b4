//! End to end: `skiff server` plus `skiff agent` (kubelet + embedded runtime)
//! run real containers with runc from a busybox image built here from
//! Debian's busybox-static, driven by real kubectl. Needs root (namespaces,
//! mounts, cgroups); skipped with a message otherwise.

mod common;

use common::node::{apply, import_busybox, mounts_at, sh, spawn_agent, unmount_all_under, wait_pod, Agent};
use common::{free_port, wait_for_port, Kubectl, SkiffServer};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn pod(name: &str, policy: &str, grace: i64, init: Value, script: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "skiff-e2e", "restartPolicy": policy, "terminationGracePeriodSeconds": grace, "initContainers": init,
            "containers": [{"name": "main", "image": "busybox:skiff-test", "command": ["sh", "-c", script]}]}}).to_string()
}

#[test]
fn pods_run_in_real_containers() {
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("skipping: the kubelet end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runtime_root = d.join("runtime");
    let image = import_busybox(d, &runtime_root);
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let ls = Command::new(skiff).args(["images", "ls", "--runtime-root"]).arg(&runtime_root).output().unwrap();
    assert!(String::from_utf8_lossy(&ls.stdout).contains("docker.io/library/busybox:skiff-test"));

    let server = SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]);
    let kport = free_port();
    let manifests = d.join("manifests");
    let _agent = spawn_agent(&server.kubeconfig, d, "skiff-e2e", kport, "skiffe2e0", "10.244.250.0/24", &["--pod-manifest-path", manifests.to_str().unwrap()]);
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);

    // The Node registers with capacity and conditions; its Lease is renewed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !k.run(&["get", "node", "skiff-e2e"]).status.success() {
        assert!(Instant::now() < deadline, "node never registered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let node: Value = serde_json::from_str(&k.ok(&["get", "node", "skiff-e2e", "-o", "json"])).unwrap();
    let types: Vec<&str> = node["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert!(types.contains(&t), "{types:?}");
    }
    assert!(node["status"]["capacity"]["memory"].as_str().unwrap().ends_with("Ki"));
    k.ok(&["get", "lease", "-n", "kube-node-lease", "skiff-e2e"]);

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A pod with two init containers, run in order, then a long-running container with output.
        let init = serde_json::json!([
            {"name": "first", "image": "busybox:skiff-test", "command": ["sh", "-c", "echo first; sleep 1"]},
            {"name": "second", "image": "busybox:skiff-test", "command": ["sh", "-c", "echo second"]}]);
        apply(&k, &pod("hello", "Always", 2, init, "echo hello from skiff; sleep 0.3; echo to-stderr >&2; sleep 0.3; echo line2; exec sleep 3600"));
        let p = wait_pod(&k, "hello", "Running", |p| p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true);
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(ip.starts_with("10.244.250."), "{ip}");
        let inits = p["status"]["initContainerStatuses"].as_array().unwrap();
        let first = &inits[0]["state"]["terminated"];
        let second = &inits[1]["state"]["terminated"];
        assert_eq!(first["exitCode"], 0);
        assert_eq!(second["exitCode"], 0);
        assert!(first["finishedAt"].as_str().unwrap() <= second["startedAt"].as_str().unwrap(), "init containers ran in order: {inits:?}");
        let conds = p["status"]["conditions"].as_array().unwrap();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(conds.iter().any(|c| c["type"] == t && c["status"] == "True"), "{t}: {conds:?}");
        }
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = String::from_utf8_lossy(&k.run(&["logs", "hello"]).stdout).to_string();
            if logs.contains("line2") {
                assert_eq!(logs.lines().filter(|l| !l.is_empty()).count(), 3, "{logs}");
                assert!(logs.starts_with("hello from skiff\n"), "{logs}");
                break;
            }
            assert!(Instant::now() < deadline, "kubectl logs: {logs:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(k.ok(&["logs", "hello", "--tail=1"]), "line2\n");
        assert_eq!(k.ok(&["logs", "hello", "-c", "first"]), "first\n");

        // Static pods: a manifest file becomes a mirror pod that runs here;
        // removing the file deletes it.
        std::fs::create_dir_all(d.join("manifests")).unwrap();
        std::fs::write(d.join("manifests/web.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: busybox:skiff-test\n    command: [sh, -c, 'echo static; exec sleep 3600']\n").unwrap();
        let p = wait_pod(&k, "static-web-skiff-e2e", "Running", |p| p["status"]["phase"] == "Running");
        assert_eq!(p["metadata"]["annotations"]["kubernetes.io/config.source"], "file");
        std::fs::remove_file(d.join("manifests/web.yaml")).unwrap();

        // A Guaranteed pod: its limits land in the container's cgroup (v1
        // paths here) under kubepods/pod<uid>; `kubectl logs -f` follows it.
        let g = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "guaranteed"},
            "spec": {"nodeName": "skiff-e2e", "terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox:skiff-test",
                "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"],
                "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}}}]}});
        apply(&k, &g.to_string());
        let p = wait_pod(&k, "guaranteed", "Running", |p| p["status"]["phase"] == "Running");
        assert_eq!(p["status"]["qosClass"], "Guaranteed");
        let uid = p["metadata"]["uid"].as_str().unwrap();
        let cid = p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap().trim_start_matches("skiff://");
        if Path::new("/sys/fs/cgroup/memory/kubepods").exists() {
            let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).unwrap_or_default().trim().to_string();
            assert_eq!(read(&format!("memory/kubepods/pod{uid}/{cid}/memory.limit_in_bytes")), (32u64 << 20).to_string());
            assert_eq!(read(&format!("cpu/kubepods/pod{uid}/{cid}/cpu.shares")), "256");
            assert_eq!(read(&format!("cpu/kubepods/pod{uid}/{cid}/cpu.cfs_quota_us")), "25000");
        }
        let mut follow = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["logs", "-f", "guaranteed"]).stdout(Stdio::piped()).spawn().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
        let first: Vec<String> = (0..6).map(|_| lines.next().unwrap().unwrap()).collect();
        let _ = follow.kill();
        let _ = follow.wait();
        assert!(first.iter().enumerate().all(|(i, l)| *l == format!("tick {i}")), "{first:?}");
        // Deleted, the pod leaves no cgroup behind in any hierarchy (the
        // runtime removes its containers'; the pod level is the kubelet's).
        let pod_dirs: Vec<String> = ["memory", "cpu", "cpuset", "pids"].iter().map(|h| format!("/sys/fs/cgroup/{h}/kubepods/pod{uid}")).filter(|d| Path::new(d).exists()).collect();
        assert!(!pod_dirs.is_empty() || !Path::new("/sys/fs/cgroup/memory/kubepods").exists(), "the running pod has a pod-level cgroup");
        k.ok(&["delete", "pod", "guaranteed", "--wait=true", "--timeout=60s"]);
        common::wait_until("the deleted pod's cgroups to be removed", Duration::from_secs(15), || pod_dirs.iter().all(|d| !Path::new(d).exists()).then_some(()));

        // Volumes and env: configMap and secret files and keys, an emptyDir an
        // init container fills, fieldRef and envFrom; configMap edits reach the files.
        apply(&k, r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hello-cm"}}"#);
        apply(&k, r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"}, "data": {"password": "czNjcmV0"}}"#);
        let v = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "config"},
            "spec": {"nodeName": "skiff-e2e", "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "cm", "configMap": {"name": "cfg"}}, {"name": "sec", "secret": {"secretName": "sec"}}, {"name": "scratch", "emptyDir": {}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
                "initContainers": [{"name": "fill", "image": "busybox:skiff-test", "command": ["sh", "-c", "echo init-wrote > /scratch/from-init"],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                "containers": [{"name": "main", "image": "busybox:skiff-test",
                    "command": ["sh", "-c", "cat /etc/cm/greeting; echo; cat /etc/sec/password; echo; cat /scratch/from-init; echo \"env $GREETING $PASS $POD_NAME $CM_greeting\"; exec sleep 3600"],
                    "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
                    "volumeMounts": [{"name": "cm", "mountPath": "/etc/cm"}, {"name": "sec", "mountPath": "/etc/sec"}, {"name": "scratch", "mountPath": "/scratch"}, {"name": "mem", "mountPath": "/mem"}]}]}});
        apply(&k, &v.to_string());
        let p = wait_pod(&k, "config", "Running", |p| p["status"]["phase"] == "Running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = String::from_utf8_lossy(&k.run(&["logs", "config"]).stdout).to_string();
            if logs.contains("env ") {
                assert_eq!(logs, "hello-cm\ns3cret\ninit-wrote\nenv hello-cm s3cret config hello-cm\n");
                break;
            }
            assert!(Instant::now() < deadline, "config pod logs: {logs:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
        // emptyDir with medium Memory: a tmpfs of its own, its size the volume's sizeLimit.
        let mem = d.join("kubelet/pods").join(p["metadata"]["uid"].as_str().unwrap()).join("volumes/mem");
        assert_eq!(mounts_at(&mem), ["tmpfs"], "the memory emptyDir's mounts");
        let fs = String::from_utf8_lossy(&Command::new("stat").args(["-f", "-c", "%T %b %S"]).arg(&mem).output().unwrap().stdout).to_string();
        let f: Vec<&str> = fs.split_whitespace().collect();
        assert_eq!(f[0], "tmpfs", "{fs}");
        assert_eq!(f[1].parse::<u64>().unwrap() * f[2].parse::<u64>().unwrap(), 16 << 20, "{fs}");
        assert_eq!(k.ok(&["exec", "config", "--", "sh", "-c", "echo in-memory > /mem/f && cat /mem/f"]), "in-memory\n");
        assert_eq!(std::fs::read_to_string(mem.join("f")).unwrap(), "in-memory\n");
        k.ok(&["patch", "configmap", "cfg", "-p", r#"{"data":{"greeting":"changed"}}"#]);
        let file = d.join("kubelet/pods").join(p["metadata"]["uid"].as_str().unwrap()).join("volumes/cm/greeting");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(&file).unwrap_or_default() != "changed" {
            assert!(Instant::now() < deadline, "configMap edit never reached {}", file.display());
            std::thread::sleep(Duration::from_millis(300));
        }

        // A crashing container is restarted with its exit code in lastState.
        apply(&k, &pod("crash", "Always", 1, serde_json::json!([]), "echo boom; exit 3"));
        let p = wait_pod(&k, "crash", "a restart", |p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1));
        assert_eq!(p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 3);
        assert_eq!(p["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"], "Error");
        let p = wait_pod(&k, "crash", "CrashLoopBackOff", |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(k.ok(&["logs", "crash", "--previous"]), "boom\n");

        // restartPolicy Never: the exit code ends the pod.
        apply(&k, &pod("fails", "Never", 1, serde_json::json!([]), "exit 7"));
        let p = wait_pod(&k, "fails", "Failed", |p| p["status"]["phase"] == "Failed");
        assert_eq!(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 7);
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
        apply(&k, &pod("succeeds", "OnFailure", 1, serde_json::json!([]), "echo done"));
        // Over its memory limit, a container is OOMKilled.
        let oom = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oom"},
            "spec": {"nodeName": "skiff-e2e", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox:skiff-test",
                "command": ["sh", "-c", "exec tail /dev/zero"], "resources": {"limits": {"memory": "16Mi"}}}]}});
        apply(&k, &oom.to_string());
        let p = wait_pod(&k, "oom", "Failed", |p| p["status"]["phase"] == "Failed");
        assert_eq!(p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"], "OOMKilled", "{:#}", p["status"]);
        assert_eq!(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 137);
        assert_eq!(p["status"]["qosClass"], "Burstable");
        wait_pod(&k, "succeeds", "Succeeded", |p| p["status"]["phase"] == "Succeeded");

        // Native sidecars: started in order before the next init container,
        // kept running with the app, stopped once a Never pod's work is done.
        let sidecar = |name: &str, main: &str| serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": "skiff-e2e", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                "initContainers": [{"name": "side", "image": "busybox:skiff-test", "restartPolicy": "Always", "command": ["sh", "-c", "exec sleep 3600"]},
                                   {"name": "after", "image": "busybox:skiff-test", "command": ["true"]}],
                "containers": [{"name": "main", "image": "busybox:skiff-test", "command": ["sh", "-c", main]}]}}).to_string();
        apply(&k, &sidecar("sidecar", "exec sleep 3600"));
        let p = wait_pod(&k, "sidecar", "Running", |p| p["status"]["phase"] == "Running" && p["status"]["containerStatuses"][0]["ready"] == true);
        let inits = p["status"]["initContainerStatuses"].as_array().unwrap();
        assert!(inits[0]["state"]["running"].is_object(), "{inits:?}");
        assert_eq!(inits[0]["ready"], true);
        assert!(inits[0]["state"]["running"]["startedAt"].as_str() <= inits[1]["state"]["terminated"]["startedAt"].as_str());
        apply(&k, &sidecar("sidecar-done", "echo done"));
        let p = wait_pod(&k, "sidecar-done", "Succeeded with the sidecar stopped", |p| p["status"]["phase"] == "Succeeded" && p["status"]["initContainerStatuses"][0]["state"]["terminated"].is_object());
        assert_eq!(p["status"]["initContainerStatuses"][0]["restartCount"], 0);

        // Probes: httpGet readiness passes, tcpSocket readiness fails (not
        // Ready, not restarted), a failing exec liveness probe restarts.
        let c = |name: &str, script: &str, probes: Value| {
            let mut c = serde_json::json!({"name": name, "image": "busybox:skiff-test", "command": ["sh", "-c", script]});
            c.as_object_mut().unwrap().extend(probes.as_object().unwrap().clone());
            c
        };
        let probes = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probes"},
            "spec": {"nodeName": "skiff-e2e", "terminationGracePeriodSeconds": 1, "containers": [
                c("web", "echo ok > /tmp/index.html; exec httpd -f -p 8080 -h /tmp", serde_json::json!({
                    "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
                    "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}})),
                c("unready", "exec sleep 3600", serde_json::json!({"readinessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 1}})),
                c("dies", "exec sleep 3600", serde_json::json!({"livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}})),
            ]}});
        apply(&k, &probes.to_string());
        let by_name = |p: &Value, n: &str| p["status"]["containerStatuses"].as_array().into_iter().flatten().find(|c| c["name"] == n).cloned().unwrap_or(Value::Null);
        let p = wait_pod(&k, "probes", "probe results", |p| by_name(p, "web")["ready"] == true && by_name(p, "dies")["restartCount"].as_i64() >= Some(1));
        assert_eq!(by_name(&p, "unready")["ready"], false);
        assert_eq!(by_name(&p, "unready")["restartCount"], 0);
        assert_eq!(by_name(&p, "web")["restartCount"], 0);
        assert_eq!(by_name(&p, "dies")["lastState"]["terminated"]["exitCode"], 137);
        assert_eq!(p["status"]["phase"], "Running");
        let ready = p["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
        assert_eq!(ready["status"], "False");

        // Hooks: postStart runs after the container starts; preStop runs on
        // deletion, and here it alone ends the container (sh as PID 1 ignores SIGTERM).
        let hooks = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hooks"},
            "spec": {"nodeName": "skiff-e2e", "terminationGracePeriodSeconds": 30, "containers": [{"name": "main", "image": "busybox:skiff-test",
                "command": ["sh", "-c", "while [ ! -f /tmp/poststart ]; do sleep 0.1; done; echo poststart ran; while [ ! -f /tmp/stopped ]; do sleep 0.2; done; echo prestop ran"],
                "lifecycle": {"postStart": {"exec": {"command": ["touch", "/tmp/poststart"]}}, "preStop": {"exec": {"command": ["touch", "/tmp/stopped"]}}}}]}});
        apply(&k, &hooks.to_string());
        wait_pod(&k, "hooks", "Running", |p| p["status"]["phase"] == "Running");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&k.run(&["logs", "hooks"]).stdout).contains("poststart ran") {
            assert!(Instant::now() < deadline, "postStart never ran");
            std::thread::sleep(Duration::from_millis(200));
        }
        let t = Instant::now();
        k.ok(&["delete", "pod", "hooks", "--wait=true", "--timeout=60s"]);
        assert!(t.elapsed() < Duration::from_secs(20), "preStop did not end the container: {:?}", t.elapsed());

        // Pulls: from a local registry (Debian's docker-registry, image pushed
        // with skopeo); a missing image gives ErrImagePull, then ImagePullBackOff.
        let rport = free_port();
        let rconf = d.join("registry.yml");
        std::fs::write(&rconf, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{rport}\n", d.join("registry").display())).unwrap();
        let _registry = Agent(Command::new("docker-registry").arg("serve").arg(&rconf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        wait_for_port(rport, Duration::from_secs(20));
        sh(&format!("skopeo --insecure-policy copy --dest-tls-verify=false oci-archive:{} docker://127.0.0.1:{rport}/busybox:pulled", image.display()));
        let pulled = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulled"},
            "spec": {"nodeName": "skiff-e2e", "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": format!("127.0.0.1:{rport}/busybox:pulled"), "command": ["sh", "-c", "echo pulled ok; exec sleep 3600"]}]}});
        apply(&k, &pulled.to_string());
        let p = wait_pod(&k, "pulled", "Running", |p| p["status"]["phase"] == "Running");
        assert!(p["status"]["containerStatuses"][0]["imageID"].as_str().unwrap().starts_with("sha256:"));
        let missing = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "missing"},
            "spec": {"nodeName": "skiff-e2e", "terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": format!("127.0.0.1:{rport}/nothing:here"), "command": ["true"]}]}});
        apply(&k, &missing.to_string());
        let p = wait_pod(&k, "missing", "a pull error", |p| {
            let r = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
            r == "ErrImagePull" || r == "ImagePullBackOff"
        });
        assert!(p["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap().contains("nothing:here"));
        wait_pod(&k, "missing", "ImagePullBackOff", |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ImagePullBackOff");

        // Graceful deletion: SIGTERM reaches the container, which exits on it
        // well before its 30 s grace period; the kubelet then deletes the pod.
        apply(&k, &pod("graceful", "Always", 30, serde_json::json!([]), "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.2; done"));
        wait_pod(&k, "graceful", "Running", |p| p["status"]["phase"] == "Running");
        let t = Instant::now();
        k.ok(&["delete", "pod", "graceful", "--wait=true", "--timeout=60s"]);
        assert!(t.elapsed() < Duration::from_secs(20), "graceful deletion took {:?}", t.elapsed());
        assert!(!k.run(&["get", "pod", "graceful"]).status.success());
        // A container that ignores SIGTERM is killed after the grace period (2 s).
        let t = Instant::now();
        k.ok(&["delete", "pod", "hello", "--wait=true", "--timeout=60s"]);
        assert!(t.elapsed() >= Duration::from_secs(2), "hello was deleted before its grace period: {:?}", t.elapsed());
        let deadline = Instant::now() + Duration::from_secs(30);
        while k.run(&["get", "pod", "static-web-skiff-e2e"]).status.success() {
            assert!(Instant::now() < deadline, "static pod not removed with its file");
            std::thread::sleep(Duration::from_millis(300));
        }
        // Past two instances the oldest is removed from the runtime; the
        // count of restarts and --previous still hold.
        let p = wait_pod(&k, "crash", "a second restart", |p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2));
        assert_eq!(p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 3);
        assert_eq!(k.ok(&["logs", "crash", "--previous"]), "boom\n");
        // The kubelet's /metrics needs a credential, like upstream's: scrape with the admin token.
        let token = std::fs::read_to_string(d.join("server/pki/admin.token")).unwrap();
        let get = |path: &str| sh(&format!("curl -sfk -H 'Authorization: Bearer {}' https://127.0.0.1:{kport}{path}", token.trim()));
        let metrics = get("/metrics");
        assert!(metrics.contains("kubelet_container_restarts_total"), "{metrics}");

        // Resource usage from the container's cgroups, through CRI ListContainerStats:
        // a container that holds ~16 MB and spins shows both.
        apply(&k, &pod("burn", "Never", 1, serde_json::json!([]), "x=$(head -c 16000000 /dev/zero | tr '\\0' a); while :; do :; done"));
        wait_pod(&k, "burn", "Running", |p| p["status"]["phase"] == "Running");
        let labels = |c: &str| format!("container=\"{c}\"");
        let value = |text: &str, metric: &str| -> Option<f64> {
            text.lines().find(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&labels("main")) && l.contains("pod=\"burn\"") && l.contains("namespace=\"default\""))?.rsplit(' ').next()?.parse().ok()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let cadvisor = loop {
            let text = get("/metrics/cadvisor");
            if value(&text, "container_cpu_usage_seconds_total").is_some_and(|v| v > 0.3) && value(&text, "container_memory_working_set_bytes").is_some_and(|v| v > 12e6) {
                break text;
            }
            assert!(Instant::now() < deadline, "burn's usage never showed in /metrics/cadvisor:\n{text}");
            std::thread::sleep(Duration::from_millis(500));
        };
        assert!(value(&cadvisor, "container_memory_usage_bytes").unwrap() >= value(&cadvisor, "container_memory_working_set_bytes").unwrap(), "{cadvisor}");
        // The Summary API: two scrapes a second apart give a CPU rate near a busy core's.
        let summary = |_: ()| -> Value { serde_json::from_str(&get("/stats/summary")).unwrap() };
        summary(());
        std::thread::sleep(Duration::from_secs(1));
        let s = summary(());
        assert_eq!(s["node"]["nodeName"], "skiff-e2e");
        assert!(s["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0, "{s}");
        assert!(s["node"]["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{s}");
        let pod = s["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == "burn").unwrap_or_else(|| panic!("no burn in {s}"));
        assert_eq!(pod["podRef"]["namespace"], "default");
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "main");
        let rate = c["cpu"]["usageNanoCores"].as_u64().unwrap_or_else(|| panic!("no rate in {c}"));
        assert!(rate > 200_000_000, "a spinning shell uses a good part of a core: {c}");
        assert!(c["memory"]["workingSetBytes"].as_u64().unwrap() > 12_000_000, "{c}");
        // The pod's numbers are its cgroup's (sampled after the container's): never less than its one container's.
        assert!(pod["cpu"]["usageCoreNanoSeconds"].as_u64() >= c["cpu"]["usageCoreNanoSeconds"].as_u64(), "{pod}");
        assert!(pod["memory"]["workingSetBytes"].as_u64().unwrap() > 12_000_000, "{pod}");
        k.ok(&["delete", "pod", "burn", "--grace-period=0", "--force"]);
    }));
    // Clean up: every pod's containers, the bridge and the image store.
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    drop(_agent);
    let _ = Command::new("ip").args(["link", "del", "skiffe2e0"]).status();
    unmount_all_under(d);
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// `skiff server` without --disable-agent runs a kubelet for its own machine.
#[test]
fn server_runs_an_agent_for_its_node() {
    if unsafe { libc_geteuid() } != 0 || Command::new("runc").arg("--version").output().is_err() {
        eprintln!("skipping: the server's agent needs root and runc");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kport = free_port();
    let server = SkiffServer::start_with(dir.path(), free_port(), &["--node-name", "skiff-self", "--kubelet-port", &kport.to_string()]);
    let k = Kubectl::new(33, &server.kubeconfig);
    node_ready(&k, "skiff-self");
    let port = k.ok(&["get", "node", "skiff-self", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"]);
    assert_eq!(port, kport.to_string());
    // Its port trusts the cluster CA the server made: the server's kubelet-client certificate gets in, no certificate does not.
    let pki = dir.path().join("pki");
    let ip = k.ok(&["get", "node", "skiff-self", "-o", "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}"]);
    let url = format!("https://{ip}:{kport}/metrics");
    assert_eq!(sh(&format!("curl -sk -o /dev/null -w '%{{http_code}}' {url}")), "401");
    let cert = format!("--cert {} --key {}", pki.join("apiserver-kubelet-client.crt").display(), pki.join("apiserver-kubelet-client.key").display());
    assert!(sh(&format!("curl -sfk {cert} {url}")).contains("kubelet_running_pods"));
    let st = server.stop();
    unmount_all_under(dir.path());
    assert!(st.success(), "{st:?}");
}

/// `skiff server` with its own agent and scheduler: a Deployment of 20
/// replicas lands on its one node, and every replica's container runs and
/// turns Ready (real runc containers, one pod IP each).
#[test]
fn a_deployment_of_20_replicas_reaches_ready_on_one_node() {
    if unsafe { libc_geteuid() } != 0 || Command::new("runc").arg("--version").output().is_err() {
        eprintln!("skipping: the server's agent needs root and runc");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("server");
    let runtime_root = data.join("runtime");
    import_busybox(d, &runtime_root);
    let kport = free_port();
    let server = SkiffServer::start_with(&data, free_port(), &["--node-name", "skiff-d20", "--kubelet-port", &kport.to_string(), "+scheduler"]);
    let k = Kubectl::new(33, &server.kubeconfig);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        node_ready(&k, "skiff-d20");
        k.ok(&["create", "deployment", "web", "--image=busybox:skiff-test", "--replicas=20", "--", "sleep", "3600"]);
        let out = k.run(&["rollout", "status", "deployment/web", "--timeout=180s"]);
        assert!(out.status.success(), "rollout: {} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(k.ok(&["get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}"]), "20");
        let pods: Value = serde_json::from_str(&k.ok(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
        let items = pods["items"].as_array().unwrap();
        assert_eq!(items.len(), 20);
        let mut ips = std::collections::HashSet::new();
        for p in items {
            assert_eq!(p["spec"]["nodeName"], "skiff-d20");
            assert_eq!(p["status"]["phase"], "Running");
            assert_eq!(p["status"]["containerStatuses"][0]["ready"], true, "{p}");
            assert!(ips.insert(p["status"]["podIP"].as_str().unwrap().to_string()), "duplicate pod IP in {pods}");
        }
        // Twenty `sleep 3600` processes really run.
        let sleeping = sh("pgrep -f '^sleep 3600$' | wc -l").trim().parse::<usize>().unwrap();
        assert!(sleeping >= 20, "{sleeping} sleep processes");
        k.ok(&["delete", "deployment", "web"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]).trim().is_empty() {
            assert!(Instant::now() < deadline, "the replicas were not removed");
            std::thread::sleep(Duration::from_millis(500));
        }
    }));
    let st = server.stop();
    let _ = Command::new("ip").args(["link", "del", "skiff0"]).status();
    unmount_all_under(d);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(st.success(), "{st:?}");
}

/// Wait until the server's own agent has registered `node` and it is Ready.
fn node_ready(k: &Kubectl, node: &str) {
    common::wait_until(&format!("node {node} Ready"), Duration::from_secs(60), || {
        let out = k.run(&["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
}

/// The kubelet's resource usage endpoints for a real pod: `/metrics/resource`
/// (what metrics-server scrapes) has its container, pod and node rows, and
/// the pod's numbers come from the pod's cgroup, not the sum of its running
/// containers: 20 MiB an init container left in a tmpfs (a hostPath on the
/// host's /dev/shm) is charged to the pod after that container is gone.
#[test]
fn resource_metrics_and_pod_level_usage() {
    if unsafe { libc_geteuid() } != 0 || !Path::new("/dev/shm").is_dir() {
        eprintln!("skipping: the resource metrics test needs root and a tmpfs at /dev/shm");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_busybox(d, &d.join("runtime"));
    let server = SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]);
    let kport = free_port();
    let agent = spawn_agent(&server.kubeconfig, d, "skiff-rm", kport, "skiffrm0", "10.244.245.0/24", &[]);
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);
    let shm = Path::new("/dev/shm").join(format!("skiff-test-{}", d.file_name().unwrap().to_string_lossy()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        common::wait_until("node skiff-rm", Duration::from_secs(30), || k.run(&["get", "node", "skiff-rm"]).status.success().then_some(()));
        const MIB20: u64 = 20 << 20;
        let p = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mem"},
            "spec": {"nodeName": "skiff-rm", "terminationGracePeriodSeconds": 1,
                "volumes": [{"name": "shm", "hostPath": {"path": shm.to_str().unwrap(), "type": "DirectoryOrCreate"}}],
                // A native sidecar first keeps the pod cgroup populated: an empty one
                // (between fill and main) is fair game for another agent's start-up sweep.
                "initContainers": [{"name": "keep", "image": "busybox:skiff-test", "restartPolicy": "Always", "command": ["sleep", "3600"]},
                    {"name": "fill", "image": "busybox:skiff-test", "command": ["sh", "-c", format!("head -c {MIB20} /dev/zero > /shm/blob")],
                    "volumeMounts": [{"name": "shm", "mountPath": "/shm"}]}],
                "containers": [{"name": "main", "image": "busybox:skiff-test",
                    "command": ["sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 3600"]}]}});
        apply(&k, &p.to_string());
        let p = wait_pod(&k, "mem", "Running", |p| p["status"]["phase"] == "Running");
        let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(std::fs::metadata(shm.join("blob")).unwrap().len(), MIB20);
        let token = std::fs::read_to_string(d.join("server/pki/admin.token")).unwrap();
        let url = |path: &str| format!("https://127.0.0.1:{kport}{path}");
        let get = |path: &str| sh(&format!("curl -sfk -H 'Authorization: Bearer {}' {}", token.trim(), url(path)));
        assert_eq!(sh(&format!("curl -sk -o /dev/null -w '%{{http_code}}' {}", url("/metrics/resource"))), "401");
        let ctype = sh(&format!("curl -sfk -o /dev/null -w '%{{content_type}}' -H 'Authorization: Bearer {}' {}", token.trim(), url("/metrics/resource")));
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8", "the Prometheus text format, as upstream");

        // The Summary API: the pod's working set holds the init container's
        // 20 MiB; its running container's (all the sum could see) does not.
        let summary = common::wait_until("mem in /stats/summary", Duration::from_secs(30), || {
            let s: Value = serde_json::from_str(&get("/stats/summary")).ok()?;
            let pod = s["pods"].as_array()?.iter().find(|p| p["podRef"]["uid"] == uid.as_str())?.clone();
            let main = pod["containers"].as_array()?.iter().find(|c| c["name"] == "main")?;
            (main["cpu"]["usageCoreNanoSeconds"].as_u64()? > 0).then_some(pod)
        });
        let containers = summary["containers"].as_array().unwrap();
        let mut names: Vec<&str> = containers.iter().map(|c| c["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["keep", "main"], "the running ones: {summary}");
        let total = |what: &str, key: &str| containers.iter().map(|c| c[what][key].as_u64().unwrap()).sum::<u64>();
        let pod_ws = summary["memory"]["workingSetBytes"].as_u64().unwrap_or_else(|| panic!("{summary}"));
        assert!(pod_ws >= MIB20, "the pod cgroup holds the tmpfs file: {summary}");
        assert!(total("memory", "workingSetBytes") < MIB20 / 2, "its running containers do not: {summary}");
        assert!(summary["memory"]["usageBytes"].as_u64().unwrap() >= pod_ws, "{summary}");
        let pod_cpu = summary["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap();
        assert!(pod_cpu >= total("cpu", "usageCoreNanoSeconds"), "the pod's cgroup counts the exited init container's CPU too: {summary}");
        let cgroup = format!("/sys/fs/cgroup/memory/kubepods/besteffort/pod{uid}/memory.usage_in_bytes");
        if let Ok(direct) = std::fs::read_to_string(&cgroup) {
            let direct: u64 = direct.trim().parse().unwrap();
            assert!(direct >= MIB20 && direct.abs_diff(summary["memory"]["usageBytes"].as_u64().unwrap()) < 8 << 20, "{cgroup}: {direct}; {summary}");
        }

        // /metrics/resource: every line well-formed; upstream's families and labels.
        let now_ms = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()) as i64;
        let text = get("/metrics/resource");
        let m = common::prom::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        for (name, kind) in [("node_cpu_usage_seconds_total", "counter"), ("node_memory_working_set_bytes", "gauge"), ("container_cpu_usage_seconds_total", "counter"), ("container_memory_working_set_bytes", "gauge"), ("container_start_time_seconds", "gauge"), ("pod_cpu_usage_seconds_total", "counter"), ("pod_memory_working_set_bytes", "gauge"), ("scrape_error", "gauge"), ("resource_scrape_error", "gauge")] {
            assert_eq!(m.kind.get(name).map(String::as_str), Some(kind), "{name}:\n{text}");
        }
        assert_eq!(m.help["pod_memory_working_set_bytes"], "[STABLE] Current working set of the pod in bytes");
        assert_eq!(m.one("scrape_error", &[]).value, 0.0);
        assert_eq!(m.one("resource_scrape_error", &[]).value, 0.0);
        let fresh = |s: &common::prom::Sample| s.timestamp.is_some_and(|t| (t - now_ms).abs() < 60_000);
        for name in ["node_cpu_usage_seconds_total", "node_memory_working_set_bytes"] {
            let s = m.one(name, &[]);
            assert!(s.value > 0.0 && fresh(s), "{s:?}");
        }
        let main = [("container", "main"), ("pod", "mem"), ("namespace", "default")];
        let cpu = m.one("container_cpu_usage_seconds_total", &main);
        assert!(cpu.value > 0.0 && fresh(cpu), "{cpu:?}");
        assert_eq!(cpu.labels.keys().collect::<Vec<_>>(), ["container", "namespace", "pod"]);
        let ws = m.one("container_memory_working_set_bytes", &main);
        assert!(ws.value > 0.0 && ws.value < (MIB20 / 2) as f64 && fresh(ws), "{ws:?}");
        let start = m.one("container_start_time_seconds", &main);
        assert!((start.value * 1000.0 - now_ms as f64).abs() < 600_000.0 && start.timestamp.is_none(), "{start:?}");
        assert!(m.find("container_cpu_usage_seconds_total", &[("container", "fill")]).is_empty(), "an exited container has no row");
        assert_eq!(m.find("container_memory_working_set_bytes", &[("pod", "mem")]).len(), 2, "keep and main: {text}");
        let pod = [("pod", "mem"), ("namespace", "default")];
        let pws = m.one("pod_memory_working_set_bytes", &pod);
        assert!(pws.value >= MIB20 as f64 && fresh(pws), "{pws:?}");
        assert_eq!(pws.labels.keys().collect::<Vec<_>>(), ["namespace", "pod"]);
        assert!(m.one("pod_cpu_usage_seconds_total", &pod).value >= cpu.value, "{text}");

        // /metrics/cadvisor: the pod cgroup is a row of its own (container="", id = its path).
        let text = get("/metrics/cadvisor");
        let c = common::prom::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        let row = c.one("container_memory_working_set_bytes", &[("container", ""), ("pod", "mem"), ("namespace", "default")]);
        assert_eq!(row.labels["id"], format!("/kubepods/besteffort/pod{uid}"));
        assert!(row.value >= MIB20 as f64, "{row:?}");
        k.ok(&["delete", "pod", "mem", "--wait=true", "--timeout=60s"]);
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    drop(agent);
    let _ = std::fs::remove_dir_all(&shm);
    let _ = Command::new("ip").args(["link", "del", "skiffrm0"]).status();
    unmount_all_under(d);
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}
