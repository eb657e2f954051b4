//! API-level semantics of `skiff server`, through `kubectl get --raw` and
//! `kubectl replace`: pagination over a consistent snapshot, watch resume
//! from a resourceVersion with no gaps or duplicates, selector transitions,
//! 410 Gone after compaction, and 409 Conflict on stale writes.

mod common;

use common::{Kubectl, SkiffServer};
use serde_json::Value;

fn raw(k: &Kubectl, path: &str) -> Value {
    serde_json::from_str(&k.ok(&["get", "--raw", path])).unwrap()
}

fn create_cm(k: &Kubectl, dir: &std::path::Path, name: &str, labels: &str) {
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{{labels}}}}},"data":{{"v":"1"}}}}"#)).unwrap();
    k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
}

fn watch_events(k: &Kubectl, query: &str) -> Vec<(String, String, String)> {
    let out = k.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&{query}")]);
    out.lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            let o = &e["object"];
            (
                e["type"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap_or(o["reason"].as_str().unwrap_or("")).to_string(),
                o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn pagination_watch_resume_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]); // exact ConfigMap counts: no kube-root-ca.crt
    let k = Kubectl::new(31, &server.kubeconfig);
    for i in 0..5 {
        create_cm(&k, dir.path(), &format!("page-{i}"), r#""app":"pager""#);
    }

    // Pagination: pages of 2 over one snapshot, even while objects change.
    let first = raw(&k, "/api/v1/namespaces/default/configmaps?limit=2");
    let snapshot_rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["metadata"]["remainingItemCount"], 3);
    create_cm(&k, dir.path(), "page-9", r#""app":"pager""#); // after the snapshot: must not appear
    k.ok(&["delete", "cm", "page-4"]); // after the snapshot: must still appear
    let mut names: Vec<String> = first["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let mut cont = first["metadata"]["continue"].as_str().unwrap().to_string();
    while !cont.is_empty() {
        let page = raw(&k, &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={cont}"));
        assert_eq!(page["metadata"]["resourceVersion"].as_str().unwrap(), snapshot_rv);
        names.extend(page["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()));
        cont = page["metadata"]["continue"].as_str().unwrap_or("").to_string();
    }
    assert_eq!(names, ["page-0", "page-1", "page-2", "page-3", "page-4"]);

    // Watch resume: from the snapshot revision, exactly the later changes, in order.
    let evs = watch_events(&k, &format!("resourceVersion={snapshot_rv}"));
    let kinds: Vec<(&str, &str)> = evs.iter().map(|(t, n, _)| (t.as_str(), n.as_str())).collect();
    assert_eq!(kinds, [("ADDED", "page-9"), ("DELETED", "page-4")]);
    let rvs: Vec<i64> = evs.iter().map(|(_, _, rv)| rv.parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > snapshot_rv.parse::<i64>().unwrap());
    // Resuming from the first event's revision yields only what came after it.
    let after_first = watch_events(&k, &format!("resourceVersion={}", rvs[0]));
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].1, "page-4");

    // Selector transitions: an object that stops matching is DELETED for the watcher.
    let before = raw(&k, "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    k.ok(&["label", "cm", "page-0", "app=other", "--overwrite"]);
    k.ok(&["label", "cm", "page-1", "app=other", "--overwrite"]);
    k.ok(&["label", "cm", "page-1", "app=pager", "--overwrite"]);
    let sel = watch_events(&k, &format!("resourceVersion={before}&labelSelector=app%3Dpager"));
    let kinds: Vec<(&str, &str)> = sel.iter().map(|(t, n, _)| (t.as_str(), n.as_str())).collect();
    assert_eq!(kinds, [("DELETED", "page-0"), ("DELETED", "page-1"), ("ADDED", "page-1")]);

    // Watch without a resourceVersion starts with the current state.
    let initial = watch_events(&k, "labelSelector=app%3Dpager");
    assert!(initial.iter().all(|(t, _, _)| t == "ADDED") && initial.len() == 4, "{initial:?}");

    // 409 on a stale write: replace with an old resourceVersion.
    let cm = raw(&k, "/api/v1/namespaces/default/configmaps/page-2");
    let stale = dir.path().join("stale.json");
    std::fs::write(&stale, cm.to_string()).unwrap();
    k.ok(&["annotate", "cm", "page-2", "touched=yes"]);
    let err = k.err(&["replace", "-f", stale.to_str().unwrap(), "--validate=false"]);
    assert!(err.contains("Operation cannot be fulfilled on configmaps \"page-2\": the object has been modified"), "{err}");
    // With the current resourceVersion it goes through.
    let fresh = raw(&k, "/api/v1/namespaces/default/configmaps/page-2");
    std::fs::write(&stale, fresh.to_string()).unwrap();
    k.ok(&["replace", "-f", stale.to_str().unwrap(), "--validate=false"]);

    // deletecollection with a selector.
    k.ok(&["delete", "cm", "-l", "app=pager"]);
    let left = raw(&k, "/api/v1/namespaces/default/configmaps");
    let left: Vec<&str> = left["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(left, ["page-0"]);
}

#[test]
fn compacted_history_gives_410_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--compaction-interval", "500ms", "--disable-controllers"]);
    let k = Kubectl::new(31, &server.kubeconfig);
    for i in 0..3 {
        create_cm(&k, dir.path(), &format!("old-{i}"), r#""a":"b""#);
    }
    let first = raw(&k, "/api/v1/namespaces/default/configmaps?limit=1");
    let old_rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let cont = first["metadata"]["continue"].as_str().unwrap().to_string();
    // Make history move on, and let two compaction rounds pass.
    create_cm(&k, dir.path(), "newer", r#""a":"b""#);
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let evs = watch_events(&k, &format!("resourceVersion={}", old_rv.parse::<i64>().unwrap() - 2));
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!((evs[0].0.as_str(), evs[0].1.as_str()), ("ERROR", "Expired"));
    let err = k.err(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?limit=1&continue={cont}")]);
    assert!(err.contains("too old") || err.contains("Expired") || err.contains("410"), "{err}");
}

#[test]
fn quiet_watches_get_bookmarks_when_they_allow_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--watch-bookmark-interval", "200ms"]);
    let k = Kubectl::new(31, &server.kubeconfig);
    create_cm(&k, dir.path(), "bm", r#""a":"b""#);
    let rv: i64 = raw(&k, "/api/v1/namespaces/default/configmaps")["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let evs = watch_events(&k, &format!("resourceVersion={rv}&allowWatchBookmarks=true"));
    assert!(!evs.is_empty(), "no bookmark within a second");
    for (t, _, erv) in &evs {
        assert_eq!(t, "BOOKMARK");
        assert!(erv.parse::<i64>().unwrap() >= rv);
    }
    // Without allowWatchBookmarks there are none.
    assert!(watch_events(&k, &format!("resourceVersion={rv}")).is_empty());
}

#[test]
fn field_validation_and_type_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(33, &server.kubeconfig);
    let f = dir.path().join("cm.json");
    std::fs::write(&f, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"fv","bogus":1},"dta":{"a":"b"}}"#).unwrap();
    let path = "/api/v1/namespaces/default/configmaps";
    let err = k.err(&["create", "--raw", &format!("{path}?fieldValidation=Strict"), "-f", f.to_str().unwrap()]);
    assert!(err.contains(r#"strict decoding error: unknown field \"dta\", unknown field \"metadata.bogus\""#) || err.contains("strict decoding error"), "{err}");
    // Warn (the default) stores the object without the unknown fields.
    let out = k.run(&["create", "--raw", path, "-f", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"dta\""), "warnings go to stderr");
    let stored = raw(&k, &format!("{path}/fv"));
    assert!(stored.get("dta").is_none() && stored["metadata"].get("bogus").is_none(), "{stored}");
    // A wrong type is a 400 that names the kind.
    std::fs::write(&f, r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":"three","selector":{},"template":{}}}"#).unwrap();
    let err = k.err(&["create", "--raw", "/apis/apps/v1/namespaces/default/deployments", "-f", f.to_str().unwrap()]);
    assert!(err.contains("Deployment in version \\\"v1\\\" cannot be handled as a Deployment") || err.contains("cannot be handled as a Deployment"), "{err}");
}

#[test]
fn oversized_objects_get_413_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start(dir.path());
    let k = Kubectl::new(31, &server.kubeconfig);
    let f = dir.path().join("big.json");
    let big = "x".repeat(1_600_000);
    std::fs::write(&f, format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{big}"}}}}"#)).unwrap();
    let err = k.err(&["create", "-f", f.to_str().unwrap(), "--validate=false"]);
    assert!(err.contains("Request entity too large"), "{err}");
    std::fs::write(&f, "{not json").unwrap();
    let err = k.err(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", f.to_str().unwrap()]);
    assert!(err.contains("BadRequest") || err.contains("cannot unmarshal") || err.contains("json"), "{err}");
    assert!(k.ok(&["get", "ns", "default", "-o", "name"]).contains("namespace/default"));
}

/// `curl` with the admin token and an Accept header; the body.
fn curl_accept(dir: &std::path::Path, port: u16, accept: &str, path: &str) -> String {
    let token = std::fs::read_to_string(dir.join("pki/admin.token")).unwrap();
    let out = std::process::Command::new("curl")
        .args(["-sfk", "-H", &format!("Authorization: Bearer {}", token.trim()), "-H", &format!("Accept: {accept}")])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Metadata-only clients (garbage collectors, metadata informers) get
/// PartialObjectMetadata: lists from the store and from the watch cache,
/// and watch events (including a deletion's last state at the deletion's
/// resourceVersion), each with exactly the object's metadata.
#[test]
fn metadata_only_lists_and_watches() {
    let dir = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir.path(), common::free_port(), &["--disable-controllers"]);
    let k = Kubectl::new(33, &server.kubeconfig);
    create_cm(&k, dir.path(), "meta-a", r#""app":"m""#);
    create_cm(&k, dir.path(), "meta-b", r#""app":"other""#);
    let full = raw(&k, "/api/v1/namespaces/default/configmaps/meta-a");
    const LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    const ONE: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    for query in ["", "?resourceVersion=0"] {
        let l: Value = serde_json::from_str(&curl_accept(dir.path(), server.port, LIST, &format!("/api/v1/namespaces/default/configmaps{query}"))).unwrap();
        assert_eq!((l["kind"].as_str(), l["apiVersion"].as_str()), (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1")), "{l}");
        let items = l["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{l}");
        let a = items.iter().find(|i| i["metadata"]["name"] == "meta-a").unwrap();
        assert_eq!(a, &serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": full["metadata"]}), "query {query:?}");
        assert!(a.get("data").is_none());
    }
    let rv = full["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    // Watches without a resourceVersion start from the watch cache's snapshot; keep two open while meta-a changes.
    let token = std::fs::read_to_string(dir.path().join("pki/admin.token")).unwrap();
    let live: Vec<_> = ["", "&labelSelector=app%3Dm"]
        .iter()
        .map(|sel| {
            std::process::Command::new("curl")
                .args(["-sfk", "-N", "-H", &format!("Authorization: Bearer {}", token.trim()), "-H", &format!("Accept: {ONE}")])
                .arg(format!("https://127.0.0.1:{}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=4{sel}", server.port))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    k.ok(&["label", "cm", "meta-a", "step=two"]);
    k.ok(&["delete", "cm", "meta-a"]);
    let check = |what: &str, body: &str, want: &[(&str, &str)]| {
        let events: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let seen: Vec<(&str, &str)> = events.iter().map(|e| (e["type"].as_str().unwrap(), e["object"]["metadata"]["name"].as_str().unwrap())).collect();
        assert_eq!(seen, want, "{what}: {body}");
        for e in &events {
            assert_eq!(e["object"]["kind"], "PartialObjectMetadata", "{e}");
            assert!(e["object"].get("data").is_none(), "{e}");
        }
        let (modified, deleted) = (&events[events.len() - 2]["object"]["metadata"], &events[events.len() - 1]["object"]["metadata"]);
        assert_eq!(modified["labels"]["step"], "two");
        assert_eq!(deleted["labels"]["step"], "two", "a deletion shows the last state");
        let (m, d) = (modified["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap(), deleted["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap());
        assert!(d > m, "the deletion's resourceVersion ({d}) is its own, after the update's ({m})");
    };
    for (child, sel) in live.into_iter().zip(["", "app=m"]) {
        let out = child.wait_with_output().unwrap();
        let body = String::from_utf8(out.stdout).unwrap();
        let want: &[(&str, &str)] = if sel.is_empty() {
            &[("ADDED", "meta-a"), ("ADDED", "meta-b"), ("MODIFIED", "meta-a"), ("DELETED", "meta-a")]
        } else {
            &[("ADDED", "meta-a"), ("MODIFIED", "meta-a"), ("DELETED", "meta-a")]
        };
        check(&format!("cached watch, selector {sel:?}"), &body, want);
    }
    // From meta-a's creation on (older than the cache: served by a store watch).
    for sel in ["", "&labelSelector=app%3Dm"] {
        let body = curl_accept(dir.path(), server.port, ONE, &format!("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion={rv}{sel}"));
        let want: &[(&str, &str)] = if sel.is_empty() { &[("ADDED", "meta-b"), ("MODIFIED", "meta-a"), ("DELETED", "meta-a")] } else { &[("MODIFIED", "meta-a"), ("DELETED", "meta-a")] };
        check(&format!("watch from {rv}, selector {sel:?}"), &body, want);
    }
}
