//! Overload: with every write slot taken, a write gets 429 with
//! Retry-After and a Status; reads and watches still go through; once a
//! slot frees, writes succeed again.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use skiff_apiserver::inflight::Inflight;
use skiff_apiserver::kv::Embedded;
use skiff_apiserver::storage::Storage;
use skiff_apiserver::{server::router, AppState};
use tower::ServiceExt;

#[tokio::test]
async fn full_write_slots_give_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = skiff_store::Store::open(skiff_store::Config::new(dir.path().join("store"))).unwrap();
    let storage = Storage::new(Arc::new(Embedded(store)));
    skiff_apiserver::bootstrap::ensure(&storage, "10.96.0.1", 6443).await.unwrap();
    let inflight = Inflight::new(4, 1);
    let app = router(AppState { storage, token: Arc::new("t".into()), metrics: Default::default(), inflight: inflight.clone() });
    let create = || {
        Request::post("/api/v1/namespaces/default/configmaps")
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"metadata":{"generateName":"c-"}}"#))
            .unwrap()
    };
    let held = inflight.try_acquire(true).expect("the only write slot");
    let resp = app.clone().oneshot(create()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    let body: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(body["code"], 429);
    // Reads have their own slots.
    let get = Request::get("/api/v1/namespaces/default/configmaps").header("authorization", "Bearer t").body(Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(get).await.unwrap().status().as_u16(), 200);
    drop(held);
    assert_eq!(app.clone().oneshot(create()).await.unwrap().status().as_u16(), 201);
}
