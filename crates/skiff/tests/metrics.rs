//! `skiff store --listen-metrics-urls` serves Prometheus metrics that move with the store.

mod common;

use std::io::{Read, Write};

use common::{free_port, wait_for_port, SkiffStore};

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{body}"))
}

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
