//! End to end: the ResourceQuota status controller inside `skiff server`,
//! driven with real kubectl: status.used follows pods, configmaps and
//! deployments in the namespace, and `kubectl describe quota` shows it.

mod common;

use std::time::Duration;

use common::{wait_until, Kubectl, SkiffServer};
use serde_json::{json, Value};

fn create(k: &Kubectl, dir: &std::path::Path, obj: Value) {
    let f = dir.join(format!("obj-{}.json", rand::random::<u64>()));
    std::fs::write(&f, obj.to_string()).unwrap();
    k.ok(&["create", "-n", "q", "-f", f.to_str().unwrap()]);
}

fn pod(name: &str, cpu: &str, mem_limit: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu}, "limits": {"memory": mem_limit}}}]}})
}

/// `status.used` of quota `q/compute`, once the controller wrote it.
fn used(k: &Kubectl) -> Option<Value> {
    let out = k.ok(&["get", "resourcequota", "compute", "-n", "q", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let u = v["status"]["used"].clone();
    u.is_object().then_some(u)
}

/// Wait until status.used has exactly `want` for each given key.
fn wait_used(k: &Kubectl, want: &[(&str, &str)]) -> Value {
    wait_until(&format!("quota used {want:?}"), Duration::from_secs(20), || {
        let u = used(k)?;
        want.iter().all(|(key, val)| u[*key] == *val).then_some(u)
    })
}

#[test]
fn quota_status_tracks_usage() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(&dir.path().join("server"), common::free_port(), &[]);
    let k = Kubectl::new(33, &server.kubeconfig);
    k.ok(&["create", "namespace", "q"]);
    create(&k, dir.path(), json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
        "spec": {"hard": {"pods": "5", "requests.cpu": "2", "limits.memory": "4Gi", "configmaps": "10",
            "count/deployments.apps": "3", "services": "2"}}}));

    // Empty namespace: every hard key is reported, as 0 where nothing is charged.
    let u = wait_used(&k, &[("pods", "0"), ("requests.cpu", "0"), ("limits.memory", "0"), ("count/deployments.apps", "0"), ("services", "0")]);
    assert_eq!(u.as_object().unwrap().len(), 6, "one used entry per hard key: {u}");
    let hard = k.ok(&["get", "resourcequota", "compute", "-n", "q", "-o", "jsonpath={.status.hard.requests\\.cpu}"]);
    assert_eq!(hard, "2");

    // Pending pods (no node) count; sums use canonical quantities.
    create(&k, dir.path(), pod("p1", "500m", "1Gi"));
    create(&k, dir.path(), pod("p2", "1", "512Mi"));
    create(&k, dir.path(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1"}}));
    create(&k, dir.path(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}));
    create(&k, dir.path(), json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}));
    k.ok(&["create", "service", "clusterip", "s", "-n", "q", "--tcp=80:80"]);
    wait_used(&k, &[("pods", "2"), ("requests.cpu", "1500m"), ("limits.memory", "1536Mi"), ("count/deployments.apps", "1"), ("services", "1")]);
    // Every configmap in the namespace counts (including any kube-root-ca.crt).
    wait_until("configmaps counted", Duration::from_secs(20), || {
        let n = k.ok(&["get", "configmaps", "-n", "q", "-o", "name"]).lines().count();
        (n >= 2 && used(&k)?["configmaps"].as_str() == Some(n.to_string().as_str())).then_some(())
    });

    // describe shows Used next to Hard.
    let d = k.ok(&["describe", "quota", "compute", "-n", "q"]);
    let row = |name: &str| d.lines().find(|l| l.split_whitespace().next() == Some(name)).map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert!(d.contains("Used") && d.contains("Hard"), "{d}");
    assert_eq!(row("requests.cpu"), Some(vec!["requests.cpu", "1500m", "2"]), "{d}");
    assert_eq!(row("limits.memory"), Some(vec!["limits.memory", "1536Mi", "4Gi"]), "{d}");
    assert_eq!(row("pods"), Some(vec!["pods", "2", "5"]), "{d}");

    // A terminal pod no longer uses quota.
    k.ok(&["patch", "pod", "p1", "-n", "q", "--subresource=status", "--type=merge", "-p", r#"{"status":{"phase":"Failed"}}"#]);
    wait_used(&k, &[("pods", "1"), ("requests.cpu", "1"), ("limits.memory", "512Mi")]);

    // A deleted pod and deployment release theirs.
    k.ok(&["delete", "pod", "p2", "-n", "q", "--grace-period=0", "--force", "--wait=false"]);
    k.ok(&["delete", "deployment", "d", "-n", "q", "--wait=false"]);
    wait_used(&k, &[("pods", "0"), ("requests.cpu", "0"), ("limits.memory", "0"), ("count/deployments.apps", "0")]);

    // Changing spec.hard is mirrored into status.hard.
    k.ok(&["patch", "resourcequota", "compute", "-n", "q", "--type=merge", "-p", r#"{"spec":{"hard":{"pods":"7"}}}"#]);
    wait_until("status.hard follows spec.hard", Duration::from_secs(20), || {
        let h = k.ok(&["get", "resourcequota", "compute", "-n", "q", "-o", "jsonpath={.status.hard.pods}"]);
        (h == "7").then_some(())
    });
}
