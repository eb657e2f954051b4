//! End to end: the controller manager inside `skiff server`, driven with real kubectl.
//! No kubelet runs pods yet, so the tests play the kubelet: they mark pods
//! Running and Ready through the status subresource.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Kubectl, SkiffServer};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn jp(k: &Kubectl, args: &[&str], path: &str) -> String {
    let mut a: Vec<&str> = args.to_vec();
    let p = format!("jsonpath={path}");
    a.extend(["-o", &p]);
    k.ok(&a)
}

fn mark_ready(k: &Kubectl, pod: &str) {
    let now = "2020-01-01T00:00:00Z";
    let patch = format!(
        r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{now}"}}]}}}}"#
    );
    let _ = k.run(&["patch", "pod", pod, "--subresource=status", "--type=merge", "-p", &patch]);
}

/// Play the kubelet in the background: every pod that appears becomes Running and Ready.
struct FakeKubelet {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    fn start(kubeconfig: &std::path::Path) -> FakeKubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let k = Kubectl::new(31, kubeconfig);
        let handle = std::thread::spawn(move || {
            let mut done = HashSet::new();
            while !s.load(Ordering::Relaxed) {
                let out = k.run(&["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}"]);
                for name in String::from_utf8_lossy(&out.stdout).lines() {
                    if !name.is_empty() && done.insert(name.to_owned()) {
                        mark_ready(&k, name);
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        FakeKubelet { stop, handle: Some(handle) }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn pod_names(k: &Kubectl, selector: &str) -> Vec<String> {
    let out = k.ok(&["get", "pods", "-l", selector, "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}"]);
    out.lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

#[test]
fn replicaset_adopts_creates_reports_status_and_scales_down_not_ready_first() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    // Leader election: the controller manager holds the upstream-named Lease.
    wait_for("leader lease", Duration::from_secs(30), || {
        k.run(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]).stdout.len() > 1
    });
    assert_eq!(jp(&k, &["get", "lease", "-n", "kube-system", "kube-controller-manager"], "{.spec.leaseDurationSeconds}"), "15");

    // An orphan pod the ReplicaSet will adopt.
    let f = dir.path().join("orphan.json");
    std::fs::write(&f, r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"orphan","labels":{"app":"frontend"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#).unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
    mark_ready(&k, "orphan");
    let f = dir.path().join("rs.json");
    std::fs::write(
        &f,
        r#"{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"frontend"},"spec":{"replicas":3,
          "selector":{"matchLabels":{"app":"frontend"}},
          "template":{"metadata":{"labels":{"app":"frontend"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}"#,
    )
    .unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
    wait_for("3 replicas", Duration::from_secs(30), || jp(&k, &["get", "rs", "frontend"], "{.status.replicas}") == "3");
    // Exactly 3 pods: the adopted orphan plus 2 created, never more (expectations).
    std::thread::sleep(Duration::from_secs(1));
    let pods = pod_names(&k, "app=frontend");
    assert_eq!(pods.len(), 3, "{pods:?}");
    assert!(pods.contains(&"orphan".to_string()));
    for p in pods.iter().filter(|p| *p != "orphan") {
        assert!(p.starts_with("frontend-") && p.len() == "frontend-".len() + 5, "{p}");
    }
    let uid = jp(&k, &["get", "rs", "frontend"], "{.metadata.uid}");
    for p in &pods {
        let owner = jp(&k, &["get", "pod", p], "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].uid}/{.metadata.ownerReferences[0].controller}/{.metadata.ownerReferences[0].blockOwnerDeletion}");
        assert_eq!(owner, format!("ReplicaSet/frontend/{uid}/true/true"), "{p}");
    }
    wait_for("ready 1", Duration::from_secs(20), || {
        jp(&k, &["get", "rs", "frontend"], "{.status.readyReplicas} {.status.availableReplicas} {.status.fullyLabeledReplicas} {.status.observedGeneration}") == "1 1 3 1"
    });

    // A pod deleted by hand is replaced.
    let victim = pods.iter().find(|p| *p != "orphan").unwrap().clone();
    k.ok(&["delete", "pod", &victim, "--wait=false"]);
    wait_for("replacement", Duration::from_secs(20), || {
        let now = pod_names(&k, "app=frontend");
        now.len() == 3 && !now.contains(&victim)
    });

    // Scale down to 1: the not-ready pods go first, the ready orphan stays.
    k.ok(&["scale", "rs", "frontend", "--replicas=1"]);
    wait_for("scale down", Duration::from_secs(20), || pod_names(&k, "app=frontend") == vec!["orphan".to_string()]);
    wait_for("status 1", Duration::from_secs(20), || jp(&k, &["get", "rs", "frontend"], "{.status.replicas} {.status.observedGeneration}") == "1 2");

    // Relabelled pods are released.
    k.ok(&["label", "pod", "orphan", "app=other", "--overwrite"]);
    wait_for("release", Duration::from_secs(20), || jp(&k, &["get", "pod", "orphan"], "{.metadata.ownerReferences}").is_empty());
    wait_for("replacement after release", Duration::from_secs(20), || pod_names(&k, "app=frontend").len() == 1);
}

#[test]
fn deployment_rolling_update_history_undo_pause_resume_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    let _kubelet = FakeKubelet::start(&server.kubeconfig);
    k.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=3"]);
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    let rs1 = k.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let hash = jp(&k, &["get", "rs", &rs1], "{.metadata.labels.pod-template-hash}");
    assert_eq!(rs1, format!("web-{hash}"));
    assert_eq!(jp(&k, &["get", "rs", &rs1], "{.spec.selector.matchLabels.pod-template-hash}"), hash);
    assert_eq!(jp(&k, &["get", "rs", &rs1], "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"), "1");
    assert_eq!(jp(&k, &["get", "deploy", "web"], "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"), "1");
    let conds = jp(&k, &["get", "deploy", "web"], "{range .status.conditions[*]}{.type}={.status}/{.reason} {end}");
    assert_eq!(conds, "Available=True/MinimumReplicasAvailable Progressing=True/NewReplicaSetAvailable ");
    assert_eq!(jp(&k, &["get", "deploy", "web"], "{.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas}"), "3 3 3 3");
    for p in pod_names(&k, "app=web") {
        assert!(p.starts_with(&format!("{rs1}-")), "{p}");
    }

    // A new image rolls out through a second ReplicaSet; the first ends at 0.
    k.ok(&["set", "image", "deploy/web", "nginx=nginx:1.26"]);
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = k.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas}={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"]);
    let mut rss: Vec<&str> = rss.split_whitespace().collect();
    rss.sort_by_key(|s| s.rsplit('=').next().unwrap().to_string());
    assert_eq!(rss.len(), 2, "{rss:?}");
    assert_eq!(rss[0], format!("{rs1}=0=1"));
    assert!(rss[1].ends_with("=3=2"), "{rss:?}");
    let rs2 = rss[1].split('=').next().unwrap().to_string();
    wait_for("old pods gone", Duration::from_secs(20), || pod_names(&k, "app=web").iter().all(|p| p.starts_with(&format!("{rs2}-"))));
    let hist = k.ok(&["rollout", "history", "deploy/web"]);
    assert!(hist.contains("REVISION") && hist.contains("\n1 ") && hist.contains("\n2 "), "{hist}");

    // Undo: kubectl patches the template back; the first ReplicaSet becomes revision 3.
    let out = k.ok(&["rollout", "undo", "deploy/web"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(jp(&k, &["get", "deploy", "web"], "{.spec.template.spec.containers[0].image}"), "nginx:1.25");
    assert_eq!(jp(&k, &["get", "rs", &rs1], "{.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"), "3 3");
    assert_eq!(jp(&k, &["get", "rs", &rs2], "{.spec.replicas}"), "0");
    let hist = k.ok(&["rollout", "history", "deploy/web"]);
    assert!(hist.contains("\n2 ") && hist.contains("\n3 ") && !hist.contains("\n1 "), "{hist}");

    // Pause: template changes do not roll out until resume.
    k.ok(&["rollout", "pause", "deploy/web"]);
    wait_for("paused condition", Duration::from_secs(20), || {
        jp(&k, &["get", "deploy", "web"], "{.status.conditions[?(@.type==\"Progressing\")].reason}") == "DeploymentPaused"
    });
    k.ok(&["set", "image", "deploy/web", "nginx=nginx:1.27"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(k.ok(&["get", "rs", "-l", "app=web", "-o", "name"]).lines().count(), 2);
    k.ok(&["rollout", "resume", "deploy/web"]);
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(k.ok(&["get", "rs", "-l", "app=web", "-o", "name"]).lines().count(), 3);

    // Restart: a new ReplicaSet whose template carries kubectl's restartedAt annotation.
    k.ok(&["rollout", "restart", "deploy/web"]);
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let restarted = k.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.replicas}={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt} {end}"]);
    assert!(restarted.split_whitespace().any(|s| s.starts_with("3=") && s.len() > 3), "{restarted}");

    // Scale: replicas follow, and the rollout is still complete.
    k.ok(&["scale", "deploy/web", "--replicas=5"]);
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_for("5 pods", Duration::from_secs(20), || pod_names(&k, "app=web").len() == 5);
}

#[test]
fn deployment_rolling_update_respects_surge_and_unavailable_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    // No kubelet: new pods never become ready, so the rollout stops where maxSurge/maxUnavailable say.
    k.ok(&["create", "deployment", "web", "--image=nginx:1.25", "--replicas=4"]);
    wait_for("4 pods", Duration::from_secs(30), || pod_names(&k, "app=web").len() == 4);
    for p in pod_names(&k, "app=web") {
        mark_ready(&k, &p);
    }
    wait_for("available", Duration::from_secs(30), || jp(&k, &["get", "deploy", "web"], "{.status.availableReplicas}") == "4");
    // 25% of 4: maxSurge 1, maxUnavailable 1 → new RS 2 (1 surge + 1 unavailable), old RS 3.
    k.ok(&["set", "image", "deploy/web", "nginx=nginx:1.26"]);
    wait_for("rollout bounded", Duration::from_secs(30), || {
        let s = k.ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}={.spec.replicas} {end}"]);
        let mut v: Vec<&str> = s.split_whitespace().collect();
        v.sort();
        v == ["1=3", "2=2"]
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(jp(&k, &["get", "deploy", "web"], "{.status.updatedReplicas}"), "2");
    let out = k.run(&["rollout", "status", "deploy/web", "--timeout=2s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Waiting for deployment \"web\" rollout to finish: 2 out of 4 new replicas have been updated..."), "{text}");
    assert_eq!(jp(&k, &["get", "deploy", "web"], "{.status.conditions[?(@.type==\"Progressing\")].reason}"), "ReplicaSetUpdated");

    // Recreate: every old pod goes before any new one is created.
    let f = dir.path().join("re.json");
    std::fs::write(
        &f,
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"re"},"spec":{"replicas":2,"strategy":{"type":"Recreate"},
          "selector":{"matchLabels":{"app":"re"}},
          "template":{"metadata":{"labels":{"app":"re"}},"spec":{"containers":[{"name":"c","image":"a:1"}]}}}}"#,
    )
    .unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
    wait_for("2 re pods", Duration::from_secs(30), || pod_names(&k, "app=re").len() == 2);
    let old = pod_names(&k, "app=re");
    k.ok(&["set", "image", "deploy/re", "c=a:2"]);
    wait_for("recreated", Duration::from_secs(30), || {
        let now = pod_names(&k, "app=re");
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    });
    let images = k.ok(&["get", "pods", "-l", "app=re", "-o", "jsonpath={.items[*].spec.containers[0].image}"]);
    assert_eq!(images, "a:2 a:2");
}

#[test]
fn garbage_collector_background_orphan_foreground_and_namespace_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    for d in ["bg", "or", "fg"] {
        k.ok(&["create", "deployment", d, "--image=nginx", "--replicas=2"]);
    }
    for d in ["bg", "or", "fg"] {
        let sel = format!("app={d}");
        wait_for("pods", Duration::from_secs(30), || pod_names(&k, &sel).len() == 2);
    }
    // Background (kubectl's default): the Deployment goes at once, its ReplicaSet and pods after.
    k.ok(&["delete", "deploy", "bg"]);
    wait_for("bg dependents gone", Duration::from_secs(30), || {
        pod_names(&k, "app=bg").is_empty() && k.ok(&["get", "rs", "-l", "app=bg", "-o", "name"]).is_empty()
    });
    // Orphan: dependents stay, without the ownerReference.
    k.ok(&["delete", "deploy", "or", "--cascade=orphan"]);
    wait_for("or deleted", Duration::from_secs(30), || !k.run(&["get", "deploy", "or"]).status.success());
    let rs = k.ok(&["get", "rs", "-l", "app=or", "-o", "jsonpath={.items[0].metadata.name}"]);
    assert!(!rs.is_empty());
    assert_eq!(jp(&k, &["get", "rs", &rs], "{.metadata.ownerReferences}"), "");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod_names(&k, "app=or").len(), 2);
    // Foreground: kubectl waits until the owner is gone, which is after its dependents.
    k.ok(&["delete", "deploy", "fg", "--cascade=foreground", "--timeout=60s"]);
    assert!(pod_names(&k, "app=fg").is_empty());
    assert!(k.ok(&["get", "rs", "-l", "app=fg", "-o", "name"]).is_empty());

    // Namespace deletion empties the namespace, then the namespace goes.
    k.ok(&["create", "namespace", "doomed"]);
    k.ok(&["create", "deployment", "web", "-n", "doomed", "--image=nginx", "--replicas=2"]);
    k.ok(&["create", "configmap", "cm", "-n", "doomed", "--from-literal=a=b"]);
    wait_for("doomed pods", Duration::from_secs(30), || {
        k.ok(&["get", "pods", "-n", "doomed", "-o", "name"]).lines().count() == 2
    });
    k.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    assert!(!k.run(&["get", "namespace", "doomed"]).status.success());
    assert!(k.ok(&["get", "pods,rs,deploy,configmaps", "-n", "doomed", "-o", "name"]).is_empty());
}

#[test]
fn every_namespace_gets_default_service_account_and_root_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    k.ok(&["create", "namespace", "team-a"]);
    let ca = std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap();
    for ns in ["default", "kube-system", "team-a"] {
        wait_for("default service account", Duration::from_secs(30), || k.run(&["get", "sa", "default", "-n", ns]).status.success());
        wait_for("kube-root-ca.crt", Duration::from_secs(30), || k.run(&["get", "cm", "kube-root-ca.crt", "-n", ns]).status.success());
        assert_eq!(jp(&k, &["get", "cm", "kube-root-ca.crt", "-n", ns], "{.data.ca\\.crt}"), ca);
    }
    // Deleted ones come back.
    k.ok(&["delete", "sa", "default", "-n", "team-a"]);
    k.ok(&["delete", "cm", "kube-root-ca.crt", "-n", "team-a"]);
    wait_for("sa back", Duration::from_secs(30), || k.run(&["get", "sa", "default", "-n", "team-a"]).status.success());
    wait_for("cm back", Duration::from_secs(30), || k.run(&["get", "cm", "kube-root-ca.crt", "-n", "team-a"]).status.success());
}
