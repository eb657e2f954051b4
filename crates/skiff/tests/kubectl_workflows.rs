//! Everyday kubectl workflows against `skiff server`, old and new kubectl:
//! get -w / -l / --field-selector / -o yaml|json|jsonpath, describe, edit
//! through KUBE_EDITOR, wait --for=condition, events, annotate.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Kubectl, SkiffServer};

fn create(k: &Kubectl, dir: &std::path::Path, name: &str, json: &str) {
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, json).unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
}

fn pod(name: &str, labels: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{{labels}}}}},"spec":{{"containers":[{{"name":"c","image":"busybox:1.36"}}]}}}}"#)
}

#[test]
fn get_watch_selectors_and_output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]); // exact ConfigMap lists: no kube-root-ca.crt
    for minor in [27, 31] {
        let k = Kubectl::new(minor, &server.kubeconfig);
        let ns = format!("w{minor}");
        k.ok(&["create", "namespace", &ns]);
        // kubectl get -w prints the initial list, then each change, until stopped.
        let mut child = Command::new(&k.bin)
            .env("KUBECONFIG", &k.kubeconfig)
            .args(["get", "configmaps", "-n", &ns, "-w", "--request-timeout=0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        k.ok(&["create", "configmap", "one", "-n", &ns, "--from-literal=a=1"]);
        k.ok(&["create", "configmap", "two", "-n", &ns]);
        k.ok(&["delete", "configmap", "one", "-n", &ns]);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = child.kill();
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let _ = child.wait();
        let names: Vec<&str> = out.lines().filter(|l| !l.starts_with("NAME")).map(|l| l.split_whitespace().next().unwrap_or("")).collect();
        assert_eq!(names, ["one", "two", "one"], "1.{minor} get -w printed:\n{out}");

        create(&k, dir.path(), "a", &pod("a", r#""app":"web","tier":"front""#).replace(r#""name":"a""#, &format!(r#""name":"a","namespace":"{ns}""#)));
        create(&k, dir.path(), "b", &pod("b", r#""app":"db""#).replace(r#""name":"b""#, &format!(r#""name":"b","namespace":"{ns}""#)));
        assert_eq!(k.ok(&["get", "pods", "-n", &ns, "-l", "app=web", "-o", "name"]).trim(), "pod/a");
        assert_eq!(k.ok(&["get", "pods", "-n", &ns, "-l", "app in (web,db),tier!=front", "-o", "name"]).trim(), "pod/b");
        assert_eq!(k.ok(&["get", "pods", "-n", &ns, "--field-selector", "metadata.name=b,status.phase=Pending", "-o", "name"]).trim(), "pod/b");
        assert!(k.err(&["get", "pods", "-n", &ns, "--field-selector", "spec.bogus=1"]).contains("field label not supported: spec.bogus"));
        let yaml = k.ok(&["get", "pod", "a", "-n", &ns, "-o", "yaml"]);
        assert!(yaml.contains("kind: Pod") && yaml.contains("  labels:\n    app: web"), "{yaml}");
        let json: serde_json::Value = serde_json::from_str(&k.ok(&["get", "pods", "-n", &ns, "-o", "json"])).unwrap();
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"].as_array().unwrap().len(), 2);
        assert_eq!(k.ok(&["get", "pods", "-n", &ns, "-o", "jsonpath={.items[*].metadata.name}"]), "a b");
        k.ok(&["annotate", "pod", "a", "-n", &ns, "note=hello"]);
        assert_eq!(k.ok(&["get", "pod", "a", "-n", &ns, "-o", "jsonpath={.metadata.annotations.note}"]), "hello");
        k.ok(&["annotate", "pod", "a", "-n", &ns, "note-"]);
        assert_eq!(k.ok(&["get", "pod", "a", "-n", &ns, "-o", "jsonpath={.metadata.annotations.note}"]), "");
    }
}

#[test]
fn describe_edit_wait_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    for minor in [27, 33] {
        let k = Kubectl::new(minor, &server.kubeconfig);
        let name = format!("p{minor}");
        create(&k, dir.path(), &name, &pod(&name, r#""app":"web""#));
        // An event about the pod, as a kubelet or scheduler would record it.
        let uid = k.ok(&["get", "pod", &name, "-o", "jsonpath={.metadata.uid}"]);
        let ev = format!(
            r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"{name}.1"}},"involvedObject":{{"kind":"Pod","namespace":"default","name":"{name}","uid":"{uid}","apiVersion":"v1"}},
              "reason":"FailedScheduling","message":"0/3 nodes are available: 3 Insufficient cpu.","type":"Warning","source":{{"component":"default-scheduler"}},
              "firstTimestamp":"2026-01-01T00:00:00Z","lastTimestamp":"2026-01-01T00:00:00Z","count":1,"reportingComponent":"default-scheduler"}}"#
        );
        create(&k, dir.path(), &format!("{name}-ev"), &ev);

        // describe shows the pod's fields and its events.
        let d = k.ok(&["describe", "pod", &name]);
        // Column widths vary with the fields shown; compare with spaces collapsed.
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let flat = squash(&d);
        for want in [format!("Name: {name}"), "Namespace: default".into(), "Labels: app=web".into(), "Image: busybox:1.36".into(), "QoS Class: BestEffort".into(),
                     "node.kubernetes.io/not-ready:NoExecute op=Exists for 300s".into(), "Warning FailedScheduling".into(), "default-scheduler 0/3 nodes are available: 3 Insufficient cpu.".into()] {
            assert!(flat.contains(&want), "1.{minor} describe lacks {want:?}:\n{d}");
        }
        let events = if minor >= 28 { k.ok(&["events", "--for", &format!("pod/{name}")]) } else { k.ok(&["get", "events", "--field-selector", &format!("involvedObject.name={name}"), "-o", "jsonpath={.items[*].reason} {.items[*].message}"]) };
        assert!(events.contains("FailedScheduling") && events.contains("Insufficient cpu"), "1.{minor}: {events}");

        // edit through KUBE_EDITOR: the editor rewrites the image.
        let editor = dir.path().join("editor.sh");
        std::fs::write(&editor, "#!/bin/sh\nsed -i 's/busybox:1.36/busybox:1.37/' \"$1\"\n").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(&mut std::fs::metadata(&editor).unwrap().permissions(), 0o755);
        Command::new("chmod").args(["+x", editor.to_str().unwrap()]).status().unwrap();
        let out = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).env("KUBE_EDITOR", &editor).args(["edit", "pod", &name, "--validate=false"]).output().unwrap();
        assert!(out.status.success(), "1.{minor} edit: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("pod/{name} edited"));
        assert_eq!(k.ok(&["get", "pod", &name, "-o", "jsonpath={.spec.containers[0].image}"]), "busybox:1.37");
        let managers = k.ok(&["get", "pod", &name, "-o", "jsonpath={.metadata.managedFields[*].manager}", "--show-managed-fields"]);
        assert!(managers.contains("kubectl-edit"), "1.{minor}: {managers}");

        // wait --for=condition: returns once the condition turns up.
        let waiter = Command::new(&k.bin)
            .env("KUBECONFIG", &k.kubeconfig)
            .args(["wait", "--for=condition=Ready", &format!("pod/{name}"), "--timeout=30s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        let started = Instant::now();
        k.ok(&["patch", "pod", &name, "--subresource=status", "--type=merge", "-p", r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#]);
        let out = waiter.wait_with_output().unwrap();
        assert!(out.status.success(), "1.{minor} wait: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("pod/{name} condition met"));
        assert!(started.elapsed() < Duration::from_secs(25));
        // And wait --for=delete.
        k.ok(&["delete", "pod", &name, "--wait=false"]);
        k.ok(&["wait", "--for=delete", &format!("pod/{name}"), "--timeout=10s"]);
    }
}
