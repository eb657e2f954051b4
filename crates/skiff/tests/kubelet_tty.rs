//! End to end: containers with `tty: true` (issue 7). Real kubectl runs on a
//! pseudo-terminal this test opens (kubectl's `-t` wants its stdin to be a
//! terminal) and drives a shell in a real pod: `kubectl attach -it` with
//! 1.29 (SPDY) and 1.33 (WebSocket), window resizes, detaching and
//! re-attaching across an agent restart, `kubectl run -i -t` (and
//! `--rm`), and `stdinOnce`. Needs root (skipped otherwise), like kubelet.rs.

mod common;

use common::node::{apply, import_busybox, is_root, spawn_agent, unmount_all_under, wait_pod, wait_sandboxes_gone};
use common::tty::{attach_tty, Term};
use common::{free_port, wait_for_port, Kubectl, SkiffServer};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const NODE: &str = "skiff-tt";

fn pod(name: &str, command: &[&str], stdin_once: bool, tty: bool) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": NODE, "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [
            {"name": "c", "image": "busybox:skiff-test", "command": command, "stdin": true, "stdinOnce": stdin_once, "tty": tty}]}})
    .to_string()
}

/// `kubectl attach -i` (no terminal) that types `input`, closes its stdin
/// and waits (60 s at most, then kills it: `status.code()` is None) for kubectl to end.
fn attach_i(k: &Kubectl, pod: &str, input: &str) -> std::process::Output {
    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["attach", "-i", pod, "-c", "c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let pid = c.id();
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if waiting.recv_timeout(Duration::from_secs(60)).is_err() {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = c.wait_with_output().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    out
}

/// A stdinOnce container whose input has ended refuses another `attach -i`.
fn input_is_closed(k: &Kubectl, pod: &str) {
    let out = attach_i(k, pod, "late\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.status.code().is_some() && err.contains("stdin is closed"), "{:?}: {err}", out.status);
}

fn container_status(k: &Kubectl, pod: &str) -> serde_json::Value {
    let p = wait_pod(k, pod, "its container to terminate", |p| !p["status"]["containerStatuses"][0]["state"]["terminated"].is_null());
    p["status"]["containerStatuses"][0]["state"]["terminated"].clone()
}

#[test]
fn tty_containers() {
    if !is_root() {
        eprintln!("skipping: the tty end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    import_busybox(d, &d.join("runtime"));
    let server = SkiffServer::start_with(&d.join("server"), free_port(), &["--disable-agent"]);
    let kport = free_port();
    let start_agent = || spawn_agent(&server.kubeconfig, d, NODE, kport, "skifftt0", "10.244.247.0/24", &[]);
    let mut agent = Some(start_agent());
    wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // One shell, attached to by SPDY and WebSocket kubectls in turn;
        // each leaves without ending it.
        apply(&k, &pod("t", &["sh"], false, true));
        wait_pod(&k, "t", "Running", |p| p["status"]["phase"] == "Running");
        for (minor, size) in [(29, (100, 30)), (33, (132, 43))] {
            attach_tty(&Kubectl::new(minor, &server.kubeconfig), "t", size).kill();
            assert_eq!(k.ok(&["get", "pod", "t", "-o", "jsonpath={.status.phase}"]), "Running");
        }
        // A terminal has one stream: it went to the CRI log as stdout.
        let logs = k.ok(&["logs", "t"]);
        assert!(logs.contains("hi-3") && logs.contains("/dev/pts/0"), "{logs}");
        let log_file = std::fs::read_to_string(std::fs::read_dir(d.join("pods")).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with("default_t_")).unwrap().path().join("c/0.log")).unwrap();
        assert!(log_file.lines().all(|l| l.split(' ').nth(1) == Some("stdout")), "{log_file}");

        // stdinOnce on a container that outlives its input: after the first
        // client, no more input, also for the next agent (checked below).
        apply(&k, &pod("q", &["sh", "-c", "cat; echo cat-done; exec sleep 3600"], true, false));
        wait_pod(&k, "q", "Running", |p| p["status"]["phase"] == "Running");
        let mut first = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["attach", "-i", "q", "-c", "c"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        first.stdin.take().unwrap().write_all(b"first\n").unwrap();
        common::wait_until("cat to end", Duration::from_secs(30), || k.ok(&["logs", "q"]).contains("cat-done").then_some(()));
        let _ = first.kill();
        let _ = first.wait();
        assert_eq!(k.ok(&["logs", "q"]), "first\ncat-done\n");
        input_is_closed(&k, "q");

        // The terminal's keeper outlives the agent: a new agent attaches to the same shell.
        drop(agent.take());
        agent = Some(start_agent());
        wait_for_port(kport, Duration::from_secs(30));
        input_is_closed(&Kubectl::new(29, &server.kubeconfig), "q");
        let mut t = attach_tty(&k, "t", (90, 20));
        let m = t.mark();
        t.send("echo after-$((2*3)); exit 3\r");
        t.wait_for("after-6", m);
        t.wait();
        let term = container_status(&k, "t");
        assert_eq!(term["exitCode"], 3, "{term}");
        let p = wait_pod(&k, "t", "Failed", |p| p["status"]["phase"] == "Failed");
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);

        // `kubectl run -i -t` (stdin, stdinOnce and tty all true).
        let overrides = format!(r#"{{"apiVersion": "v1", "spec": {{"nodeName": "{NODE}"}}}}"#);
        let mut t = Term::spawn(&k, &["run", "-i", "-t", "r", "--image=busybox:skiff-test", "--restart=Never", "--overrides", &overrides, "--", "sh"]);
        t.wait_for("If you don't see a command prompt, try pressing enter.", 0);
        let m = t.mark();
        t.send("[ -t 0 ] && [ -t 1 ] && echo run-tty-$((40+2)); exit\r");
        t.wait_for("run-tty-42", m);
        t.wait();
        assert_eq!(container_status(&k, "r")["exitCode"], 0);
        let p = k.ok(&["get", "pod", "r", "-o", "json"]);
        let p: serde_json::Value = serde_json::from_str(&p).unwrap();
        let c = &p["spec"]["containers"][0];
        assert_eq!((c["stdin"].as_bool(), c["stdinOnce"].as_bool(), c["tty"].as_bool()), (Some(true), Some(true), Some(true)));
        // Over SPDY, and with --rm: kubectl deletes the pod when the session ends.
        let mut t = Term::spawn(&Kubectl::new(29, &server.kubeconfig), &["run", "-it", "--rm", "rm", "--image=busybox:skiff-test", "--restart=Never", "--overrides", &overrides, "--", "sh"]);
        t.wait_for("If you don't see a command prompt, try pressing enter.", 0);
        let m = t.mark();
        t.send("echo rm-$((3*3)); exit\r");
        t.wait_for("rm-9", m);
        let st = t.wait();
        assert!(st.success(), "{st:?}");
        common::wait_until("kubectl run --rm to delete the pod", Duration::from_secs(30), || (!k.run(&["get", "pod", "rm"]).status.success()).then_some(()));

        // stdinOnce: when the first attached client closes its input, the
        // container's input ends after what it sent (the shell reads EOF and
        // exits 0), with a terminal or without. kubectl without -t sends a
        // plain stream, closed at the end of its stdin.
        for (minor, name, tty) in [(29, "o29", true), (33, "o33", true), (29, "p29", false), (33, "p33", false)] {
            apply(&k, &pod(name, &["sh", "-c", "sh; echo input-ended"], true, tty));
            wait_pod(&k, name, "Running", |p| p["status"]["phase"] == "Running");
            let k = Kubectl::new(minor, &server.kubeconfig);
            // kubectl ends when the container does; if its input never ends, neither does kubectl.
            let out = attach_i(&k, name, "echo once-$((2+3))\n");
            assert!(out.status.code().is_some(), "{}: the container's input did not end when kubectl's did", k.bin);
            assert!(String::from_utf8_lossy(&out.stdout).contains("once-5"), "{}: {}{}", k.bin, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(container_status(&k, name)["exitCode"], 0, "{}", k.bin);
            let logs = k.ok(&["logs", name]);
            assert!(logs.contains("once-5") && logs.contains("input-ended"), "{logs}");
        }
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    wait_sandboxes_gone(&d.join("runtime"));
    drop(agent);
    let _ = Command::new("ip").args(["link", "del", "skifftt0"]).status();
    unmount_all_under(d);
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}
