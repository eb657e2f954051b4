//! Differential test: the same seeded random operations go through the same
//! client to Debian's etcd 3.4 and to `skiff store`, both started fresh for
//! each seed; every response, every error (gRPC code and message) and every
//! watch event must match. Where they differ, etcd is right.
//!
//! Operations, over 11 keys with shared prefixes: Put (prev_kv, leases,
//! ignore_value/ignore_lease, empty key, unknown lease, values over
//! --max-request-bytes and over gRPC's limit); Range (single key, ranges,
//! prefixes, "\0" ends, inverted ranges, limit, count_only, keys_only,
//! serializable, sort orders and targets, min/max mod/create filters,
//! revisions now, negative, historical, compacted and future); DeleteRange
//! (prev_kv, ranges, inverted); Txn (compares on value, version, create, mod
//! and lease with every result, over ranges, unknown enum values, mismatched
//! or missing unions; nested txns; duplicate writes, which etcd refuses; empty
//! ops; at and over --max-txn-ops, nested ones included); Compact (valid,
//! compacted, 0, negative, future); LeaseGrant (chosen IDs, ID 0, TTL 600, the
//! largest and one too large, short TTLs revoked at once); LeaseRevoke,
//! LeaseTimeToLive, LeaseLeases, LeaseKeepAlive (known and unknown IDs).
//! After the operations: every revision still stored, read whole.
//!
//! Watches (prev_kv, filters, ranges including empty ones): one from now on a
//! range, one on the prefix "a/" from revision 1, one on everything from a
//! mostly future revision, all opened before the operations; after them, one
//! from a stored revision and one from a compacted one. Then one stream with
//! many watches: automatic and explicit IDs, a duplicate ID, an empty range, a
//! compacted and a negative start, a future start with a filter, cancels of a
//! live and of an unknown ID, a progress request.
//!
//! Normalised, because it must differ: the cluster ID, member ID and raft
//! term in response headers; the lease ID the server picks for ID 0 (only
//! "non-zero" is compared). Normalised, because it is a clock reading: the
//! remaining TTL of a live lease (granted TTL is compared exactly).
//! Normalised, because etcd iterates a Go map: the order of a lease's keys and
//! of the lease list. Watch events are compared as one flat sequence per
//! watcher, since how events are batched into responses depends on timing; on
//! a stream with many watches, per watch ID, since the interleaving of
//! watches depends on timing too. Created and cancel responses are compared
//! whole. Before the operations, the test waits until etcd has the watch from
//! revision 1 in sync (etcd catches watches up every 100 ms, and a compaction
//! before that cancels them: timing, not semantics).
//!
//! Left out because etcd 3.4 breaks on it: an out-of-range sort target (etcd
//! panics in sort.Sort(nil) and the process dies); a put with ignore_value or
//! ignore_lease in a txn that deletes its key earlier (etcd panics applying it).
//!
//! Lease IDs are chosen by the test; leases short enough to expire during a
//! run are revoked at once, so no timing enters the random sequences. Expiry
//! itself is compared separately (`lease_expiry_same_as_etcd`).
//!
//! Environment:
//!   SKIFF_DIFF_SEED=S    run seed S only
//!   SKIFF_DIFF_SEEDS=N   run seeds 0..N (default 20); SKIFF_DIFF_SEEDS=A..B runs seeds A..B
//!   SKIFF_DIFF_OPS=M     operations per seed (default 200)
//!   SKIFF_DIFF_SKIP=a,b  leave out known differences, to look past them (see `skipping`)

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Etcd, SkiffStore};
use etcdpb::kv_client::KvClient;
use etcdpb::lease_client::LeaseClient;
use etcdpb::watch_client::WatchClient;
use etcdpb::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
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

/// A fresh etcd and a fresh `skiff store`, both ready to serve.
struct Pair {
    _etcd_server: Etcd,
    _skiff_server: SkiffStore,
    _dir: tempfile::TempDir,
    etcd: Client,
    skiff: Client,
}

async fn start_pair() -> Pair {
    let (etcd_server, skiff_server, dir) = tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = SkiffStore::start(dir.path(), &[]);
        (Etcd::start(), s, dir)
    })
    .await
    .unwrap();
    let mut etcd = Client::connect(etcd_server.url()).await;
    let skiff = Client::connect(skiff_server.url()).await;
    // etcd answers only once it has elected itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    while etcd.kv.range(RangeRequest { key: Bytes::from("x"), ..Default::default() }).await.is_err() {
        assert!(Instant::now() < deadline, "etcd not ready after 20s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Pair { _etcd_server: etcd_server, _skiff_server: skiff_server, _dir: dir, etcd, skiff }
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
    /// Grant with ID 0: the server picks the ID (compared only for being non-zero),
    /// then revoke that lease at once.
    GrantAuto(LeaseGrantRequest),
    Revoke(LeaseRevokeRequest),
    TimeToLive(LeaseTimeToLiveRequest),
    Leases,
    /// One request on a LeaseKeepAlive stream, and its one answer.
    KeepAlive(LeaseKeepAliveRequest),
}

/// A response (Debug-printed) with the fields that must differ zeroed, or the gRPC error.
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
            Ok(format!("grant: {g:?}; revoke: {rv:?}"))
        }
        Op::GrantAuto(r) => {
            let mut id = 0;
            let g = outcome(c.lease.lease_grant(r).await, |v| {
                norm(&mut v.header);
                id = v.id;
                // The ID is the server's choice; only "one was chosen" is comparable.
                v.id = if v.id != 0 { 1 } else { 0 };
            });
            let rv = if id != 0 {
                outcome(c.lease.lease_revoke(LeaseRevokeRequest { id }).await, |v| norm(&mut v.header))
            } else {
                Ok("(no lease to revoke)".into())
            };
            Ok(format!("grant: {g:?}; revoke: {rv:?}"))
        }
        Op::KeepAlive(r) => {
            let (tx, rx) = mpsc::channel(1);
            tx.send(r).await.unwrap();
            match c.lease.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
                Err(s) => Err((s.code(), s.message().to_string())),
                Ok(resp) => {
                    let mut stream = resp.into_inner();
                    let first = tokio::time::timeout(Duration::from_secs(10), stream.message()).await;
                    drop(tx);
                    match first {
                        Err(_) => Ok("no keepalive answer in 10s".into()),
                        Ok(Err(s)) => Err((s.code(), s.message().to_string())),
                        Ok(Ok(None)) => Ok("keepalive stream ended without an answer".into()),
                        Ok(Ok(Some(mut v))) => {
                            norm(&mut v.header);
                            Ok(format!("{v:?}"))
                        }
                    }
                }
            }
        }
        Op::Revoke(r) => outcome(c.lease.lease_revoke(r).await, |v| norm(&mut v.header)),
        Op::TimeToLive(r) => outcome(c.lease.lease_time_to_live(r).await, norm_ttl),
        Op::Leases => outcome(c.lease.lease_leases(LeaseLeasesRequest {}).await, |v| {
            norm(&mut v.header);
            // etcd lists leases from a Go map, in random order.
            v.leases.sort_by_key(|l| l.id);
        }),
    }
}

fn norm_ttl(v: &mut LeaseTimeToLiveResponse) {
    norm(&mut v.header);
    // Remaining time is a clock reading; only "expired or unknown" (-1) is comparable.
    if v.ttl > 0 {
        v.ttl = 1;
    }
    // etcd lists a lease's keys from a Go map, in random order.
    v.keys.sort();
}

/// Keys sharing prefixes, with one non-UTF-8 key at the top of the key space.
const KEYS: [&[u8]; 11] = [b"a", b"a/1", b"a/1/x", b"a/2", b"a/3", b"ab", b"b", b"b/1", b"c", b"d/x", b"\xff"];
/// Lease IDs the generator grants and uses (-7: etcd takes negative IDs as they are).
const LEASES: [i64; 4] = [1, 2, 3, -7];
/// Only ever granted by GrantShort, and revoked right after.
const SHORT_LEASE: i64 = 5;
/// Never granted.
const UNKNOWN_LEASE: i64 = 9;

use skiff_store::prefix_end;

/// Generates operations over the small key space.
struct Gen {
    rng: StdRng,
    head: i64,
    /// While generating some txns: the only keys to use, so that ops of one
    /// txn often touch the same key (etcd refuses overlapping writes).
    focus: Vec<&'static [u8]>,
}

/// Whether the known difference `name` is to be left out this run: listed
/// in SKIFF_DIFF_SKIP (comma-separated names, or "all"). By default nothing
/// is left out. Names: sort-order, compare-enum, compact-zero, txn-check-order,
/// txn-negative-rev, grpc-limit, watch-empty-range, watch-compacted-cancel,
/// watch-negative-start.
/// Differences from etcd 3.4 that are known and not fixed yet (none today).
const KNOWN_DIFFERENCES: &str = "";

fn skipping(name: &str) -> bool {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        // Known differences not fixed yet are skipped unless SKIFF_DIFF_SKIP says otherwise
        // ("none" runs everything). Each is an open item of the store issue.
        let spec = std::env::var("SKIFF_DIFF_SKIP").unwrap_or_else(|_| KNOWN_DIFFERENCES.to_string());
        spec.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s != "none").collect()
    });
    skip.iter().any(|s| s == name || s == "all")
}

/// etcd's default --max-txn-ops.
const MAX_TXN_OPS: usize = 128;
/// etcd's default --max-request-bytes (1.5 MiB); gRPC takes 512 KiB more than that.
const MAX_REQUEST_BYTES: usize = 1536 * 1024;

impl Gen {
    fn key(&mut self) -> Bytes {
        if !self.focus.is_empty() {
            return Bytes::from_static(self.focus[self.rng.random_range(0..self.focus.len())]);
        }
        Bytes::from_static(KEYS[self.rng.random_range(0..KEYS.len())])
    }
    /// A key for a range or delete: sometimes empty (an error) or "\0".
    fn range_key(&mut self) -> Bytes {
        match self.rng.random_range(0..100) {
            0..=1 => Bytes::new(),
            2..=4 => Bytes::from_static(&[0]),
            _ => self.key(),
        }
    }
    fn range_end(&mut self, key: &[u8]) -> Bytes {
        match self.rng.random_range(0..10) {
            0..=3 => Bytes::new(),
            4 => Bytes::from_static(&[0]),
            5 | 6 => prefix_end(key),
            7 => {
                // [key, key\0): just the key.
                let mut e = key.to_vec();
                e.push(0);
                Bytes::from(e)
            }
            // Any key: often inverted (end before key) or empty (end == key).
            _ => self.key(),
        }
    }
    fn lease(&mut self) -> i64 {
        match self.rng.random_range(0..12) {
            0..=6 => 0,
            7..=10 => LEASES[self.rng.random_range(0..LEASES.len())],
            _ => UNKNOWN_LEASE,
        }
    }
    fn lease_id(&mut self) -> i64 {
        match self.rng.random_range(0..10) {
            0..=7 => LEASES[self.rng.random_range(0..LEASES.len())],
            8 => SHORT_LEASE,
            _ => UNKNOWN_LEASE,
        }
    }
    fn value(&mut self) -> Bytes {
        const VALUES: [&str; 5] = ["", "x", "y", "zz", "x\0"];
        Bytes::from_static(VALUES[self.rng.random_range(0..VALUES.len())].as_bytes())
    }
    /// A read revision: mostly "now", sometimes negative, else anything from
    /// 1 (often compacted) to just past the head (future).
    fn revision(&mut self) -> i64 {
        match self.rng.random_range(0..20) {
            0..=8 => 0,
            9 => -1,
            10 => -5,
            _ => self.rng.random_range(1..self.head + 3),
        }
    }
    fn put(&mut self) -> PutRequest {
        let ignore_value = self.rng.random_bool(0.08);
        let ignore_lease = self.rng.random_bool(0.08);
        PutRequest {
            key: if self.rng.random_bool(0.02) { Bytes::new() } else { self.key() },
            // With ignore_value, a value is mostly absent ("value is provided" otherwise).
            value: if ignore_value && self.rng.random_bool(0.8) { Bytes::new() } else { self.value() },
            lease: if ignore_lease && self.rng.random_bool(0.8) { 0 } else { self.lease() },
            prev_kv: self.rng.random_bool(0.5),
            ignore_value,
            ignore_lease,
        }
    }
    fn rev_filter(&mut self, p: f64) -> i64 {
        if self.rng.random_bool(p) {
            self.rng.random_range(0..self.head + 2)
        } else {
            0
        }
    }
    /// A sort order: valid, or rarely out of the enum's range.
    fn sort_order(&mut self) -> i32 {
        let valid = self.rng.random_range(0..3);
        let odd = [3, 6, -1][self.rng.random_range(0..3)];
        if self.rng.random_bool(0.04) && !skipping("sort-order") { odd } else { valid }
    }
    fn range(&mut self, in_txn: bool) -> RangeRequest {
        let key = self.range_key();
        let range_end = self.range_end(&key);
        let sorted = self.rng.random_bool(0.3);
        let filtered = self.rng.random_bool(0.15);
        RangeRequest {
            range_end,
            key,
            limit: match self.rng.random_range(0..10) {
                0..=5 => 0,
                6 => -1,
                _ => self.rng.random_range(1..4),
            },
            // A revision inside a txn is checked against the txn's own view; keep some.
            revision: {
                let r = self.revision();
                let keep = self.rng.random_bool(0.3);
                match in_txn {
                    false => r,
                    true if !keep => 0,
                    true if r > 0 && skipping("txn-check-order") => 0,
                    true if r < 0 && skipping("txn-negative-rev") => 0,
                    true => r,
                }
            },
            sort_order: if sorted { self.sort_order() } else { 0 },
            // Only valid targets: etcd 3.4 does not check the target, and one
            // out of range with an ascending or descending order (NONE becomes
            // ASCEND for targets other than KEY) reaches sort.Sort(nil): a Go
            // panic that kills the etcd process.
            sort_target: if sorted || self.rng.random_bool(0.1) { self.rng.random_range(0..5) } else { 0 },
            serializable: self.rng.random_bool(0.1),
            keys_only: self.rng.random_bool(0.2),
            count_only: self.rng.random_bool(0.15),
            min_mod_revision: if filtered { self.rev_filter(0.6) } else { 0 },
            max_mod_revision: if filtered { self.rev_filter(0.5) } else { 0 },
            min_create_revision: if filtered { self.rev_filter(0.4) } else { 0 },
            max_create_revision: if filtered { self.rev_filter(0.4) } else { 0 },
        }
    }
    fn delete(&mut self) -> DeleteRangeRequest {
        let key = self.range_key();
        DeleteRangeRequest { range_end: self.range_end(&key), key, prev_kv: self.rng.random_bool(0.5) }
    }
    fn target_union(&mut self, target: i32) -> compare::TargetUnion {
        use compare::TargetUnion as U;
        match target {
            0 => U::Version(self.rng.random_range(0..4)),
            1 => U::CreateRevision(self.rng.random_range(0..self.head + 2)),
            2 => U::ModRevision(self.rng.random_range(0..self.head + 2)),
            3 => U::Value(self.value()),
            _ => U::Lease(self.lease()),
        }
    }
    fn compare(&mut self) -> Compare {
        let mut target = self.rng.random_range(0..5);
        let key = match self.rng.random_range(0..100) {
            0 => Bytes::new(),
            1..=3 => Bytes::from_static(&[0]),
            _ => self.key(),
        };
        let range_end = if self.rng.random_bool(0.25) { self.range_end(&key) } else { Bytes::new() };
        let mut result = self.rng.random_range(0..4);
        let mut target_union = Some(self.target_union(target));
        match self.rng.random_range(0..100) {
            // A union that does not match the target.
            0..=3 => {
                let other = self.rng.random_range(0..5);
                target_union = Some(self.target_union(other));
            }
            4 => target_union = None,
            // Out of the enums' range.
            5 if !skipping("compare-enum") => target = [5, 9][self.rng.random_range(0..2)],
            6 if !skipping("compare-enum") => result = [4, 7][self.rng.random_range(0..2)],
            _ => {}
        }
        Compare { result, target, key, target_union, range_end }
    }
    fn request_op(&mut self, depth: u32) -> RequestOp {
        use request_op::Request as R;
        if self.rng.random_bool(0.01) {
            return RequestOp { request: None };
        }
        let request = match self.rng.random_range(0..10) {
            0..=3 => R::RequestPut(self.put()),
            4 | 5 => R::RequestDeleteRange(self.delete()),
            6..=8 => R::RequestRange(self.range(true)),
            _ if depth < 3 => R::RequestTxn(self.txn(depth + 1)),
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
    fn top_txn(&mut self) -> TxnRequest {
        // A third of the txns use only two or three keys: duplicate writes
        // (which etcd refuses) across ops and nested txns become common.
        if self.rng.random_bool(0.35) {
            let n = self.rng.random_range(2..4);
            self.focus = (0..n).map(|_| KEYS[self.rng.random_range(0..KEYS.len())]).collect();
        }
        let mut t = self.txn(0);
        self.focus.clear();
        // etcd 3.4 panics (and dies) applying a put with ignore_value/ignore_lease whose key
        // a delete earlier in the same txn removed; keep those flags only in txns without deletes.
        if has_delete(&t) {
            strip_ignores(&mut t);
        }
        t
    }
    /// A txn at or just over etcd's op limits, at the top or in a nested txn
    /// (which gets the budget the outer txn leaves).
    fn big_txn(&mut self) -> TxnRequest {
        use request_op::Request as R;
        let range = |g: &mut Gen| RequestOp { request: Some(R::RequestRange(RangeRequest { key: g.key(), ..Default::default() })) };
        let over = self.rng.random_range(0..2);
        match self.rng.random_range(0..4) {
            0 => TxnRequest { success: (0..MAX_TXN_OPS + over).map(|_| range(self)).collect(), ..Default::default() },
            1 => TxnRequest { failure: (0..MAX_TXN_OPS + over).map(|_| range(self)).collect(), ..Default::default() },
            2 => TxnRequest {
                compare: (0..MAX_TXN_OPS + over)
                    .map(|_| Compare { key: self.key(), target_union: Some(compare::TargetUnion::Version(0)), result: 2, ..Default::default() })
                    .collect(),
                ..Default::default()
            },
            _ => {
                let outer = self.rng.random_range(1..MAX_TXN_OPS);
                let inner = TxnRequest { success: (0..MAX_TXN_OPS - outer + over).map(|_| range(self)).collect(), ..Default::default() };
                let mut success: Vec<RequestOp> = (0..outer - 1).map(|_| range(self)).collect();
                success.push(RequestOp { request: Some(R::RequestTxn(inner)) });
                TxnRequest { success, ..Default::default() }
            }
        }
    }
    fn op(&mut self) -> Op {
        match self.rng.random_range(0..1000) {
            0..=274 => Op::Put(self.put()),
            275..=474 => Op::Range(self.range(false)),
            475..=564 => Op::Delete(self.delete()),
            565..=754 => Op::Txn(self.top_txn()),
            755..=764 => Op::Txn(self.big_txn()),
            765..=804 => Op::Compact(CompactionRequest {
                revision: match self.rng.random_range(0..10) {
                    0 if !skipping("compact-zero") => 0,
                    1 => -1,
                    _ => self.rng.random_range(1..self.head + 3),
                },
                physical: self.rng.random_bool(0.5),
            }),
            805..=864 => Op::Grant(LeaseGrantRequest {
                id: LEASES[self.rng.random_range(0..LEASES.len())],
                ttl: match self.rng.random_range(0..20) {
                    0 => 9_000_000_001, // too large
                    1 => 9_000_000_000, // the largest allowed
                    _ => 600,
                },
            }),
            865..=879 => Op::GrantShort(LeaseGrantRequest { id: SHORT_LEASE, ttl: [1, 0, -3][self.rng.random_range(0..3)] }),
            880..=889 => Op::GrantAuto(LeaseGrantRequest { id: 0, ttl: [600, 1, 9_000_000_001][self.rng.random_range(0..3)] }),
            890..=929 => Op::Revoke(LeaseRevokeRequest { id: self.lease_id() }),
            930..=959 => Op::TimeToLive(LeaseTimeToLiveRequest { id: self.lease_id(), keys: self.rng.random_bool(0.7) }),
            960..=979 => Op::KeepAlive(LeaseKeepAliveRequest { id: self.lease_id() }),
            980..=991 => Op::Leases,
            // Requests over etcd's size limits: over --max-request-bytes, and over gRPC's limit.
            _ => Op::Put(PutRequest {
                key: self.key(),
                value: Bytes::from(vec![
                    b'v';
                    if self.rng.random_bool(0.7) || skipping("grpc-limit") {
                        MAX_REQUEST_BYTES + 1000
                    } else {
                        MAX_REQUEST_BYTES + 600 * 1024
                    }
                ]),
                ..Default::default()
            }),
        }
    }
}

fn ops_of(t: &TxnRequest) -> impl Iterator<Item = &RequestOp> {
    t.success.iter().chain(t.failure.iter())
}

fn has_delete(t: &TxnRequest) -> bool {
    ops_of(t).any(|o| match &o.request {
        Some(request_op::Request::RequestDeleteRange(_)) => true,
        Some(request_op::Request::RequestTxn(t)) => has_delete(t),
        _ => false,
    })
}

fn strip_ignores(t: &mut TxnRequest) {
    for o in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match &mut o.request {
            Some(request_op::Request::RequestPut(p)) => {
                p.ignore_value = false;
                p.ignore_lease = false;
            }
            Some(request_op::Request::RequestTxn(t)) => strip_ignores(t),
            _ => {}
        }
    }
}

async fn head(c: &mut Client) -> i64 {
    let r = c.kv.range(RangeRequest { key: Bytes::from("~"), ..Default::default() }).await.unwrap().into_inner();
    r.header.unwrap().revision
}

// ---- Watches ----

#[derive(Debug, Clone)]
struct WatchSpec {
    key: Bytes,
    range_end: Bytes,
    start_revision: i64,
    prev_kv: bool,
    filters: Vec<i32>,
}

impl WatchSpec {
    /// A key inside the watched range, put then deleted to mark the end of the stream.
    fn sentinel(&self) -> Bytes {
        if self.range_end.is_empty() {
            self.key.clone()
        } else {
            let mut k = self.key.to_vec();
            k.extend_from_slice(b"\0end");
            Bytes::from(k)
        }
    }
}

enum Item {
    Event(mvccpb::Event),
    /// A response without events (created, canceled, or anything else), normalised.
    Msg(WatchResponse),
    End(String),
}

/// An open watch: its create response and, while it lives, what it receives.
struct Watching {
    spec: WatchSpec,
    created: String,
    live: bool,
    rx: mpsc::UnboundedReceiver<Item>,
    _tx: mpsc::Sender<WatchRequest>,
}

fn norm_watch(mut r: WatchResponse) -> WatchResponse {
    norm(&mut r.header);
    if skipping("watch-compacted-cancel") && r.canceled && r.compact_revision != 0 {
        r.header = None;
        r.cancel_reason.clear();
    }
    r
}

async fn open_watch(c: &mut Client, spec: &WatchSpec) -> Watching {
    let (tx, rx) = mpsc::channel(1);
    let create = WatchCreateRequest {
        key: spec.key.clone(),
        range_end: spec.range_end.clone(),
        start_revision: spec.start_revision,
        prev_kv: spec.prev_kv,
        filters: spec.filters.clone(),
        ..Default::default()
    };
    tx.send(WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) }).await.unwrap();
    let mut stream = c.watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no watch create response in 10s")
        .expect("watch create failed")
        .expect("watch stream ended");
    let live = first.created && !first.canceled;
    let created = format!("{:?}", norm_watch(first));
    let (itx, irx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(r)) if r.events.is_empty() => {
                    let done = r.canceled;
                    let _ = itx.send(Item::Msg(norm_watch(r)));
                    if done {
                        return;
                    }
                }
                Ok(Some(r)) => {
                    for e in r.events {
                        let _ = itx.send(Item::Event(e));
                    }
                }
                Ok(None) => return drop(itx.send(Item::End("stream ended".into()))),
                Err(e) => return drop(itx.send(Item::End(format!("stream error {:?} {}", e.code(), e.message())))),
            }
        }
    });
    Watching { spec: spec.clone(), created, live, rx: irx, _tx: tx }
}

/// Everything a watch received up to its sentinel event at or after `stop_rev`,
/// or its cancellation, or the end of its stream.
/// Waits up to `patience` for the end.
async fn drain(w: &mut Watching, stop_rev: i64, patience: Duration) -> Vec<String> {
    let mut out = vec![format!("created: {}", w.created)];
    if !w.live {
        return out;
    }
    if w.spec.start_revision > stop_rev + 1 {
        out.push("(starts after the sentinel)".into());
        return out;
    }
    let sentinel = w.spec.sentinel();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, w.rx.recv()).await {
            Err(_) => {
                out.push("timed out".into());
                return out;
            }
            Ok(None) => {
                out.push("collector gone".into());
                return out;
            }
            Ok(Some(Item::Event(e))) => {
                let kv = e.kv.as_ref().unwrap();
                let done = kv.key == sentinel && kv.mod_revision >= stop_rev;
                out.push(format!("{e:?}"));
                if done {
                    return out;
                }
            }
            Ok(Some(Item::Msg(m))) => {
                let done = m.canceled;
                out.push(format!("{m:?}"));
                if done {
                    return out;
                }
            }
            Ok(Some(Item::End(s))) => {
                out.push(s);
                return out;
            }
        }
    }
}

/// Long Debug strings (big values, big txns) cut for display.
fn clip(s: String) -> String {
    const MAX: usize = 3000;
    if s.len() <= MAX {
        return s;
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... ({} more bytes)", &s[..cut], s.len() - cut)
}

/// Both outcomes; when they are long, where they start to differ.
fn show_diff(got: &Outcome, want: &Outcome) -> String {
    let (g, w) = (format!("{got:?}"), format!("{want:?}"));
    if g.len() <= 3000 && w.len() <= 3000 {
        return format!("  skiff: {g}\n  etcd:  {w}");
    }
    let at = g.bytes().zip(w.bytes()).take_while(|(a, b)| a == b).count();
    let mut from = at.saturating_sub(300);
    while !g.is_char_boundary(from) {
        from -= 1;
    }
    let tail = |s: &str| clip(s.get(from..).unwrap_or("").to_string());
    format!("  (first difference at byte {at}, shown from byte {from})\n  skiff: {}\n  etcd:  {}", tail(&g), tail(&w))
}

/// An op for display: values over 256 bytes shown by their size only.
fn show_op(op: &Op) -> String {
    match op {
        Op::Put(p) if p.value.len() > 256 => {
            let mut p = p.clone();
            let n = p.value.len();
            p.value = Bytes::new();
            format!("Put({p:?}) with a value of {n} bytes")
        }
        _ => clip(format!("{op:?}")),
    }
}

fn same_events(got: &[String], want: &[String], what: &str) -> Result<(), String> {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        return Err(format!(
            "{what}: item {i} differs ({} items from skiff, {} from etcd; previous: {:?})\n  skiff: {:?}\n  etcd:  {:?}",
            got.len(),
            want.len(),
            &want[i.saturating_sub(2)..i.min(want.len())],
            got.get(i),
            want.get(i)
        ));
    }
    Ok(())
}

fn watch_range(rng: &mut StdRng) -> (Bytes, Bytes) {
    let key = Bytes::from_static(KEYS[rng.random_range(0..KEYS.len())]);
    let end = match rng.random_range(0..8) {
        0 | 1 => Bytes::new(),
        2..=4 => prefix_end(&key),
        5 => Bytes::from_static(&[0]),
        6 => return (Bytes::from_static(&[0]), Bytes::from_static(&[0])),
        // Any key: often inverted or empty (end <= key), which etcd refuses at creation.
        _ => {
            let end = Bytes::from_static(KEYS[rng.random_range(0..KEYS.len())]);
            if end <= key && skipping("watch-empty-range") { prefix_end(&key) } else { end }
        }
    };
    (key, end)
}

fn filters(rng: &mut StdRng) -> Vec<i32> {
    match rng.random_range(0..6) {
        0 => vec![0],
        1 => vec![1],
        _ => vec![],
    }
}

// ---- Many watches on one stream ----

fn create_req(c: WatchCreateRequest) -> WatchRequest {
    WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(c)) }
}

fn cancel_req(watch_id: i64) -> WatchRequest {
    WatchRequest { request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id })) }
}

/// Explicit ID of the last create on a multiplexed stream: its created
/// response tells that every request before it has been handled.
const MARKER_WATCH: i64 = 99;
/// The key put then deleted once every watch on the stream is set up.
const MUX_SENTINEL: &[u8] = b"~mux";

/// Requests for one stream: creates with automatic and explicit IDs, a
/// duplicate ID, an empty range, starts that are compacted, negative,
/// stored, now and in the future; a cancel of a live and of an unknown ID; a
/// progress request; and the marker. Every live watch covers `MUX_SENTINEL`.
fn mux_requests(rng: &mut StdRng, head: i64, compacted: i64) -> Vec<WatchRequest> {
    let all = |start_revision: i64, prev_kv: bool| WatchCreateRequest {
        key: Bytes::from_static(&[0]),
        range_end: Bytes::from_static(&[0]),
        start_revision,
        prev_kv,
        ..Default::default()
    };
    let stored = rng.random_range(compacted.max(1)..=head);
    // Compacted away (or, with nothing compacted past 1, from now).
    let gone = if compacted > 1 { rng.random_range(1..compacted) } else { 0 };
    vec![
        create_req(all(0, true)),
        create_req(WatchCreateRequest { watch_id: 7, ..all(stored, rng.random_bool(0.5)) }),
        create_req(WatchCreateRequest { key: Bytes::from_static(b"b"), ..Default::default() }),
        create_req(WatchCreateRequest { watch_id: 7, ..all(0, false) }),
        // An empty range, "~n" to "~m" (or, skipping that, the valid "~m" to "~n").
        create_req(if skipping("watch-empty-range") {
            WatchCreateRequest { key: Bytes::from_static(b"~m"), range_end: Bytes::from_static(b"~n"), ..Default::default() }
        } else {
            WatchCreateRequest { key: Bytes::from_static(b"~n"), range_end: Bytes::from_static(b"~m"), ..Default::default() }
        }),
        create_req(all(gone, true)),
        // A negative start: etcd takes it as a revision below the compaction
        // point (-1 before any compaction) and cancels the watch as compacted.
        create_req(WatchCreateRequest { start_revision: if skipping("watch-negative-start") { 0 } else { -3 }, ..all(0, false) }),
        // Empty key: "\0", the smallest. From after the sentinel's put, puts filtered out.
        create_req(WatchCreateRequest {
            key: Bytes::new(),
            range_end: Bytes::from_static(&[0]),
            start_revision: head + 2,
            filters: vec![watch_create_request::FilterType::Noput as i32],
            ..Default::default()
        }),
        cancel_req(1),
        cancel_req(42),
        WatchRequest { request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})) },
        create_req(WatchCreateRequest { key: Bytes::from_static(b"~marker"), watch_id: MARKER_WATCH, ..Default::default() }),
    ]
}

/// Sends `reqs` on one watch stream, waits for the marker's created response,
/// puts and deletes `MUX_SENTINEL`, then reads until every live watch saw the
/// delete or ended. Returns what each watch ID received, in order (events one
/// by one, other responses whole; across IDs the order depends on timing),
/// and the outcomes of the sentinel put and delete.
async fn multiplexed(c: &mut Client, reqs: Vec<WatchRequest>) -> (BTreeMap<i64, Vec<String>>, Vec<Outcome>) {
    let (tx, rx) = mpsc::channel(reqs.len() + 1);
    for r in reqs {
        tx.send(r).await.unwrap();
    }
    let mut got: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut stream = match c.watch.watch(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(s) => s.into_inner(),
        Err(e) => {
            got.entry(i64::MIN).or_default().push(format!("watch failed: {:?} {}", e.code(), e.message()));
            return (got, vec![]);
        }
    };
    let mut live = BTreeSet::new();
    let mut sentinel_ops = Vec::new();
    let mut marked = false;
    // etcd catches watches up every 100 ms: 3 s is plenty.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if marked && live.is_empty() {
            break;
        }
        let r = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => {
                let what = if marked { format!("timed out; still open: {live:?}") } else { "timed out before the marker".into() };
                got.entry(i64::MIN).or_default().push(what);
                break;
            }
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => {
                got.entry(i64::MIN).or_default().push("stream ended".into());
                break;
            }
            Ok(Err(e)) => {
                got.entry(i64::MIN).or_default().push(format!("stream error {:?} {}", e.code(), e.message()));
                break;
            }
        };
        let id = r.watch_id;
        if r.events.is_empty() {
            let r = norm_watch(r);
            if r.created && !r.canceled && id != MARKER_WATCH {
                live.insert(id);
            }
            if r.canceled || r.compact_revision != 0 {
                live.remove(&id);
            }
            let marker = r.created && id == MARKER_WATCH;
            got.entry(id).or_default().push(format!("{r:?}"));
            if marker && !marked {
                marked = true;
                let key = Bytes::from_static(MUX_SENTINEL);
                sentinel_ops.push(run(c, &Op::Put(PutRequest { key: key.clone(), value: Bytes::from("end"), ..Default::default() })).await);
                sentinel_ops.push(run(c, &Op::Delete(DeleteRangeRequest { key, ..Default::default() })).await);
            }
        } else {
            for e in r.events {
                let kv = e.kv.as_ref().unwrap();
                if kv.key == MUX_SENTINEL && e.r#type == mvccpb::event::EventType::Delete as i32 {
                    live.remove(&id);
                }
                got.entry(id).or_default().push(format!("{e:?}"));
            }
        }
    }
    drop(tx);
    (got, sentinel_ops)
}

fn same_groups(got: &BTreeMap<i64, Vec<String>>, want: &BTreeMap<i64, Vec<String>>, what: &str) -> Result<(), String> {
    // Every watch ID that differs, each with its first difference.
    let ids: BTreeSet<i64> = got.keys().chain(want.keys()).copied().collect();
    let none = Vec::new();
    let diffs: Vec<String> = ids
        .into_iter()
        .filter_map(|id| same_events(got.get(&id).unwrap_or(&none), want.get(&id).unwrap_or(&none), &format!("watch ID {id}")).err())
        .collect();
    if diffs.is_empty() {
        return Ok(());
    }
    Err(format!("{what}:\n{}", diffs.join("\n")))
}

/// Waits (bounded) until etcd reports no watcher still catching up, from its
/// `etcd_debugging_mvcc_slow_watcher_total` gauge on the client URL's /metrics.
async fn wait_watchers_synced(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const GAUGE: &str = "etcd_debugging_mvcc_slow_watcher_total ";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut last = String::from("no answer");
        if let Ok(mut conn) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let mut body = Vec::new();
            if conn.write_all(req.as_bytes()).await.is_ok() && conn.read_to_end(&mut body).await.is_ok() {
                let text = String::from_utf8_lossy(&body);
                match text.lines().find_map(|l| l.strip_prefix(GAUGE)) {
                    Some("0") => return Ok(()),
                    Some(v) => last = format!("{GAUGE}{v}"),
                    None => last = format!("no {GAUGE}in /metrics"),
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("etcd's watchers not in sync after 10s ({last})"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs one seed on fresh servers; the first difference ends it.
async fn run_seed(seed: u64, ops: usize) -> Result<(), String> {
    let Pair { mut etcd, mut skiff, mut _etcd_server, mut _skiff_server, _dir } = start_pair().await;
    let ctx = |what: &str| format!("seed {seed} (rerun: SKIFF_DIFF_SEED={seed}): {what}");
    let start = head(&mut etcd).await;
    assert_eq!(start, head(&mut skiff).await, "{}", ctx("servers start at different revisions"));
    let mut g = Gen { rng: StdRng::seed_from_u64(seed), head: start, focus: Vec::new() };
    // Watch plans come from their own stream so that they don't shift the operations.
    let mut wrng = StdRng::seed_from_u64(seed ^ 0x5741_5443_48);

    // Live watches, open before the first operation: one from now on a range,
    // one on the prefix "a/" from revision 1, and one on everything from a
    // (mostly future) revision with a random filter.
    let mut live_specs = Vec::new();
    let (key, range_end) = watch_range(&mut wrng);
    live_specs.push(WatchSpec { key, range_end, start_revision: 0, prev_kv: true, filters: vec![] });
    live_specs.push(WatchSpec {
        key: Bytes::from_static(b"a/"),
        range_end: prefix_end(b"a/"),
        start_revision: 1,
        prev_kv: true,
        filters: vec![],
    });
    live_specs.push(WatchSpec {
        key: Bytes::from_static(&[0]),
        range_end: Bytes::from_static(&[0]),
        start_revision: wrng.random_range(0..40),
        prev_kv: wrng.random_bool(0.5),
        filters: filters(&mut wrng),
    });
    let mut watches = Vec::new();
    for spec in &live_specs {
        watches.push((open_watch(&mut etcd, spec).await, open_watch(&mut skiff, spec).await));
    }
    // etcd catches a watch up from a stored revision (here: 1) in a loop that
    // runs every 100 ms; a compaction past the watch's next revision before
    // then cancels it. Timing, not semantics: start once etcd has it in sync.
    if let Err(e) = wait_watchers_synced(_etcd_server.port).await {
        return Err(ctx(&e));
    }

    let mut compacted = 0;
    for i in 0..ops {
        let op = g.op();
        let want = run(&mut etcd, &op).await;
        let got = run(&mut skiff, &op).await;
        if got != want {
            let mut exited = String::new();
            if let Ok(Some(st)) = _etcd_server.child.try_wait() {
                exited += &format!("\n  (the etcd process has exited: {st})");
            }
            if let Ok(Some(st)) = _skiff_server.child.try_wait() {
                exited += &format!("\n  (the skiff process has exited: {st})");
            }
            return Err(format!("{}\n  request: {}\n{}{exited}", ctx(&format!("op {i}")), show_op(&op), show_diff(&got, &want)));
        }
        if let (Op::Compact(c), Ok(_)) = (&op, &want) {
            compacted = compacted.max(c.revision);
        }
        g.head = head(&mut etcd).await;
        let skiff_head = head(&mut skiff).await;
        if skiff_head != g.head {
            return Err(ctx(&format!("revision after op {i} ({}): skiff {skiff_head}, etcd {}", show_op(&op), g.head)));
        }
    }

    // The whole history that is left, revision by revision.
    for rev in compacted.max(1)..=g.head {
        let all = RangeRequest {
            key: Bytes::from_static(&[0]),
            range_end: Bytes::from_static(&[0]),
            revision: rev,
            ..Default::default()
        };
        let want = outcome(etcd.kv.range(all.clone()).await, |v| norm(&mut v.header));
        let got = outcome(skiff.kv.range(all).await, |v| norm(&mut v.header));
        if got != want {
            return Err(format!("{}\n{}", ctx(&format!("all keys at revision {rev}")), show_diff(&got, &want)));
        }
    }

    // Catch-up watches over the stored history: from a revision still there
    // (the compaction point itself included), and from a compacted one.
    let (key, range_end) = watch_range(&mut wrng);
    let from = wrng.random_range(compacted.max(1)..=g.head);
    let mut catch_up = vec![WatchSpec { key, range_end, start_revision: from, prev_kv: true, filters: filters(&mut wrng) }];
    if compacted > 1 {
        catch_up.push(WatchSpec {
            key: Bytes::from_static(&[0]),
            range_end: Bytes::from_static(&[0]),
            start_revision: wrng.random_range(1..compacted),
            prev_kv: true,
            filters: vec![],
        });
    }
    for spec in &catch_up {
        watches.push((open_watch(&mut etcd, spec).await, open_watch(&mut skiff, spec).await));
    }

    // Mark the end of every watch's stream: put then delete its sentinel key.
    let mut stops = Vec::new();
    for (w, _) in &watches {
        let k = w.spec.sentinel();
        let put = Op::Put(PutRequest { key: k.clone(), value: Bytes::from("end"), ..Default::default() });
        let del = Op::Delete(DeleteRangeRequest { key: k, ..Default::default() });
        let mut rev = 0;
        for op in [put, del] {
            let want = run(&mut etcd, &op).await;
            let got = run(&mut skiff, &op).await;
            if got != want {
                return Err(format!("{}\n  skiff: {got:?}\n  etcd:  {want:?}", ctx(&format!("sentinel {op:?}"))));
            }
            if rev == 0 {
                rev = head(&mut etcd).await;
            }
        }
        stops.push(rev);
    }
    for ((mut we, mut ws), stop) in watches.into_iter().zip(stops) {
        let want = drain(&mut we, stop, Duration::from_secs(10)).await;
        // A watch etcd refused is a difference already if skiff's lives: don't wait long for it.
        let got = drain(&mut ws, stop, Duration::from_secs(if want.len() == 1 { 1 } else { 10 })).await;
        same_events(&got, &want, &ctx(&format!("watch {:?}", we.spec)))?;
    }

    // Many watches on one stream.
    let head_now = head(&mut etcd).await;
    let reqs = mux_requests(&mut wrng, head_now, compacted);
    let what = ctx(&format!("one stream with {:?}", reqs.iter().map(|r| &r.request_union).collect::<Vec<_>>()));
    let (want, want_ops) = multiplexed(&mut etcd, reqs.clone()).await;
    let (got, got_ops) = multiplexed(&mut skiff, reqs).await;
    if got_ops != want_ops {
        return Err(format!("{what}: sentinel put and delete\n  skiff: {got_ops:?}\n  etcd:  {want_ops:?}"));
    }
    same_groups(&got, &want, &what)?;
    Ok(())
}

fn seeds() -> Vec<u64> {
    let env = |k: &str| std::env::var(k).ok().map(|s| s.parse::<u64>().unwrap_or_else(|_| panic!("{k}={s}: not a number")));
    if let Some(s) = env("SKIFF_DIFF_SEED") {
        return vec![s];
    }
    match std::env::var("SKIFF_DIFF_SEEDS") {
        Ok(s) if s.contains("..") => {
            let (a, b) = s.split_once("..").unwrap();
            (a.parse().expect("SKIFF_DIFF_SEEDS=A..B")..b.parse().expect("SKIFF_DIFF_SEEDS=A..B")).collect()
        }
        _ => (0..env("SKIFF_DIFF_SEEDS").unwrap_or(20)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_operations_same_answers_as_etcd() {
    let ops = std::env::var("SKIFF_DIFF_OPS").ok().map(|s| s.parse().unwrap()).unwrap_or(200);
    // Every seed runs; each reports its first difference.
    let mut failures = Vec::new();
    for seed in seeds() {
        let t = Instant::now();
        let result = run_seed(seed, ops).await;
        eprintln!("seed {seed}: {} in {:.1?}", if result.is_ok() { "same" } else { "differs" }, t.elapsed());
        if let Err(e) = result {
            eprintln!("{e}\n");
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{} seeds differ from etcd:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// A lease with the smallest TTL expires on both, deleting its keys in one
/// revision, with the same events and the same answers about it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_same_as_etcd() {
    let Pair { mut etcd, mut skiff, _etcd_server, _skiff_server, _dir } = start_pair().await;
    let spec = WatchSpec {
        key: Bytes::from("x/"),
        range_end: Bytes::from("x0"),
        start_revision: 0,
        prev_kv: true,
        filters: vec![],
    };
    let mut we = open_watch(&mut etcd, &spec).await;
    let mut ws = open_watch(&mut skiff, &spec).await;
    let put = |k: &'static str, lease: i64| Op::Put(PutRequest { key: Bytes::from(k), value: Bytes::from("v"), lease, ..Default::default() });
    let setup = [
        Op::Grant(LeaseGrantRequest { id: 7, ttl: 1 }),
        put("x/2", 7),
        put("x/1", 7),
        put("x/3", 0),
        put("x/2", 7),
        Op::TimeToLive(LeaseTimeToLiveRequest { id: 7, keys: true }),
    ];
    for op in &setup {
        let want = run(&mut etcd, op).await;
        let got = run(&mut skiff, op).await;
        assert_eq!(got, want, "{op:?}\n  skiff: {got:?}\n  etcd:  {want:?}");
    }
    // Wait (bounded) for both to expire the lease: its keys go.
    let deadline = Instant::now() + Duration::from_secs(15);
    let count = RangeRequest { key: Bytes::from("x/"), range_end: Bytes::from("x0"), count_only: true, ..Default::default() };
    for c in [&mut etcd, &mut skiff] {
        while c.kv.range(count.clone()).await.unwrap().into_inner().count != 1 {
            assert!(Instant::now() < deadline, "lease not expired in 15s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after = [
        Op::TimeToLive(LeaseTimeToLiveRequest { id: 7, keys: true }),
        Op::Revoke(LeaseRevokeRequest { id: 7 }),
        put("x/4", 7),
        Op::Leases,
        Op::Range(RangeRequest { key: Bytes::from("x/"), range_end: Bytes::from("x0"), ..Default::default() }),
    ];
    for op in &after {
        let want = run(&mut etcd, op).await;
        let got = run(&mut skiff, op).await;
        assert_eq!(got, want, "{op:?}\n  skiff: {got:?}\n  etcd:  {want:?}");
    }
    let stop = {
        let op = Op::Put(PutRequest { key: spec.sentinel(), value: Bytes::from("end"), ..Default::default() });
        assert_eq!(run(&mut skiff, &op).await, run(&mut etcd, &op).await);
        head(&mut etcd).await
    };
    let want = drain(&mut we, stop, Duration::from_secs(10)).await;
    let got = drain(&mut ws, stop, Duration::from_secs(10)).await;
    same_events(&got, &want, "lease expiry watch").unwrap();
}
