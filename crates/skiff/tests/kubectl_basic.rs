//! `skiff server` driven by real kubectl: every version from 1.27 to 1.33,
//! through the commands that send JSON (protobuf request bodies, which
//! kubectl 1.32+ sends for `create configmap|namespace|…`, are not served yet).

mod common;

use common::{Kubectl, SkiffServer};

const CM: &str = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","labels":{"app":"web"}},"data":{"a":"1"}}"#;

fn exercise(k: &Kubectl, v: u32) {
    let ns = format!("ns-{v}");
    // Namespaces and discovery.
    let out = k.ok(&["get", "namespaces", "-o", "name"]);
    for want in ["namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"] {
        assert!(out.contains(want), "{out}");
    }
    let ns_file = std::env::temp_dir().join(format!("skiff-ns-{v}-{}.json", std::process::id()));
    std::fs::write(&ns_file, format!(r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#)).unwrap();
    assert_eq!(k.ok(&["create", "-f", ns_file.to_str().unwrap(), "--validate=false"]), format!("namespace/{ns} created\n"));
    let table = k.ok(&["get", "ns", &ns]);
    assert!(table.starts_with("NAME") && table.contains(&ns) && table.contains("Active"), "{table}");

    // Create, read back, conflict.
    let cm_file = std::env::temp_dir().join(format!("skiff-cm-{v}-{}.json", std::process::id()));
    std::fs::write(&cm_file, CM).unwrap();
    let f = cm_file.to_str().unwrap();
    assert_eq!(k.ok(&["create", "-n", &ns, "-f", f, "--validate=false"]), "configmap/cfg created\n");
    assert!(k.err(&["create", "-n", &ns, "-f", f, "--validate=false"]).contains("configmaps \"cfg\" already exists"));
    let json = k.ok(&["get", "cm", "cfg", "-n", &ns, "-o", "json"]);
    let obj: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(obj["data"]["a"], "1");
    assert_eq!(obj["metadata"]["namespace"], ns.as_str());
    assert_eq!(obj["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(obj["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() > 1);
    assert!(obj["metadata"]["creationTimestamp"].as_str().unwrap().ends_with('Z'));

    // Label, annotate, the three patch types, selectors.
    k.ok(&["label", "cm", "cfg", "-n", &ns, "tier=back"]);
    k.ok(&["annotate", "cm", "cfg", "-n", &ns, "note=hello"]);
    k.ok(&["patch", "cm", "cfg", "-n", &ns, "--type=merge", "-p", r#"{"data":{"b":"2"}}"#]);
    k.ok(&["patch", "cm", "cfg", "-n", &ns, "--type=json", "-p", r#"[{"op":"remove","path":"/data/a"}]"#]);
    k.ok(&["patch", "cm", "cfg", "-n", &ns, "-p", r#"{"data":{"c":"3"}}"#]);
    assert_eq!(k.ok(&["get", "cm", "cfg", "-n", &ns, "-o", "jsonpath={.data}"]), r#"{"b":"2","c":"3"}"#);
    assert_eq!(k.ok(&["get", "cm", "-n", &ns, "-l", "app=web,tier in (back)", "-o", "name"]), "configmap/cfg\n");
    assert_eq!(k.ok(&["get", "cm", "-n", &ns, "-l", "tier!=back", "-o", "name"]), "");
    assert_eq!(k.ok(&["get", "cm", "-n", &ns, "--field-selector", "metadata.name=cfg", "-o", "name"]), "configmap/cfg\n");
    assert!(k.err(&["get", "cm", "-n", &ns, "--field-selector", "spec.bogus=1"]).contains("field label not supported: spec.bogus"));
    assert_eq!(k.ok(&["get", "cm", "cfg", "-n", &ns, "-o", "jsonpath={.metadata.annotations.note}"]), "hello");

    // Delete, then NotFound.
    assert_eq!(k.ok(&["delete", "cm", "cfg", "-n", &ns]), "configmap \"cfg\" deleted\n");
    assert!(k.err(&["get", "cm", "cfg", "-n", &ns]).contains("configmaps \"cfg\" not found"));
    assert!(k.err(&["create", "-n", "no-such-ns", "-f", f, "--validate=false"]).contains("namespaces \"no-such-ns\" not found"));
    k.ok(&["delete", "ns", &ns]);
    let _ = std::fs::remove_file(&ns_file);
    let _ = std::fs::remove_file(&cm_file);
}

#[test]
fn kubectl_versions_1_27_to_1_33_against_skiff_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]); // exact ConfigMap lists: no kube-root-ca.crt
    for v in 27..=33 {
        let k = Kubectl::new(v, &server.kubeconfig);
        let version = k.ok(&["version", "-o", "json"]);
        let parsed: serde_json::Value = serde_json::from_str(&version).unwrap();
        assert_eq!(parsed["serverVersion"]["minor"], "33");
        exercise(&k, v);
    }
}

#[test]
fn unauthenticated_requests_get_401_and_data_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = SkiffServer::start_on(dir.path(), port);
    let k = Kubectl::new(31, &server.kubeconfig);
    let cm_file = dir.path().join("cm.json");
    std::fs::write(&cm_file, CM).unwrap();
    k.ok(&["create", "-f", cm_file.to_str().unwrap(), "--validate=false"]);

    // A wrong token is refused.
    let bad = dir.path().join("bad-kubeconfig.yaml");
    let cfg = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let token_line = cfg.lines().find(|l| l.trim_start().starts_with("token:")).unwrap();
    std::fs::write(&bad, cfg.replace(token_line, "    token: not-the-token")).unwrap();
    let wrong = Kubectl::new(31, &bad);
    assert!(wrong.err(&["get", "cm"]).contains("Unauthorized"));

    // A clean stop and a restart keep every object.
    assert!(server.stop().success());
    let server = SkiffServer::start_on(dir.path(), port);
    let k = Kubectl::new(31, &server.kubeconfig);
    assert_eq!(k.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"]), "1");
    assert!(k.ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]).starts_with("10.96.0.1"));

    // Prometheus metrics count what was served.
    let metrics = k.ok(&["get", "--raw", "/metrics"]);
    assert!(metrics.contains(r#"apiserver_request_total{verb="GET",resource="configmaps",code="200"} 1"#), "{metrics}");
    assert!(metrics.contains("apiserver_request_duration_seconds_count"), "{metrics}");
}

#[test]
fn strategic_merge_patch_merges_containers_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(33, &server.kubeconfig);
    let f = dir.path().join("deploy.json");
    std::fs::write(
        &f,
        r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":1,
            "selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[
              {"name":"a","image":"a:1","env":[{"name":"X","value":"1"}]},{"name":"b","image":"b:1"}]}}}}"#,
    )
    .unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
    let gen1 = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(gen1, "1");
    // kubectl patch's default type is strategic: containers merge by name, env by name.
    k.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"},{"name":"a","env":[{"name":"Y","value":"2"}]}]}}}}"#]);
    let images = k.ok(&["get", "deploy", "web", "-o", "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image} {end}"]);
    assert_eq!(images, "a=a:1 b=b:2 ");
    let env = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"]);
    assert_eq!(env, "X Y");
    // A spec change bumps the generation; a label change does not.
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]), "2");
    k.ok(&["label", "deploy", "web", "x=y"]);
    assert_eq!(k.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]), "2");
}
