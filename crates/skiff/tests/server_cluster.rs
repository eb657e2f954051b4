//! Three `skiff server` processes form one cluster with etcd's clustering
//! flags: each embeds a member of the Raft-replicated store and serves the
//! Kubernetes API. Driven by real kubectl and etcdctl:
//! - the members share one CA, admin token and service-account signing key
//!   (one kubeconfig fits all; a token one member issues works on all);
//! - a write through any member is read at once through every other
//!   (reads are linearizable: a lagging member waits for a ReadIndex round);
//! - a watch on one member sees writes made through another;
//! - `etcdctl member list` / `endpoint status` show the three members and one leader;
//! - SIGKILL of the Raft leader: the others elect a new one and keep serving,
//!   the controllers (leader-elected through a Lease) keep working, and the
//!   killed member catches up when it restarts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{free_port, wait_for_port, wait_until, Kubectl, SkiffServer};

const MEMBERS: usize = 3;

struct Member {
    dir: PathBuf,
    api_port: u16,
    client_port: u16,
    args: Vec<String>,
    server: Option<SkiffServer>,
}

impl Member {
    fn spawn(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = Some(SkiffServer::spawn_with(&self.dir, self.api_port, &args));
    }
    fn kubectl(&self) -> Kubectl {
        Kubectl::new(33, &self.dir.join("kubeconfig.yaml"))
    }
    /// Without `http://`: etcdctl 3.4's `endpoint status` dials each endpoint
    /// with the URL as the HTTP/2 `:authority`, which hyper's h2 rejects.
    fn etcd_url(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }
}

fn etcdctl(endpoints: &str, args: &[&str]) -> Option<String> {
    let mut all = vec!["--command-timeout=3s"];
    all.extend_from_slice(args);
    let out = common::etcdctl(endpoints, &all);
    out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
}

/// The index of the member that `endpoint status` reports as the Raft leader.
fn leader(members: &[Member], alive: &[usize]) -> Option<usize> {
    let eps: Vec<String> = alive.iter().map(|&i| members[i].etcd_url()).collect();
    let out = etcdctl(&eps.join(","), &["endpoint", "status", "-w", "json"])?;
    let status: serde_json::Value = serde_json::from_str(&out).ok()?;
    let mut leaders = std::collections::BTreeSet::new();
    let mut found = None;
    for (k, s) in status.as_array()?.iter().enumerate() {
        let leader = s["Status"]["leader"].as_u64()?;
        let me = s["Status"]["header"]["member_id"].as_u64()?;
        leaders.insert(leader);
        if leader == me {
            found = Some(alive[k]);
        }
    }
    // Every live member must agree on one leader.
    (leaders.len() == 1).then_some(found).flatten()
}

fn cm(name: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"k":"{name}"}}}}"#)
}

fn create_cm(k: &Kubectl, dir: &Path, name: &str) {
    let f = dir.join(format!("{name}.json"));
    std::fs::write(&f, cm(name)).unwrap();
    assert_eq!(k.ok(&["create", "-f", f.to_str().unwrap(), "--validate=false"]), format!("configmap/{name} created\n"));
}

#[test]
fn three_servers_form_one_cluster_and_survive_the_leader_dying() {
    let tmp = tempfile::tempdir().unwrap();
    let peer_ports: Vec<u16> = (0..MEMBERS).map(|_| free_port()).collect();
    let initial: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}=http://127.0.0.1:{}", peer_ports[i])).collect();
    let initial = initial.join(",");
    let mut members: Vec<Member> = (0..MEMBERS)
        .map(|i| {
            let dir = tmp.path().join(format!("m{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let client_port = free_port();
            let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
            let args = vec![
                "--name".into(),
                format!("m{i}"),
                "--initial-cluster".into(),
                initial.clone(),
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer,
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{client_port}"),
                "--heartbeat-interval".into(),
                "50".into(),
                "--election-timeout".into(),
                "500".into(),
            ];
            Member { dir, api_port: free_port(), client_port, args, server: None }
        })
        .collect();
    // Each member's API only comes up once a quorum has formed: start all, then wait.
    for m in members.iter_mut() {
        m.spawn();
    }
    for m in &members {
        wait_for_port(m.api_port, Duration::from_secs(60));
    }

    // One CA and one admin token for the whole cluster: member 0's kubeconfig
    // works against every member (the serving certificates come from one CA).
    let token = |m: &Member| std::fs::read_to_string(m.dir.join("pki/admin.token")).unwrap();
    assert_eq!(token(&members[0]), token(&members[1]));
    assert_eq!(token(&members[0]), token(&members[2]));
    let k0 = members[0].kubectl();
    for m in &members {
        let url = format!("https://127.0.0.1:{}", m.api_port);
        let out = k0.ok(&["--server", &url, "get", "namespace", "kube-system", "-o", "name"]);
        assert_eq!(out, "namespace/kube-system\n");
    }
    // One service-account signing key too: a token one member issues works on every member.
    let sa_pub = |m: &Member| std::fs::read_to_string(m.dir.join("pki/sa.pub")).unwrap();
    assert_eq!(sa_pub(&members[0]), sa_pub(&members[1]));
    assert_eq!(sa_pub(&members[0]), sa_pub(&members[2]));
    wait_until("the default ServiceAccount", Duration::from_secs(30), || k0.run(&["get", "sa", "default"]).status.success().then_some(()));
    let sa_token = k0.ok(&["create", "token", "default"]).trim().to_string();
    for m in &members {
        let url = format!("https://127.0.0.1:{}", m.api_port);
        let out = k0.ok(&["--server", &url, "--token", &sa_token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
        assert_eq!(out, "system:serviceaccount:default:default");
    }

    // etcdctl sees the three members, under their names, and one leader.
    let all: Vec<usize> = (0..MEMBERS).collect();
    // Names and peer URLs come from --initial-cluster; each member publishes
    // its client URL through the log.
    wait_until("every member's name, peer and client URL in member list", Duration::from_secs(10), || {
        let list = etcdctl(&members[0].etcd_url(), &["member", "list"])?;
        (0..MEMBERS)
            .all(|i| list.contains(&format!("m{i}, http://127.0.0.1:{}, http://127.0.0.1:{}", peer_ports[i], members[i].client_port)))
            .then_some(())
    });
    let first_leader = wait_until("one Raft leader", Duration::from_secs(20), || leader(&members, &all));

    // A watch through member 2 sees what is written through member 0.
    let mut watch = Command::new(&members[2].kubectl().bin)
        .env("KUBECONFIG", members[2].dir.join("kubeconfig.yaml"))
        .args(["get", "configmaps", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    // Read-your-writes across members, every way round.
    for round in 0..9 {
        let (w, r) = (round % MEMBERS, (round + 1 + round / MEMBERS) % MEMBERS);
        let name = format!("c{round}");
        create_cm(&members[w].kubectl(), tmp.path(), &name);
        let got = members[r].kubectl().ok(&["get", "configmap", &name, "-o", "jsonpath={.data.k}"]);
        assert_eq!(got, name, "written through m{w}, read through m{r}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = vec![];
    while !seen.iter().any(|l: &String| l.contains("configmap/c8")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the watch through m2 did not see c8; it saw {seen:?}"),
        }
    }
    let added: Vec<String> = seen.iter().filter(|l| l.contains("configmap/c")).cloned().collect();
    let want: Vec<String> = (0..9).map(|i| format!("configmap/c{i}")).collect();
    assert_eq!(added, want, "each write seen once, in order");
    let _ = watch.kill();
    let _ = watch.wait();

    // Kill the Raft leader. The survivors elect a new leader and keep serving.
    members[first_leader].server.as_mut().unwrap().kill();
    let alive: Vec<usize> = all.iter().copied().filter(|&i| i != first_leader).collect();
    let new_leader = wait_until("a new Raft leader", Duration::from_secs(20), || leader(&members, &alive));
    assert_ne!(new_leader, first_leader);
    let (a, b) = (alive[0], alive[1]);
    wait_until("writes through a survivor", Duration::from_secs(20), || {
        let f = tmp.path().join("after.json");
        std::fs::write(&f, cm("after-kill")).unwrap();
        members[a].kubectl().run(&["create", "-f", f.to_str().unwrap(), "--validate=false"]).status.success().then_some(())
    });
    assert_eq!(members[b].kubectl().ok(&["get", "configmap", "after-kill", "-o", "jsonpath={.data.k}"]), "after-kill");

    // The controller manager runs on every member, leader-elected: a
    // Deployment created now gets its ReplicaSet even if the controller
    // leader was the member that died.
    members[b].kubectl().ok(&["create", "deployment", "web", "--image=busybox:1.36", "--replicas=2"]);
    wait_until("the ReplicaSet of web", Duration::from_secs(60), || {
        let out = members[a].kubectl().run(&["get", "replicasets", "-l", "app=web", "-o", "jsonpath={.items[0].spec.replicas}"]);
        (String::from_utf8_lossy(&out.stdout) == "2").then_some(())
    });

    // The killed member restarts with the same flags and catches up.
    members[first_leader].spawn();
    wait_for_port(members[first_leader].api_port, Duration::from_secs(60));
    let back = members[first_leader].kubectl();
    assert_eq!(back.ok(&["get", "configmap", "after-kill", "-o", "jsonpath={.data.k}"]), "after-kill");
    assert_eq!(back.ok(&["get", "deployment", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    let everyone: Vec<usize> = (0..MEMBERS).collect();
    wait_until("all three members agree on a leader", Duration::from_secs(20), || leader(&members, &everyone));
}
