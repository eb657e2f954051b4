//! End to end on Debian's containerd instead of the embedded runtime:
//! `skiff agent --container-runtime-endpoint unix://…` drives containerd's
//! CRI plugin, and real kubectl sees a pod run (podIP from the CNI bridge),
//! its logs, `exec`, `attach` and `port-forward` in both upgrade flavours (SPDY for 1.27/1.29, WebSocket
//! for 1.33, which the kubelet translates to SPDY for containerd), a
//! crashing container's exit code and restarts, and the sandbox gone from
//! containerd after the pod is deleted, and a `tty: true` container's
//! terminal through `attach -it`. Root only, and skipped without
//! containerd (package `containerd`).
//!
//! The test runs its own containerd (own root, state, socket, runc root,
//! CNI config; `crates/bench/src/containerd.rs`, which the bench uses too)
//! so it touches nothing of a system containerd; no registry is reachable,
//! so the sandbox ("pause") image and the busybox image are built from
//! busybox-static and imported with `ctr`.

mod common;

use common::node::{apply, attach, build_image, is_root, port_forward, unmount_all_under, wait_pod};
use common::tty::attach_tty;
use common::{free_port, wait_for_port, wait_until, Kubectl, SkiffProc, SkiffServer};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The private containerd, shared with `bench pod-startup --containerd`.
#[path = "../../bench/src/containerd.rs"]
mod containerd;
use containerd::{Containerd, Setup};

const SETUP: Setup = Setup { bridge: "skiffctrd0", subnet: "10.244.249.0/24", pause: "skiff.test/pause:1" };
/// containerd's CRI normalizes `busybox:skiff-test` to this name, so that is the name it is imported under.
const BUSYBOX: &str = "docker.io/library/busybox:skiff-test";

/// The pod sandboxes containerd has for pods named `name`, through our CRI client: (id, ready).
fn sandboxes(socket: &Path, name: &str) -> Vec<(String, bool)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ch = skiff_kubelet::connect_cri(socket.to_owned()).await.unwrap();
        let mut c = skiff_cri::runtime_service_client::RuntimeServiceClient::new(ch);
        let filter = skiff_cri::PodSandboxFilter { label_selector: [("io.kubernetes.pod.name".to_string(), name.to_string())].into(), ..Default::default() };
        let items = c.list_pod_sandbox(skiff_cri::ListPodSandboxRequest { filter: Some(filter) }).await.unwrap().into_inner().items;
        items.into_iter().map(|s| (s.id, s.state == skiff_cri::PodSandboxState::SandboxReady as i32)).collect()
    })
}

fn pod(name: &str, command: &str, resources: Value) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"nodeName": "skiff-ctrd", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox:skiff-test", "stdin": true, "command": ["sh", "-c", command], "resources": resources}]}})
    .to_string()
}

/// `kubectl exec`: output, stderr, exit code, its own PID namespace, stdin to EOF, bulk data, a terminal.
fn exec(k: &Kubectl) {
    let out = k.run(&["exec", "web", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}: {}", k.bin, String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n", "{}", k.bin);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("err\n"), "{}: {}", k.bin, String::from_utf8_lossy(&out.stderr));
    // PID 1 is the container's own command, not the sandbox's pause: the kubelet asked for a per-container PID namespace.
    assert_eq!(k.ok(&["exec", "web", "--", "cat", "/proc/1/cmdline"]).split('\0').next(), Some("sh"));

    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["exec", "-i", "web", "--", "sh", "-c", "cat; echo done"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"hello\nworld\n").unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", k.bin);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nworld\ndone\n", "{}", k.bin);

    // Bulk both ways: more than any flow-control window.
    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["exec", "-i", "web", "--", "wc", "-c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut input = c.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || input.write_all(&vec![b'z'; 3 << 20]).unwrap());
    let out = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (3 << 20).to_string(), "{}", k.bin);
    let out = k.run(&["exec", "web", "--", "head", "-c", "5000000", "/dev/zero"]);
    assert_eq!(out.stdout.len(), 5_000_000, "{}", k.bin);

    let cmd = format!("{} exec -it web -- sh -c 'tty; exit 4'", k.bin);
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).env("KUBECONFIG", &k.kubeconfig).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{}: {text}", k.bin);
    assert_eq!(out.status.code(), Some(4), "{}: {text}", k.bin);
}

/// kubectl 1.33 speaks WebSocket first and falls back to SPDY when the
/// upgrade fails; the kubelet must make the WebSocket upgrade itself work.
fn websocket_without_fallback(k: &Kubectl) {
    let out = k.run(&["exec", "web", "-v=8", "--", "echo", "ws"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ws\n");
    assert!(!log.contains("fallback"), "kubectl fell back to SPDY: {log}");
    assert!(log.contains("Upgrade: websocket"), "{log}");
}

#[test]
fn pod_runs_through_containerd() {
    if !is_root() {
        eprintln!("skipping: the containerd end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    if Command::new("containerd").arg("--version").output().is_err() {
        eprintln!("skipping: containerd is not installed (apt-get install containerd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ctrd = Containerd::start(&d.join("containerd"), &SETUP).expect("start containerd");
    // The sandbox image: present locally, so the CRI plugin never tries to pull it.
    ctrd.import(&build_image(d, SETUP.pause, json!({"Env": ["PATH=/bin"], "Entrypoint": ["/bin/sleep", "2147483647"]}))).unwrap();
    ctrd.import(&build_image(d, BUSYBOX, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}))).unwrap();

    let server = SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]);
    let kport = free_port();
    let endpoint = format!("unix://{}", ctrd.socket().display());
    let (logs, kubelet) = (d.join("pods").display().to_string(), d.join("kubelet").display().to_string());
    let agent = SkiffProc::start(
        &server.kubeconfig,
        &d.join("agent.log"),
        &["agent", "--node-name", "skiff-ctrd", "--node-ip", "127.0.0.1", "--port", &kport.to_string(), "--container-runtime-endpoint", &endpoint, "--pod-cidr", SETUP.subnet, "--pod-log-dir", &logs, "--root-dir", &kubelet],
    );
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let version = wait_until("the node", Duration::from_secs(20), || {
            let out = k.run(&["get", "node", "skiff-ctrd", "-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion}"]);
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
        });
        assert!(version.starts_with("containerd://1."), "{version}");

        // Guaranteed: its oom_score_adj (-997) is one containerd must clamp (restrict_oom_score_adj).
        let limits = json!({"limits": {"cpu": "250m", "memory": "64Mi"}});
        apply(&k, &pod("web", "nc -ll -p 8080 -e echo hi & echo hello from containerd; while read l; do echo \"got $l\"; done", limits));
        let p = wait_pod(&k, "web", "Running with a pod IP", |p| p["status"]["phase"] == "Running" && p["status"]["podIP"].is_string());
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(ip.starts_with("10.244.249."), "pod IP {ip} is not from the containerd CNI config's subnet");
        let cs = &p["status"]["containerStatuses"][0];
        assert!(cs["containerID"].as_str().unwrap().starts_with("containerd://"), "{cs:#}");
        assert_eq!(cs["ready"], true);
        // The kubelet's cgroup parent and limits, applied by containerd (cgroupfs driver).
        let uid = p["metadata"]["uid"].as_str().unwrap();
        let cid = cs["containerID"].as_str().unwrap().trim_start_matches("containerd://");
        if Path::new("/sys/fs/cgroup/memory").exists() {
            let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).unwrap_or_default().trim().to_string();
            assert_eq!(read(&format!("memory/kubepods/pod{uid}/{cid}/memory.limit_in_bytes")), (64u64 << 20).to_string());
            assert_eq!(read(&format!("cpu/kubepods/pod{uid}/{cid}/cpu.cfs_quota_us")), "25000");
        }
        // The log file is where the kubelet told containerd to write it (log_directory + log_path).
        let log = wait_until("the container's output", Duration::from_secs(20), || {
            let out = k.ok(&["logs", "web"]);
            (!out.is_empty()).then_some(out)
        });
        assert_eq!(log, "hello from containerd\n");
        assert!(d.join(format!("pods/default_web_{uid}/c/0.log")).exists());
        let sbs = sandboxes(&ctrd.socket(), "web");
        assert!(sbs.len() == 1 && sbs[0].1, "one ready sandbox in containerd: {sbs:?}");
        // Resource usage comes through CRI ListContainerStats, so containerd's numbers show too.
        let token = std::fs::read_to_string(d.join("server/pki/admin.token")).unwrap();
        let summary = wait_until("web in /stats/summary", Duration::from_secs(20), || {
            let out = Command::new("curl").args(["-sfk", "-H", &format!("Authorization: Bearer {}", token.trim()), &format!("https://127.0.0.1:{kport}/stats/summary")]).output().ok()?;
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            s["pods"].as_array()?.iter().find(|p| p["podRef"]["name"] == "web" && p["podRef"]["uid"] == uid).cloned()
        });
        assert_eq!(summary["containers"][0]["name"], "c");
        assert!(summary["containers"][0]["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{summary}");
        assert!(summary["containers"][0]["cpu"]["usageCoreNanoSeconds"].as_u64().is_some(), "{summary}");
        // containerd (cgroupfs driver) puts the pod under the kubelet's cgroup parent, so the pod's
        // numbers are its cgroup's: the sandbox's pause is in them too.
        let pod_ws = summary["memory"]["workingSetBytes"].as_u64().unwrap_or_else(|| panic!("{summary}"));
        if Path::new(&format!("/sys/fs/cgroup/memory/kubepods/pod{uid}")).exists() {
            assert!(pod_ws > summary["containers"][0]["memory"]["workingSetBytes"].as_u64().unwrap(), "{summary}");
        }
        let resource = String::from_utf8(Command::new("curl").args(["-sfk", "-H", &format!("Authorization: Bearer {}", token.trim()), &format!("https://127.0.0.1:{kport}/metrics/resource")]).output().unwrap().stdout).unwrap();
        let m = common::prom::parse(&resource).unwrap_or_else(|e| panic!("{e}:\n{resource}"));
        assert!(m.one("container_memory_working_set_bytes", &[("container", "c"), ("pod", "web"), ("namespace", "default")]).value > 0.0, "{resource}");
        assert!(m.one("pod_memory_working_set_bytes", &[("pod", "web"), ("namespace", "default")]).value > 0.0, "{resource}");
        assert_eq!(m.one("resource_scrape_error", &[]).value, 0.0);

        for minor in [27, 29, 33] {
            let k = Kubectl::new(minor, &server.kubeconfig);
            exec(&k);
            attach(&k, "web");
            port_forward(&k, "web");
        }
        websocket_without_fallback(&k);

        // tty: true reaches containerd: `attach -it` finds a terminal that follows resizes
        // (for 1.33 through the kubelet's WebSocket-to-SPDY translation, resize stream included).
        apply(&k, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "term"}, "spec": {"nodeName": "skiff-ctrd", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:skiff-test", "command": ["sh"], "stdin": true, "tty": true}]}}).to_string());
        wait_pod(&k, "term", "Running", |p| p["status"]["phase"] == "Running");
        for (minor, size) in [(29, (100, 30)), (33, (132, 43))] {
            attach_tty(&Kubectl::new(minor, &server.kubeconfig), "term", size).kill();
        }
        k.ok(&["delete", "pod", "term", "--wait=true", "--timeout=60s"]);

        // A container that fails: its exit code, then restarts with backoff; logs --previous.
        apply(&k, &pod("crash", "echo attempt; exit 7", json!({})));
        let p = wait_pod(&k, "crash", "a restart", |p| p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) >= 1);
        let cs: &Value = &p["status"]["containerStatuses"][0];
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 7, "{cs:#}");
        assert_eq!(cs["lastState"]["terminated"]["reason"], "Error", "{cs:#}");
        assert_eq!(k.ok(&["logs", "crash", "--previous"]), "attempt\n");
        // The second restart (after the 10 s backoff) prunes the first instance, and its log file with it.
        let p = wait_pod(&k, "crash", "a second restart", |p| p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) >= 2);
        let logs = d.join(format!("pods/default_crash_{}/c", p["metadata"]["uid"].as_str().unwrap()));
        wait_until("the pruned instance's log file to go", Duration::from_secs(10), || (!logs.join("0.log").exists()).then_some(()));
        assert!(logs.join("2.log").exists(), "attempts keep counting after a pruned one");

        k.ok(&["delete", "pod", "web", "crash", "--wait=true", "--timeout=60s"]);
        for name in ["web", "crash"] {
            assert_eq!(sandboxes(&ctrd.socket(), name), vec![], "{name}'s sandbox is gone from containerd");
        }
        let left = String::from_utf8_lossy(&ctrd.ctr(&["containers", "ls", "-q"]).unwrap().stdout).to_string();
        assert_eq!(left, "", "containers left in containerd");
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=30s"]);
    drop(agent);
    // Secret and projected volumes are tmpfs mounts of the kubelet's.
    unmount_all_under(&d.join("kubelet"));
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        let log = std::fs::read_to_string(d.join("containerd/containerd.log")).unwrap_or_default();
        eprintln!("containerd errors:\n{}", log.lines().filter(|l| l.contains("level=error")).collect::<Vec<_>>().join("\n"));
        drop(ctrd);
        std::panic::resume_unwind(e);
    }
}
