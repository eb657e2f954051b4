//! Server-side apply through real kubectl (`apply --server-side`):
//! create, unchanged re-apply, conflicts with another manager, forced
//! takeover, changed and removed fields, and managedFields as upstream
//! shows them.

mod common;

use common::{Kubectl, SkiffServer};

fn manifest(name: &str, replicas: u32, image: &str, extra_label: bool) -> String {
    let label = if extra_label { r#","tier":"front""# } else { "" };
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}","labels":{{"app":"{name}"{label}}}}},
  "spec":{{"replicas":{replicas},"selector":{{"matchLabels":{{"app":"{name}"}}}},
  "template":{{"metadata":{{"labels":{{"app":"{name}"}}}},"spec":{{"containers":[{{"name":"c","image":"{image}"}}]}}}}}}}}"#
    )
}

#[test]
fn server_side_apply_with_kubectl_1_27_to_1_31() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    for minor in 27..=31 {
        let k = Kubectl::new(minor, &server.kubeconfig);
        let name = format!("web{minor}");
        let f = dir.path().join(format!("{name}.json"));
        let f = f.to_str().unwrap();
        let apply = |args: &[&str]| {
            let mut a = vec!["apply", "--server-side", "--validate=false", "-f", f];
            a.extend_from_slice(args);
            k.run(&a)
        };
        let get = |path: &str| k.ok(&["get", "deploy", &name, "-o", &format!("jsonpath={path}")]);

        std::fs::write(f, manifest(&name, 2, "nginx:1.25", true)).unwrap();
        let out = apply(&[]);
        assert!(out.status.success(), "1.{minor}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("deployment.apps/{name} serverside-applied"));
        assert_eq!(get("{.metadata.managedFields[0].manager} {.metadata.managedFields[0].operation} {.spec.replicas} {.spec.strategy.type}"), "kubectl Apply 2 RollingUpdate");
        let rv = get("{.metadata.resourceVersion}");
        // Unchanged: nothing is written.
        assert!(apply(&[]).status.success());
        assert_eq!(get("{.metadata.resourceVersion}"), rv, "1.{minor}: a no-op apply must not write");

        // Another manager takes .spec.replicas; applying our value again conflicts.
        k.ok(&["patch", "deploy", &name, "--type=merge", "-p", r#"{"spec":{"replicas":5}}"#]);
        let out = apply(&[]);
        assert!(!out.status.success(), "1.{minor}: conflicting apply must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: .spec.replicas"#), "1.{minor}: {err}");
        assert_eq!(get("{.spec.replicas}"), "5");
        // --force-conflicts takes it over.
        let out = apply(&["--force-conflicts"]);
        assert!(out.status.success(), "1.{minor}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(get("{.spec.replicas}"), "2");
        let owners = get(r#"{range .metadata.managedFields[*]}{.manager}:{.operation}={.fieldsV1.f:spec.f:replicas} {end}"#);
        assert!(owners.contains("kubectl:Apply={}"), "1.{minor}: {owners}");
        assert!(!owners.contains("kubectl-patch:Update={}"), "1.{minor}: kubectl-patch must lose replicas: {owners}");

        // A changed field is applied (and bumps generation); a dropped field is removed.
        let generation: i64 = get("{.metadata.generation}").parse().unwrap();
        std::fs::write(f, manifest(&name, 2, "nginx:1.26", false)).unwrap();
        assert!(apply(&[]).status.success());
        assert_eq!(get("{.spec.template.spec.containers[0].image}"), "nginx:1.26");
        assert_eq!(get("{.metadata.generation}"), (generation + 1).to_string());
        assert_eq!(get("{.metadata.labels}"), format!(r#"{{"app":"{name}"}}"#), "1.{minor}: the label no longer applied is gone");
    }
}

#[test]
fn apply_creates_and_fields_set_by_others_survive() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    let f = dir.path().join("cm.json");
    std::fs::write(&f, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1","b":"2"}}"#).unwrap();
    let f = f.to_str().unwrap();
    k.ok(&["apply", "--server-side", "--validate=false", "--field-manager=one", "-f", f]);
    k.ok(&["patch", "cm", "cfg", "--type=merge", "-p", r#"{"data":{"c":"3"}}"#]);
    // Manager "one" drops b: b goes, c (owned by kubectl-patch) stays.
    std::fs::write(f, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"1"}}"#).unwrap();
    k.ok(&["apply", "--server-side", "--validate=false", "--field-manager=one", "-f", f]);
    assert_eq!(k.ok(&["get", "cm", "cfg", "-o", "jsonpath={.data}"]), r#"{"a":"1","c":"3"}"#);
    // A second applier of the same value shares ownership without conflict.
    k.ok(&["apply", "--server-side", "--validate=false", "--field-manager=two", "-f", f]);
    let managers = k.ok(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.managedFields[*].manager}"]);
    assert_eq!(managers, "one kubectl-patch two");
    // Creation by kubectl create records kubectl-create as an Update manager.
    k.ok(&["create", "configmap", "plain", "--from-literal=x=y"]);
    assert_eq!(k.ok(&["get", "cm", "plain", "-o", "jsonpath={.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}"]), "kubectl-create/Update");
    // -o yaml hides managedFields by default, as upstream's kubectl does.
    assert!(!k.ok(&["get", "cm", "plain", "-o", "yaml"]).contains("managedFields"));
}
