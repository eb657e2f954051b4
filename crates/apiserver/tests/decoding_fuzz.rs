//! Property test of request decoding: random and mutated bodies — JSON,
//! YAML, JSON patches, merge and strategic merge patches, apply
//! configurations — for creates, updates and patches never panic the
//! server, never answer 5xx, and never leave an object the server cannot
//! read back.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use proptest::prelude::*;
use serde_json::{json, Value};
use skiff_apiserver::handlers::{dispatch, route, Request};
use skiff_apiserver::kv::Embedded;
use skiff_apiserver::storage::Storage;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z0-9$/.:-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["metadata", "spec", "containers", "name", "image", "labels", "$patch", "replace", "delete", "op", "path", "value", "add", "remove", "/spec", "/metadata/labels", "kind", "apiVersion"]).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(vec!["metadata", "spec", "status", "name", "labels", "containers", "image", "data", "ports", "port", "apiVersion", "kind", "op", "path", "value", "$patch", "$retainKeys", "finalizers", "x"]), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn seed_bodies() -> Vec<Vec<u8>> {
    vec![
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"busybox","ports":[{"containerPort":80}]}]}}"#.to_vec(),
        br#"[{"op":"add","path":"/metadata/labels/x","value":"y"},{"op":"remove","path":"/spec/containers/0"}]"#.to_vec(),
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n".to_vec(),
        br#"{"spec":{"containers":[{"name":"c","$patch":"delete"}],"$setElementOrder/containers":[{"name":"c"}]}}"#.to_vec(),
    ]
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Mutated(usize, Vec<(usize, u8)>),
}

fn arb_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        arb_json().prop_map(Body::Json),
        (0..4usize, prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)).prop_map(|(i, m)| Body::Mutated(i, m)),
    ]
}

fn bytes_of(b: &Body) -> Vec<u8> {
    match b {
        Body::Json(v) => v.to_string().into_bytes(),
        Body::Mutated(i, muts) => {
            let mut s = seed_bodies()[*i].clone();
            for (pos, byte) in muts {
                let p = pos % (s.len() + 1);
                if byte % 3 == 0 && p < s.len() {
                    s.remove(p);
                } else if p < s.len() {
                    s[p] = *byte;
                } else {
                    s.push(*byte);
                }
            }
            s
        }
    }
}

const CONTENT_TYPES: [&str; 7] = [
    "application/json",
    "application/yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/x-garbage",
];

async fn send(storage: &Storage, method: Method, path: &str, query: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let target = match parts.as_slice() {
        ["api", v, rest @ ..] => route("", v, rest).unwrap(),
        _ => unreachable!(),
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", ct.parse().unwrap());
    let query: HashMap<String, String> = query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap();
        (k.to_string(), v.to_string())
    }).collect();
    match dispatch(storage, Request { method, target, query, headers, body: Bytes::from(body) }).await {
        Ok(r) => {
            let code = r.status().as_u16();
            let b = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
            (code, serde_json::from_slice(&b).unwrap_or(Value::Null))
        }
        Err(e) => (e.code, e.to_status()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn bodies_never_panic_or_5xx(ops in prop::collection::vec((0..3usize, 0..CONTENT_TYPES.len(), arb_body()), 1..6)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = skiff_store::Store::open(skiff_store::Config::new(dir.path().join("store"))).unwrap();
            let storage = Storage::new(Arc::new(Embedded(store)));
            skiff_apiserver::bootstrap::ensure(&storage, "10.96.0.1", 6443).await.unwrap();
            let (c, _) = send(&storage, Method::POST, "/api/v1/namespaces/default/pods", "", "application/json", seed_bodies()[0].clone()).await;
            assert_eq!(c, 201);
            for (verb, ct, body) in &ops {
                let bytes = bytes_of(body);
                let (method, path, query) = match verb {
                    0 => (Method::POST, "/api/v1/namespaces/default/pods", "fieldValidation=Strict"),
                    1 => (Method::PUT, "/api/v1/namespaces/default/pods/p", ""),
                    _ => (Method::PATCH, "/api/v1/namespaces/default/pods/p", "fieldManager=fuzz&force=true"),
                };
                let (code, status) = send(&storage, method, path, query, CONTENT_TYPES[*ct], bytes).await;
                assert!(code < 500, "{verb} {} gave {code}: {status}", CONTENT_TYPES[*ct]);
                if code >= 400 {
                    assert_eq!(status["kind"], "Status", "errors are metav1.Status");
                }
                // Whatever happened, the stored object (if any) reads back.
                let (code, _) = send(&storage, Method::GET, "/api/v1/namespaces/default/pods/p", "", "application/json", vec![]).await;
                assert!(code == 200 || code == 404, "read back gave {code}");
                let (code, list) = send(&storage, Method::GET, "/api/v1/namespaces/default/pods", "", "application/json", vec![]).await;
                assert_eq!(code, 200);
                assert!(list["items"].is_array());
            }
        });
    }
}
