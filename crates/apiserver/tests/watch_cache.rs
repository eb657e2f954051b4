//! The watch cache: many watchers share one store watch and all see the
//! same, complete, ordered events; selector transitions, metadata-only
//! watches and resumes older than the cache behave as direct watches do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_apiserver::handlers::{dispatch, route, Request};
use skiff_apiserver::kv::Embedded;
use skiff_apiserver::storage::Storage;

fn request(method: Method, path: &str, query: &str, body: Value, accept: Option<&str>) -> Request {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => panic!("bad path {path}"),
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if let Some(a) = accept {
        headers.insert("accept", a.parse().unwrap());
    }
    let query: HashMap<String, String> = query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (k.to_string(), v.to_string())
    }).collect();
    let body = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
    Request { method, target: route(group, version, rest).unwrap(), query, headers, body }
}

async fn call(storage: &Storage, method: Method, path: &str, body: Value) -> Value {
    let resp = dispatch(storage, request(method, path, "", body, None)).await.unwrap_or_else(|e| panic!("{path}: {}", e.message));
    serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap()
}

/// Read `n` watch events (type, name, rv) from a watch response.
async fn events(storage: &Storage, query: &str, accept: Option<&str>, n: usize) -> Vec<(String, String, String, Value)> {
    let resp = dispatch(storage, request(Method::GET, "/api/v1/namespaces/default/configmaps", query, Value::Null, accept)).await.unwrap();
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("watch stalled").expect("watch ended").unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let e: Value = serde_json::from_slice(&line).unwrap();
            let o = e["object"].clone();
            out.push((e["type"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap_or("").to_string(), o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string(), o));
        }
    }
    out
}

async fn setup() -> (Storage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = skiff_store::Store::open(skiff_store::Config::new(dir.path().join("store"))).unwrap();
    let storage = Storage::new(Arc::new(Embedded(store)));
    skiff_apiserver::bootstrap::ensure(&storage, "10.96.0.1", 6443).await.unwrap();
    (storage, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_watchers_see_the_same_complete_history() {
    let (storage, _dir) = setup().await;
    let list = call(&storage, Method::GET, "/api/v1/namespaces/default/configmaps", Value::Null).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let s = storage.clone();
        let q = format!("watch=1&resourceVersion={rv}");
        watchers.push(tokio::spawn(async move { events(&s, &q, None, 30).await }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..10 {
        call(&storage, Method::POST, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": format!("c{i}")}, "data": {"v": "1"}})).await;
        call(&storage, Method::PUT, &format!("/api/v1/namespaces/default/configmaps/c{i}"), json!({"metadata": {"name": format!("c{i}")}, "data": {"v": "2"}})).await;
        call(&storage, Method::DELETE, &format!("/api/v1/namespaces/default/configmaps/c{i}"), Value::Null).await;
    }
    let mut first: Option<Vec<(String, String, String)>> = None;
    for w in watchers {
        let got: Vec<(String, String, String)> = w.await.unwrap().into_iter().map(|(t, n, r, _)| (t, n, r)).collect();
        let kinds: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"].repeat(10));
        let revs: Vec<i64> = got.iter().map(|e| e.2.parse().unwrap()).collect();
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "in revision order, no duplicates: {revs:?}");
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got),
        }
    }
    // Two cachers: configmaps, shared by every watcher, and namespaces, which creates look up.
    assert_eq!(storage.watch_cache.resources(), 2, "one cacher serves every watcher of the resource");
}

#[tokio::test]
async fn cached_watches_keep_watch_semantics() {
    let (storage, _dir) = setup().await;
    call(&storage, Method::POST, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "a", "labels": {"x": "1"}}})).await;
    let list = call(&storage, Method::GET, "/api/v1/namespaces/default/configmaps", Value::Null).await;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    // Start the cache, then resume from a version older than it: served directly, same answer.
    let s = storage.clone();
    let selector = tokio::spawn(async move { events(&s, "watch=1&labelSelector=x=1", None, 3).await });
    let s = storage.clone();
    let meta = tokio::spawn(async move { events(&s, "watch=1", Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"), 2).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    call(&storage, Method::PUT, "/api/v1/namespaces/default/configmaps/a", json!({"metadata": {"name": "a", "labels": {"x": "2"}}})).await;
    call(&storage, Method::PUT, "/api/v1/namespaces/default/configmaps/a", json!({"metadata": {"name": "a", "labels": {"x": "1"}}})).await;
    // Label selectors turn transitions into DELETED / ADDED.
    let got: Vec<String> = selector.await.unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(got, ["ADDED", "DELETED", "ADDED"]);
    let got = meta.await.unwrap();
    assert_eq!(got[0].3["kind"], "PartialObjectMetadata");
    assert!(got[0].3.get("data").is_none() && got[0].3["metadata"]["labels"]["x"] == "1");
    // A resume from before the cache started still gets every later change.
    let resumed = events(&storage, &format!("watch=1&resourceVersion={rv}"), None, 2).await;
    assert_eq!(resumed.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["MODIFIED", "MODIFIED"]);
    // Lists and gets as metadata.
    let resp = dispatch(&storage, request(Method::GET, "/api/v1/namespaces/default/configmaps", "", Value::Null, Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"))).await.unwrap();
    let l: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert_eq!(l["items"][0]["kind"], "PartialObjectMetadata");
}

async fn raw_list(storage: &Storage, query: &str) -> Bytes {
    let resp = dispatch(storage, request(Method::GET, "/api/v1/namespaces/default/configmaps", query, Value::Null, None)).await.unwrap();
    axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()
}

#[tokio::test]
async fn list_then_watch_is_served_from_the_cache_and_lists_agree() {
    let (storage, _dir) = setup().await;
    call(&storage, Method::POST, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "first", "labels": {"k": "v"}}, "data": {"q": "\"}{"}})).await;
    let list = call(&storage, Method::GET, "/api/v1/namespaces/default/configmaps", Value::Null).await;
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    // A write between the list and the first watch of the resource.
    call(&storage, Method::POST, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "later"}})).await;
    let got = events(&storage, &format!("watch=1&resourceVersion={rv}"), None, 1).await;
    assert_eq!((got[0].0.as_str(), got[0].1.as_str()), ("ADDED", "later"));
    // The cacher started at the watch's revision, so it serves it (not a store watch).
    let cacher = storage.watch_cache.get(&storage, "/registry/configmaps/").await.unwrap();
    assert!(matches!(cacher.start(b"/registry/configmaps/default/", Some(rv)), Some(skiff_apiserver::watch_cache::Start::After(_))));
    // Once caught up, a list from the cache is byte for byte the list from the store.
    let from_store = raw_list(&storage, "").await;
    let want_rv = serde_json::from_slice::<Value>(&from_store).unwrap()["metadata"]["resourceVersion"].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let from_cache = raw_list(&storage, "resourceVersion=0").await;
        if serde_json::from_slice::<Value>(&from_cache).unwrap()["metadata"]["resourceVersion"] == want_rv {
            assert_eq!(from_cache, from_store);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the cache did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let l: Value = serde_json::from_slice(&from_store).unwrap();
    let names: Vec<&str> = l["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first", "later"]);
    assert_eq!(l["items"][0]["data"]["q"], "\"}{");
    assert!(l["items"].as_array().unwrap().iter().all(|o| o["metadata"]["resourceVersion"].as_str().is_some_and(|r| r.parse::<i64>().is_ok())));
    // With a selector, the same objects as decoding would give.
    let sel: Value = serde_json::from_slice(&raw_list(&storage, "labelSelector=k=v").await).unwrap();
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    assert_eq!(sel["items"][0], l["items"][0]);
}
