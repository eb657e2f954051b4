//! Kubernetes' protobuf encoding: kubectl 1.32 and 1.33 send
//! `application/vnd.kubernetes.protobuf` bodies for `kubectl create <kind>`
//! and prefer protobuf responses. Each object created that way must be
//! stored exactly as the same command over JSON (kubectl 1.31) stores it.
//! Then the API itself: protobuf GET/LIST/Status responses decode with our
//! own codec, watch streams are length-prefixed protobuf events, and damaged
//! protobuf bodies get a 400, not a crash.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Kubectl, SkiffServer};
use serde_json::{json, Value};

const PB: &str = "application/vnd.kubernetes.protobuf";

/// The `kubectl create …` commands under test, in namespace `ns`;
/// cluster-scoped names get `tag` so versions do not collide.
fn create_all(k: &Kubectl, ns: &str, tag: &str) {
    let pc = format!("pc-{tag}");
    let (cr, crb) = (format!("cr-{tag}"), format!("crb-{tag}"));
    let cr_flag = format!("--clusterrole={cr}");
    let cmds: Vec<Vec<&str>> = vec![
        vec!["create", "namespace", ns],
        vec!["create", "deployment", "x", "--image=busybox", "--replicas=2", "-n", ns],
        vec!["create", "configmap", "cm", "--from-literal=k=v", "--from-literal=multi=a b\nc", "--from-literal=empty=", "-n", ns],
        vec!["create", "secret", "generic", "s", "--from-literal=password=s3cr3t!\u{00e9}\n\t", "--from-literal=user=admin", "-n", ns],
        vec!["create", "service", "clusterip", "svc", "--tcp=80:8080", "--tcp=443:https", "-n", ns],
        vec!["create", "job", "j", "--image=busybox", "-n", ns, "--", "echo", "hi"],
        vec!["create", "cronjob", "cj", "--image=busybox", "--schedule=*/5 * * * *", "--restart=OnFailure", "-n", ns, "--", "date"],
        vec!["create", "serviceaccount", "sa", "-n", ns],
        vec!["create", "priorityclass", &pc, "--value=1000", "--description=high prio", "--preemption-policy=Never"],
        vec!["create", "quota", "q", "--hard=pods=10,cpu=2,memory=1Gi", "--scopes=NotTerminating", "-n", ns],
        vec!["create", "role", "r", "--verb=get,list", "--resource=pods,deployments.apps", "--resource-name=a", "-n", ns],
        vec!["create", "rolebinding", "rb", "--role=r", "--serviceaccount=default:sa", "--user=jane", "-n", ns],
        vec!["create", "poddisruptionbudget", "pdb", "--selector=app=x", "--min-available=50%", "-n", ns],
        vec!["create", "clusterrole", &cr, "--aggregation-rule=agg=true"],
        vec!["create", "clusterrolebinding", &crb, &cr_flag, "--group=devs"],
        vec!["create", "secret", "docker-registry", "reg", "--docker-server=r.io", "--docker-username=u", "--docker-password=p", "-n", ns],
    ];
    for c in cmds {
        let out = k.ok(&c);
        assert!(out.ends_with(" created\n"), "{c:?}: {out}");
    }
}

/// The objects `create_all` made, as JSON, without what the server assigns.
fn fetch_all(k: &Kubectl, ns: &str, tag: &str) -> Vec<(String, Value)> {
    let pc = format!("pc-{tag}");
    let (cr, crb) = (format!("cr-{tag}"), format!("crb-{tag}"));
    let gets: Vec<Vec<&str>> = vec![
        vec!["namespace", ns],
        vec!["deployment", "x", "-n", ns],
        vec!["configmap", "cm", "-n", ns],
        vec!["secret", "s", "-n", ns],
        vec!["service", "svc", "-n", ns],
        vec!["job", "j", "-n", ns],
        vec!["cronjob", "cj", "-n", ns],
        vec!["serviceaccount", "sa", "-n", ns],
        vec!["priorityclass", &pc],
        vec!["resourcequota", "q", "-n", ns],
        vec!["role", "r", "-n", ns],
        vec!["rolebinding", "rb", "-n", ns],
        vec!["poddisruptionbudget", "pdb", "-n", ns],
        vec!["clusterrole", &cr],
        vec!["clusterrolebinding", &crb],
        vec!["secret", "reg", "-n", ns],
    ];
    gets.into_iter()
        .map(|g| {
            let mut args = vec!["get"];
            args.extend(&g);
            args.extend(["-o", "json"]);
            let raw = k.ok(&args);
            let v0: Value = serde_json::from_str(&raw).unwrap();
            // Values derived from the uid (Job selectors) and random allocations (cluster IPs) differ per object.
            let uid = v0["metadata"]["uid"].as_str().unwrap_or("").to_string();
            let mut v: Value = serde_json::from_str(&if uid.is_empty() { raw.clone() } else { raw.replace(&uid, "UID") }).unwrap();
            if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
                && let Some(ip) = spec.remove("clusterIP") {
                    assert!(ip.as_str().is_some_and(|ip| ip.starts_with("10.")), "a cluster IP was allocated: {ip}");
                    spec.remove("clusterIPs");
                }
            let m = v["metadata"].as_object_mut().unwrap();
            for f in ["uid", "creationTimestamp", "resourceVersion", "namespace", "managedFields"] {
                m.remove(f);
            }
            if !g.contains(&"-n") {
                m.remove("name");
            }
            // Namespaces are labelled with their own name.
            if let Some(l) = m.get_mut("labels").and_then(Value::as_object_mut) {
                l.remove("kubernetes.io/metadata.name");
                if l.is_empty() {
                    m.remove("labels");
                }
            }
            if g[0] == "clusterrolebinding" {
                v["roleRef"].as_object_mut().unwrap().remove("name");
            }
            (g[0].to_string(), v)
        })
        .collect()
}

fn check_version(k: &Kubectl, reference: &[(String, Value)], minor: u32) {
    let ns = format!("pb-{minor}");
    let tag = format!("{minor}");
    create_all(k, &ns, &tag);
    let got = fetch_all(k, &ns, &tag);
    for ((kind, want), (_, have)) in reference.iter().zip(&got) {
        assert_eq!(have, want, "kubectl 1.{minor}: {kind} created over protobuf differs from the JSON one");
    }

    // The fields themselves, as sent.
    let get = |args: &[&str]| -> String { k.ok(&[&["get"], args, &["-n", &ns]].concat()) };
    let deploy: Value = serde_json::from_str(&get(&["deployment", "x", "-o", "json"])).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["selector"], json!({"matchLabels": {"app": "x"}}));
    assert_eq!(deploy["spec"]["template"]["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(deploy["spec"]["template"]["spec"]["containers"], json!([{"name": "busybox", "image": "busybox", "resources": {},
        "imagePullPolicy": "Always", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}]));
    assert_eq!(deploy["metadata"]["labels"], json!({"app": "x"}));

    assert_eq!(get(&["configmap", "cm", "-o", "jsonpath={.data}"]), r#"{"empty":"","k":"v","multi":"a b\nc"}"#);

    // base64 of the exact bytes sent (UTF-8 é, newline, tab).
    assert_eq!(get(&["secret", "s", "-o", "jsonpath={.data.password}"]), "czNjcjN0IcOpCgk=");
    assert_eq!(get(&["secret", "s", "-o", "jsonpath={.data.user}"]), "YWRtaW4=");

    let svc: Value = serde_json::from_str(&get(&["service", "svc", "-o", "json"])).unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"], json!({"app": "svc"}));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}, {"name": "443-https", "protocol": "TCP", "port": 443, "targetPort": "https"}])
    );

    let job: Value = serde_json::from_str(&get(&["job", "j", "-o", "json"])).unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!((c["image"].as_str(), c["command"].clone()), (Some("busybox"), json!(["echo", "hi"])));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let cj: Value = serde_json::from_str(&get(&["cronjob", "cj", "-o", "json"])).unwrap();
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!((pod["restartPolicy"].as_str(), pod["containers"][0]["command"].clone()), (Some("OnFailure"), json!(["date"])));

    assert_eq!(get(&["serviceaccount", "sa", "-o", "jsonpath={.metadata.name}"]), "sa");

    let pc: Value = serde_json::from_str(&k.ok(&["get", "priorityclass", &format!("pc-{tag}"), "-o", "json"])).unwrap();
    assert_eq!((pc["value"].as_i64(), pc["description"].as_str(), pc["preemptionPolicy"].as_str()), (Some(1000), Some("high prio"), Some("Never")));

    let q: Value = serde_json::from_str(&get(&["quota", "q", "-o", "json"])).unwrap();
    assert_eq!(q["spec"], json!({"hard": {"pods": "10", "cpu": "2", "memory": "1Gi"}, "scopes": ["NotTerminating"]}));

    let r: Value = serde_json::from_str(&get(&["role", "r", "-o", "json"])).unwrap();
    assert_eq!(r["rules"][0]["verbs"], json!(["get", "list"]));
    assert_eq!(r["rules"][0]["resourceNames"], json!(["a"]));
    let rb: Value = serde_json::from_str(&get(&["rolebinding", "rb", "-o", "json"])).unwrap();
    assert_eq!(rb["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}));
    assert_eq!(rb["subjects"].as_array().unwrap().len(), 2);

    assert_eq!(get(&["pdb", "pdb", "-o", "jsonpath={.spec.minAvailable}"]), "50%");
    assert_eq!(get(&["secret", "reg", "-o", "jsonpath={.type}"]), "kubernetes.io/dockerconfigjson");
    let cr: Value = serde_json::from_str(&k.ok(&["get", "clusterrole", &format!("cr-{tag}"), "-o", "json"])).unwrap();
    assert_eq!(cr["aggregationRule"], json!({"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}));

    // An error over protobuf: kubectl reads the Status.
    assert!(k.err(&["create", "configmap", "cm", "--from-literal=a=b", "-n", &ns]).contains("configmaps \"cm\" already exists"));
}

#[test]
fn kubectl_create_over_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]); // exact objects: no controller writes status or adds ConfigMaps
    // The reference: the same commands over JSON.
    let json_kubectl = Kubectl::new(31, &server.kubeconfig);
    create_all(&json_kubectl, "json-31", "31");
    let reference = fetch_all(&json_kubectl, "json-31", "31");
    for minor in [32, 33] {
        check_version(&Kubectl::new(minor, &server.kubeconfig), &reference, minor);
    }
    // Every object made above is served as protobuf too, decoding to exactly its JSON.
    let api = Api::new(dir.path(), server.port);
    let paths = [
        "/api/v1/namespaces/pb-32",
        "/apis/apps/v1/namespaces/pb-32/deployments/x",
        "/api/v1/namespaces/pb-32/configmaps/cm",
        "/api/v1/namespaces/pb-32/secrets/s",
        "/api/v1/namespaces/pb-32/services/svc",
        "/apis/batch/v1/namespaces/pb-32/jobs/j",
        "/apis/batch/v1/namespaces/pb-32/cronjobs/cj",
        "/api/v1/namespaces/pb-32/serviceaccounts/sa",
        "/apis/scheduling.k8s.io/v1/priorityclasses/pc-32",
        "/api/v1/namespaces/pb-32/resourcequotas/q",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/pb-32/roles/r",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/pb-32/rolebindings/rb",
        "/apis/policy/v1/namespaces/pb-32/poddisruptionbudgets/pdb",
        "/api/v1/namespaces",
        "/apis/apps/v1/deployments",
    ];
    for path in paths {
        let pb = api.call("GET", path, &format!("{PB},application/json"), None);
        assert_eq!((pb.code, pb.content_type.as_str()), (200, PB), "{path}");
        let js = api.call("GET", path, "application/json", None);
        let mut js: Value = serde_json::from_slice(&js.body).unwrap();
        // Items of a protobuf list carry no kind/apiVersion (as upstream's).
        for item in js.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
            let m = item.as_object_mut().unwrap();
            m.remove("kind");
            m.remove("apiVersion");
        }
        assert_eq!(skiff_k8sproto::decode(&pb.body).unwrap(), js, "{path}");
    }
}

// ---------------------------------------------------------------- the API

struct Api {
    url: String,
    token: String,
    ca: std::path::PathBuf,
    tmp: std::path::PathBuf,
}

struct Reply {
    code: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Api {
    fn new(dir: &Path, port: u16) -> Api {
        Api {
            url: format!("https://127.0.0.1:{port}"),
            token: std::fs::read_to_string(dir.join("pki/admin.token")).unwrap().trim().to_string(),
            ca: dir.join("pki/ca.crt"),
            tmp: dir.to_path_buf(),
        }
    }

    fn call(&self, method: &str, path: &str, accept: &str, body: Option<(&str, &[u8])>) -> Reply {
        let out_file = self.tmp.join("reply.bin");
        let mut c = Command::new("curl");
        c.args(["-sS", "-X", method, "--cacert"]).arg(&self.ca);
        c.args(["-H", &format!("Authorization: Bearer {}", self.token), "-H", &format!("Accept: {accept}")]);
        if let Some((ct, bytes)) = body {
            let in_file = self.tmp.join("request.bin");
            std::fs::write(&in_file, bytes).unwrap();
            c.args(["-H", &format!("Content-Type: {ct}"), "--data-binary"]).arg(format!("@{}", in_file.display()));
        }
        c.arg("-o").arg(&out_file).args(["-w", "%{http_code} %{content_type}", &format!("{}{path}", self.url)]);
        let out = c.output().expect("curl runs");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        let w = String::from_utf8(out.stdout).unwrap();
        let (code, ct) = w.split_once(' ').unwrap();
        Reply { code: code.parse().unwrap(), content_type: ct.to_string(), body: std::fs::read(&out_file).unwrap_or_default() }
    }
}

#[test]
fn protobuf_responses_and_malformed_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]); // exact objects: no controller writes status or adds ConfigMaps
    let api = Api::new(dir.path(), server.port);
    let both = format!("{PB},application/json");

    // Create over protobuf, answered in protobuf.
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm", "labels": {"a": "b"}}, "data": {"k": "v"}, "binaryData": {"bin": "AAH/"}});
    let r = api.call("POST", "/api/v1/namespaces/default/configmaps", &both, Some((PB, &skiff_k8sproto::encode(&cm).unwrap())));
    assert_eq!((r.code, r.content_type.as_str()), (201, PB), "{}", String::from_utf8_lossy(&r.body));
    let created = skiff_k8sproto::decode(&r.body).unwrap();
    assert_eq!((created["data"].clone(), created["binaryData"].clone()), (cm["data"].clone(), cm["binaryData"].clone()));
    assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);

    // GET: the protobuf answer decodes to exactly the JSON answer.
    let path = "/api/v1/namespaces/default/configmaps/cm";
    let pb = api.call("GET", path, &both, None);
    assert_eq!((pb.code, pb.content_type.as_str()), (200, PB));
    assert_eq!(&pb.body[..4], b"k8s\0");
    let js = api.call("GET", path, "application/json", None);
    assert_eq!(js.content_type, "application/json");
    assert_eq!(skiff_k8sproto::decode(&pb.body).unwrap(), serde_json::from_slice::<Value>(&js.body).unwrap());

    // LIST: a ...List message.
    let deploy = json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "d"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]}}}});
    let r = api.call("POST", "/apis/apps/v1/namespaces/default/deployments", "application/json", Some((PB, &skiff_k8sproto::encode(&deploy).unwrap())));
    assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
    let list = api.call("GET", "/apis/apps/v1/namespaces/default/deployments", &both, None);
    assert_eq!((list.code, list.content_type.as_str()), (200, PB));
    let list = skiff_k8sproto::decode(&list.body).unwrap();
    assert_eq!(list["kind"], "DeploymentList");
    assert!(list["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["spec"]["replicas"], 0, "replicas: 0 is kept");
    assert_eq!(items[0]["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]), "defaulted, as upstream");

    // Errors are protobuf Status objects for protobuf clients.
    let r = api.call("GET", "/api/v1/namespaces/default/configmaps/nope", &both, None);
    assert_eq!((r.code, r.content_type.as_str()), (404, PB));
    let st = skiff_k8sproto::decode(&r.body).unwrap();
    assert_eq!((st["kind"].as_str(), st["reason"].as_str(), st["code"].as_i64()), (Some("Status"), Some("NotFound"), Some(404)));

    // An object our protos cannot hold (a volume type they leave out) is
    // answered in JSON, which the client also accepts.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gce"},
        "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "d", "gcePersistentDisk": {"pdName": "disk"}}]}});
    let r = api.call("POST", "/api/v1/namespaces/default/pods", "application/json", Some(("application/json", pod.to_string().as_bytes())));
    assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = api.call("GET", "/api/v1/namespaces/default/pods/gce", &both, None);
    assert_eq!((r.code, r.content_type.as_str()), (200, "application/json"));
    let back: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(back["spec"]["volumes"][0]["gcePersistentDisk"]["pdName"], "disk");

    // A Table stays JSON even for a client that also takes protobuf.
    let r = api.call("GET", "/api/v1/namespaces/default/configmaps", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", None);
    assert_eq!((r.code, r.content_type.as_str()), (200, "application/json"));

    // Malformed protobuf bodies: 400 with a Status, and the server lives on.
    let mut unknown_field = skiff_k8sproto::envelope("v1", "ConfigMap", vec![0x7a, 0x01, b'x']);
    let bodies: Vec<Vec<u8>> = vec![
        b"k8s\0\xff\xff\xff\xff".to_vec(),
        b"{\"kind\":\"ConfigMap\"}".to_vec(),
        b"k8s\0".to_vec(),
        skiff_k8sproto::envelope("v1", "ConfigMap", vec![0x0a, 0x20, 0x0a]),
        skiff_k8sproto::envelope("v1", "Node", vec![]),
        std::mem::take(&mut unknown_field),
    ];
    for body in &bodies {
        let r = api.call("POST", "/api/v1/namespaces/default/configmaps", "application/json", Some((PB, body)));
        assert_eq!(r.code, 400, "{body:?}: {}", String::from_utf8_lossy(&r.body));
        let st: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!((st["kind"].as_str(), st["reason"].as_str()), (Some("Status"), Some("BadRequest")), "{st}");
        let r = api.call("POST", "/api/v1/namespaces/default/configmaps", &both, Some((PB, body)));
        assert_eq!((r.code, r.content_type.as_str()), (400, PB));
        assert_eq!(skiff_k8sproto::decode(&r.body).unwrap()["code"], 400);
    }
    // A protobuf body of another kind than the URL's.
    let r = api.call("POST", "/api/v1/namespaces/default/configmaps", "application/json", Some((PB, &skiff_k8sproto::encode(&deploy).unwrap())));
    assert_eq!(r.code, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(api.call("GET", path, "application/json", None).code, 200);

    // Update (PUT) over protobuf.
    let mut updated = skiff_k8sproto::decode(&pb.body).unwrap();
    updated["data"]["k"] = json!("v2");
    let r = api.call("PUT", path, &both, Some((PB, &skiff_k8sproto::encode(&updated).unwrap())));
    assert_eq!(r.code, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(skiff_k8sproto::decode(&r.body).unwrap()["data"]["k"], "v2");

    // Watch: length-prefixed protobuf WatchEvents.
    let r = api.call("GET", "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1", &both, None);
    assert_eq!((r.code, r.content_type.as_str()), (200, "application/vnd.kubernetes.protobuf;stream=watch"));
    let (frames, rest) = skiff_k8sproto::split_watch_frames(&r.body);
    assert!(rest.is_empty());
    let events: Vec<(String, Value)> = frames.iter().map(|f| skiff_k8sproto::decode_watch_event(f).unwrap()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].0.as_str(), events[0].1["kind"].as_str(), events[0].1["data"]["k"].as_str()), ("ADDED", Some("ConfigMap"), Some("v2")));
    // A watched object the protos cannot hold ends the stream with an ERROR Status.
    let r = api.call("GET", "/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1", &both, None);
    let (frames, _) = skiff_k8sproto::split_watch_frames(&r.body);
    let (t, st) = skiff_k8sproto::decode_watch_event(frames[0]).unwrap();
    assert_eq!((t.as_str(), st["kind"].as_str(), st["code"].as_i64()), ("ERROR", Some("Status"), Some(500)));
}
