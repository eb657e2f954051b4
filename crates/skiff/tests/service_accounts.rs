//! Service-account tokens end to end with real kubectl: TokenRequest
//! (`kubectl create token`), tokens as bearer credentials (`kubectl
//! --token`, `kubectl auth whoami`), what stops a token working, and the
//! ServiceAccount admission plugin's volume on pods.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{wait_until, Kubectl, SkiffServer};
use serde_json::Value;

/// A server with its controller manager (it makes the `default` ServiceAccounts).
fn server(dir: &std::path::Path) -> SkiffServer {
    SkiffServer::start_with(dir, common::free_port(), &[])
}

fn wait_default_sa(k: &Kubectl, ns: &str) {
    wait_until("the default ServiceAccount", Duration::from_secs(30), || k.run(&["get", "sa", "default", "-n", ns]).status.success().then_some(()));
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// `kubectl <args>` with `token` instead of the admin's.
fn as_token(k: &Kubectl, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    k.run(&all)
}

fn whoami(k: &Kubectl, token: &str) -> Value {
    let out = as_token(k, token, &["auth", "whoami", "-o", "json"]);
    assert!(out.status.success(), "whoami: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["status"]["userInfo"].clone()
}

fn unauthorized(k: &Kubectl, token: &str) -> bool {
    let out = as_token(k, token, &["get", "pods"]);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Unauthorized")
}

#[test]
fn tokens_authenticate_as_their_service_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let k = Kubectl::new(33, &server.kubeconfig);
    wait_default_sa(&k, "default");

    // kubectl 1.33 and 1.27 both get a token; its claims are upstream's.
    let token = k.ok(&["create", "token", "default"]).trim().to_string();
    let old = Kubectl::new(27, &server.kubeconfig).ok(&["create", "token", "default", "--duration", "2h"]).trim().to_string();
    let c = claims(&token);
    assert_eq!(c["sub"], "system:serviceaccount:default:default");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(c["aud"], serde_json::json!(["https://kubernetes.default.svc.cluster.local"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);
    assert_eq!(c["nbf"], c["iat"]);
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let sa_uid = k.ok(&["get", "sa", "default", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(c["kubernetes.io"], serde_json::json!({"namespace": "default", "serviceaccount": {"name": "default", "uid": sa_uid}}));
    assert_eq!(claims(&old)["exp"].as_i64().unwrap() - claims(&old)["iat"].as_i64().unwrap(), 7200);

    // The token is a credential, for kubectl 1.28+'s whoami too.
    let out = as_token(&k, &token, &["get", "pods"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let me = whoami(&k, &token);
    assert_eq!(me["username"], "system:serviceaccount:default:default");
    assert_eq!(me["uid"], sa_uid.as_str());
    assert_eq!(me["groups"], serde_json::json!(["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]));
    assert_eq!(whoami(&Kubectl::new(28, &server.kubeconfig), &old)["username"], "system:serviceaccount:default:default");
    assert!(k.ok(&["auth", "whoami"]).contains("kubernetes-admin"));

    // A forged or re-signed token is not.
    let parts: Vec<&str> = token.split('.').collect();
    let mut c2 = c.clone();
    c2["sub"] = "system:serviceaccount:kube-system:default".into();
    let forged = format!("{}.{}.{}", parts[0], base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c2.to_string()), parts[2]);
    assert!(unauthorized(&k, &forged));
    let flipped = format!("{}.{}.{}{}", parts[0], parts[1], &parts[2][..10], if &parts[2][10..11] == "A" { "B" } else { "A" }) + &parts[2][11..];
    assert!(unauthorized(&k, &flipped));
    assert!(unauthorized(&k, "not-a-token"));
    // A token for another audience is not for the API server.
    let other = k.ok(&["create", "token", "default", "--audience", "vault"]).trim().to_string();
    assert_eq!(claims(&other)["aud"], serde_json::json!(["vault"]));
    assert!(unauthorized(&k, &other));

    // OIDC discovery names the issuer and the key tokens are signed with.
    let oidc: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/.well-known/openid-configuration"])).unwrap();
    assert_eq!(oidc["issuer"], "https://kubernetes.default.svc.cluster.local");
    let jwks: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    let header: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["crv"], "P-256");

    // Validation and lookups, with upstream's wording.
    let err = k.err(&["create", "token", "default", "--duration", "5m"]);
    assert!(err.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"), "{err}");
    let err = k.err(&["create", "token", "nobody"]);
    assert!(err.contains("serviceaccounts \"nobody\" not found"), "{err}");
    let discovery = k.ok(&["get", "--raw", "/api/v1"]);
    assert!(discovery.contains("\"serviceaccounts/token\""), "{discovery}");

    // A deleted ServiceAccount's tokens stop working, also once one of the same name is back.
    k.ok(&["create", "sa", "robot"]);
    let robot = k.ok(&["create", "token", "robot"]).trim().to_string();
    assert!(as_token(&k, &robot, &["get", "pods"]).status.success());
    k.ok(&["delete", "sa", "robot"]);
    wait_until("the deleted ServiceAccount's token to be refused", Duration::from_secs(10), || unauthorized(&k, &robot).then_some(()));
    k.ok(&["create", "sa", "robot"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(unauthorized(&k, &robot), "a token outlived its ServiceAccount's uid");

    // A pod-bound token names the pod and dies with it.
    k.ok(&["run", "p", "--image=busybox"]);
    let bound = k.ok(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "p"]).trim().to_string();
    let pod_uid = k.ok(&["get", "pod", "p", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(claims(&bound)["kubernetes.io"]["pod"], serde_json::json!({"name": "p", "uid": pod_uid}));
    let bound27 = Kubectl::new(27, &server.kubeconfig).ok(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "p"]);
    assert_eq!(claims(bound27.trim())["kubernetes.io"]["pod"]["uid"], pod_uid.as_str());
    let me = whoami(&k, &bound);
    assert_eq!(me["extra"]["authentication.kubernetes.io/pod-name"], serde_json::json!(["p"]));
    let err = k.err(&["create", "token", "default", "--bound-object-kind", "Pod", "--bound-object-name", "nope"]);
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    k.ok(&["delete", "pod", "p", "--grace-period=0", "--force"]);
    wait_until("the deleted pod's token to be refused", Duration::from_secs(10), || unauthorized(&k, &bound).then_some(()));
    assert!(as_token(&k, &token, &["get", "pods"]).status.success(), "the unbound token still works");

    // So does a Secret-bound one; other kinds cannot be bound.
    k.ok(&["create", "secret", "generic", "s", "--from-literal=a=b"]);
    let secret_bound = k.ok(&["create", "token", "default", "--bound-object-kind", "Secret", "--bound-object-name", "s"]).trim().to_string();
    assert_eq!(claims(&secret_bound)["kubernetes.io"]["secret"]["name"], "s");
    assert!(as_token(&k, &secret_bound, &["get", "pods"]).status.success());
    k.ok(&["delete", "secret", "s"]);
    wait_until("the deleted secret's token to be refused", Duration::from_secs(10), || unauthorized(&k, &secret_bound).then_some(()));
    let tr = dir.path().join("tr.json");
    std::fs::write(&tr, r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"boundObjectRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "kube-root-ca.crt"}}}"#).unwrap();
    let err = k.err(&["create", "--raw", "/api/v1/namespaces/default/serviceaccounts/default/token", "-f", tr.to_str().unwrap()]);
    assert!(err.contains("cannot bind token to object of type /v1, Kind=ConfigMap"), "{err}");
}

#[test]
fn pods_get_the_service_account_volume() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let k = Kubectl::new(33, &server.kubeconfig);
    wait_default_sa(&k, "default");

    k.ok(&["run", "web", "--image=busybox"]);
    let pod: Value = serde_json::from_str(&k.ok(&["get", "pod", "web", "-o", "json"])).unwrap();
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let vols = pod["spec"]["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1, "{vols:?}");
    let name = vols[0]["name"].as_str().unwrap();
    assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
    assert_eq!(
        vols[0]["projected"],
        serde_json::json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]})
    );
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"],
        serde_json::json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
    );

    // Opting out, on the pod or on its ServiceAccount.
    k.ok(&["run", "quiet", "--image=busybox", "--overrides", r#"{"spec":{"automountServiceAccountToken":false}}"#]);
    let quiet: Value = serde_json::from_str(&k.ok(&["get", "pod", "quiet", "-o", "json"])).unwrap();
    assert!(quiet["spec"]["volumes"].is_null() && quiet["spec"]["containers"][0]["volumeMounts"].is_null(), "{:#}", quiet["spec"]);
    let sa = dir.path().join("sa.json");
    std::fs::write(&sa, r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"nomount"},"automountServiceAccountToken":false,"imagePullSecrets":[{"name":"regcred"}]}"#).unwrap();
    k.ok(&["create", "-f", sa.to_str().unwrap()]);
    k.ok(&["run", "nm", "--image=busybox", "--overrides", r#"{"spec":{"serviceAccountName":"nomount"}}"#]);
    let nm: Value = serde_json::from_str(&k.ok(&["get", "pod", "nm", "-o", "json"])).unwrap();
    assert!(nm["spec"]["volumes"].is_null(), "{:#}", nm["spec"]);
    assert_eq!(nm["spec"]["imagePullSecrets"], serde_json::json!([{"name": "regcred"}]));

    // A missing ServiceAccount is refused with upstream's message.
    let err = k.err(&["run", "lost", "--image=busybox", "--overrides", r#"{"spec":{"serviceAccountName":"missing"}}"#]);
    assert!(err.contains(r#"pods "lost" is forbidden: error looking up service account default/missing: serviceaccount "missing" not found"#), "{err}");

    // A pod created right after its namespace waits for the default ServiceAccount.
    for i in 0..3 {
        let ns = format!("fresh{i}");
        k.ok(&["create", "ns", &ns]);
        k.ok(&["run", "first", "-n", &ns, "--image=busybox"]);
        assert!(k.ok(&["get", "pod", "first", "-n", &ns, "-o", "jsonpath={.spec.volumes[0].name}"]).starts_with("kube-api-access-"));
    }
}

/// In a real container (needs root): the admission-made volume holds a
/// token, the CA and the namespace; the token authenticates as the pod's
/// ServiceAccount, bound to the pod; a restarted agent writes a new token.
#[test]
fn containers_find_a_working_token() {
    use common::node::{apply, import_busybox, is_root, mounts_at, mounts_under, spawn_agent, unmount_all_under, wait_pod, wait_sandboxes_gone};
    use std::process::Command;
    if !is_root() {
        eprintln!("skipping: the container end-to-end test needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runtime_root = d.join("runtime");
    import_busybox(d, &runtime_root);
    let server = SkiffServer::start_with(&d.join("server"), common::free_port(), &["--disable-agent"]);
    let kport = common::free_port();
    let start_agent = || spawn_agent(&server.kubeconfig, d, "skiff-sa", kport, "skiffsa0", "10.244.246.0/24", &[]);
    let mut agent = Some(start_agent());
    common::wait_for_port(kport, Duration::from_secs(30));
    let k = Kubectl::new(33, &server.kubeconfig);
    let dirpath = "/var/run/secrets/kubernetes.io/serviceaccount";
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_default_sa(&k, "default");
        apply(&k, r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sa"}, "spec": {"nodeName": "skiff-sa", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:skiff-test", "command": ["sleep", "3600"]}]}}"#);
        let p = wait_pod(&k, "sa", "Running", |p| p["status"]["phase"] == "Running");
        let token = k.ok(&["exec", "sa", "--", "cat", &format!("{dirpath}/token")]);
        // The token volume is a tmpfs of its own; the container's bundle and
        // runc's state are on the runtime's state tmpfs, its writable layer on disk.
        let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
        let vol_name = p["spec"]["volumes"][0]["name"].as_str().unwrap().to_string();
        assert!(vol_name.starts_with("kube-api-access-"), "{vol_name}");
        let pod_dir = d.join("kubelet/pods").join(&uid);
        let vol = pod_dir.join("volumes").join(&vol_name);
        assert_eq!(mounts_at(&vol), ["tmpfs"], "the token volume's mounts");
        assert!(vol.join("token").is_file());
        let cid = p["status"]["containerStatuses"][0]["containerID"].as_str().unwrap().trim_start_matches("skiff://").to_string();
        let state = runtime_root.join("state");
        assert_eq!(mounts_at(&state), ["tmpfs"], "the runtime state dir's mounts");
        for f in [format!("containers/{cid}/config.json"), format!("containers/{cid}/pid"), format!("containers/{cid}/meta.json"), format!("runc/{cid}/state.json")] {
            assert!(state.join(&f).is_file(), "{f} is not in the state dir");
        }
        assert_eq!(mounts_at(&state.join("containers").join(&cid).join("rootfs")), ["overlay"]);
        // runc runs from the runtime's sealed copy of itself (`runc_exe.rs`):
        // the container's parent, its `runc run`, executes a memfd.
        let init: u32 = std::fs::read_to_string(state.join(format!("containers/{cid}/pid"))).unwrap().trim().parse().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
        let parent = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(1).unwrap().to_string();
        let exe = std::fs::read_link(format!("/proc/{parent}/exe")).unwrap();
        assert!(exe.to_string_lossy().starts_with("/memfd:runc"), "the container's runc runs {}", exe.display());
        k.ok(&["exec", "sa", "--", "touch", "/tmp/written"]);
        assert!(runtime_root.join("containers").join(&cid).join("upper/tmp/written").is_file(), "the writable layer is not on disk");
        assert_eq!(k.ok(&["exec", "sa", "--", "cat", &format!("{dirpath}/namespace")]), "default");
        let ca = k.ok(&["exec", "sa", "--", "cat", &format!("{dirpath}/ca.crt")]);
        assert_eq!(ca, std::fs::read_to_string(d.join("server/pki/ca.crt")).unwrap());
        let err = String::from_utf8_lossy(&k.run(&["exec", "sa", "--", "sh", "-c", &format!("echo x > {dirpath}/token")]).stderr).to_string();
        assert!(err.contains("Read-only file system"), "{err}");

        let c = claims(&token);
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3607);
        let me = whoami(&k, &token);
        assert_eq!(me["username"], "system:serviceaccount:default:default");
        assert_eq!(me["extra"]["authentication.kubernetes.io/pod-name"], serde_json::json!(["sa"]));
        assert_eq!(me["extra"]["authentication.kubernetes.io/node-name"], serde_json::json!(["skiff-sa"]));
        assert!(as_token(&k, &token, &["get", "pods"]).status.success());

        // No token to be had (its ServiceAccount is gone): the container waits
        // with the reason in its status, and starts once the token can be had.
        k.ok(&["create", "sa", "temp"]);
        apply(&k, r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"}, "spec": {"serviceAccountName": "temp", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:skiff-test", "command": ["sleep", "3600"]}]}}"#);
        k.ok(&["delete", "sa", "temp"]);
        let binding = d.join("binding.json");
        std::fs::write(&binding, r#"{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "late"}, "target": {"kind": "Node", "name": "skiff-sa"}}"#).unwrap();
        k.ok(&["create", "--raw", "/api/v1/namespaces/default/pods/late/binding", "-f", binding.to_str().unwrap()]);
        let p = wait_pod(&k, "late", "CreateContainerConfigError", |p| p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError");
        let msg = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"].as_str().unwrap_or("").to_string();
        assert!(msg.contains("serviceaccounts \"temp\" not found"), "{msg}");
        k.ok(&["create", "sa", "temp"]);
        wait_pod(&k, "late", "Running once the ServiceAccount is back", |p| p["status"]["phase"] == "Running");
        let late = k.ok(&["exec", "late", "--", "cat", &format!("{dirpath}/token")]);
        assert_eq!(whoami(&k, &late)["username"], "system:serviceaccount:default:temp");

        // A restarted agent has no tokens in memory: the pod gets a new one.
        drop(agent.take());
        // While no agent runs, "late" is deleted for good (forced, no grace):
        // the restarted agent finds its sandbox, container, volume mount and
        // directories left over and removes them (upstream's pod cleanups).
        let late = common::node::get(&k, "late");
        let late_uid = late["metadata"]["uid"].as_str().unwrap().to_string();
        let late_cid = late["status"]["containerStatuses"][0]["containerID"].as_str().unwrap().trim_start_matches("skiff://").to_string();
        let late_dir = d.join("kubelet/pods").join(&late_uid);
        assert_eq!(mounts_under(&late_dir).len(), 1, "the late pod's token volume is mounted");
        let late_pid: i32 = std::fs::read_to_string(state.join("containers").join(&late_cid).join("pid")).unwrap().trim().parse().unwrap();
        k.ok(&["delete", "pod", "late", "--grace-period=0", "--force"]);
        agent = Some(start_agent());
        common::wait_for_port(kport, Duration::from_secs(30));
        let fresh = wait_until("a new token after the agent restart", Duration::from_secs(30), || {
            let t = String::from_utf8_lossy(&k.run(&["exec", "sa", "--", "cat", &format!("{dirpath}/token")]).stdout).to_string();
            (!t.is_empty() && t != token).then_some(t)
        });
        assert_ne!(claims(&fresh)["jti"], c["jti"]);
        assert!(as_token(&k, &fresh, &["get", "pods"]).status.success());
        // The restarted agent found both tmpfs mounts and mounted nothing over them.
        assert_eq!(mounts_at(&vol), ["tmpfs"]);
        assert_eq!(mounts_at(&state), ["tmpfs"]);
        assert!(state.join(format!("runc/{cid}/state.json")).is_file());

        wait_until("the force-deleted pod's leftovers to go", Duration::from_secs(30), || (!late_dir.exists()).then_some(()));
        assert_eq!(mounts_under(&late_dir), Vec::<std::path::PathBuf>::new());
        assert!(!std::path::Path::new(&format!("/proc/{late_pid}")).exists(), "the force-deleted pod's container is still running");
        for gone in [state.join("containers").join(&late_cid), state.join("runc").join(&late_cid), runtime_root.join("containers").join(&late_cid)] {
            assert!(!gone.exists(), "{} is still there", gone.display());
        }
        let logs: Vec<String> = std::fs::read_dir(d.join("pods")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
        assert!(!logs.iter().any(|n| n.ends_with(&late_uid)), "the force-deleted pod's log directory is still there: {logs:?}");
        assert!(logs.iter().any(|n| n.starts_with("default_sa_")), "the live pod's log directory went too: {logs:?}");
        assert!(pod_dir.is_dir(), "the live pod's directory went too");
        assert_eq!(k.ok(&["exec", "sa", "--", "cat", &format!("{dirpath}/namespace")]), "default", "the live pod was left alone");

        // A deleted pod leaves no mount, bundle or writable layer behind.
        k.ok(&["delete", "pod", "sa", "--wait=true", "--timeout=60s"]);
        wait_until("the pod's volume directory to go", Duration::from_secs(30), || (!pod_dir.exists()).then_some(()));
        assert_eq!(mounts_under(&pod_dir), Vec::<std::path::PathBuf>::new());
        for gone in [state.join("containers").join(&cid), state.join("runc").join(&cid), runtime_root.join("containers").join(&cid)] {
            assert!(!gone.exists(), "{} is still there", gone.display());
        }
    }));
    let _ = k.run(&["delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=60s"]);
    wait_sandboxes_gone(&runtime_root);
    drop(agent);
    let _ = Command::new("ip").args(["link", "del", "skiffsa0"]).status();
    unmount_all_under(d);
    if let Err(e) = result {
        eprintln!("agent log:\n{}", std::fs::read_to_string(d.join("agent.log")).unwrap_or_default());
        std::panic::resume_unwind(e);
    }
}

/// `--disable-admission-plugins=ServiceAccount` (as upstream's test servers
/// run) leaves pods as they are sent; a plugin that cannot be turned off is
/// a one-line startup error, not a silently ignored flag.
#[test]
fn the_service_account_plugin_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-admission-plugins=ServiceAccount"]);
    let k = Kubectl::new(33, &server.kubeconfig);
    wait_default_sa(&k, "default");
    k.ok(&["run", "plain", "--image=busybox", "--restart=Never"]);
    let pod: Value = serde_json::from_str(&k.ok(&["get", "pod", "plain", "-o", "json"])).unwrap();
    assert!(pod["spec"]["volumes"].is_null(), "no kube-api-access volume: {}", pod["spec"]);
    assert!(pod["spec"]["containers"][0]["volumeMounts"].is_null(), "{}", pod["spec"]);

    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--disable-agent", "--data-dir"])
        .arg(other.path())
        .args(["--listen", &format!("127.0.0.1:{}", common::free_port()), "--disable-admission-plugins", "Priority"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"Priority\" cannot be disabled"), "{err}");
}

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// `kubectl create -f <yaml> -o json` of a TokenReview of `token` for `audiences`.
fn token_review(k: &Kubectl, dir: &std::path::Path, token: &str, audiences: &[&str]) -> std::process::Output {
    let mut yaml = format!("apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nmetadata:\n  name: check\nspec:\n  token: \"{token}\"\n");
    if !audiences.is_empty() {
        yaml += "  audiences:\n";
        for a in audiences {
            yaml += &format!("  - \"{a}\"\n");
        }
    }
    let f = dir.join("tokenreview.yaml");
    std::fs::write(&f, yaml).unwrap();
    k.run(&["create", "-f", f.to_str().unwrap(), "-o", "json"])
}

/// The review's `status`, asserting kubectl succeeded and the token was echoed.
fn review_status(k: &Kubectl, dir: &std::path::Path, token: &str, audiences: &[&str]) -> Value {
    let out = token_review(k, dir, token, audiences);
    assert!(out.status.success(), "{} create tokenreview: {}", k.bin, String::from_utf8_lossy(&out.stderr));
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(review["kind"], "TokenReview");
    assert_eq!(review["metadata"]["name"], "check");
    assert_eq!(review["spec"]["token"], token, "upstream echoes spec.token");
    review["status"].clone()
}

#[test]
fn token_reviews_answer_who_a_token_is() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let k = Kubectl::new(33, &server.kubeconfig);
    wait_default_sa(&k, "default");
    k.ok(&["create", "sa", "robot"]);
    let sa_uid = k.ok(&["get", "sa", "robot", "-o", "jsonpath={.metadata.uid}"]);

    for minor in [33, 29] {
        let k = Kubectl::new(minor, &server.kubeconfig);
        let token = k.ok(&["create", "token", "robot"]).trim().to_string();
        // Authenticated as `kubectl auth whoami` sees the same token, for the server's own audience.
        let st = review_status(&k, dir.path(), &token, &[]);
        assert_eq!(st["authenticated"], true, "1.{minor}: {st}");
        assert_eq!(st["user"]["username"], "system:serviceaccount:default:robot");
        assert_eq!(st["user"]["uid"], sa_uid.as_str());
        let groups = st["user"]["groups"].as_array().unwrap();
        for g in ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"] {
            assert!(groups.iter().any(|x| x == g), "1.{minor}: no group {g} in {st}");
        }
        assert_eq!(st["user"], whoami(&Kubectl::new(33, &server.kubeconfig), &token), "1.{minor}");
        assert_eq!(st["audiences"], serde_json::json!([ISSUER]));
        assert!(st.get("error").is_none(), "{st}");

        // A token for other audiences: refused for the server's, accepted for its own,
        // and the status names the requested audiences it is valid for, in the requested order.
        let multi = k.ok(&["create", "token", "robot", "--audience", "vault", "--audience", "nats"]).trim().to_string();
        let st = review_status(&k, dir.path(), &multi, &[]);
        assert_ne!(st["authenticated"], true, "{st}");
        assert_eq!(st["error"], format!("token audiences [\"vault\" \"nats\"] is invalid for the target audiences [\"{ISSUER}\"]"));
        assert!(st.get("audiences").is_none(), "{st}");
        let st = review_status(&k, dir.path(), &multi, &["nats", "other", "vault"]);
        assert_eq!(st["authenticated"], true, "{st}");
        assert_eq!(st["audiences"], serde_json::json!(["nats", "vault"]));
        assert_eq!(st["user"]["username"], "system:serviceaccount:default:robot");
        let st = review_status(&k, dir.path(), &token, &["other"]);
        assert_ne!(st["authenticated"], true, "{st}");
        assert!(st["error"].as_str().unwrap().contains("is invalid for the target audiences [\"other\"]"), "{st}");

        // Garbage is not authenticated, with upstream's error; the review itself succeeds.
        let st = review_status(&k, dir.path(), "not-a-token", &[]);
        assert_ne!(st["authenticated"], true, "{st}");
        assert_eq!(st["error"], "invalid bearer token");
        assert_eq!(st["user"], serde_json::json!({}));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..parts[2].len() - 4]);
        let st = review_status(&k, dir.path(), &forged, &[]);
        assert_ne!(st["authenticated"], true, "{st}");
        assert!(st["error"].as_str().is_some_and(|e| !e.is_empty()), "{st}");

        // An empty token is a bad request.
        let out = token_review(&k, dir.path(), "", &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("token is required for TokenReview in authentication"), "1.{minor}: {err}");
    }

    // dryRun changes nothing (nothing is stored); unknown fields follow fieldValidation.
    let token = k.ok(&["create", "token", "robot"]).trim().to_string();
    let f = dir.path().join("tokenreview.yaml");
    std::fs::write(&f, format!("apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n")).unwrap();
    let dry: Value = serde_json::from_str(&k.ok(&["create", "--dry-run=server", "-f", f.to_str().unwrap(), "-o", "json"])).unwrap();
    assert_eq!(dry["status"]["user"]["username"], "system:serviceaccount:default:robot");
    std::fs::write(&f, format!("apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n  bogus: 1\n")).unwrap();
    let err = k.err(&["create", "-f", f.to_str().unwrap()]);
    assert!(err.contains("unknown field \"spec.bogus\""), "{err}");

    // The admin token is audience-agnostic: valid only for the server's own audiences.
    let admin = k.ok(&["config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}"]);
    let admin = admin.trim();
    assert!(!admin.is_empty());
    let st = review_status(&k, dir.path(), admin, &["other", ISSUER]);
    assert_eq!(st["authenticated"], true, "{st}");
    assert_eq!(st["user"]["username"], "kubernetes-admin");
    assert_eq!(st["audiences"], serde_json::json!([ISSUER]));
    let st = review_status(&k, dir.path(), admin, &["other"]);
    assert_ne!(st["authenticated"], true, "{st}");
    assert_eq!(st["error"], "invalid bearer token");

    // A deleted ServiceAccount's token no longer reviews as authenticated.
    let token = k.ok(&["create", "token", "robot"]).trim().to_string();
    k.ok(&["delete", "sa", "robot"]);
    wait_until("the deleted ServiceAccount's token to review as unauthenticated", Duration::from_secs(10), || {
        (review_status(&k, dir.path(), &token, &[])["authenticated"] != true).then_some(())
    });

    // Reviewing needs credentials; the reviews are create-only and store nothing.
    assert!(unauthorized(&k, "not-a-token"));
    let err = as_token(&k, "not-a-token", &["create", "--validate=false", "-f", dir.path().join("tokenreview.yaml").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("Unauthorized"), "{}", String::from_utf8_lossy(&err.stderr));
    let err = k.err(&["get", "tokenreviews"]);
    assert!(err.contains("MethodNotAllowed"), "{err}");
    let err = k.err(&["get", "selfsubjectreviews"]);
    assert!(err.contains("MethodNotAllowed"), "{err}");

    // A body that is not a TokenReview is a 400 with a Status.
    let pod = dir.path().join("pod.json");
    std::fs::write(&pod, r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}"#).unwrap();
    let err = k.err(&["create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", pod.to_str().unwrap()]);
    assert!(err.contains("the API version in the data (v1) does not match the expected API version (authentication.k8s.io/v1)"), "{err}");
}

#[test]
fn review_resources_are_discovered_as_create_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    for minor in [33, 29, 27] {
        let k = Kubectl::new(minor, &server.kubeconfig);
        let out = k.ok(&["api-resources", "--api-group=authentication.k8s.io", "-o", "wide"]);
        let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']').filter(|w| !w.is_empty()).collect()).collect();
        assert_eq!(
            rows,
            [
                ["selfsubjectreviews", "authentication.k8s.io/v1", "false", "SelfSubjectReview", "create"],
                ["tokenreviews", "authentication.k8s.io/v1", "false", "TokenReview", "create"],
            ],
            "1.{minor}: {out}"
        );
    }
    // The legacy documents agree with the aggregated one.
    let k = Kubectl::new(33, &server.kubeconfig);
    let list: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/apis/authentication.k8s.io/v1"])).unwrap();
    let names: Vec<&str> = list["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["selfsubjectreviews", "tokenreviews"]);
    assert!(list["resources"].as_array().unwrap().iter().all(|r| r["verbs"] == serde_json::json!(["create"]) && r["namespaced"] == false));
    let group: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/apis/authentication.k8s.io"])).unwrap();
    assert_eq!(group["preferredVersion"]["groupVersion"], "authentication.k8s.io/v1");
    // Other groups keep their full verbs.
    let apps = k.ok(&["api-resources", "--api-group=apps", "-o", "wide"]);
    assert!(apps.lines().any(|l| l.starts_with("deployments ") && l.contains("watch")), "{apps}");
}
