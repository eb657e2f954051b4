//! `kubectl get` and `kubectl get -o wide` print exactly upstream's columns
//! and cells for the built-in kinds (the server's `as=Table` output), with
//! kubectl 1.27 and 1.33. Objects are created with kubectl 1.31
//! (`--validate=false`) and given realistic status through `--subresource=status`.

mod common;

use common::{Kubectl, SkiffServer};

const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {node-role.kubernetes.io/control-plane: "", node-role.kubernetes.io/worker: ""}}
---
apiVersion: v1
kind: Pod
metadata: {name: running, namespace: default, labels: {app: web}}
spec: {nodeName: node-1, containers: [{name: a, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: crashing, namespace: default}
spec: {nodeName: node-1, containers: [{name: a, image: nginx}, {name: b, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: initializing, namespace: default}
spec: {nodeName: node-1, initContainers: [{name: init, image: busybox}], containers: [{name: a, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: completed, namespace: default}
spec: {nodeName: node-1, restartPolicy: Never, containers: [{name: a, image: busybox}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: default}
spec: {containers: [{name: a, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: zz-terminating, namespace: default, finalizers: [example.com/hold]}
spec: {containers: [{name: a, image: nginx}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: NodePort, clusterIP: 10.96.100.100, selector: {app: web, tier: fe}, ports: [{name: http, port: 80, nodePort: 30080, protocol: TCP}, {name: dns, port: 53, nodePort: 30053, protocol: UDP}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.25}, {name: log, image: busybox}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: default}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: pi, namespace: default}
spec:
  completions: 2
  template:
    spec: {restartPolicy: Never, containers: [{name: pi, image: perl}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello, namespace: default}
spec:
  schedule: "*/5 * * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: OnFailure, containers: [{name: hello, image: busybox}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: default}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata: {name: tls, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: node-1, namespace: default}
spec: {holderIdentity: node-1_abc}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {minAvailable: "50%", selector: {matchLabels: {app: web}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-1}
spec: {capacity: {storage: 10Gi}, accessModes: [ReadWriteOnce, ReadWriteMany], persistentVolumeReclaimPolicy: Retain, storageClassName: fast, hostPath: {path: /tmp/pv}}
---
apiVersion: v1
kind: Event
metadata: {name: running.1, namespace: default}
involvedObject: {kind: Pod, name: running, namespace: default, fieldPath: "spec.containers{a}"}
reason: Pulled
message: Successfully pulled image "nginx"
type: Normal
source: {component: kubelet, host: node-1}
count: 3
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: view, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: User, name: alice}, {kind: ServiceAccount, name: bot, namespace: ci}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-abc, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web, pod-template-hash: abc}}
  template:
    metadata: {labels: {app: web, pod-template-hash: abc}}
    spec: {containers: [{name: web, image: nginx:1.25}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {nodeSelector: {kubernetes.io/os: linux}, containers: [{name: agent, image: busybox}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: old, namespace: default}
spec:
  replicas: 1
  selector: {app: old}
  template:
    metadata: {labels: {app: old}}
    spec: {containers: [{name: old, image: nginx}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: default}
subsets: [{addresses: [{ip: 10.244.0.5}, {ip: 10.244.0.6}], ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-xyz, namespace: default}
addressType: IPv4
ports: [{name: http, port: 80}]
endpoints: [{addresses: [10.244.0.5]}, {addresses: [10.244.0.6]}]
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota, namespace: default}
spec: {hard: {pods: "10", limits.cpu: "4", requests.memory: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec: {accessModes: [ReadWriteOnce], storageClassName: fast, volumeMode: Filesystem, resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bot, namespace: default}
secrets: [{name: bot-token}]
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: default}
spec: {limits: [{type: Container, default: {cpu: 500m}}]}
---
apiVersion: v1
kind: PodTemplate
metadata: {name: tmpl, namespace: default}
template:
  metadata: {labels: {app: tmpl}}
  spec: {containers: [{name: a, image: nginx}, {name: b, image: busybox}]}
"#;

/// Cells of kubectl's printed table, cut at the header's column starts (so
/// empty cells stay in place).
fn parse(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines();
    let header = lines.next().expect("a header line");
    let mut starts = vec![0];
    let b = header.as_bytes();
    for i in 2..b.len() {
        if b[i] != b' ' && b[i - 1] == b' ' && b[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| {
                let e = starts.get(n + 1).copied().unwrap_or(line.len()).min(line.len());
                line.get(s.min(line.len())..e).unwrap_or("").trim().to_string()
            })
            .collect()
    };
    (cut(header), lines.map(cut).collect())
}

/// A cell pattern: `AGE` matches any short age (`0s`..`119s`), `TIME` an
/// RFC 3339 UTC time, else exact.
fn same(got: &[String], want: &[&str]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| match *w {
            "AGE" => g.ends_with('s') && g[..g.len() - 1].parse::<u32>().is_ok_and(|n| n < 120),
            "TIME" => g.len() == 20 && g.ends_with('Z') && g.as_bytes()[10] == b'T',
            _ => g == w,
        })
}

fn check(k: &Kubectl, args: &[&str], header: &[&str], rows: &[&[&str]]) {
    let out = k.ok(args);
    let (h, got) = parse(&out);
    assert_eq!(h, header, "kubectl {args:?}:\n{out}");
    assert_eq!(got.len(), rows.len(), "kubectl {args:?}:\n{out}");
    for (g, w) in got.iter().zip(rows) {
        assert!(same(g, w), "kubectl {args:?}: row {g:?} should be {w:?}\n{out}");
    }
}

fn ago(secs: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - secs;
    let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{now}"), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn status(k: &Kubectl, kind: &str, name: &str, status: String) {
    k.ok(&["patch", kind, name, "--subresource=status", "--type=merge", "-p", &format!(r#"{{"status":{status}}}"#)]);
}

fn setup(k: &Kubectl, dir: &std::path::Path) {
    let file = dir.join("objects.yaml");
    std::fs::write(&file, OBJECTS).unwrap();
    k.ok(&["create", "-f", file.to_str().unwrap(), "--validate=false"]);
    let twenty = ago(20 * 60);
    status(k, "node", "node-1", r#"{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}],"addresses":[{"type":"InternalIP","address":"10.0.0.1"},{"type":"Hostname","address":"node-1"}],
        "nodeInfo":{"kubeletVersion":"v1.33.0","osImage":"Debian GNU/Linux 12 (bookworm)","kernelVersion":"6.1.0-18-amd64","containerRuntimeVersion":"containerd://1.7.13","machineID":"","systemUUID":"","bootID":"","kubeProxyVersion":"","operatingSystem":"linux","architecture":"amd64"}}"#.into());
    k.ok(&["cordon", "node-1"]);
    status(k, "pod", "running", format!(r#"{{"phase":"Running","podIP":"10.244.0.5","podIPs":[{{"ip":"10.244.0.5"}}],"conditions":[{{"type":"Ready","status":"True"}}],
        "containerStatuses":[{{"name":"a","image":"nginx","imageID":"","ready":true,"restartCount":3,"state":{{"running":{{"startedAt":"{twenty}"}}}},"lastState":{{"terminated":{{"exitCode":1,"finishedAt":"{twenty}"}}}}}}]}}"#));
    status(k, "pod", "crashing", r#"{"phase":"Running","podIPs":[{"ip":"10.244.0.6"}],"containerStatuses":[
        {"name":"a","image":"nginx","imageID":"","ready":true,"restartCount":0,"state":{"running":{}}},
        {"name":"b","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}"#.into());
    status(k, "pod", "initializing", r#"{"phase":"Pending","initContainerStatuses":[{"name":"init","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{"running":{}}}],
        "containerStatuses":[{"name":"a","image":"nginx","imageID":"","ready":false,"restartCount":0,"state":{"waiting":{"reason":"PodInitializing"}}}]}"#.into());
    status(k, "pod", "completed", r#"{"phase":"Succeeded","containerStatuses":[{"name":"a","image":"busybox","imageID":"","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}"#.into());
    k.ok(&["delete", "pod", "zz-terminating", "--wait=false"]);
    status(k, "deployment", "web", r#"{"replicas":3,"updatedReplicas":3,"readyReplicas":2,"availableReplicas":2}"#.into());
    status(k, "statefulset", "db", r#"{"replicas":2,"readyReplicas":1}"#.into());
    status(k, "job", "pi", format!(r#"{{"succeeded":2,"startTime":"{}","completionTime":"{}","conditions":[{{"type":"Complete","status":"True"}}]}}"#, ago(600), ago(555)));
    status(k, "pdb", "web", r#"{"disruptionsAllowed":1,"currentHealthy":2,"desiredHealthy":1,"expectedPods":2}"#.into());
    status(k, "pv", "pv-1", r#"{"phase":"Available"}"#.into());
    status(k, "replicaset", "web-abc", r#"{"replicas":2,"readyReplicas":1}"#.into());
    status(k, "daemonset", "agent", r#"{"desiredNumberScheduled":1,"currentNumberScheduled":1,"numberReady":1,"updatedNumberScheduled":1,"numberAvailable":1,"numberMisscheduled":0}"#.into());
    status(k, "rc", "old", r#"{"replicas":1,"readyReplicas":1}"#.into());
    status(k, "resourcequota", "quota", r#"{"hard":{"pods":"10","limits.cpu":"4","requests.memory":"1Gi"},"used":{"pods":"6","limits.cpu":"500m"}}"#.into());
    status(k, "pvc", "data", r#"{"phase":"Pending"}"#.into());
}

fn assert_output(k: &Kubectl) {
    let pods: &[&[&str]] = &[
        &["completed", "0/1", "Completed", "0", "AGE"],
        &["crashing", "1/2", "CrashLoopBackOff", "0", "AGE"],
        &["initializing", "0/1", "Init:0/1", "0", "AGE"],
        &["pending", "0/1", "Pending", "0", "AGE"],
        &["running", "1/1", "Running", "3 (20m ago)", "AGE"],
        &["zz-terminating", "0/1", "Terminating", "0", "AGE"],
    ];
    check(k, &["get", "pods"], &["NAME", "READY", "STATUS", "RESTARTS", "AGE"], pods);
    check(
        k,
        &["get", "pods", "-o", "wide"],
        &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        &[
            &["completed", "0/1", "Completed", "0", "AGE", "<none>", "node-1", "<none>", "<none>"],
            &["crashing", "1/2", "CrashLoopBackOff", "0", "AGE", "10.244.0.6", "node-1", "<none>", "<none>"],
            &["initializing", "0/1", "Init:0/1", "0", "AGE", "<none>", "node-1", "<none>", "<none>"],
            &["pending", "0/1", "Pending", "0", "AGE", "<none>", "<none>", "<none>", "<none>"],
            &["running", "1/1", "Running", "3 (20m ago)", "AGE", "10.244.0.5", "node-1", "<none>", "<none>"],
            &["zz-terminating", "0/1", "Terminating", "0", "AGE", "<none>", "<none>", "<none>", "<none>"],
        ],
    );
    check(k, &["get", "pods", "-l", "app=web", "--show-labels"], &["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"], &[&["running", "1/1", "Running", "3 (20m ago)", "AGE", "app=web"]]);
    check(k, &["get", "nodes"], &["NAME", "STATUS", "ROLES", "AGE", "VERSION"], &[&["node-1", "Ready,SchedulingDisabled", "control-plane,worker", "AGE", "v1.33.0"]]);
    check(
        k,
        &["get", "nodes", "-o", "wide"],
        &["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"],
        &[&["node-1", "Ready,SchedulingDisabled", "control-plane,worker", "AGE", "v1.33.0", "10.0.0.1", "<none>", "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "containerd://1.7.13"]],
    );
    let svc = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"];
    let kubernetes = ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "AGE"];
    let web = ["web", "NodePort", "10.96.100.100", "<none>", "80:30080/TCP,53:30053/UDP", "AGE"];
    check(k, &["get", "services"], &svc, &[&kubernetes, &web]);
    let svc_wide = [&svc[..], &["SELECTOR"]].concat();
    check(k, &["get", "services", "-o", "wide"], &svc_wide, &[&[&kubernetes[..], &["<none>"]].concat(), &[&web[..], &["app=web,tier=fe"]].concat()]);
    check(k, &["get", "deployments"], &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], &[&["web", "2/3", "3", "2", "AGE"]]);
    check(
        k,
        &["get", "deployments", "-o", "wide"],
        &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        &[&["web", "2/3", "3", "2", "AGE", "web,log", "nginx:1.25,busybox", "app=web"]],
    );
    check(k, &["get", "statefulsets", "-o", "wide"], &["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"], &[&["db", "1/2", "AGE", "db", "postgres"]]);
    check(k, &["get", "jobs"], &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], &[&["pi", "Complete", "2/2", "45s", "AGE"]]);
    check(
        k,
        &["get", "cronjobs"],
        &["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"],
        &[&["hello", "*/5 * * * *", "<none>", "True", "0", "<none>", "AGE"]],
    );
    check(k, &["get", "configmaps", "cfg"], &["NAME", "DATA", "AGE"], &[&["cfg", "2", "AGE"]]);
    check(k, &["get", "secrets"], &["NAME", "TYPE", "DATA", "AGE"], &[&["tls", "kubernetes.io/tls", "2", "AGE"]]);
    check(k, &["get", "leases"], &["NAME", "HOLDER", "AGE"], &[&["node-1", "node-1_abc", "AGE"]]);
    check(k, &["get", "pdb"], &["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"], &[&["web", "50%", "N/A", "1", "AGE"]]);
    check(
        k,
        &["get", "priorityclasses"],
        &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        &[&["system-cluster-critical", "2000000000", "false", "AGE", "PreemptLowerPriority"], &["system-node-critical", "2000001000", "false", "AGE", "PreemptLowerPriority"]],
    );
    check(
        k,
        &["get", "pv"],
        &["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE"],
        &[&["pv-1", "10Gi", "RWO,RWX", "Retain", "Available", "", "fast", "<unset>", "", "AGE"]],
    );
    check(
        k,
        &["get", "events", "-o", "wide"],
        &["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"],
        &[&["<unknown>", "Normal", "Pulled", "pod/running", "spec.containers{a}", "kubelet, node-1", "Successfully pulled image \"nginx\"", "<unknown>", "3", "running.1"]],
    );
    check(k, &["get", "rolebindings", "-o", "wide"], &["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"], &[&["view", "ClusterRole/view", "AGE", "alice", "", "ci:bot"]]);
    check(k, &["get", "namespaces", "default"], &["NAME", "STATUS", "AGE"], &[&["default", "Active", "AGE"]]);
    check(
        k,
        &["get", "replicasets", "-o", "wide"],
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        &[&["web-abc", "2", "2", "1", "AGE", "web", "nginx:1.25", "app=web,pod-template-hash=abc"]],
    );
    check(
        k,
        &["get", "daemonsets", "-o", "wide"],
        &["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        &[&["agent", "1", "1", "1", "1", "1", "kubernetes.io/os=linux", "AGE", "agent", "busybox", "app=agent"]],
    );
    check(k, &["get", "rc"], &["NAME", "DESIRED", "CURRENT", "READY", "AGE"], &[&["old", "1", "1", "1", "AGE"]]);
    check(k, &["get", "endpoints", "web"], &["NAME", "ENDPOINTS", "AGE"], &[&["web", "10.244.0.5:80,10.244.0.6:80,10.244.0.5:53 + 1 more...", "AGE"]]);
    check(k, &["get", "endpointslices"], &["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], &[&["web-xyz", "IPv4", "80", "10.244.0.5,10.244.0.6", "AGE"]]);
    check(k, &["get", "quota"], &["NAME", "REQUEST", "LIMIT", "AGE"], &[&["quota", "pods: 6/10, requests.memory: 0/1Gi", "limits.cpu: 500m/4", "AGE"]]);
    check(
        k,
        &["get", "pvc", "-o", "wide"],
        &["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE", "VOLUMEMODE"],
        &[&["data", "Pending", "", "", "", "fast", "<unset>", "AGE", "Filesystem"]],
    );
    check(k, &["get", "serviceaccounts", "bot"], &["NAME", "SECRETS", "AGE"], &[&["bot", "1", "AGE"]]);
    check(k, &["get", "limitranges"], &["NAME", "CREATED AT"], &[&["limits", "TIME"]]);
    check(k, &["get", "podtemplates"], &["NAME", "CONTAINERS", "IMAGES", "POD LABELS"], &[&["tmpl", "a,b", "nginx,busybox", "app=tmpl"]]);
    check(
        k,
        &["get", "cronjobs", "-o", "wide"],
        &["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        &[&["hello", "*/5 * * * *", "<none>", "True", "0", "<none>", "AGE", "hello", "busybox", "<none>"]],
    );
    check(k, &["get", "leases", "-A"], &["NAMESPACE", "NAME", "HOLDER", "AGE"], &[&["default", "node-1", "node-1_abc", "AGE"]]);
}

/// `kubectl get -w`: one header, then a row per event.
fn assert_watch(k: &Kubectl, v: u32) {
    let label = format!("seen-{v}=yes");
    let kubeconfig = k.kubeconfig.clone();
    let labeller = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        Kubectl::new(31, &kubeconfig).ok(&["annotate", "pod", "running", &label]);
    });
    let out = std::process::Command::new("timeout")
        .args(["4", &k.bin, "get", "pods", "-l", "app=web", "-w"])
        .env("KUBECONFIG", &k.kubeconfig)
        .output()
        .unwrap();
    labeller.join().unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    let (h, rows) = parse(&out);
    assert_eq!(h, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{out}");
    assert_eq!(rows.len(), 2, "{out}");
    for r in rows {
        assert!(same(&r, &["running", "1/1", "Running", "3 (20m ago)", "AGE"]), "{out}");
    }
}

#[test]
fn kubectl_get_prints_upstream_columns_for_1_27_and_1_33() {
    let dir = tempfile::tempdir().unwrap();
    // Exact pod and ReplicaSet rows: no controllers may add pods behind the test's back.
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]);
    setup(&Kubectl::new(31, &server.kubeconfig), dir.path());
    for v in [27, 33] {
        assert_output(&Kubectl::new(v, &server.kubeconfig));
        assert_watch(&Kubectl::new(v, &server.kubeconfig), v);
    }
}
