//! Differential test: the same seeded random operations go through the same
//! client to Debian's etcd 3.4 and to `skiff store`; every response and every
//! error must match. Where they differ, etcd is right.
//!
//! Only what must differ is normalised: the cluster ID, member ID and raft
//! term in response headers. Lease IDs are chosen by the test, and leases
//! that could expire during the run are revoked at once, so no timing enters.
//!
//! SKIFF_DIFF_SEEDS=N runs more seeds; SKIFF_DIFF_SEED=S replays seeds 0..=S
//! (seeds run one after another on the same two servers).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Etcd, SkiffStore};
use etcdpb::kv_client::KvClient;
use etcdpb::lease_client::LeaseClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

#[derive(Clone)]
struct Client {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    watch: WatchClient<Channel>,
}

impl Client {
    async fn connect(url: String) -> Client {
        let ch = Channel::from_shared(url).unwrap().connect().await.unwrap();
        Client { kv: KvClient::new(ch.clone()), lease: LeaseClient::new(ch.clone()), watch: WatchClient::new(ch) }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(PutRequest),
    Range(RangeRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    Grant(LeaseGrantRequest),
    /// Grant a short lease and revoke it at once (its TTL would otherwise race the test).
    GrantShort(LeaseGrantRequest),
    Revoke(LeaseRevokeRequest),
    TimeToLive(LeaseTimeToLiveRequest),
}

/// A response with the fields that must differ between servers zeroed.
type Outcome = Result<String, (tonic::Code, String)>;

fn norm(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn norm_txn(t: &mut TxnResponse) {
    norm(&mut t.header);
    for r in &mut t.responses {
        match &mut r.response {
            Some(response_op::Response::ResponseRange(x)) => norm(&mut x.header),
            Some(response_op::Response::ResponsePut(x)) => norm(&mut x.header),
            Some(response_op::Response::ResponseDeleteRange(x)) => norm(&mut x.header),
            Some(response_op::Response::ResponseTxn(x)) => norm_txn(x),
            None => {}
        }
    }
}

fn outcome<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>, f: impl FnOnce(&mut T)) -> Outcome {
    match r {
        Ok(resp) => {
            let mut v = resp.into_inner();
            f(&mut v);
            Ok(format!("{v:?}"))
        }
        Err(s) => Err((s.code(), s.message().to_string())),
    }
}

async fn run(c: &mut Client, op: &Op) -> Outcome {
    match op.clone() {
        Op::Put(r) => outcome(c.kv.put(r).await, |v| norm(&mut v.header)),
        Op::Range(r) => outcome(c.kv.range(r).await, |v| norm(&mut v.header)),
        Op::Delete(r) => outcome(c.kv.delete_range(r).await, |v| norm(&mut v.header)),
        Op::Txn(r) => outcome(c.kv.txn(r).await, norm_txn),
        Op::Compact(r) => outcome(c.kv.compact(r).await, |v| norm(&mut v.header)),
        Op::Grant(r) => outcome(c.lease.lease_grant(r).await, |v| norm(&mut v.header)),
        Op::GrantShort(r) => {
            let id = r.id;
            let g = outcome(c.lease.lease_grant(r).await, |v| norm(&mut v.header));
            let rv = outcome(c.lease.lease_revoke(LeaseRevokeRequest { id }).await, |v| norm(&mut v.header));
            Ok(format!("{g:?} then {rv:?}"))
        }
        Op::Revoke(r) => outcome(c.lease.lease_revoke(r).await, |v| norm(&mut v.header)),
        Op::TimeToLive(r) => outcome(c.lease.lease_time_to_live(r).await, |v| {
            norm(&mut v.header);
            // Remaining time is a clock reading; only "expired" (-1) is comparable.
            if v.ttl > 0 {
                v.ttl = 1;
            }
            // etcd lists a lease's keys from a Go map, in random order.
            v.keys.sort();
        }),
    }
}

/// Generates operations over a small key space under one prefix.
struct Gen {
    rng: StdRng,
    prefix: String,
    lease_base: i64,
    head: i64,
}

impl Gen {
    fn key(&mut self) -> Bytes {
        const KEYS: [&str; 8] = ["a", "a/1", "a/2", "a/3", "b", "b/1", "c", "d/x"];
        Bytes::from(format!("{}{}", self.prefix, KEYS[self.rng.random_range(0..KEYS.len())]))
    }
    fn range_end(&mut self, key: &Bytes) -> Bytes {
        match self.rng.random_range(0..8) {
            0..=3 => Bytes::new(),
            4 => Bytes::from_static(&[0]),
            5 if !key.is_empty() => {
                let mut e = key.to_vec();
                *e.last_mut().unwrap() += 1;
                Bytes::from(e)
            }
            // Often inverted (end before key).
            6 => Bytes::from(format!("{}b", self.prefix)),
            _ => Bytes::from(format!("{}a/2", self.prefix)),
        }
    }
    fn lease(&mut self) -> i64 {
        match self.rng.random_range(0..10) {
            0..=6 => 0,
            7 | 8 => self.lease_base + self.rng.random_range(1..3),
            _ => self.lease_base + 9, // never granted
        }
    }
    fn value(&mut self) -> Bytes {
        const VALUES: [&str; 4] = ["", "x", "y", "zz"];
        Bytes::from_static(VALUES[self.rng.random_range(0..4)].as_bytes())
    }
    fn revision(&mut self) -> i64 {
        match self.rng.random_range(0..4) {
            0 | 1 => 0,
            _ => self.rng.random_range(1..self.head + 3),
        }
    }
    fn put(&mut self) -> PutRequest {
        let ignore_value = self.rng.random_bool(0.06);
        let ignore_lease = self.rng.random_bool(0.06);
        PutRequest {
            key: if self.rng.random_bool(0.02) { Bytes::new() } else { self.key() },
            value: if ignore_value { Bytes::new() } else { self.value() },
            lease: if ignore_lease { 0 } else { self.lease() },
            prev_kv: self.rng.random_bool(0.5),
            ignore_value,
            ignore_lease,
        }
    }
    fn range(&mut self, in_txn: bool) -> RangeRequest {
        let key = if self.rng.random_bool(0.02) { Bytes::new() } else { self.key() };
        let range_end = self.range_end(&key);
        let sorted = self.rng.random_bool(0.25);
        let filtered = self.rng.random_bool(0.15);
        RangeRequest {
            range_end,
            key,
            limit: self.rng.random_range(0..4),
            revision: if in_txn { 0 } else { self.revision() },
            sort_order: if sorted { self.rng.random_range(0..3) } else { 0 },
            sort_target: if sorted { self.rng.random_range(0..5) } else { 0 },
            serializable: false,
            keys_only: self.rng.random_bool(0.2),
            count_only: self.rng.random_bool(0.15),
            min_mod_revision: if filtered { self.rng.random_range(0..self.head + 1) } else { 0 },
            max_mod_revision: if filtered && self.rng.random_bool(0.5) { self.rng.random_range(0..self.head + 1) } else { 0 },
            min_create_revision: if filtered && self.rng.random_bool(0.3) { self.rng.random_range(0..self.head + 1) } else { 0 },
            max_create_revision: if filtered && self.rng.random_bool(0.3) { self.rng.random_range(0..self.head + 1) } else { 0 },
        }
    }
    fn delete(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        DeleteRangeRequest { range_end: self.range_end(&key), key, prev_kv: self.rng.random_bool(0.5) }
    }
    fn compare(&mut self) -> Compare {
        use compare::TargetUnion as U;
        let target = self.rng.random_range(0..5);
        let n = self.rng.random_range(0..self.head + 2);
        let key = self.key();
        let range_end = if self.rng.random_bool(0.2) { self.range_end(&key) } else { Bytes::new() };
        let target_union = Some(match target {
            0 => U::Version(n % 4),
            1 => U::CreateRevision(n),
            2 => U::ModRevision(n),
            3 => U::Value(self.value()),
            _ => U::Lease(self.lease()),
        });
        Compare { result: self.rng.random_range(0..4), target, key, target_union, range_end }
    }
    fn request_op(&mut self, depth: u32) -> RequestOp {
        use request_op::Request as R;
        let request = match self.rng.random_range(0..10) {
            // No ignore_value/ignore_lease inside txns: etcd 3.4 crashes when such a put
            // follows a delete of its key in the same txn (Skiff keeps going).
            0..=3 => R::RequestPut(PutRequest { ignore_value: false, ignore_lease: false, ..self.put() }),
            4 | 5 => R::RequestDeleteRange(self.delete()),
            6..=8 => R::RequestRange(self.range(true)),
            _ if depth < 2 => R::RequestTxn(self.txn(depth + 1)),
            _ => R::RequestRange(self.range(true)),
        };
        RequestOp { request: Some(request) }
    }
    fn txn(&mut self, depth: u32) -> TxnRequest {
        let nc = self.rng.random_range(0..3);
        let ns = self.rng.random_range(0..4);
        let nf = self.rng.random_range(0..3);
        TxnRequest {
            compare: (0..nc).map(|_| self.compare()).collect(),
            success: (0..ns).map(|_| self.request_op(depth)).collect(),
            failure: (0..nf).map(|_| self.request_op(depth)).collect(),
        }
    }
    fn op(&mut self) -> Op {
        let lease_id = self.lease_base + self.rng.random_range(1..4);
        match self.rng.random_range(0..100) {
            0..=29 => Op::Put(self.put()),
            30..=49 => Op::Range(self.range(false)),
            50..=59 => Op::Delete(self.delete()),
            60..=79 => Op::Txn(self.txn(0)),
            80..=83 => Op::Compact(CompactionRequest { revision: self.rng.random_range(0..self.head + 3), physical: false }),
            84..=89 => Op::Grant(LeaseGrantRequest {
                id: lease_id,
                ttl: if self.rng.random_bool(0.1) { 9_000_000_001 } else { 600 },
            }),
            90 => Op::GrantShort(LeaseGrantRequest { id: self.lease_base + 5, ttl: 1 }),
            91..=95 => Op::Revoke(LeaseRevokeRequest { id: self.lease_base + self.rng.random_range(1..5) }),
            _ => Op::TimeToLive(LeaseTimeToLiveRequest { id: self.lease_base + self.rng.random_range(1..5), keys: true }),
        }
    }
}

async fn head(c: &mut Client) -> i64 {
    let r = c.kv.range(RangeRequest { key: Bytes::from("~"), ..Default::default() }).await.unwrap().into_inner();
    r.header.unwrap().revision
}

/// Watch `prefix` from `start`, collecting (flattened) events until `until`, or the cancellation.
async fn watch_all(c: &mut Client, prefix: &str, start: i64, until: i64) -> Vec<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
            key: Bytes::from(prefix.to_string()),
            range_end: Bytes::from(end),
            start_revision: start,
            prev_kv: true,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = c.watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let mut out = Vec::new();
    let mut seen = start - 1;
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        while seen < until {
            let Some(resp) = stream.message().await.unwrap() else { break };
            if resp.canceled {
                out.push(format!("canceled compact_revision={}", resp.compact_revision));
                break;
            }
            for e in resp.events {
                seen = e.kv.as_ref().unwrap().mod_revision;
                out.push(format!("{e:?}"));
            }
        }
    })
    .await;
    drop(tx);
    if r.is_err() {
        out.push("timed out".into());
    }
    out
}

fn assert_same_events(got: &[String], want: &[String], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: event {i} differs ({} events from skiff, {} from etcd; previous: {:?})\n  skiff: {:?}\n  etcd:  {:?}",
            got.len(),
            want.len(),
            &want[i.saturating_sub(2)..i],
            got.get(i),
            want.get(i)
        );
    }
}

async fn run_seed(seed: u64, ops: usize, etcd: &mut Client, skiff: &mut Client) {
    let start = head(etcd).await;
    assert_eq!(start, head(skiff).await, "seed {seed}: servers start at different revisions");
    let prefix = format!("s{seed:04}/");
    let mut g = Gen { rng: StdRng::seed_from_u64(seed), prefix: prefix.clone(), lease_base: (seed as i64 + 1) * 1000, head: start };
    for i in 0..ops {
        let op = g.op();
        let want = run(etcd, &op).await;
        let got = run(skiff, &op).await;
        assert_eq!(got, want, "seed {seed}, op {i}: {op:?}\n  skiff: {got:?}\n  etcd:  {want:?}");
        g.head = head(etcd).await;
    }
    // The same history through a watch, from before the seed's first op.
    let until = g.head;
    let compacted = {
        let r = etcd.kv.range(RangeRequest { key: Bytes::from("~"), revision: start, ..Default::default() }).await;
        r.is_err()
    };
    let from = if compacted { until } else { start };
    let want = watch_all(etcd, &prefix, from, until).await;
    let got = watch_all(skiff, &prefix, from, until).await;
    assert_same_events(&got, &want, &format!("seed {seed}: watch from {from}"));
    // A watch from a compacted revision is cancelled the same way.
    if start > 2 {
        let want = watch_all(etcd, &prefix, 1, until).await;
        let got = watch_all(skiff, &prefix, 1, until).await;
        assert_same_events(&got, &want, &format!("seed {seed}: watch from revision 1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_operations_same_answers_as_etcd() {
    let etcd_server = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let skiff_server = SkiffStore::start(dir.path(), &[]);
    let mut etcd = Client::connect(etcd_server.url()).await;
    let mut skiff = Client::connect(skiff_server.url()).await;
    // etcd answers only once it has elected itself.
    for _ in 0..100 {
        if etcd.kv.range(RangeRequest { key: Bytes::from("x"), ..Default::default() }).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seeds: Vec<u64> = match std::env::var("SKIFF_DIFF_SEED") {
        // Seeds share the servers' history, so replaying seed S replays 0..=S.
        Ok(s) => (0..=s.parse().unwrap()).collect(),
        Err(_) => (0..std::env::var("SKIFF_DIFF_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)).collect(),
    };
    for seed in seeds {
        run_seed(seed, 150, &mut etcd, &mut skiff).await;
    }
}
