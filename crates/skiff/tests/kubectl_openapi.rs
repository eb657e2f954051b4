//! OpenAPI and aggregated discovery, seen through real kubectl 1.27–1.33:
//! default (strict) validation on `create`/`apply`, client-side `apply`
//! patches computed from the served schemas, `explain`, `api-resources`
//! and short names. Each kubectl gets its own cache dir so every version
//! really fetches discovery and the OpenAPI documents from the server.

mod common;

use std::path::{Path, PathBuf};

use common::{Kubectl, SkiffServer};

const MINORS: std::ops::RangeInclusive<u32> = 27..=33;

/// kubectl with a private cache dir, running against `server`.
struct K {
    k: Kubectl,
    cache: PathBuf,
    minor: u32,
}

impl K {
    fn new(minor: u32, server: &SkiffServer, dir: &Path) -> K {
        let cache = dir.join(format!("cache-{minor}"));
        K { k: Kubectl::new(minor, &server.kubeconfig), cache, minor }
    }
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push(format!("--cache-dir={}", self.cache.display()));
        v
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        let v = self.args(args);
        self.k.run(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl 1.{} {args:?} failed: {}", self.minor, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    /// Succeeds, and returns stdout and stderr.
    fn ok2(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(out.status.success(), "kubectl 1.{} {args:?} failed: {}", self.minor, String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }
    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl 1.{} {args:?} should fail: {}", self.minor, String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `kubectl create namespace` sends protobuf from 1.32 on; a file goes as JSON.
fn create_namespace(k: &K, dir: &Path, ns: &str) {
    let f = write(dir, &format!("{ns}.yaml"), &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"));
    assert_eq!(k.ok(&["create", "-f", &f]), format!("namespace/{ns} created\n"));
}

fn deployment(ns: &str, containers: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n{containers}"
    )
}

#[test]
fn create_and_apply_with_default_validation() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    for v in MINORS {
        let k = K::new(v, &server, dir.path());
        let ns = format!("val-{v}");
        create_namespace(&k, dir.path(), &ns);

        // create -f, default validation: valid succeeds, unknown fields are refused by the server.
        let good = write(dir.path(), &format!("good-{v}.yaml"), &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\n  namespace: {ns}\ndata:\n  a: \"1\"\n"));
        assert_eq!(k.ok(&["create", "-f", &good]), "configmap/made created\n");
        let bad = write(dir.path(), &format!("bad-{v}.yaml"), &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: {ns}\ndta:\n  a: \"1\"\n"));
        let e = k.err(&["create", "-f", &bad]);
        assert!(e.contains("strict decoding error: unknown field \"dta\""), "1.{v}: {e}");
        let e = k.err(&["apply", "-f", &bad]);
        assert!(e.contains("strict decoding error: unknown field \"dta\""), "1.{v}: {e}");
        let bad_pod = write(
            dir.path(),
            &format!("badpod-{v}.yaml"),
            &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: {ns}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolcy: Always\n"),
        );
        let e = k.err(&["create", "-f", &bad_pod]);
        assert!(e.contains("unknown field \"spec.containers[0].imagePullPolcy\""), "1.{v}: {e}");
        assert!(k.err(&["get", "cm", "bad", "-n", &ns]).contains("not found"));

        // A `kind: List` has no PATCH operation to carry `fieldValidation`, so kubectl
        // validates it client-side against the OpenAPI v2 (protobuf) schemas.
        let list = |field: &str| {
            format!("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: listed\n    namespace: {ns}\n  {field}:\n    a: \"1\"\n")
        };
        let bad_list = write(dir.path(), &format!("badlist-{v}.yaml"), &list("dta"));
        let e = k.err(&["create", "-f", &bad_list]);
        assert!(e.contains("error validating data: ValidationError(ConfigMap): unknown field \"dta\" in io.k8s.api.core.v1.ConfigMap"), "1.{v}: {e}");
        let good_list = write(dir.path(), &format!("goodlist-{v}.yaml"), &list("data"));
        assert_eq!(k.ok(&["create", "-f", &good_list]), "configmap/listed created\n");

        // Client-side apply: created, unchanged, configured.
        let cm = |a: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: {ns}\ndata:\n  a: \"{a}\"\n");
        let f = write(dir.path(), &format!("cm-{v}.yaml"), &cm("1"));
        assert_eq!(k.ok(&["apply", "-f", &f]), "configmap/cfg created\n");
        assert_eq!(k.ok(&["apply", "-f", &f]), "configmap/cfg unchanged\n");
        write(dir.path(), &format!("cm-{v}.yaml"), &cm("2"));
        let (out, stderr) = k.ok2(&["apply", "-f", &f]);
        assert_eq!(out, "configmap/cfg configured\n");
        assert!(!stderr.contains("warning"), "1.{v}: {stderr}");
        assert_eq!(k.ok(&["get", "cm", "cfg", "-n", &ns, "-o", "jsonpath={.data.a}"]), "2");
    }
}

#[test]
fn apply_merges_containers_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    for v in MINORS {
        let k = K::new(v, &server, dir.path());
        let ns = format!("merge-{v}");
        create_namespace(&k, dir.path(), &ns);
        let f = write(dir.path(), &format!("d-{v}.yaml"), &deployment(&ns, "      - {name: a, image: 'a:1'}\n      - {name: b, image: 'b:1'}\n"));
        assert_eq!(k.ok(&["apply", "-f", &f]), "deployment.apps/web created\n");
        // A change made outside the manifest: env on container a.
        k.ok(&["set", "env", "deploy/web", "-n", &ns, "-c", "a", "X=1"]);
        // The manifest changes b's image: a keeps its env only if the patch merges containers by name.
        write(dir.path(), &format!("d-{v}.yaml"), &deployment(&ns, "      - {name: a, image: 'a:1'}\n      - {name: b, image: 'b:2'}\n"));
        let (out, log) = k.ok2(&["apply", "-f", &f, "-v=6"]);
        assert_eq!(out, "deployment.apps/web configured\n");
        assert!(!log.contains("OpenAPI V3 path") && !log.contains("error calculating patch"), "1.{v}: {log}");
        // The patch comes from the served schemas: 1.29+ settle it from the v3
        // document alone; 1.27 and 1.28 read the v2 (protobuf) one for it.
        assert!(log.contains("/openapi/v3/apis/apps/v1?hash="), "1.{v}: {log}");
        let v2 = log.lines().find(|l| l.contains("/openapi/v2?"));
        if v < 29 {
            assert!(v2.is_some_and(|l| l.contains("200 OK")), "1.{v}: {log}");
        } else {
            assert!(v2.is_none(), "1.{v}: {log}");
        }
        let jp = "jsonpath={range .spec.template.spec.containers[*]}{.name}={.image}:{.env[*].name} {end}";
        assert_eq!(k.ok(&["get", "deploy", "web", "-n", &ns, "-o", jp]), "a=a:1:X b=b:2: ");
        // Dropping b from the manifest deletes just b (a `$patch: delete` by merge key).
        write(dir.path(), &format!("d-{v}.yaml"), &deployment(&ns, "      - {name: a, image: 'a:1'}\n"));
        assert_eq!(k.ok(&["apply", "-f", &f]), "deployment.apps/web configured\n");
        assert_eq!(k.ok(&["get", "deploy", "web", "-n", &ns, "-o", jp]), "a=a:1:X ");
        assert_eq!(k.ok(&["apply", "-f", &f]), "deployment.apps/web unchanged\n");
    }
}

#[test]
fn explain_reads_the_served_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    for v in MINORS {
        let k = K::new(v, &server, dir.path());
        let out = k.ok(&["explain", "pod.spec.containers"]);
        assert!(out.contains("KIND:       Pod\nVERSION:    v1\n"), "1.{v}: {out}");
        assert!(out.contains("FIELD: containers <[]Container>"), "1.{v}: {out}");
        assert!(out.contains("List of containers belonging to the pod."), "1.{v}: {out}");
        assert!(out.contains("A single application container that you want to run within a pod."), "1.{v}: {out}");
        for field in ["  image\t<string>", "  name\t<string> -required-", "  env\t<[]EnvVar>", "  ports\t<[]ContainerPort>", "  resources\t<ResourceRequirements>"] {
            assert!(out.contains(field), "1.{v}: no {field:?} in {out}");
        }
        // The documents are cached by hash: a second explain revalidates the
        // index (304) and reads the group-version document from disk.
        let (again, log) = k.ok2(&["explain", "pod.spec.containers", "-v=8"]);
        assert_eq!(again, out);
        assert!(log.contains("public, immutable") && log.contains("X-From-Cache: 1"), "1.{v}: {log}");
        let out = k.ok(&["explain", "deployment.spec", "--recursive"]);
        assert!(out.contains("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"), "1.{v}: {out}");
        assert!(out.contains("FIELD: spec <DeploymentSpec>"), "1.{v}: {out}");
        for field in ["  replicas\t<integer>", "  selector\t<LabelSelector> -required-", "  template\t<PodTemplateSpec> -required-", "      containers\t<[]Container> -required-", "        image\t<string>"] {
            assert!(out.contains(field), "1.{v}: no {field:?} in {out}");
        }
    }
}

#[test]
fn aggregated_discovery_api_resources_and_short_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    for v in MINORS {
        let k = K::new(v, &server, dir.path());
        // Short names resolve from the two aggregated documents alone: with an
        // empty cache, no per-group-version (legacy) discovery request is made.
        let (out, log) = k.ok2(&["get", "deploy", "-A", "-v=6"]);
        assert!(out.is_empty(), "1.{v}: {out}");
        assert!(log.contains("No resources found"), "1.{v}: {log}");
        assert!(log.contains("/apis?timeout=32s"), "1.{v}: {log}");
        assert!(!log.contains("/apis/apps/v1?timeout"), "1.{v}: fell back to legacy discovery: {log}");
        let out = k.ok(&["api-resources"]);
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[0], ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], "1.{v}: {out}");
        for want in [
            &["pods", "po", "v1", "true", "Pod"][..],
            &["namespaces", "ns", "v1", "false", "Namespace"],
            &["secrets", "v1", "true", "Secret"],
            &["deployments", "deploy", "apps/v1", "true", "Deployment"],
            &["cronjobs", "cj", "batch/v1", "true", "CronJob"],
            &["clusterroles", "rbac.authorization.k8s.io/v1", "false", "ClusterRole"],
        ] {
            assert!(rows.iter().any(|r| r == want), "1.{v}: no row {want:?} in {out}");
        }
        let wide = k.ok(&["api-resources", "-o", "wide", "--api-group=apps"]);
        let deploy = wide.lines().find(|l| l.starts_with("deployments ")).unwrap();
        // Verbs print as `create,delete,…` up to 1.28 and `[create delete …]` after.
        let words: Vec<&str> = deploy.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']').filter(|w| !w.is_empty()).collect();
        assert_eq!(words, ["deployments", "deploy", "apps/v1", "true", "Deployment", "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch", "all"], "1.{v}: {wide}");

        let out = k.ok(&["get", "po", "-n", "kube-system"]);
        assert_eq!(out, "");
        let out = k.ok(&["get", "ns", "default", "-o", "name"]);
        assert_eq!(out, "namespace/default\n");
    }
}

#[test]
fn openapi_documents_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = K::new(33, &server, dir.path());
    let index: serde_json::Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v3"])).unwrap();
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    let apps: serde_json::Value = serde_json::from_str(&k.ok(&["get", "--raw", url])).unwrap();
    let d = &apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
    // A stale hash is redirected to the current document.
    let moved: serde_json::Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v3/apis/apps/v1?hash=0123"])).unwrap();
    assert_eq!(moved, apps);
    let v2: serde_json::Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec");
}
