//! Deletion lifecycle when a controller manager runs: namespaces go
//! Terminating and wait for `namespaces/finalize`; Foreground and Orphan
//! deletion leave finalizers for the garbage collector. Driven through the
//! handlers directly over an embedded store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use serde_json::{json, Value};
use skiff_apiserver::handlers::{dispatch, route, Request};
use skiff_apiserver::kv::Embedded;
use skiff_apiserver::storage::Storage;

struct Api {
    storage: Storage,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = skiff_store::Store::open(skiff_store::Config::new(dir.path().join("store"))).unwrap();
        let mut storage = Storage::new(Arc::new(Embedded(store)));
        storage.controllers = true;
        skiff_apiserver::bootstrap::ensure(&storage, "10.96.0.1", 6443).await.unwrap();
        Api { storage, _dir: dir }
    }

    /// One request; returns (status code, body).
    async fn call(&self, method: Method, path: &str, query: &[(&str, &str)], body: Value) -> (u16, Value) {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            _ => panic!("bad path {path}"),
        };
        let target = route(group, version, rest).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        let body = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
        let req = Request { method, target, query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(), headers, body };
        let resp = match dispatch(&self.storage, req).await {
            Ok(r) => r,
            Err(e) => return (e.code, e.to_status()),
        };
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn namespaces_terminate_until_finalized() {
    let api = Api::new().await;
    let (c, _) = api.call(Method::POST, "/api/v1/namespaces", &[], json!({"metadata": {"name": "t"}})).await;
    assert_eq!(c, 201);
    let cm = json!({"metadata": {"name": "c"}, "data": {"k": "v"}});
    assert_eq!(api.call(Method::POST, "/api/v1/namespaces/t/configmaps", &[], cm.clone()).await.0, 201);
    let (c, ns) = api.call(Method::DELETE, "/api/v1/namespaces/t", &[], Value::Null).await;
    assert_eq!(c, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    // The namespace and its content wait for the namespace controller.
    let (c, ns) = api.call(Method::GET, "/api/v1/namespaces/t", &[], Value::Null).await;
    assert_eq!((c, ns["status"]["phase"].as_str()), (200, Some("Terminating")));
    assert_eq!(api.call(Method::GET, "/api/v1/namespaces/t/configmaps/c", &[], Value::Null).await.0, 200);
    // New content is refused.
    let (c, st) = api.call(Method::POST, "/api/v1/namespaces/t/configmaps", &[], json!({"metadata": {"name": "d"}})).await;
    assert_eq!(c, 403);
    assert_eq!(st["message"], "unable to create new content in namespace t because it is being terminated");
    assert_eq!(st["details"]["causes"][0]["reason"], "NamespaceTerminating");
    // The controller's last step: delete the content, then clear spec.finalizers.
    assert_eq!(api.call(Method::DELETE, "/api/v1/namespaces/t/configmaps/c", &[], Value::Null).await.0, 200);
    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = json!([]);
    let (c, _) = api.call(Method::PUT, "/api/v1/namespaces/t/finalize", &[], fin).await;
    assert_eq!(c, 200);
    assert_eq!(api.call(Method::GET, "/api/v1/namespaces/t", &[], Value::Null).await.0, 404);
}

#[tokio::test]
async fn foreground_and_orphan_deletion_leave_finalizers() {
    let api = Api::new().await;
    for (name, policy, finalizer) in [("fg", "Foreground", "foregroundDeletion"), ("or", "Orphan", "orphan")] {
        let cm = json!({"metadata": {"name": name}});
        assert_eq!(api.call(Method::POST, "/api/v1/namespaces/default/configmaps", &[], cm).await.0, 201);
        let path = format!("/api/v1/namespaces/default/configmaps/{name}");
        let (c, obj) = api.call(Method::DELETE, &path, &[], json!({"propagationPolicy": policy})).await;
        assert_eq!(c, 200);
        assert_eq!(obj["metadata"]["finalizers"], json!([finalizer]));
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        // The collector removes its finalizer when done; the object then goes.
        let (_, mut cur) = api.call(Method::GET, &path, &[], Value::Null).await;
        cur["metadata"]["finalizers"] = json!([]);
        assert_eq!(api.call(Method::PUT, &path, &[], cur).await.0, 200);
        assert_eq!(api.call(Method::GET, &path, &[], Value::Null).await.0, 404);
    }
    // Background deletion needs no finalizer.
    assert_eq!(api.call(Method::POST, "/api/v1/namespaces/default/configmaps", &[], json!({"metadata": {"name": "bg"}})).await.0, 201);
    let (c, _) = api.call(Method::DELETE, "/api/v1/namespaces/default/configmaps/bg", &[], json!({"propagationPolicy": "Background"})).await;
    assert_eq!(c, 200);
    assert_eq!(api.call(Method::GET, "/api/v1/namespaces/default/configmaps/bg", &[], Value::Null).await.0, 404);
}

#[tokio::test]
async fn resource_version_match_semantics() {
    let api = Api::new().await;
    let path = "/api/v1/namespaces/default/configmaps";
    assert_eq!(api.call(Method::POST, path, &[], json!({"metadata": {"name": "a"}})).await.0, 201);
    let (_, list) = api.call(Method::GET, path, &[], Value::Null).await;
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert_eq!(api.call(Method::POST, path, &[], json!({"metadata": {"name": "b"}})).await.0, 201);
    // Exact: the list as it was at rv (before b).
    let (c, old) = api.call(Method::GET, path, &[("resourceVersion", &rv.to_string()), ("resourceVersionMatch", "Exact")], Value::Null).await;
    assert_eq!(c, 200);
    assert_eq!(old["items"].as_array().unwrap().len(), 1);
    // NotOlderThan: anything at least as new, here the latest.
    let (c, now) = api.call(Method::GET, path, &[("resourceVersion", &rv.to_string()), ("resourceVersionMatch", "NotOlderThan")], Value::Null).await;
    assert_eq!((c, now["items"].as_array().unwrap().len()), (200, 2));
    // A version the store has not reached yet is a 504, as upstream answers after waiting.
    let (c, st) = api.call(Method::GET, path, &[("resourceVersion", &(rv + 1000).to_string())], Value::Null).await;
    assert_eq!(c, 504);
    assert!(st["message"].as_str().unwrap().starts_with("Too large resource version"));
    assert_eq!(api.call(Method::GET, path, &[("resourceVersionMatch", "Exact")], Value::Null).await.0, 400);
    assert_eq!(api.call(Method::GET, path, &[("resourceVersion", "0"), ("resourceVersionMatch", "Exact")], Value::Null).await.0, 400);
    assert_eq!(api.call(Method::GET, path, &[("resourceVersion", "1"), ("resourceVersionMatch", "Sometimes")], Value::Null).await.0, 400);
}
