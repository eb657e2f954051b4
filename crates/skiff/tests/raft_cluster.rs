//! A real 3-member `skiff store` cluster on loopback: concurrent clients put,
//! get and compare-and-put through every member while the test SIGKILLs the
//! leader and a follower and restarts them, and partitions one member with
//! the transport's fault hook (`SKIFF_PEER_FAULT_FILE`), then heals it.
//!
//! Afterwards:
//! - the recorded history (timeouts = unknown outcome) is checked for
//!   linearizability with `skiff-linearizability`;
//! - every acknowledged put is in the revision history as each member's
//!   watch replays it (no acknowledged write is lost, every member agrees);
//! - `etcdctl member list` / `endpoint status` show the real members and one leader.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcdpb::kv_client::KvClient;
use etcdpb::maintenance_client::MaintenanceClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::*;
use rand::{Rng, SeedableRng};
use skiff_linearizability::{check, Cmp, Input, Operation, Outcome, Output};
use tonic::transport::Channel;

mod common;
use common::{free_port, http_get, metric, SkiffStore};

const MEMBERS: usize = 3;
const KEYS: u64 = 6;
const CLIENTS: u64 = 6;

struct Member {
    name: String,
    dir: PathBuf,
    client_port: u16,
    metrics_port: u16,
    fault: PathBuf,
    proc: Option<SkiffStore>,
}

struct Cluster {
    members: Vec<Member>,
    initial: String,
    peer_ports: Vec<u16>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let peer_ports: Vec<u16> = (0..MEMBERS).map(|_| free_port()).collect();
        let initial = (0..MEMBERS)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peer_ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let members = (0..MEMBERS)
            .map(|i| Member {
                name: format!("m{i}"),
                dir: tmp.path().join(format!("m{i}")),
                client_port: free_port(),
                metrics_port: free_port(),
                fault: tmp.path().join(format!("fault-m{i}")),
                proc: None,
            })
            .collect();
        let mut c = Cluster { members, initial, peer_ports, _tmp: tmp };
        for i in 0..MEMBERS {
            c.start(i);
        }
        c
    }

    fn start(&mut self, i: usize) {
        let peer = format!("http://127.0.0.1:{}", self.peer_ports[i]);
        let m = &mut self.members[i];
        std::fs::write(&m.fault, "").unwrap();
        let fault = m.fault.to_str().unwrap().to_owned();
        let metrics = format!("http://127.0.0.1:{}", m.metrics_port);
        m.proc = Some(SkiffStore::start_on(
            &m.dir,
            m.client_port,
            &[
                "--name",
                &m.name,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &self.initial,
                "--snapshot-count",
                "400",
                "--listen-metrics-urls",
                &metrics,
            ],
            &[("SKIFF_PEER_FAULT_FILE", &fault)],
        ));
    }

    /// SIGKILL (SkiffStore's drop kills with SIGKILL and reaps).
    fn kill(&mut self, i: usize) {
        self.members[i].proc.take();
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Cut member `i` off from its peers (both directions), or heal it.
    fn partition(&self, i: usize, cut: bool) {
        std::fs::write(&self.members[i].fault, if cut { "*" } else { "" }).unwrap();
    }
}

fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .unwrap()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(3))
        .connect_lazy()
}

/// The leader as member `i` reports it (0 = none / unreachable).
async fn leader_seen_by(url: &str) -> (u64, u64) {
    match MaintenanceClient::new(channel(url)).status(StatusRequest {}).await {
        Ok(r) => {
            let r = r.into_inner();
            (r.leader, r.header.map(|h| h.member_id).unwrap_or(0))
        }
        Err(_) => (0, 0),
    }
}

/// Wait until the running members in `among` agree on one leader among them; its index.
async fn wait_leader(c: &Cluster, among: &[usize]) -> (usize, Duration) {
    let t = Instant::now();
    loop {
        let mut ids = BTreeMap::new();
        let mut leaders = BTreeSet::new();
        for &i in among {
            let (leader, me) = leader_seen_by(&c.url(i)).await;
            ids.insert(me, i);
            leaders.insert(leader);
        }
        if leaders.len() == 1 {
            let l = *leaders.iter().next().unwrap();
            if let Some(&i) = ids.get(&l).filter(|_| l != 0) {
                return (i, t.elapsed());
            }
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no agreed leader among {among:?}: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn key(k: u64) -> Bytes {
    Bytes::from(format!("lin/{k}"))
}

fn parse(v: &[u8]) -> u64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

/// Errors after which the request certainly had no effect (never reached a
/// leader's log); anything else is an unknown outcome.
fn certainly_failed(s: &tonic::Status) -> bool {
    let m = s.message();
    m.contains("no leader") || m.contains("onnection refused") || m.contains("tcp connect error")
}

struct History {
    clock: AtomicU64,
    ops: Mutex<Vec<Operation>>,
    acked_puts: Mutex<Vec<(u64, u64)>>,
}

async fn client(id: u64, urls: Vec<String>, h: Arc<History>, stop: Arc<AtomicBool>) {
    let chans: Vec<Channel> = urls.iter().map(|u| channel(u)).collect();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut next_value = id << 32;
    while !stop.load(Ordering::Relaxed) {
        let mut kv = KvClient::new(chans[rng.random_range(0..chans.len())].clone());
        let k = rng.random_range(0..KEYS);
        let choice = rng.random_range(0..10);
        let input = match choice {
            0..=3 => {
                next_value += 1;
                Input::Put { key: k, value: next_value }
            }
            4..=7 => Input::Get { key: k },
            _ => {
                next_value += 1;
                // Compare-and-put against the last value this client read or wrote somewhere (or absence).
                let cmp = if rng.random_bool(0.2) { None } else { Some(next_value - 1) };
                Input::Txn { key: k, cmp: Cmp::Value(cmp), value: next_value }
            }
        };
        let call = h.clock.fetch_add(1, Ordering::SeqCst);
        let result: Result<Output, tonic::Status> = match input {
            Input::Put { value, .. } => kv
                .put(PutRequest { key: key(k), value: Bytes::from(value.to_string()), ..Default::default() })
                .await
                .map(|r| Output::Put { revision: r.into_inner().header.unwrap().revision as u64 }),
            Input::Get { .. } => kv.range(RangeRequest { key: key(k), ..Default::default() }).await.map(|r| {
                let r = r.into_inner();
                Output::Get(r.kvs.first().map(|kv| (parse(&kv.value), kv.mod_revision as u64)))
            }),
            Input::Txn { cmp, value, .. } => {
                let compare = match cmp {
                    Cmp::Value(Some(v)) => Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Value as i32,
                        key: key(k),
                        target_union: Some(compare::TargetUnion::Value(Bytes::from(v.to_string()))),
                        ..Default::default()
                    },
                    _ => Compare {
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Create as i32,
                        key: key(k),
                        target_union: Some(compare::TargetUnion::CreateRevision(0)),
                        ..Default::default()
                    },
                };
                let put = RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key(k),
                        value: Bytes::from(value.to_string()),
                        ..Default::default()
                    })),
                };
                kv.txn(TxnRequest { compare: vec![compare], success: vec![put], failure: vec![] }).await.map(|r| {
                    let r = r.into_inner();
                    Output::Txn { succeeded: r.succeeded, revision: r.header.unwrap().revision as u64 }
                })
            }
            Input::Delete { .. } => unreachable!(),
        };
        let ret = h.clock.fetch_add(1, Ordering::SeqCst);
        let op = match result {
            Ok(out) => {
                match (input, out) {
                    (Input::Put { value, .. }, _) => h.acked_puts.lock().unwrap().push((k, value)),
                    (Input::Txn { value, .. }, Output::Txn { succeeded: true, .. }) => {
                        h.acked_puts.lock().unwrap().push((k, value))
                    }
                    _ => {}
                }
                Operation { client: id, input, call, ret: Some(ret), output: Some(out) }
            }
            Err(s) if matches!(input, Input::Get { .. }) || certainly_failed(&s) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue; // no effect: leave it out of the history
            }
            Err(_) => Operation { client: id, input, call, ret: None, output: None },
        };
        h.ops.lock().unwrap().push(op);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// Every put value in member `url`'s revision history (a watch from revision 1).
async fn history_values(url: &str) -> (i64, BTreeSet<(u64, u64)>) {
    let ch = channel(url);
    let head = KvClient::new(ch.clone())
        .range(RangeRequest { key: key(0), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from("lin/"),
            range_end: skiff_store::prefix_end(b"lin/"),
            start_revision: 1,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = WatchClient::new(ch).watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut seen = BTreeSet::new();
    let mut last = 1;
    tokio::time::timeout(Duration::from_secs(20), async {
        while last < head {
            let resp = stream.message().await.unwrap().expect("watch ended");
            assert!(!resp.canceled, "history watch cancelled: {}", resp.cancel_reason);
            for e in resp.events {
                let kv = e.kv.unwrap();
                last = last.max(kv.mod_revision);
                let k: u64 = std::str::from_utf8(&kv.key[4..]).unwrap().parse().unwrap();
                seen.insert((k, parse(&kv.value)));
            }
        }
    })
    .await
    .expect("reading the history timed out");
    drop(tx);
    (head, seen)
}

fn etcdctl(endpoints: &str, args: &[&str]) -> String {
    let out = common::etcdctl(endpoints, args);
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn etcdctl_err(endpoints: &str, args: &[&str]) -> String {
    let out = common::etcdctl(endpoints, args);
    assert!(!out.status.success(), "etcdctl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_survive_kills_and_partitions_linearizably() {
    let mut c = Cluster::new();
    let all: Vec<usize> = (0..MEMBERS).collect();
    let (leader, took) = wait_leader(&c, &all).await;
    eprintln!("initial leader m{leader} after {took:?}");

    let h = Arc::new(History { clock: AtomicU64::new(0), ops: Mutex::new(vec![]), acked_puts: Mutex::new(vec![]) });
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = all.iter().map(|&i| c.url(i)).collect();
    let clients: Vec<_> =
        (0..CLIENTS).map(|id| tokio::spawn(client(id + 1, urls.clone(), h.clone(), stop.clone()))).collect();

    // 1. SIGKILL the leader; the others elect a new one; restart it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (leader, _) = wait_leader(&c, &all).await;
    c.kill(leader);
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (new_leader, failover) = wait_leader(&c, &rest).await;
    eprintln!("killed leader m{leader}; m{new_leader} leads after {failover:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.start(leader);

    // 2. SIGKILL a follower, keep it down while writes go on, restart it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (leader, _) = wait_leader(&c, &all).await;
    let follower = (leader + 1) % MEMBERS;
    c.kill(follower);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.start(follower);

    // 3. Partition the leader away from both peers; the majority elects
    //    another; heal. Then partition a follower and heal.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (leader, _) = wait_leader(&c, &all).await;
    c.partition(leader, true);
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (new_leader, failover) = wait_leader(&c, &rest).await;
    eprintln!("partitioned leader m{leader}; m{new_leader} leads after {failover:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.partition(leader, false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (leader, _) = wait_leader(&c, &all).await;
    let follower = (leader + 2) % MEMBERS;
    c.partition(follower, true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.partition(follower, false);

    // 4. Kill every member at once and restart them all.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..MEMBERS {
        c.kill(i);
    }
    for i in 0..MEMBERS {
        c.start(i);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for cl in clients {
        cl.await.unwrap();
    }
    let (_, _) = wait_leader(&c, &all).await;

    let ops = h.ops.lock().unwrap().clone();
    let acked: BTreeSet<(u64, u64)> = h.acked_puts.lock().unwrap().iter().copied().collect();
    let unknown = ops.iter().filter(|o| o.ret.is_none()).count();
    eprintln!("history: {} operations ({} acknowledged puts, {unknown} unknown outcomes)", ops.len(), acked.len());
    assert!(acked.len() > 200, "too few writes succeeded for a meaningful test: {}", acked.len());

    // No acknowledged write is lost, on any member.
    let mut heads = BTreeSet::new();
    for i in 0..MEMBERS {
        let (head, seen) = history_values(&c.url(i)).await;
        let lost: Vec<_> = acked.difference(&seen).collect();
        assert!(lost.is_empty(), "member m{i} lost acknowledged writes: {lost:?}");
        heads.insert(head);
    }
    assert_eq!(heads.len(), 1, "members disagree on the head revision after healing: {heads:?}");

    match check(&ops, 50_000_000) {
        Outcome::Linearizable => {}
        other => panic!("history is not linearizable: {other:?}"),
    }

    // The Cluster and Maintenance APIs show the real members and one leader.
    let endpoints = (0..MEMBERS).map(|i| format!("127.0.0.1:{}", c.members[i].client_port)).collect::<Vec<_>>().join(",");
    let list = etcdctl(&endpoints, &["member", "list"]);
    for i in 0..MEMBERS {
        assert!(list.contains(&format!("m{i}, http://127.0.0.1:{}", c.peer_ports[i])), "member list: {list}");
    }
    let status = etcdctl(&endpoints, &["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let leaders: BTreeSet<u64> =
        status.as_array().unwrap().iter().map(|s| s["Status"]["leader"].as_u64().unwrap()).collect();
    assert_eq!(leaders.len(), 1, "one leader for all: {status}");
    let terms: BTreeSet<u64> =
        status.as_array().unwrap().iter().map(|s| s["Status"]["raftTerm"].as_u64().unwrap()).collect();
    assert!(*terms.iter().next().unwrap() >= 3, "kills and partitions forced elections: {status}");
}

/// `etcdctl member add --learner` → start the new member with
/// `--initial-cluster-state existing` → it catches up (serves an older key
/// locally) → `member promote` → it votes and takes writes → `member remove`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_add_promote_remove() {
    let c = Cluster::new();
    let all: Vec<usize> = (0..MEMBERS).collect();
    let (leader, _) = wait_leader(&c, &all).await;
    let endpoints = (0..MEMBERS).map(|i| format!("127.0.0.1:{}", c.members[i].client_port)).collect::<Vec<_>>().join(",");
    etcdctl(&endpoints, &["put", "before", "1"]);
    // Every founding member has published its name and client URL through the log.
    let t = Instant::now();
    while !(0..MEMBERS).all(|i| etcdctl(&endpoints, &["member", "list"]).contains(&format!("m{i}, http://127.0.0.1:{}, http://127.0.0.1:{}", c.peer_ports[i], c.members[i].client_port))) {
        assert!(t.elapsed() < Duration::from_secs(10), "client URLs not published: {}", etcdctl(&endpoints, &["member", "list"]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peer = format!("http://127.0.0.1:{}", free_port());
    let added = etcdctl(&endpoints, &["member", "add", "m3", &format!("--peer-urls={peer}"), "--learner"]);
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    let list = etcdctl(&endpoints, &["member", "list"]);
    let id = list.lines().find(|l| l.contains(&peer)).unwrap().split(',').next().unwrap().trim().to_owned();
    // The leader refuses to promote a learner that has not caught up (it has not even started),
    // and anything that is not a learner.
    let at_leader = format!("127.0.0.1:{}", c.members[leader].client_port);
    let err = etcdctl_err(&at_leader, &["member", "promote", &id]);
    assert!(err.contains("can only promote a learner member which is in sync with leader"), "{err}");
    // A follower forwards the request to the leader, which refuses it the same way.
    let follower = (leader + 1) % MEMBERS;
    let at_follower = format!("127.0.0.1:{}", c.members[follower].client_port);
    let err = etcdctl_err(&at_follower, &["member", "promote", &id]);
    assert!(err.contains("can only promote a learner member which is in sync with leader"), "{err}");
    let voter = list.lines().find(|l| l.contains(", m0,")).unwrap().split(',').next().unwrap().trim().to_owned();
    let err = etcdctl_err(&at_leader, &["member", "promote", &voter]);
    assert!(err.contains("can only promote a learner member"), "{err}");
    let initial = format!("{},m3={peer}", c.initial);
    let dir = c._tmp.path().join("m3");
    let port = free_port();
    let _m3 = SkiffStore::start_on(
        &dir,
        port,
        &[
            "--name",
            "m3",
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &initial,
            "--initial-cluster-state",
            "existing",
        ],
        &[],
    );
    let m3 = format!("127.0.0.1:{port}");
    let t = Instant::now();
    while !etcdctl(&m3, &["get", "before", "--consistency=s"]).contains("before") {
        assert!(t.elapsed() < Duration::from_secs(10), "the learner never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = etcdctl(&endpoints, &["member", "list"]);
    let line = list.lines().find(|l| l.contains(&peer)).unwrap_or_else(|| panic!("new member not listed: {list}"));
    assert!(line.ends_with("true"), "added as a learner: {line}");
    let id = line.split(',').next().unwrap().trim().to_owned();
    // Caught up now: promoted, through a follower (the leader's view of its progress may trail by a heartbeat).
    let t = Instant::now();
    loop {
        let out = common::etcdctl(&at_follower, &["member", "promote", &id]);
        if out.status.success() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "promote refused: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = etcdctl(&endpoints, &["member", "list"]);
    assert!(list.lines().filter(|l| l.ends_with("false")).count() == 4, "four voters after promote: {list}");
    // The new member published its name and client URL too; every member shows it.
    let t = Instant::now();
    while !etcdctl(&endpoints, &["member", "list"]).contains(&format!("m3, {peer}, http://127.0.0.1:{port}")) {
        assert!(t.elapsed() < Duration::from_secs(10), "m3 not published: {}", etcdctl(&endpoints, &["member", "list"]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The new voter takes writes (forwarded to the leader) and serves linearizable reads.
    etcdctl(&m3, &["put", "after", "2"]);
    assert!(etcdctl(&m3, &["get", "after"]).contains("2"));
    etcdctl(&endpoints, &["member", "remove", &id]);
    let list = etcdctl(&endpoints, &["member", "list"]);
    assert!(!list.contains(&peer), "removed: {list}");
    assert_eq!(list.lines().count(), 3, "{list}");
    etcdctl(&endpoints, &["put", "after-remove", "3"]);
    assert!(etcdctl(&endpoints, &["get", "after-remove"]).contains("3"));

    // Leader transfer (etcd's MoveLeader): hand leadership to a follower.
    let (leader, _) = wait_leader(&c, &all).await;
    let target = (leader + 1) % MEMBERS;
    let target_id = list
        .lines()
        .find(|l| l.contains(&format!(", m{target},")))
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let out = etcdctl(&endpoints, &["move-leader", &target_id]);
    assert!(out.contains(&format!("to {target_id}")), "{out}");
    let (now, _) = wait_leader(&c, &all).await;
    assert_eq!(now, target, "m{target} leads after move-leader");
    let err = etcdctl_err(&endpoints, &["move-leader", "abcdef"]);
    assert!(err.contains("bad leader transferee"), "{err}");
    etcdctl(&endpoints, &["put", "after-transfer", "4"]);
    assert!(etcdctl(&endpoints, &["get", "after-transfer"]).contains("4"));
}

/// A follower that was down while the leader snapshotted and compacted its
/// log past everything the follower has can only catch up by
/// InstallSnapshot: the leader streams the state machine (≈3.5 MiB here, so
/// several 1 MiB chunks) to the restarted process, which installs it and then
/// follows the log: serves every key, takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_by_snapshot() {
    const KEYS: usize = 3000;
    let mut c = Cluster::new();
    let all: Vec<usize> = (0..MEMBERS).collect();
    let (leader, _) = wait_leader(&c, &all).await;
    let follower = (leader + 1) % MEMBERS;
    c.kill(follower);

    // 3,000 puts of 1 KiB through the leader: with --snapshot-count 400 the
    // leader snapshots several times and drops all but the last 1,000 entries.
    let url = c.url(leader);
    let value = Bytes::from(vec![b'v'; 1024]);
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (url, value) = (url.clone(), value.clone());
            tokio::spawn(async move {
                let mut kv = KvClient::new(channel(&url));
                for i in (t..KEYS).step_by(16) {
                    let key = Bytes::from(format!("snap/{i:05}"));
                    kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await.expect("put through the leader");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    c.start(follower);
    let furl = c.url(follower);
    let count = |url: String| async move {
        let req = RangeRequest {
            key: Bytes::from_static(b"snap/"),
            range_end: Bytes::from_static(b"snap0"),
            count_only: true,
            serializable: true,
            ..Default::default()
        };
        KvClient::new(channel(&url)).range(req).await.map(|r| r.into_inner().count).unwrap_or(-1)
    };
    let t = Instant::now();
    while count(furl.clone()).await != KEYS as i64 {
        assert!(t.elapsed() < Duration::from_secs(30), "the restarted follower never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scrape = http_get(c.members[follower].metrics_port, "/metrics");
    assert!(metric(&scrape, "skiff_store_snapshots_received_total") >= 1.0, "caught up without a snapshot:\n{scrape}");

    // After the snapshot it follows the log: a write through it (forwarded
    // to the leader) is read back linearizably through every member.
    let mut kv = KvClient::new(channel(&furl));
    kv.put(PutRequest { key: Bytes::from_static(b"after-snapshot"), value: Bytes::from_static(b"1"), ..Default::default() })
        .await
        .expect("put through the follower");
    for i in 0..MEMBERS {
        let r = KvClient::new(channel(&c.url(i)))
            .range(RangeRequest { key: Bytes::from_static(b"after-snapshot"), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.kvs.len(), 1, "m{i} lacks the write made after the snapshot");
    }
}
