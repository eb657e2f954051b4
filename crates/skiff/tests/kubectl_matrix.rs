//! Issue 3's "tests that must exist", for every kubectl minor from 1.27 to
//! 1.33 against one real `skiff server` (controllers and scheduler inside)
//! and a two-node `skiff sim`, so that Deployments really roll out and pods
//! become Ready. Each version works in its own namespace, all versions at
//! once (one thread each), and a failure names the version it happened in.
//!
//! Output is compared exactly where upstream kubectl's is well defined
//! ("created", "configured", "unchanged", "scaled", …); tables and describe
//! output are compared with runs of whitespace collapsed, since column widths
//! depend on the values shown.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::{wait_until, Kubectl, SkiffProc, SkiffServer};

const SLOW: Duration = Duration::from_secs(120);

/// The Deployment `web` (created with `create -f`, together with a ConfigMap).
const WEB: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
";

/// `api`, for client-side apply: IMAGE and ENV are substituted.
const API: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels:
    app: api
spec:
  replicas: 1
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      - name: app
        image: IMAGE
ENV";

/// `ssa`, for server-side apply: REPLICAS and IMAGE are substituted.
const SSA: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  labels:
    app: ssa
spec:
  replicas: REPLICAS
  selector:
    matchLabels:
      app: ssa
  template:
    metadata:
      labels:
        app: ssa
    spec:
      containers:
      - name: app
        image: IMAGE
";

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One kubectl version in its own namespace.
struct Matrix {
    k: Kubectl,
    v: u32,
    ns: String,
    dir: PathBuf,
}

impl Matrix {
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut a = args.to_vec();
        a.extend(["-n", &self.ns]);
        a
    }

    /// Run in the namespace; must succeed; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let a = self.args(args);
        let out = self.k.run(&a);
        assert!(out.status.success(), "1.{} {a:?} failed: {}{}", self.v, String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run in the namespace; must fail; stderr.
    fn err(&self, args: &[&str]) -> String {
        let a = self.args(args);
        let out = self.k.run(&a);
        assert!(!out.status.success(), "1.{} {a:?} should fail, printed {}", self.v, String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    /// `ok` whose whole output must be `want`.
    fn says(&self, args: &[&str], want: &str) {
        assert_eq!(self.ok(args), want, "1.{} {args:?}", self.v);
    }

    fn jp(&self, what: &[&str], path: &str) -> String {
        let p = format!("jsonpath={path}");
        let mut a = vec!["get"];
        a.extend_from_slice(what);
        a.extend(["-o", &p]);
        self.ok(&a)
    }

    fn gone(&self, what: &[&str]) -> bool {
        let mut a = vec!["get"];
        a.extend_from_slice(what);
        a.extend(["-o", "name", "--ignore-not-found"]);
        self.ok(&a).trim().is_empty()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(format!("{}-{name}", self.v));
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn wait(&self, what: &str, mut f: impl FnMut() -> bool) {
        wait_until(&format!("1.{}: {what}", self.v), SLOW, || f().then_some(()));
    }
}

/// A running `kubectl get -w`, its stdout lines arriving on a channel.
struct Watcher {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watcher {
    fn start(m: &Matrix, args: &[&str]) -> Watcher {
        let mut child = Command::new(&m.k.bin)
            .env("KUBECONFIG", &m.k.kubeconfig)
            .args(m.args(args))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines, seen: Vec::new() }
    }

    /// The first line (from now on) that satisfies `f`.
    fn next_matching(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SLOW;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if f(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("get -w never printed {what}; printed {:?}", self.seen),
                Err(RecvTimeoutError::Disconnected) => panic!("get -w ended before {what}; printed {:?}", self.seen),
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// create namespace, create -f (Strict validation), get -w, and the
/// imperative `create configmap|secret|deployment`.
fn creates(m: &Matrix) {
    let (v, ns) = (m.v, &m.ns);
    // 1.32+ send `create namespace|configmap|secret|deployment` bodies as protobuf.
    assert_eq!(m.k.ok(&["create", "namespace", ns]), format!("namespace/{ns} created\n"));
    let web = m.file("web.yaml", WEB);
    m.says(&["create", "-f", &web], "configmap/web-config created\ndeployment.apps/web created\n");
    assert!(m.err(&["create", "-f", &web]).contains(r#"deployments.apps "web" already exists"#));
    // Default validation is Strict: the server refuses an unknown field, naming it.
    let bad = m.file("bad.yaml", &WEB.split("---\n").nth(1).unwrap().replace("name: web\n", "name: bad\n").replace("  replicas: 2", "  replica: 2"));
    let e = m.err(&["create", "-f", &bad]);
    let want = format!(r#"Error from server (BadRequest): error when creating "{bad}": Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replica""#);
    assert_eq!(e.trim(), want, "1.{v}");
    assert!(m.gone(&["deploy", "bad"]), "1.{v}: an invalid object is not stored");

    // get -w: the initial list, then the ConfigMap `create configmap` makes.
    let mut w = Watcher::start(m, &["get", "configmaps", "-w"]);
    w.next_matching("the initial web-config row", |l| l.starts_with("web-config "));
    m.says(&["create", "configmap", "c1", "--from-literal=a=1", "--from-literal=b=2"], "configmap/c1 created\n");
    let row = w.next_matching("the c1 row", |l| l.starts_with("c1 "));
    assert_eq!(row.split_whitespace().nth(1), Some("2"), "1.{v}: DATA column of {row:?}");
    drop(w);
    assert_eq!(m.jp(&["cm", "c1"], "{.data}"), r#"{"a":"1","b":"2"}"#, "1.{v}");

    m.says(&["create", "secret", "generic", "s1", "--from-literal=password=s3cr3t"], "secret/s1 created\n");
    assert_eq!(m.jp(&["secret", "s1"], "{.type} {.data.password}"), "Opaque czNjcjN0", "1.{v}");
    m.says(&["create", "deployment", "d2", "--image=nginx:1.25"], "deployment.apps/d2 created\n");
    assert_eq!(m.jp(&["deploy", "d2"], "{.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].name}"), "1 d2 nginx", "1.{v}");
}

/// apply -f client-side (three-way merge) and server-side (field managers).
fn applies(m: &Matrix) {
    let v = m.v;
    let env = "        env:\n        - name: MODE\n          value: a\n";
    let api1 = m.file("api1.yaml", &API.replace("IMAGE", "nginx:1.25").replace("ENV", env));
    m.says(&["apply", "-f", &api1], "deployment.apps/api created\n");
    m.says(&["apply", "-f", &api1], "deployment.apps/api unchanged\n");
    // A changed image, and the env dropped from the manifest: the three-way merge removes it.
    let api2 = m.file("api2.yaml", &API.replace("IMAGE", "nginx:1.26").replace("ENV", ""));
    m.says(&["apply", "-f", &api2], "deployment.apps/api configured\n");
    m.says(&["apply", "-f", &api2], "deployment.apps/api unchanged\n");
    assert_eq!(m.jp(&["deploy", "api"], "{.spec.template.spec.containers[0].image}|{.spec.template.spec.containers[0].env}"), "nginx:1.26|", "1.{v}");
    let last = m.jp(&["deploy", "api"], r"{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}");
    assert!(last.contains("nginx:1.26") && !last.contains("MODE"), "1.{v}: {last}");

    let ssa = |replicas: &str, image: &str| SSA.replace("REPLICAS", replicas).replace("IMAGE", image);
    let ssa1 = m.file("ssa1.yaml", &ssa("1", "nginx:1.25"));
    m.says(&["apply", "--server-side", "-f", &ssa1], "deployment.apps/ssa serverside-applied\n");
    // (The deployment controller writes status meanwhile, so the spec's generation tells whether apply changed it.)
    m.says(&["apply", "--server-side", "-f", &ssa1], "deployment.apps/ssa serverside-applied\n");
    assert_eq!(m.jp(&["deploy", "ssa"], "{.metadata.generation}"), "1", "1.{v}: the same apply again changes nothing");
    let ssa2 = m.file("ssa2.yaml", &ssa("2", "nginx:1.26"));
    m.says(&["apply", "--server-side", "-f", &ssa2], "deployment.apps/ssa serverside-applied\n");
    assert_eq!(m.jp(&["deploy", "ssa"], "{.metadata.generation} {.spec.replicas} {.spec.template.spec.containers[0].image}"), "2 2 nginx:1.26", "1.{v}");
    let managers = m.jp(&["deploy", "ssa", "--show-managed-fields"], "{range .metadata.managedFields[*]}{.manager}:{.operation} {end}");
    assert!(managers.contains("kubectl:Apply"), "1.{v}: {managers}");
    // Where no controller writes (a ConfigMap), the same apply again writes nothing at all.
    let flags = m.file("flags.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  mode: fast\n");
    m.says(&["apply", "--server-side", "-f", &flags], "configmap/flags serverside-applied\n");
    let rv = m.jp(&["cm", "flags"], "{.metadata.resourceVersion}");
    m.says(&["apply", "--server-side", "-f", &flags], "configmap/flags serverside-applied\n");
    assert_eq!(m.jp(&["cm", "flags"], "{.metadata.resourceVersion}"), rv, "1.{v}: a no-op apply is not written");
    // Another manager changing a field kubectl applied conflicts, until forced.
    let ssa3 = m.file("ssa3.yaml", &ssa("2", "nginx:1.27"));
    let e = m.err(&["apply", "--server-side", "--field-manager=other", "-f", &ssa3]);
    assert!(e.starts_with(r#"error: Apply failed with 1 conflict: conflict with "kubectl": .spec.template.spec.containers[name="app"].image"#), "1.{v}: {e}");
    m.says(&["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", &ssa3], "deployment.apps/ssa serverside-applied\n");
    assert_eq!(m.jp(&["deploy", "ssa"], "{.spec.template.spec.containers[0].image}"), "nginx:1.27", "1.{v}");
}

/// get in every output format and with selectors, describe, wait, events,
/// once `web` has rolled out on the sim nodes.
fn reads(m: &Matrix) {
    let (v, ns) = (m.v, &m.ns);
    m.says(&["wait", "--for=condition=Available", "deployment/web", "--timeout=120s"], "deployment.apps/web condition met\n");
    let rs = m.jp(&["rs", "-l", "app=web"], "{.items[*].metadata.name}");
    assert!(rs.starts_with("web-") && !rs.contains(' '), "1.{v}: one ReplicaSet, got {rs:?}");

    let wide = m.ok(&["get", "deployment", "web", "-o", "wide"]);
    let lines: Vec<Vec<&str>> = wide.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"], "1.{v}:\n{wide}");
    assert_eq!(lines.len(), 2, "1.{v}:\n{wide}");
    assert_eq!([&lines[1][..4], &lines[1][5..]].concat(), ["web", "2/2", "2", "2", "nginx", "nginx:1.25", "app=web"], "1.{v}:\n{wide}");
    let pods = m.ok(&["get", "pods", "-l", "app=web", "-o", "wide"]);
    let mut rows = pods.lines();
    assert_eq!(squash(rows.next().unwrap()), "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES", "1.{v}:\n{pods}");
    let rows: Vec<Vec<&str>> = rows.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "1.{v}:\n{pods}");
    for r in &rows {
        assert!(r[0].starts_with(&format!("{rs}-")) && r[1..4] == ["1/1", "Running", "0"] && r[6].starts_with("sim-node-") && r[7..] == ["<none>", "<none>"], "1.{v}:\n{pods}");
        assert!(r[5].parse::<std::net::Ipv4Addr>().is_ok(), "1.{v}: pod IP in\n{pods}");
    }

    let yaml = m.ok(&["get", "deployment", "web", "-o", "yaml"]);
    for want in ["apiVersion: apps/v1\n", "kind: Deployment\n", "  name: web\n", &format!("  namespace: {ns}\n"), "  replicas: 2\n", "      - image: nginx:1.25\n", "  readyReplicas: 2\n"] {
        assert!(yaml.contains(want), "1.{v}: -o yaml lacks {want:?}:\n{yaml}");
    }
    let json: serde_json::Value = serde_json::from_str(&m.ok(&["get", "deployment", "web", "-o", "json"])).unwrap();
    assert_eq!((json["kind"].as_str(), json["metadata"]["namespace"].as_str(), json["status"]["availableReplicas"].as_i64()), (Some("Deployment"), Some(ns.as_str()), Some(2)), "1.{v}");
    assert_eq!(m.jp(&["pods", "-l", "app=web"], r#"{range .items[*]}{.status.phase} {.status.containerStatuses[0].ready}{"\n"}{end}"#), "Running true\nRunning true\n", "1.{v}");

    m.says(&["get", "deployments", "-l", "app=web", "-o", "name"], "deployment.apps/web\n");
    m.says(&["get", "deployments", "-l", "app in (api,ssa),app!=ssa", "-o", "name"], "deployment.apps/api\n");
    m.says(&["get", "deployments", "--field-selector", "metadata.name=d2", "-o", "name"], "deployment.apps/d2\n");
    let pod = m.jp(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    let node = m.jp(&["pod", &pod], "{.spec.nodeName}");
    let on_node = m.ok(&["get", "pods", "-l", "app=web", "--field-selector", &format!("spec.nodeName={node},status.phase=Running"), "-o", "name"]);
    assert!(on_node.lines().any(|l| l == format!("pod/{pod}")), "1.{v}: {on_node}");
    m.says(&["get", "pods", "-l", "app=web", "--field-selector", "status.phase=Failed", "-o", "name"], "");

    // The controllers record what they did (in the background): wait for it before describe shows it.
    let events_of = |kind: &str, name: &str| m.jp(&["events", "--field-selector", &format!("involvedObject.kind={kind},involvedObject.name={name}")], r#"{range .items[*]}{.reason}: {.message}{"\n"}{end}"#);
    m.wait("the ScalingReplicaSet event", || events_of("Deployment", "web").contains(&format!("ScalingReplicaSet: Scaled up replica set {rs} from 0 to 2\n")));
    m.wait("two SuccessfulCreate events", || events_of("ReplicaSet", &rs).matches("SuccessfulCreate: Created pod: ").count() == 2);
    let d = squash(&m.ok(&["describe", "deployment", "web"]));
    for want in [
        "Name: web".to_string(),
        format!("Namespace: {ns}"),
        "Labels: app=web".into(),
        "Selector: app=web".into(),
        "Replicas: 2 desired | 2 updated | 2 total | 2 available | 0 unavailable".into(),
        "StrategyType: RollingUpdate".into(),
        "RollingUpdateStrategy: 25% max unavailable, 25% max surge".into(),
        "Image: nginx:1.25 Port: 80/TCP".into(),
        "Available True MinimumReplicasAvailable".into(),
        format!("NewReplicaSet: {rs} (2/2 replicas created)"),
        "Normal ScalingReplicaSet".into(),
        format!("deployment-controller Scaled up replica set {rs} from 0 to 2"),
    ] {
        assert!(d.contains(&want), "1.{v}: describe deployment lacks {want:?}:\n{d}");
    }
    // The scheduler records its event as it binds; wait for it before reading it back.
    m.wait("the Scheduled event", || m.jp(&["events", "--field-selector", &format!("involvedObject.name={pod},reason=Scheduled")], "{.items[*].source.component}") == "default-scheduler");
    let d = squash(&m.ok(&["describe", "pod", &pod]));
    for want in [
        format!("Name: {pod}"),
        format!("Namespace: {ns}"),
        format!("Node: {node}/"),
        "Status: Running".into(),
        format!("Controlled By: ReplicaSet/{rs}"),
        "Image: nginx:1.25".into(),
        "State: Running".into(),
        "Ready: True".into(),
        "QoS Class: BestEffort".into(),
        "Normal Scheduled".into(),
        format!("default-scheduler Successfully assigned {ns}/{pod} to {node}"),
    ] {
        assert!(d.contains(&want), "1.{v}: describe pod lacks {want:?}:\n{d}");
    }

    // `kubectl events` exists (as a top-level command) in every version here, 1.27 included.
    let ev = m.ok(&["events", "--for", &format!("pod/{pod}")]);
    assert_eq!(squash(ev.lines().next().unwrap_or("")), "LAST SEEN TYPE REASON OBJECT MESSAGE", "1.{v}:\n{ev}");
    assert!(squash(&ev).contains(&format!("Normal Scheduled Pod/{pod} Successfully assigned {ns}/{pod} to {node}")), "1.{v}:\n{ev}");
    let ev = squash(&m.ok(&["events", "--for", &format!("replicaset/{rs}")]));
    assert!(ev.contains(&format!("Normal SuccessfulCreate ReplicaSet/{rs} Created pod: {pod}")), "1.{v}:\n{ev}");
}

/// edit, the three patch types, label, annotate, scale.
fn writes(m: &Matrix) {
    let v = m.v;
    // edit through KUBE_EDITOR: a script that rewrites a defaulted field.
    let editor = m.file("editor.sh", "#!/bin/sh\nsed -i 's/progressDeadlineSeconds: 600/progressDeadlineSeconds: 300/' \"$1\"\n");
    Command::new("chmod").args(["+x", &editor]).status().unwrap();
    let out = Command::new(&m.k.bin).env("KUBECONFIG", &m.k.kubeconfig).env("KUBE_EDITOR", &editor).args(m.args(&["edit", "deployment", "web"])).output().unwrap();
    assert!(out.status.success(), "1.{v} edit: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deployment.apps/web edited\n", "1.{v}");
    assert_eq!(m.jp(&["deploy", "web"], "{.spec.progressDeadlineSeconds}"), "300", "1.{v}");
    assert!(m.jp(&["deploy", "web", "--show-managed-fields"], "{.metadata.managedFields[*].manager}").contains("kubectl-edit"), "1.{v}");

    // Strategic (the default) merges containers by name; merge patch replaces the list.
    let env = r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"MODE","value":"b"}]}]}}}}"#;
    m.says(&["patch", "deployment", "api", "-p", env], "deployment.apps/api patched\n");
    assert_eq!(m.jp(&["deploy", "api"], "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}"), "nginx:1.26 b", "1.{v}");
    // A patch that changes nothing is not written (the Deployments here have a controller writing their status meanwhile).
    m.says(&["patch", "configmap", "c1", "--type=strategic", "-p", r#"{"data":{"a":"1"}}"#], "configmap/c1 patched (no change)\n");
    m.says(&["patch", "deployment", "api", "--type=merge", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1.27"}]}}}}"#], "deployment.apps/api patched\n");
    assert_eq!(m.jp(&["deploy", "api"], "{.spec.template.spec.containers[0].image}|{.spec.template.spec.containers[0].env}"), "nginx:1.27|", "1.{v}");
    m.says(&["patch", "deployment", "web", "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"add","path":"/spec/revisionHistoryLimit","value":3}]"#], "deployment.apps/web patched\n");
    assert_eq!(m.jp(&["deploy", "web"], "{.spec.revisionHistoryLimit}"), "3", "1.{v}");
    assert!(m.err(&["patch", "deployment", "web", "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":7}]"#]).contains("Error from server"), "1.{v}");

    m.says(&["label", "deployment", "web", "tier=front"], "deployment.apps/web labeled\n");
    m.says(&["get", "deployments", "-l", "tier=front", "-o", "name"], "deployment.apps/web\n");
    assert_eq!(m.err(&["label", "deployment", "web", "tier=back"]).trim(), "error: 'tier' already has a value (front), and --overwrite is false", "1.{v}");
    m.says(&["label", "deployment", "web", "tier-"], "deployment.apps/web unlabeled\n");
    // kubectl 1.27 itself prints "annotate" (fixed upstream in 1.28).
    let annotated = if v == 27 { "annotate" } else { "annotated" };
    m.says(&["annotate", "deployment", "web", "note=hello"], &format!("deployment.apps/web {annotated}\n"));
    assert_eq!(m.jp(&["deploy", "web"], "{.metadata.annotations.note}"), "hello", "1.{v}");

    m.says(&["scale", "deployment", "web", "--replicas=3"], "deployment.apps/web scaled\n");
    assert_eq!(m.jp(&["deploy", "web"], "{.spec.replicas}"), "3", "1.{v}");
    // The ReplicaSet follows, and so do its pods.
    let scaled = format!("Scaled up replica set {} from 2 to 3", m.jp(&["rs", "-l", "app=web"], "{.items[0].metadata.name}"));
    m.wait("the event of the scale-up", || m.jp(&["events", "--field-selector", "involvedObject.kind=Deployment,involvedObject.name=web,reason=ScalingReplicaSet"], "{.items[*].message}").contains(&scaled));
    m.wait("web's ReplicaSet scaled to 3 ready", || m.jp(&["rs", "-l", "app=web"], "{.items[*].spec.replicas}/{.items[*].status.readyReplicas}") == "3/3");
    m.says(&["wait", "--for=jsonpath={.status.readyReplicas}=3", "deployment/web", "--timeout=120s"], "deployment.apps/web condition met\n");
}

/// api-resources and explain.
fn discovery(m: &Matrix) {
    let v = m.v;
    let res = m.k.ok(&["api-resources"]);
    let rows: Vec<String> = res.lines().map(squash).collect();
    assert_eq!(rows[0], "NAME SHORTNAMES APIVERSION NAMESPACED KIND", "1.{v}");
    for want in ["deployments deploy apps/v1 true Deployment", "pods po v1 true Pod", "namespaces ns v1 false Namespace", "events ev v1 true Event"] {
        assert!(rows.iter().any(|r| r == want), "1.{v}: api-resources lacks {want:?}:\n{res}");
    }
    let apps = m.k.ok(&["api-resources", "--api-group=apps", "--namespaced=true", "-o", "name"]);
    for want in ["controllerrevisions.apps", "daemonsets.apps", "deployments.apps", "replicasets.apps", "statefulsets.apps"] {
        assert!(apps.lines().any(|l| l == want), "1.{v}: {apps}");
    }

    let ex = squash(&m.k.ok(&["explain", "deployment.spec.strategy"]));
    for want in ["GROUP: apps KIND: Deployment VERSION: v1", "FIELD: strategy <DeploymentStrategy>", "DESCRIPTION: The deployment strategy to use to replace existing pods with new ones.", "rollingUpdate <RollingUpdateDeployment>", "type <string>"] {
        assert!(ex.contains(want), "1.{v}: explain lacks {want:?}:\n{ex}");
    }
}

/// delete with each --cascade, then the namespace.
fn deletes(m: &Matrix) {
    let (v, ns) = (m.v, &m.ns);
    // background (the default): the Deployment goes at once, the garbage collector takes its ReplicaSet and pods.
    m.says(&["delete", "deployment", "api", "--cascade=background"], "deployment.apps \"api\" deleted\n");
    m.wait("api's ReplicaSets and pods collected", || m.gone(&["rs,pods", "-l", "app=api"]));

    // orphan: the ReplicaSet and its pod stay, no longer owned.
    let d2rs = m.jp(&["rs", "-l", "app=d2"], "{.items[*].metadata.name}");
    m.says(&["delete", "deployment", "d2", "--cascade=orphan"], "deployment.apps \"d2\" deleted\n");
    assert!(m.gone(&["deployment", "d2"]), "1.{v}");
    m.wait("d2's ReplicaSet orphaned", || m.jp(&["rs", &d2rs], "{.metadata.ownerReferences}").is_empty());
    m.wait("d2's pod still owned by its ReplicaSet", || m.jp(&["pods", "-l", "app=d2"], "{.items[*].metadata.ownerReferences[0].name}") == d2rs);
    m.says(&["delete", "rs", &d2rs], &format!("replicaset.apps \"{d2rs}\" deleted\n"));

    // foreground: the Deployment waits (finalizer foregroundDeletion) until its
    // dependents are gone. A finalizer of ours holds the ReplicaSet to see that.
    let rs = m.jp(&["rs", "-l", "app=web"], "{.items[*].metadata.name}");
    m.ok(&["patch", "rs", &rs, "--type=merge", "-p", r#"{"metadata":{"finalizers":["matrix.skiff.dev/hold"]}}"#]);
    m.says(&["delete", "deployment", "web", "--cascade=foreground", "--wait=false"], "deployment.apps \"web\" deleted\n");
    m.wait("the ReplicaSet being deleted", || !m.jp(&["rs", &rs], "{.metadata.deletionTimestamp}").is_empty());
    let owner = m.jp(&["deployment", "web"], "{.metadata.finalizers} {.metadata.deletionTimestamp}");
    let (finalizers, since) = owner.split_once(' ').unwrap();
    assert!(finalizers == r#"["foregroundDeletion"]"# && since.ends_with('Z'), "1.{v}: the owner waits for its dependents: {owner}");
    m.ok(&["patch", "rs", &rs, "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    m.wait("web deleted after its ReplicaSet", || m.gone(&["deployment", "web"]));
    assert!(m.gone(&["rs", &rs]), "1.{v}");

    m.wait("pods of deleted ReplicaSets gone", || m.gone(&["pods", "-l", "app in (web,api)"]));
    assert_eq!(m.k.ok(&["delete", "namespace", ns, "--wait=false"]), format!("namespace \"{ns}\" deleted\n"));
    assert_eq!(m.k.ok(&["get", "namespace", ns, "-o", "jsonpath={.status.phase}", "--ignore-not-found"]).replace("Terminating", ""), "", "1.{v}");
    m.wait("the namespace emptied and removed", || m.k.ok(&["get", "namespace", ns, "-o", "name", "--ignore-not-found"]).is_empty());
}

fn matrix(v: u32, kubeconfig: &Path, dir: &Path) {
    let m = Matrix { k: Kubectl::new(v, kubeconfig), v, ns: format!("matrix-{v}"), dir: dir.to_owned() };
    creates(&m);
    applies(&m);
    reads(&m);
    writes(&m);
    discovery(&m);
    deletes(&m);
}

#[test]
fn kubectl_1_27_to_1_33_full_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(&dir.path().join("server"), common::free_port(), &["+scheduler"]);
    let _sim = SkiffProc::start(&server.kubeconfig, &dir.path().join("sim.log"), &["sim", "--nodes", "2"]);
    let k = Kubectl::new(33, &server.kubeconfig);
    wait_until("two Ready sim nodes", SLOW, || {
        (k.ok(&["get", "nodes", "-o", r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#]) == "True\nTrue\n").then_some(())
    });

    let (kubeconfig, work) = (server.kubeconfig.as_path(), dir.path());
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (27..=33).map(|v| (v, s.spawn(move || matrix(v, kubeconfig, work)))).collect();
        handles
            .into_iter()
            .filter_map(|(v, h)| {
                h.join().err().map(|e| {
                    let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                    format!("kubectl 1.{v}: {msg}")
                })
            })
            .collect()
    });
    assert!(failures.is_empty(), "{} of 7 versions failed:\n{}", failures.len(), failures.join("\n\n"));
}
