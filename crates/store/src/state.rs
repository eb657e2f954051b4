//! The store's deterministic state machine: etcd's MVCC data model.
//!
//! It applies [`Command`]s in log order and nothing else changes it, so two
//! replicas that apply the same log hold the same state (this is what Raft
//! relies on). It has no clock, no I/O and no threads. Reads are served from
//! it directly.
//!
//! Data layout, chosen for cheap historical reads and watch catch-up:
//! - `index`: key → every retained version of that key, oldest first. A
//!   tombstone (delete) is a version whose `KeyValue` has `version == 0`, which
//!   is exactly the `kv` etcd sends in a DELETE event.
//! - `events`: every change since the compaction point, in revision order. A
//!   watcher is just a cursor into this log.
//!
//! Keys and values are `Bytes`, shared between the index, the event log and
//! responses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use etcdpb::skiffpb::{self, command::Op};
use etcdpb::{
    compare, range_request, request_op, response_op, CompactionRequest, CompactionResponse,
    Compare, DeleteRangeRequest, DeleteRangeResponse, KeyValue, LeaseGrantResponse,
    LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};

use crate::error::{Result, StoreError};
use crate::keyrange::KeyRange;

/// etcd's largest lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// etcd's smallest lease TTL with default timing (1.5 election timeouts, rounded up).
pub const MIN_LEASE_TTL: i64 = 2;

/// One retained version of a key.
#[derive(Debug, Clone)]
pub struct Version {
    pub kv: Arc<KeyValue>,
    /// Position of the write inside its transaction (etcd's sub-revision).
    pub sub: u32,
}

impl Version {
    pub fn is_tombstone(&self) -> bool {
        self.kv.version == 0
    }
}

/// A change, as the watch machinery sees it.
#[derive(Debug, Clone)]
pub struct Change {
    pub kv: Arc<KeyValue>,
}

impl Change {
    pub fn is_delete(&self) -> bool {
        self.kv.version == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    pub ttl: i64,
    pub keys: BTreeSet<Bytes>,
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
}

#[derive(Debug, Clone)]
pub struct StateMachine {
    index: BTreeMap<Bytes, Vec<Version>>,
    events: VecDeque<Change>,
    rev: i64,
    compact_rev: i64,
    applied: u64,
    leases: BTreeMap<i64, LeaseInfo>,
    live_keys: usize,
    /// A clustered store's members, replicated like the keys (etcd keeps
    /// them in its backend's members bucket). Empty for a lone store.
    members: BTreeMap<u64, skiffpb::MemberInfo>,
}

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine {
            index: BTreeMap::new(),
            events: VecDeque::new(),
            // etcd starts at revision 1; the first write is revision 2.
            rev: 1,
            // Never compacted; etcd starts at -1 too, so Compact(0) succeeds once.
            compact_rev: -1,
            applied: 0,
            leases: BTreeMap::new(),
            live_keys: 0,
            members: BTreeMap::new(),
        }
    }
}

/// The revision a write transaction is building, and the sub-revision of its next write.
struct WriteCtx {
    rev: i64,
    sub: u32,
}

impl WriteCtx {
    fn changed(&self) -> bool {
        self.sub > 0
    }
    /// The revision reads inside the transaction see (etcd: begin+1 once it has written).
    fn read_rev(&self) -> i64 {
        if self.changed() { self.rev } else { self.rev - 1 }
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl StateMachine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current (last committed) revision.
    pub fn revision(&self) -> i64 {
        self.rev
    }
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }
    /// The index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }
    pub fn live_keys(&self) -> usize {
        self.live_keys
    }
    pub fn leases(&self) -> &BTreeMap<i64, LeaseInfo> {
        &self.leases
    }
    pub fn lease(&self, id: i64) -> Option<&LeaseInfo> {
        self.leases.get(&id)
    }

    /// Apply one log entry. Errors are deterministic and leave the state untouched.
    pub fn apply(&mut self, index: u64, cmd: &skiffpb::Command) -> Result<Response> {
        if index != 0 {
            self.applied = index;
        }
        let Some(op) = &cmd.op else {
            // An empty entry (Raft writes one per new term) changes nothing.
            return Ok(Response::Compact(CompactionResponse { header: header(self.rev) }));
        };
        match op {
            Op::Put(p) => self.apply_put(p).map(Response::Put),
            Op::DeleteRange(d) => Ok(Response::DeleteRange(self.apply_delete(d))),
            Op::Txn(t) => self.apply_txn(t).map(Response::Txn),
            Op::Compact(c) => self.apply_compact(c).map(Response::Compact),
            Op::LeaseGrant(g) => self.apply_lease_grant(g.id, g.ttl).map(Response::LeaseGrant),
            Op::LeaseRevoke(r) => self.apply_lease_revoke(r.id).map(Response::LeaseRevoke),
            // A renewal changes no state (deadlines live in the lessor), only proves the lease exists.
            Op::LeaseKeepAlive(k) => match self.leases.get(&k.id) {
                Some(l) => Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: header(self.rev),
                    id: k.id,
                    ttl: l.ttl,
                    error: String::new(),
                })),
                None => Err(StoreError::LeaseNotFound),
            },
            Op::MemberAttributes(m) => {
                // A removed member's late attributes change nothing.
                if let Some(known) = self.members.get_mut(&m.id) {
                    known.name = m.name.clone();
                    known.client_urls = m.client_urls.clone();
                }
                Ok(Response::Compact(CompactionResponse { header: header(self.rev) }))
            }
        }
    }

    // ------------------------------------------------------------- members

    pub fn members(&self) -> &BTreeMap<u64, skiffpb::MemberInfo> {
        &self.members
    }

    /// Add a member or update its peer URLs; a name and client URLs already
    /// published are kept when `info` lacks them (a conf change carries none).
    pub fn upsert_member(&mut self, mut info: skiffpb::MemberInfo) {
        if let Some(old) = self.members.get(&info.id) {
            if info.name.is_empty() {
                info.name = old.name.clone();
            }
            if info.client_urls.is_empty() {
                info.client_urls = old.client_urls.clone();
            }
            if info.peer_urls.is_empty() {
                info.peer_urls = old.peer_urls.clone();
            }
        }
        self.members.insert(info.id, info);
    }

    pub fn remove_member(&mut self, id: u64) {
        self.members.remove(&id);
    }

    // ---------------------------------------------------------------- reads

    /// The live version of `key` at `rev`, if any.
    fn get_at(&self, key: &[u8], rev: i64) -> Option<&Arc<KeyValue>> {
        let hist = self.index.get(key)?;
        latest_at(hist, rev).filter(|v| !v.is_tombstone()).map(|v| &v.kv)
    }

    /// Check a read revision against the current and compacted revisions; 0 or less means "now".
    fn check_read_rev(&self, rev: i64, current: i64) -> Result<i64> {
        if rev > current {
            return Err(StoreError::FutureRev);
        }
        if rev <= 0 {
            return Ok(current);
        }
        if rev < self.compact_rev {
            return Err(StoreError::Compacted);
        }
        Ok(rev)
    }

    /// Live key-values in `range` at `rev`, in key order, and how many matched.
    /// Collection stops after `limit` (0 = no limit), but the count covers all.
    fn range_at(&self, range: &KeyRange, rev: i64, limit: usize, count_only: bool) -> (Vec<Arc<KeyValue>>, usize) {
        let mut kvs = Vec::new();
        let mut count = 0;
        if let KeyRange::Single(k) = range {
            if let Some(kv) = self.get_at(k, rev) {
                count = 1;
                if !count_only {
                    kvs.push(kv.clone());
                }
            }
            return (kvs, count);
        }
        let Some(bounds) = range.bounds() else { return (kvs, 0) };
        for (_, hist) in self.index.range::<[u8], _>(bounds) {
            if let Some(v) = latest_at(hist, rev) {
                if v.is_tombstone() {
                    continue;
                }
                count += 1;
                if !count_only && (limit == 0 || kvs.len() < limit) {
                    kvs.push(v.kv.clone());
                }
            }
        }
        (kvs, count)
    }

    /// A Range request, with etcd's semantics for limit, sorting, filters and count.
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse> {
        self.range_in(r, self.rev)
    }

    fn range_in(&self, r: &RangeRequest, current: i64) -> Result<RangeResponse> {
        if r.key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        // An unknown sort order is accepted and sorts nothing (etcd 3.4 does the same).
        let order = range_request::SortOrder::try_from(r.sort_order).ok();
        let target = range_request::SortTarget::try_from(r.sort_target).map_err(|_| StoreError::InvalidSortOption)?;
        let rev = self.check_read_rev(r.revision, current)?;
        let filtered = r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        // Like etcd: fetch everything when the result must be sorted or
        // filtered first, otherwise one more than the limit to learn `more`.
        let fetch = if order != Some(range_request::SortOrder::None) || filtered || r.limit <= 0 {
            0
        } else {
            r.limit as usize + 1
        };
        let range = KeyRange::new(&r.key, &r.range_end);
        let (mut kvs, count) = self.range_at(&range, rev, fetch, r.count_only);
        if filtered {
            kvs.retain(|kv| {
                !(r.max_mod_revision != 0 && kv.mod_revision > r.max_mod_revision
                    || r.min_mod_revision != 0 && kv.mod_revision < r.min_mod_revision
                    || r.max_create_revision != 0 && kv.create_revision > r.max_create_revision
                    || r.min_create_revision != 0 && kv.create_revision < r.min_create_revision)
            });
        }
        let mut order = order;
        if target != range_request::SortTarget::Key && order == Some(range_request::SortOrder::None) {
            order = Some(range_request::SortOrder::Ascend);
        }
        if let Some(order @ (range_request::SortOrder::Ascend | range_request::SortOrder::Descend)) = order {
            use range_request::SortTarget as T;
            // A stable sort over key order, descending by reversing the
            // comparison (not the result), so ties stay in key order. This is
            // what etcd's Go sort does for the small slices clients ask for.
            let descend = order == range_request::SortOrder::Descend;
            kvs.sort_by(|a, b| {
                let o = match target {
                    T::Key => a.key.cmp(&b.key),
                    T::Version => a.version.cmp(&b.version),
                    T::Create => a.create_revision.cmp(&b.create_revision),
                    T::Mod => a.mod_revision.cmp(&b.mod_revision),
                    T::Value => a.value.cmp(&b.value),
                };
                if descend { o.reverse() } else { o }
            });
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        let kvs = kvs
            .into_iter()
            .map(|kv| {
                let mut kv = KeyValue::clone(&kv);
                if r.keys_only {
                    kv.value = Bytes::new();
                }
                kv
            })
            .collect();
        Ok(RangeResponse { header: header(current), kvs, more, count: count as i64 })
    }

    // --------------------------------------------------------------- writes

    fn begin(&self) -> WriteCtx {
        WriteCtx { rev: self.rev + 1, sub: 0 }
    }

    fn commit(&mut self, w: &WriteCtx) {
        if w.changed() {
            self.rev = w.rev;
        }
    }

    fn record(&mut self, w: &mut WriteCtx, kv: KeyValue) -> Arc<KeyValue> {
        let kv = Arc::new(kv);
        let v = Version { kv: kv.clone(), sub: w.sub };
        w.sub += 1;
        self.index.entry(kv.key.clone()).or_default().push(v);
        self.events.push_back(Change { kv: kv.clone() });
        kv
    }

    fn put_kv(&mut self, w: &mut WriteCtx, key: &Bytes, value: Bytes, lease: i64) {
        let prev = self.get_at(key, w.rev).cloned();
        let (create_revision, version, old_lease) = match &prev {
            Some(p) => (p.create_revision, p.version + 1, p.lease),
            None => (w.rev, 1, 0),
        };
        if prev.is_none() {
            self.live_keys += 1;
        }
        if old_lease != 0 && old_lease != lease
            && let Some(l) = self.leases.get_mut(&old_lease) {
                l.keys.remove(key);
            }
        if lease != 0
            && let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(key.clone());
            }
        // Keys are shared with the existing index entry where there is one.
        // New bytes are copied out of the request: a decoded request's `Bytes`
        // may be a slice of a much larger network buffer, which would stay
        // pinned in memory for as long as the version is retained.
        let key = match self.index.get_key_value(key.as_ref()) {
            Some((k, _)) => k.clone(),
            None => Bytes::copy_from_slice(key),
        };
        let value = Bytes::copy_from_slice(&value);
        self.record(w, KeyValue { key, create_revision, mod_revision: w.rev, version, value, lease });
    }

    fn delete_keys(&mut self, w: &mut WriteCtx, range: &KeyRange) -> Vec<Arc<KeyValue>> {
        let read = w.rev;
        let (victims, _) = self.range_at(range, read, 0, false);
        for kv in &victims {
            if kv.lease != 0
                && let Some(l) = self.leases.get_mut(&kv.lease) {
                    l.keys.remove(&kv.key);
                }
            self.live_keys -= 1;
            self.record(w, KeyValue { key: kv.key.clone(), mod_revision: w.rev, ..Default::default() });
        }
        victims
    }

    fn check_put(&self, p: &PutRequest, rev: i64) -> Result<()> {
        if (p.ignore_value || p.ignore_lease) && self.get_at(&p.key, rev).is_none() {
            return Err(StoreError::KeyNotFound);
        }
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(StoreError::LeaseNotFound);
        }
        Ok(())
    }

    fn do_put(&mut self, w: &mut WriteCtx, p: &PutRequest) -> PutResponse {
        // ignore_value/ignore_lease take what the key holds at this point of the
        // txn. If an earlier op of the same txn deleted it (the pre-txn check
        // passed), that is an empty value and no lease; etcd 3.4 crashes here.
        let existing = self.get_at(&p.key, w.rev).cloned();
        let value = if p.ignore_value { existing.as_ref().map(|kv| kv.value.clone()).unwrap_or_default() } else { p.value.clone() };
        let lease = if p.ignore_lease { existing.as_ref().map(|kv| kv.lease).unwrap_or_default() } else { p.lease };
        self.put_kv(w, &p.key, value, lease);
        PutResponse {
            header: header(w.rev),
            prev_kv: if p.prev_kv { existing.map(|kv| KeyValue::clone(&kv)) } else { None },
        }
    }

    fn do_delete(&mut self, w: &mut WriteCtx, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let range = KeyRange::new(&d.key, &d.range_end);
        let victims = self.delete_keys(w, &range);
        let deleted = victims.len() as i64;
        DeleteRangeResponse {
            header: header(if deleted != 0 || w.changed() { w.rev } else { w.rev - 1 }),
            deleted,
            prev_kvs: if d.prev_kv { victims.into_iter().map(|kv| KeyValue::clone(&kv)).collect() } else { vec![] },
        }
    }

    fn apply_put(&mut self, p: &PutRequest) -> Result<PutResponse> {
        // A plain put checks the lease before the key (a put inside a txn checks the key first).
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(StoreError::LeaseNotFound);
        }
        self.check_put(p, self.rev)?;
        let mut w = self.begin();
        let resp = self.do_put(&mut w, p);
        self.commit(&w);
        Ok(resp)
    }

    fn apply_delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let mut w = self.begin();
        let resp = self.do_delete(&mut w, d);
        self.commit(&w);
        resp
    }

    // ------------------------------------------------------------------ txn

    fn compare_holds(&self, c: &Compare) -> bool {
        let range = KeyRange::new(&c.key, &c.range_end);
        let (kvs, _) = self.range_at(&range, self.rev, 0, false);
        let target = compare::CompareTarget::try_from(c.target).ok();
        if kvs.is_empty() {
            // A value can't be compared on a missing key: there is no way to
            // tell a missing value from an empty one, so etcd fails it.
            if target == Some(compare::CompareTarget::Value) {
                return false;
            }
            return compare_kv(c, target, &KeyValue::default());
        }
        kvs.iter().all(|kv| compare_kv(c, target, kv))
    }

    /// Evaluate the compares of a txn and of the nested txns of the chosen
    /// branches, all against the state before the txn (as etcd does).
    fn txn_path(&self, t: &TxnRequest, path: &mut Vec<bool>) {
        let ok = t.compare.iter().all(|c| self.compare_holds(c));
        path.push(ok);
        let ops = if ok { &t.success } else { &t.failure };
        for op in ops {
            if let Some(request_op::Request::RequestTxn(inner)) = &op.request {
                self.txn_path(inner, path);
            }
        }
    }

    /// The ops of the branches the compares chose, nested txns included, in order.
    fn chosen_ops<'a>(t: &'a TxnRequest, path: &[bool], pos: &mut usize, out: &mut Vec<&'a RequestOp>) {
        let ok = path[*pos];
        *pos += 1;
        for op in if ok { &t.success } else { &t.failure } {
            match &op.request {
                Some(request_op::Request::RequestTxn(inner)) => Self::chosen_ops(inner, path, pos, out),
                _ => out.push(op),
            }
        }
    }

    /// Check the ops of the chosen branches before anything is written, so a
    /// failing txn changes nothing. Like etcd: every put first, then every range.
    fn check_txn(&self, t: &TxnRequest, path: &[bool], pos: &mut usize) -> Result<()> {
        let mut ops = Vec::new();
        Self::chosen_ops(t, path, pos, &mut ops);
        for op in &ops {
            if let Some(request_op::Request::RequestPut(p)) = &op.request {
                self.check_put(p, self.rev)?;
            }
        }
        for op in &ops {
            if let Some(request_op::Request::RequestRange(r)) = &op.request {
                // Inside a txn etcd compares a negative revision with the compaction point.
                if r.revision < 0 && r.revision < self.compact_rev {
                    return Err(StoreError::Compacted);
                }
                self.check_read_rev(r.revision, self.rev)?;
            }
        }
        Ok(())
    }

    fn run_txn(&mut self, w: &mut WriteCtx, t: &TxnRequest, path: &[bool], pos: &mut usize) -> TxnResponse {
        let ok = path[*pos];
        *pos += 1;
        let mut responses = Vec::new();
        for op in if ok { &t.success } else { &t.failure } {
            let resp = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    let rr = self.range_in(r, w.read_rev()).unwrap_or_default();
                    Some(response_op::Response::ResponseRange(rr))
                }
                Some(request_op::Request::RequestPut(p)) => Some(response_op::Response::ResponsePut(self.do_put(w, p))),
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    Some(response_op::Response::ResponseDeleteRange(self.do_delete(w, d)))
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    let mut r = self.run_txn(w, inner, path, pos);
                    r.header = Some(ResponseHeader::default());
                    Some(response_op::Response::ResponseTxn(r))
                }
                None => None,
            };
            responses.push(ResponseOp { response: resp });
        }
        TxnResponse { header: None, succeeded: ok, responses }
    }

    fn apply_txn(&mut self, t: &TxnRequest) -> Result<TxnResponse> {
        let mut path = Vec::new();
        self.txn_path(t, &mut path);
        self.check_txn(t, &path, &mut 0)?;
        let mut w = self.begin();
        let mut resp = self.run_txn(&mut w, t, &path, &mut 0);
        self.commit(&w);
        resp.header = header(self.rev);
        Ok(resp)
    }

    // ----------------------------------------------------------- compaction

    fn apply_compact(&mut self, c: &CompactionRequest) -> Result<CompactionResponse> {
        if c.revision <= self.compact_rev {
            return Err(StoreError::Compacted);
        }
        if c.revision > self.rev {
            return Err(StoreError::FutureRev);
        }
        self.compact(c.revision);
        Ok(CompactionResponse { header: header(self.rev) })
    }

    /// Drop every version superseded at or before `at`, and tombstones at or before it.
    fn compact(&mut self, at: i64) {
        self.compact_rev = at;
        self.index.retain(|_, hist| {
            let keep_from = match hist.iter().rposition(|v| v.kv.mod_revision <= at) {
                Some(i) if hist[i].is_tombstone() => i + 1,
                Some(i) => i,
                None => 0,
            };
            hist.drain(..keep_from);
            !hist.is_empty()
        });
        while let Some(front) = self.events.front() {
            let r = front.kv.mod_revision;
            if r < at || (r == at && front.is_delete()) {
                self.events.pop_front();
            } else {
                break;
            }
        }
    }

    // --------------------------------------------------------------- leases

    fn apply_lease_grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse> {
        if id == 0 {
            return Err(StoreError::LeaseNotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(StoreError::LeaseExist);
        }
        let ttl = ttl.max(MIN_LEASE_TTL);
        self.leases.insert(id, LeaseInfo { ttl, keys: BTreeSet::new() });
        Ok(LeaseGrantResponse { header: header(self.rev), id, ttl, error: String::new() })
    }

    /// Revoke a lease: all its keys are deleted in one revision.
    fn apply_lease_revoke(&mut self, id: i64) -> Result<LeaseRevokeResponse> {
        let Some(lease) = self.leases.remove(&id) else {
            return Err(StoreError::LeaseNotFound);
        };
        let mut w = self.begin();
        for key in &lease.keys {
            self.delete_keys(&mut w, &KeyRange::Single(key.clone()));
        }
        self.commit(&w);
        Ok(LeaseRevokeResponse { header: header(self.rev) })
    }

    // ---------------------------------------------------------------- watch

    /// Changes with revision `>= from`, in order, at most `max` of them (and
    /// never splitting one revision), filtered by `range`. Returns the changes
    /// and the next revision to read from. Errors if `from` is compacted.
    pub fn changes_since(&self, from: i64, range: &KeyRange, max: usize) -> Result<(Vec<Change>, i64)> {
        if from < self.compact_rev {
            return Err(StoreError::Compacted);
        }
        let start = self.events.partition_point(|c| c.kv.mod_revision < from);
        let mut out = Vec::new();
        let mut next = from.max(self.rev + 1);
        let mut last_rev = None;
        for c in self.events.range(start..) {
            let r = c.kv.mod_revision;
            if out.len() >= max && last_rev != Some(r) {
                next = r;
                break;
            }
            last_rev = Some(r);
            if range.contains(&c.kv.key) {
                out.push(c.clone());
            }
        }
        Ok((out, next))
    }

    /// The version of `kv.key` just before `kv` (the prev_kv of a watch event).
    pub fn prev_of(&self, kv: &KeyValue) -> Option<KeyValue> {
        self.get_at(&kv.key, kv.mod_revision - 1).map(|kv| KeyValue::clone(kv))
    }

    // ------------------------------------------------------------ snapshots

    /// Everything needed to rebuild this state: metadata, then every key's history.
    pub fn snapshot_meta(&self) -> skiffpb::SnapshotMeta {
        skiffpb::SnapshotMeta {
            applied_index: self.applied,
            revision: self.rev,
            compact_revision: self.compact_rev,
            leases: self.leases.iter().map(|(&id, l)| skiffpb::LeaseGrant { id, ttl: l.ttl }).collect(),
            key_count: self.index.len() as u64,
            members: self.members.values().cloned().collect(),
        }
    }

    /// A cheap copy of the index (values are shared), to write out without holding locks.
    pub fn snapshot_keys(&self) -> Vec<(Bytes, Vec<Version>)> {
        self.index.iter().map(|(k, h)| (k.clone(), h.clone())).collect()
    }

    pub fn history_record(key: &Bytes, hist: &[Version]) -> skiffpb::SnapshotKeyHistory {
        skiffpb::SnapshotKeyHistory {
            key: key.clone(),
            versions: hist.iter().map(|v| KeyValue::clone(&v.kv)).collect(),
            subs: hist.iter().map(|v| v.sub).collect(),
        }
    }

    /// Rebuild a state machine from a snapshot's records.
    pub fn restore(
        meta: &skiffpb::SnapshotMeta,
        keys: impl IntoIterator<Item = skiffpb::SnapshotKeyHistory>,
    ) -> StateMachine {
        let mut sm = StateMachine {
            rev: meta.revision,
            compact_rev: meta.compact_revision,
            applied: meta.applied_index,
            members: meta.members.iter().map(|m| (m.id, m.clone())).collect(),
            ..Default::default()
        };
        for l in &meta.leases {
            sm.leases.insert(l.id, LeaseInfo { ttl: l.ttl, keys: BTreeSet::new() });
        }
        let mut changes: Vec<(i64, u32, Arc<KeyValue>)> = Vec::new();
        for rec in keys {
            let key = rec.key.clone();
            let mut hist = Vec::with_capacity(rec.versions.len());
            for (i, mut kv) in rec.versions.into_iter().enumerate() {
                kv.key = key.clone();
                let sub = rec.subs.get(i).copied().unwrap_or(0);
                let kv = Arc::new(kv);
                if kv.mod_revision >= sm.compact_rev {
                    changes.push((kv.mod_revision, sub, kv.clone()));
                }
                hist.push(Version { kv, sub });
            }
            if let Some(last) = hist.last()
                && !last.is_tombstone() {
                    sm.live_keys += 1;
                    if last.kv.lease != 0
                        && let Some(l) = sm.leases.get_mut(&last.kv.lease) {
                            l.keys.insert(key.clone());
                        }
                }
            sm.index.insert(key, hist);
        }
        changes.sort_by_key(|(r, s, _)| (*r, *s));
        sm.events = changes.into_iter().map(|(_, _, kv)| Change { kv }).collect();
        sm
    }

    /// Every retained version of every key, for consistency checks in tests.
    pub fn history(&self) -> impl Iterator<Item = (&Bytes, &[Version])> {
        self.index.iter().map(|(k, h)| (k, h.as_slice()))
    }
}

/// The newest version in `hist` at or before `rev`.
fn latest_at(hist: &[Version], rev: i64) -> Option<&Version> {
    let n = hist.partition_point(|v| v.kv.mod_revision <= rev);
    if n == 0 { None } else { Some(&hist[n - 1]) }
}

/// Compare one key-value. As in etcd, an unknown target compares as equal
/// and an unknown result kind always holds.
fn compare_kv(c: &Compare, target: Option<compare::CompareTarget>, kv: &KeyValue) -> bool {
    use compare::{CompareTarget as T, TargetUnion as U};
    let Some(target) = target else {
        return compare_result(c, std::cmp::Ordering::Equal);
    };
    let ord = match target {
        T::Value => {
            let v = match &c.target_union {
                Some(U::Value(v)) => v.as_ref(),
                _ => &[],
            };
            kv.value.as_ref().cmp(v)
        }
        T::Create => kv.create_revision.cmp(&match c.target_union {
            Some(U::CreateRevision(r)) => r,
            _ => 0,
        }),
        T::Mod => kv.mod_revision.cmp(&match c.target_union {
            Some(U::ModRevision(r)) => r,
            _ => 0,
        }),
        T::Version => kv.version.cmp(&match c.target_union {
            Some(U::Version(r)) => r,
            _ => 0,
        }),
        T::Lease => kv.lease.cmp(&match c.target_union {
            Some(U::Lease(r)) => r,
            _ => 0,
        }),
    };
    compare_result(c, ord)
}

fn compare_result(c: &Compare, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match compare::CompareResult::try_from(c.result) {
        Ok(compare::CompareResult::Equal) => ord == Equal,
        Ok(compare::CompareResult::NotEqual) => ord != Equal,
        Ok(compare::CompareResult::Greater) => ord == Greater,
        Ok(compare::CompareResult::Less) => ord == Less,
        Err(_) => true,
    }
}

/// Whether a txn only reads (then it needs no log entry).
pub fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) | None => true,
        Some(request_op::Request::RequestTxn(inner)) => txn_is_read_only(inner),
        _ => false,
    })
}

impl StateMachine {
    /// Run a read-only txn directly against the current state (no log entry).
    pub fn read_txn(&self, t: &TxnRequest) -> Result<TxnResponse> {
        let mut path = Vec::new();
        self.txn_path(t, &mut path);
        self.check_txn(t, &path, &mut 0)?;
        let mut resp = self.run_read_txn(t, &path, &mut 0);
        resp.header = header(self.rev);
        Ok(resp)
    }

    fn run_read_txn(&self, t: &TxnRequest, path: &[bool], pos: &mut usize) -> TxnResponse {
        let ok = path[*pos];
        *pos += 1;
        let mut responses = Vec::new();
        for op in if ok { &t.success } else { &t.failure } {
            let resp = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    Some(response_op::Response::ResponseRange(self.range_in(r, self.rev).unwrap_or_default()))
                }
                Some(request_op::Request::RequestTxn(inner)) => {
                    let mut r = self.run_read_txn(inner, path, pos);
                    r.header = Some(ResponseHeader::default());
                    Some(response_op::Response::ResponseTxn(r))
                }
                _ => None,
            };
            responses.push(ResponseOp { response: resp });
        }
        TxnResponse { header: None, succeeded: ok, responses }
    }
}

/// Validation that needs no state (etcd does it before proposing): empty keys,
/// flag conflicts, op counts and overlapping writes inside a txn.
pub fn validate_put(p: &PutRequest) -> Result<()> {
    if p.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(StoreError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(StoreError::LeaseProvided);
    }
    Ok(())
}

pub fn validate_range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    range_request::SortTarget::try_from(r.sort_target).map_err(|_| StoreError::InvalidSortOption)?;
    Ok(())
}

pub fn validate_delete(d: &DeleteRangeRequest) -> Result<()> {
    if d.key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    Ok(())
}

pub fn validate_txn(t: &TxnRequest, max_ops: usize) -> Result<()> {
    validate_txn_ops(t, max_ops)?;
    // Overlaps are checked after the per-op checks, over the whole tree at once.
    check_overlaps(&t.success)?;
    check_overlaps(&t.failure)?;
    Ok(())
}

fn validate_txn_ops(t: &TxnRequest, max_ops: usize) -> Result<()> {
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > max_ops {
        return Err(StoreError::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(StoreError::EmptyKey);
    }
    // Nested txns get what is left of the op budget, as in etcd.
    for op in t.success.iter().chain(t.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => validate_range(r)?,
            Some(request_op::Request::RequestPut(p)) => validate_put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) => validate_delete(d)?,
            Some(request_op::Request::RequestTxn(inner)) => validate_txn_ops(inner, max_ops.saturating_sub(ops))?,
            // An empty op: etcd answers "key not found".
            None => return Err(StoreError::KeyNotFound),
        }
    }
    Ok(())
}

/// Puts and deletes of one branch (including nested txns) must not touch the
/// same key twice: the outcome would depend on op order within one revision.
/// Returns the keys put and ranges deleted by `ops`.
fn check_overlaps(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<KeyRange>)> {
    let mut dels: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match &op.request {
            // Taken literally, as etcd 3.4 does: a "\0" range end makes an empty interval here.
            Some(request_op::Request::RequestDeleteRange(d)) if d.range_end.is_empty() => Some(KeyRange::Single(d.key.clone())),
            Some(request_op::Request::RequestDeleteRange(d)) => Some(KeyRange::Between(d.key.clone(), d.range_end.clone())),
            _ => None,
        })
        .collect();
    let mut puts = BTreeSet::new();
    for op in ops {
        if let Some(request_op::Request::RequestTxn(t)) = &op.request {
            let (puts_then, dels_then) = check_overlaps(&t.success)?;
            let (puts_else, dels_else) = check_overlaps(&t.failure)?;
            for k in &puts_then {
                if puts.contains(k) || dels.iter().any(|d| d.contains(k)) {
                    return Err(StoreError::DuplicateKey);
                }
                puts.insert(k.clone());
            }
            for k in puts_else {
                if (puts.contains(&k) && !puts_then.contains(&k)) || dels.iter().any(|d| d.contains(&k)) {
                    return Err(StoreError::DuplicateKey);
                }
                puts.insert(k);
            }
            dels.extend(dels_then);
            dels.extend(dels_else);
        }
    }
    for op in ops {
        if let Some(request_op::Request::RequestPut(p)) = &op.request {
            if !puts.insert(p.key.clone()) {
                return Err(StoreError::DuplicateKey);
            }
            if dels.iter().any(|d| d.contains(&p.key)) {
                return Err(StoreError::DuplicateKey);
            }
        }
    }
    Ok((puts, dels))
}
