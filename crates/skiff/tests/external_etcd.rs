//! `skiff server --etcd-servers`: the API server on Debian's etcd 3.4
//! instead of the embedded store — same objects, same keys, same watch
//! semantics, and the state outlives the API server.

mod common;

use std::process::Command;

use common::{Etcd, Kubectl, SkiffServer};
use serde_json::Value;

#[test]
fn the_api_server_runs_on_an_external_etcd() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = SkiffServer::start_with(dir.path(), port, &["--etcd-servers", &etcd.url()]);
    let k = Kubectl::new(31, &server.kubeconfig);
    k.ok(&["create", "configmap", "cfg", "--from-literal=a=1"]);
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    assert_eq!(k.ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]), "10.96.0.1");
    // The objects are etcd keys in upstream's layout, as JSON.
    let out = Command::new("etcdctl").env("ETCDCTL_API", "3").args(["--endpoints", &etcd.url(), "get", "/registry/configmaps/default/cfg", "--print-value-only"]).output().unwrap();
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(stored["data"]["a"], "1");
    // Watch from a resourceVersion: later changes arrive in order. (Only
    // cfg's: the root CA publisher may add kube-root-ca.crt to `default`
    // after cfg was created, and that ADDED belongs in an unfiltered watch.)
    let rv = k.ok(&["get", "cm", "cfg", "-o", "jsonpath={.metadata.resourceVersion}"]);
    k.ok(&["label", "cm", "cfg", "x=y"]);
    k.ok(&["delete", "cm", "cfg"]);
    let events = k.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=2&fieldSelector=metadata.name%3Dcfg&resourceVersion={rv}")]);
    let events: Vec<Value> = events.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["MODIFIED", "DELETED"], "{events:?}");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["x"], "y");
    // Optimistic concurrency through etcd's txn compares.
    let f = dir.path().join("stale.json");
    let mut svc: Value = serde_json::from_str(&k.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    k.ok(&["label", "svc", "web", "bump=1"]);
    svc["metadata"]["labels"] = serde_json::json!({"stale": "yes"});
    std::fs::write(&f, svc.to_string()).unwrap();
    assert!(k.err(&["replace", "-f", f.to_str().unwrap(), "--validate=false"]).contains("the object has been modified"));
    // A new API server (new data directory, new certificates) on the same etcd sees everything.
    server.stop();
    let dir2 = tempfile::tempdir().unwrap();
    let server = SkiffServer::start_with(dir2.path(), common::free_port(), &["--etcd-servers", &etcd.url()]);
    let k = Kubectl::new(31, &server.kubeconfig);
    assert_eq!(k.ok(&["get", "svc", "web", "-o", "jsonpath={.metadata.labels.bump}"]), "1");
    assert!(k.err(&["get", "cm", "cfg"]).contains("NotFound"));
}
