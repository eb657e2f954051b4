//! Debian's `etcdctl` (3.4) against `skiff store`: the commands an operator
//! would use, with their exact output.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::SkiffStore;

struct Ctl {
    endpoint: String,
}

impl Ctl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3").arg(format!("--endpoints={}", self.endpoint)).args(args);
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("etcdctl runs (install etcd-client)")
    }
    /// Run and expect success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "etcdctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
    /// Run and expect failure; returns stderr.
    fn err(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "etcdctl {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

fn setup() -> (tempfile::TempDir, SkiffStore, Ctl) {
    let dir = tempfile::tempdir().unwrap();
    let store = SkiffStore::start(dir.path(), &["--name", "skiff-1"]);
    let ctl = Ctl { endpoint: store.endpoint() };
    (dir, store, ctl)
}

#[test]
fn put_get_del_with_prefixes_and_revisions() {
    let (_d, _s, ctl) = setup();
    assert_eq!(ctl.ok(&["put", "a/1", "x"]), "OK\n"); // revision 2
    ctl.ok(&["put", "a/2", "y"]);
    ctl.ok(&["put", "b", "z"]);
    assert_eq!(ctl.ok(&["get", "a", "--prefix"]), "a/1\nx\na/2\ny\n");
    ctl.ok(&["put", "a/1", "x2"]);
    assert_eq!(ctl.ok(&["get", "a/1", "--rev=2"]), "a/1\nx\n");
    assert_eq!(ctl.ok(&["get", "a/1", "--print-value-only"]), "x2\n");
    let json = ctl.ok(&["get", "a/1", "-w", "json"]);
    assert!(json.contains("\"create_revision\":2") && json.contains("\"mod_revision\":5") && json.contains("\"version\":2"), "{json}");
    assert_eq!(ctl.ok(&["get", "a", "--prefix", "--limit=1", "--keys-only"]), "a/1\n\n");
    assert_eq!(ctl.ok(&["get", "a", "--from-key", "--keys-only"]), "a/1\n\na/2\n\nb\n\n");
    assert_eq!(ctl.ok(&["get", "a", "--prefix", "--sort-by=MODIFY", "--order=DESCEND", "--keys-only"]), "a/1\n\na/2\n\n");
    assert_eq!(ctl.ok(&["del", "a", "--prefix", "--prev-kv"]), "2\na/1\nx2\na/2\ny\n");
    assert_eq!(ctl.ok(&["get", "a", "--prefix"]), "");
    assert_eq!(ctl.ok(&["get", "a/2", "--rev=4"]), "a/2\ny\n");
    assert!(ctl.err(&["get", "a", "--rev=1000"]).contains("etcdserver: mvcc: required revision is a future revision"));
}

#[test]
fn txn_from_stdin() {
    let (_d, _s, ctl) = setup();
    ctl.ok(&["put", "flag", "on"]);
    let txn = |script: &str| {
        let mut child = ctl.cmd(&["txn"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let out = txn("value(\"flag\") = \"on\"\n\nput result yes\n\nput result no\n\n");
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(ctl.ok(&["get", "result", "--print-value-only"]), "yes\n");
    let out = txn("mod(\"flag\") > \"1000\"\n\nput result yes\n\nget flag\ndel result\n\n");
    assert_eq!(out, "FAILURE\n\nflag\non\n\n1\n");
    assert_eq!(ctl.ok(&["get", "result"]), "");
}

#[test]
fn watch_from_a_revision_sees_history_then_live_events() {
    let (_d, _s, ctl) = setup();
    ctl.ok(&["put", "w/1", "old"]); // 2
    ctl.ok(&["put", "w/1", "new"]); // 3
    ctl.ok(&["del", "w/1"]); // 4
    let mut child = ctl.cmd(&["watch", "w/", "--prefix", "--rev=3", "--prev-kv"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let want = ["PUT", "w/1", "old", "w/1", "new", "DELETE", "w/1", "new", "w/1", "", "PUT", "w/2", "live"];
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // History first (with prev values), then a put made while watching.
    while got.len() < want.len() && Instant::now() < deadline {
        if got.len() == 10 {
            ctl.ok(&["put", "w/2", "live"]);
        }
        match lines.next() {
            Some(Ok(l)) => got.push(l),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got, want);
}

#[test]
fn leases_grant_keepalive_revoke() {
    let (_d, _s, ctl) = setup();
    let out = ctl.ok(&["lease", "grant", "60"]);
    // "lease 694d5a... granted with TTL(60s)"
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(out.ends_with("granted with TTL(60s)\n"), "{out}");
    ctl.ok(&["put", "leased", "v", &format!("--lease={id}")]);
    let ttl = ctl.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("granted with TTL(60s)") && ttl.contains("attached keys([leased])"), "{ttl}");
    let ka = ctl.ok(&["lease", "keep-alive", "--once", &id]);
    assert_eq!(ka, format!("lease {id} keepalived with TTL(60)\n"));
    assert!(ctl.ok(&["lease", "list"]).contains(&id));
    assert_eq!(ctl.ok(&["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ctl.ok(&["get", "leased"]), "");
    assert!(ctl.err(&["lease", "revoke", &id]).contains("etcdserver: requested lease not found"));
    assert!(ctl.err(&["put", "k", "v", &format!("--lease={id}")]).contains("etcdserver: requested lease not found"));
    assert_eq!(ctl.ok(&["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
}

#[test]
fn compaction_status_and_members() {
    let (_d, _s, ctl) = setup();
    for i in 0..5 {
        ctl.ok(&["put", "c", &i.to_string()]);
    }
    assert_eq!(ctl.ok(&["compaction", "4"]), "compacted revision 4\n");
    assert!(ctl.err(&["get", "c", "--rev=3"]).contains("etcdserver: mvcc: required revision has been compacted"));
    assert_eq!(ctl.ok(&["get", "c", "--rev=4", "--print-value-only"]), "2\n");
    assert!(ctl.err(&["compaction", "3"]).contains("required revision has been compacted"));
    assert!(ctl.err(&["compaction", "100"]).contains("required revision is a future revision"));

    let status = ctl.ok(&["endpoint", "status", "-w", "table"]);
    assert!(status.contains("IS LEADER") && status.contains("true"), "{status}");
    let health = String::from_utf8(ctl.run(&["endpoint", "health"]).stderr).unwrap()
        + &String::from_utf8(ctl.run(&["endpoint", "health"]).stdout).unwrap();
    assert!(health.contains("is healthy"), "{health}");
    let members = ctl.ok(&["member", "list"]);
    assert!(members.contains(", started, skiff-1, http://localhost:2380, http://127.0.0.1:"), "{members}");
}
