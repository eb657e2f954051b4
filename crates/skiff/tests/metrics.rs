//! `skiff store --listen-metrics-urls` serves Prometheus metrics that move with the store.

mod common;

use common::{free_port, http_get as get, metric, wait_for_port, SkiffStore};

#[test]
fn metrics_endpoint_reports_store_state() {
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let murl = format!("http://127.0.0.1:{mport}");
    let s = SkiffStore::start(dir.path(), &["--listen-metrics-urls", &murl]);
    wait_for_port(mport, std::time::Duration::from_secs(10));
    let before = get(mport, "/metrics");
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert_eq!(metric(&before, "skiff_store_revision"), 1.0);
    for i in 0..3 {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([format!("--endpoints={}", s.endpoint()), "put".into(), format!("m{i}"), "v".into()])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let after = get(mport, "/metrics");
    assert_eq!(metric(&after, "skiff_store_revision"), 4.0);
    assert_eq!(metric(&after, "skiff_store_keys"), 3.0);
    assert!(metric(&after, "skiff_store_wal_fsync_duration_seconds_count") >= 3.0);
    assert!(after.contains("skiff_store_grpc_requests_total{method=\"Put\"} 3"), "{after}");
    assert!(get(mport, "/nope").starts_with("HTTP/1.1 404"));
}
