//! Property test: the MVCC state machine against a naive model.
//!
//! The model keeps a full copy of the key space at every revision, so every
//! answer is obviously right. Random sequences of puts, deletes, txns,
//! compactions, lease grants and revokes and historical ranges are applied
//! to both; every response, every error and the change log must agree. At the
//! end the state is snapshotted and restored, and must still agree.

use std::collections::BTreeMap;

use bytes::Bytes;
use etcdpb::skiffpb::{command::Op, Command, LeaseGrant, LeaseRevoke};
use etcdpb::*;
use proptest::prelude::*;
use skiff_store::state::{self, Response};
use skiff_store::{KeyRange, StateMachine, StoreError};

type Kvs = BTreeMap<Bytes, KeyValue>;

#[derive(Default)]
struct Model {
    /// The whole key space after each revision; index 0 is revision 1 (empty).
    revs: Vec<Kvs>,
    compact: i64,
    leases: BTreeMap<i64, i64>,
}

impl Model {
    fn new() -> Model {
        Model { revs: vec![Kvs::new()], compact: -1, leases: BTreeMap::new() }
    }
    fn rev(&self) -> i64 {
        self.revs.len() as i64
    }
    fn cur(&self) -> &Kvs {
        self.revs.last().unwrap()
    }
    fn at(&self, rev: i64) -> Result<&Kvs, StoreError> {
        if rev > self.rev() {
            return Err(StoreError::FutureRev);
        }
        if rev <= 0 {
            return Ok(self.cur());
        }
        if rev < self.compact {
            return Err(StoreError::Compacted);
        }
        Ok(&self.revs[rev as usize - 1])
    }
    fn in_range(kvs: &Kvs, key: &Bytes, end: &Bytes) -> Vec<KeyValue> {
        let r = KeyRange::new(key, end);
        kvs.values().filter(|kv| r.contains(&kv.key)).cloned().collect()
    }
    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let kvs = self.at(r.revision)?;
        let all = Self::in_range(kvs, &r.key, &r.range_end);
        let count = all.len() as i64;
        let mut out: Vec<KeyValue> = if r.count_only { vec![] } else { all };
        let mut more = false;
        if r.limit > 0 && out.len() > r.limit as usize {
            out.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut out {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse { header: hdr(self.rev()), kvs: out, more, count })
    }
    /// Apply writes to a working copy of the current key space.
    fn put(&self, w: &mut Kvs, p: &PutRequest, rev: i64) -> PutResponse {
        let prev = w.get(&p.key).cloned();
        // (A txn may delete the key before an ignore_value put; etcd 3.4 crashes there, Skiff writes an empty value.)
        let value = if p.ignore_value { prev.as_ref().map(|k| k.value.clone()).unwrap_or_default() } else { p.value.clone() };
        let lease = if p.ignore_lease { prev.as_ref().map(|k| k.lease).unwrap_or_default() } else { p.lease };
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map(|k| k.create_revision).unwrap_or(rev),
            mod_revision: rev,
            version: prev.as_ref().map(|k| k.version + 1).unwrap_or(1),
            value,
            lease,
        };
        w.insert(p.key.clone(), kv);
        PutResponse { header: hdr(rev), prev_kv: if p.prev_kv { prev } else { None } }
    }
    fn check_put(&self, p: &PutRequest) -> Result<(), StoreError> {
        if (p.ignore_value || p.ignore_lease) && !self.cur().contains_key(&p.key) {
            return Err(StoreError::KeyNotFound);
        }
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(StoreError::LeaseNotFound);
        }
        Ok(())
    }
    fn delete(w: &mut Kvs, d: &DeleteRangeRequest) -> Vec<KeyValue> {
        let victims = Self::in_range(w, &d.key, &d.range_end);
        for v in &victims {
            w.remove(&v.key);
        }
        victims
    }
    fn commit(&mut self, w: Kvs, changed: bool) {
        if changed {
            self.revs.push(w);
        }
    }
    fn compare(&self, c: &Compare) -> bool {
        use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let kvs = Self::in_range(self.cur(), &c.key, &c.range_end);
        let t = T::try_from(c.target).unwrap();
        if kvs.is_empty() && t == T::Value {
            return false;
        }
        let one = |kv: &KeyValue| {
            let ord = match (&c.target_union, t) {
                (Some(U::Value(v)), T::Value) => kv.value.cmp(v),
                (Some(U::Version(v)), T::Version) => kv.version.cmp(v),
                (Some(U::CreateRevision(v)), T::Create) => kv.create_revision.cmp(v),
                (Some(U::ModRevision(v)), T::Mod) => kv.mod_revision.cmp(v),
                (Some(U::Lease(v)), T::Lease) => kv.lease.cmp(v),
                _ => unreachable!("generator pairs targets with their values"),
            };
            match R::try_from(c.result).unwrap() {
                R::Equal => ord.is_eq(),
                R::NotEqual => ord.is_ne(),
                R::Greater => ord.is_gt(),
                R::Less => ord.is_lt(),
            }
        };
        if kvs.is_empty() { one(&KeyValue::default()) } else { kvs.iter().all(one) }
    }
    fn apply(&mut self, cmd: &Command) -> Result<Response, StoreError> {
        let rev = self.rev() + 1;
        match cmd.op.as_ref().unwrap() {
            Op::Put(p) => {
                if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                    return Err(StoreError::LeaseNotFound);
                }
                self.check_put(p)?;
                let mut w = self.cur().clone();
                let r = self.put(&mut w, p, rev);
                self.commit(w, true);
                Ok(Response::Put(r))
            }
            Op::DeleteRange(d) => {
                let mut w = self.cur().clone();
                let victims = Self::delete(&mut w, d);
                let n = victims.len() as i64;
                self.commit(w, n > 0);
                Ok(Response::DeleteRange(DeleteRangeResponse {
                    header: hdr(self.rev()),
                    deleted: n,
                    prev_kvs: if d.prev_kv { victims } else { vec![] },
                }))
            }
            Op::Txn(t) => {
                // Generated txns are flat: no nested txns.
                let ok = t.compare.iter().all(|c| self.compare(c));
                let ops = if ok { &t.success } else { &t.failure };
                for op in ops {
                    match &op.request {
                        Some(request_op::Request::RequestPut(p)) => self.check_put(p)?,
                        Some(request_op::Request::RequestRange(r)) => {
                            self.at(r.revision)?;
                        }
                        _ => {}
                    }
                }
                let mut w = self.cur().clone();
                let mut changed = false;
                let mut responses = vec![];
                for op in ops {
                    let resp = match &op.request {
                        Some(request_op::Request::RequestPut(p)) => {
                            changed = true;
                            response_op::Response::ResponsePut(self.put(&mut w, p, rev))
                        }
                        Some(request_op::Request::RequestDeleteRange(d)) => {
                            let victims = Self::delete(&mut w, d);
                            changed |= !victims.is_empty();
                            response_op::Response::ResponseDeleteRange(DeleteRangeResponse {
                                header: hdr(if changed { rev } else { rev - 1 }),
                                deleted: victims.len() as i64,
                                prev_kvs: if d.prev_kv { victims } else { vec![] },
                            })
                        }
                        Some(request_op::Request::RequestRange(r)) => {
                            let read_rev = if changed { rev } else { rev - 1 };
                            let kvs = if r.revision <= 0 || r.revision == read_rev && changed {
                                &w
                            } else {
                                self.at(r.revision).unwrap()
                            };
                            let mut rr = Model { revs: vec![kvs.clone()], compact: 0, leases: Default::default() }
                                .range(&RangeRequest { revision: 0, ..r.clone() })
                                .unwrap();
                            rr.header = hdr(read_rev);
                            response_op::Response::ResponseRange(rr)
                        }
                        _ => unreachable!(),
                    };
                    responses.push(ResponseOp { response: Some(resp) });
                }
                self.commit(w, changed);
                Ok(Response::Txn(TxnResponse { header: hdr(self.rev()), succeeded: ok, responses }))
            }
            Op::Compact(c) => {
                if c.revision <= self.compact {
                    return Err(StoreError::Compacted);
                }
                if c.revision > self.rev() {
                    return Err(StoreError::FutureRev);
                }
                self.compact = c.revision;
                Ok(Response::Compact(CompactionResponse { header: hdr(self.rev()) }))
            }
            Op::LeaseGrant(g) => {
                if self.leases.contains_key(&g.id) {
                    return Err(StoreError::LeaseExist);
                }
                let ttl = g.ttl.max(state::MIN_LEASE_TTL);
                self.leases.insert(g.id, ttl);
                Ok(Response::LeaseGrant(LeaseGrantResponse { header: hdr(self.rev()), id: g.id, ttl, error: String::new() }))
            }
            Op::LeaseKeepAlive(k) => match self.leases.get(&k.id) {
                Some(&ttl) => Ok(Response::LeaseGrant(LeaseGrantResponse { header: hdr(self.rev()), id: k.id, ttl, error: String::new() })),
                None => Err(StoreError::LeaseNotFound),
            },
            Op::LeaseRevoke(r) => {
                if self.leases.remove(&r.id).is_none() {
                    return Err(StoreError::LeaseNotFound);
                }
                let mut w = self.cur().clone();
                let before = w.len();
                w.retain(|_, kv| kv.lease != r.id);
                let changed = w.len() != before;
                self.commit(w, changed);
                Ok(Response::LeaseRevoke(LeaseRevokeResponse { header: hdr(self.rev()) }))
            }
            // Membership is not part of the key space: no revision, no keys.
            Op::MemberAttributes(_) => Ok(Response::Compact(CompactionResponse { header: hdr(self.rev()) })),
        }
    }
}

fn hdr(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

// ------------------------------------------------------------- generators

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["a", "a/1", "a/2", "b", "b/1", "c", "d"]).prop_map(|s: &'static str| Bytes::from_static(s.as_bytes()))
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => Just(Bytes::new()),
        1 => Just(Bytes::from_static(&[0])),
        1 => Just(Bytes::from_static(b"a0")),
        1 => Just(Bytes::from_static(b"c")),
        1 => Just(Bytes::from_static(b"a")),
    ]
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y", "zz"]).prop_map(|s: &'static str| Bytes::from_static(s.as_bytes()))
}

fn lease() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 1 => Just(7i64), 1 => Just(8i64)]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), value(), lease(), any::<bool>(), prop::bool::weighted(0.1), prop::bool::weighted(0.1)).prop_map(
        |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
            key,
            value: if ignore_value { Bytes::new() } else { value },
            lease: if ignore_lease { 0 } else { lease },
            prev_kv,
            ignore_value,
            ignore_lease,
        },
    )
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest { key, range_end, prev_kv })
}

fn range() -> impl Strategy<Value = RangeRequest> {
    (key(), range_end(), 0i64..4, -1i64..30, any::<bool>(), any::<bool>()).prop_map(
        |(key, range_end, limit, revision, keys_only, count_only)| RangeRequest {
            key,
            range_end,
            limit,
            revision,
            keys_only,
            count_only,
            ..Default::default()
        },
    )
}

fn compare_gen() -> impl Strategy<Value = Compare> {
    use compare::TargetUnion as U;
    (key(), 0i32..4, 0i32..5, value(), 0i64..12, range_end()).prop_map(|(key, result, target, v, n, range_end)| {
        let target_union = Some(match target {
            0 => U::Version(n % 4),
            1 => U::CreateRevision(n),
            2 => U::ModRevision(n),
            3 => U::Value(v),
            _ => U::Lease(if n % 2 == 0 { 0 } else { 7 }),
        });
        Compare { result, target, key, target_union, range_end }
    })
}

fn op() -> impl Strategy<Value = RequestOp> {
    use request_op::Request as R;
    prop_oneof![
        put().prop_map(|p| RequestOp { request: Some(R::RequestPut(p)) }),
        delete().prop_map(|d| RequestOp { request: Some(R::RequestDeleteRange(d)) }),
        range().prop_map(|r| RequestOp { request: Some(R::RequestRange(RangeRequest { revision: 0, ..r })) }),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Cmd(Command),
    Read(RangeRequest),
}

fn step() -> impl Strategy<Value = Step> {
    let cmd = |op: Op| Step::Cmd(Command { op: Some(op) });
    prop_oneof![
        6 => put().prop_map(move |p| cmd(Op::Put(p))),
        2 => delete().prop_map(move |d| cmd(Op::DeleteRange(d))),
        3 => (prop::collection::vec(compare_gen(), 0..3), prop::collection::vec(op(), 0..4), prop::collection::vec(op(), 0..3))
            .prop_map(move |(compare, success, failure)| cmd(Op::Txn(TxnRequest { compare, success, failure }))),
        1 => (0i64..30).prop_map(move |revision| cmd(Op::Compact(CompactionRequest { revision, physical: false }))),
        1 => (7i64..9, 0i64..5).prop_map(move |(id, ttl)| cmd(Op::LeaseGrant(LeaseGrant { id, ttl }))),
        1 => (7i64..9).prop_map(move |id| cmd(Op::LeaseRevoke(LeaseRevoke { id }))),
        4 => range().prop_map(Step::Read),
    ]
}

/// Keys changed at each revision in `(from, to]`, as the model sees them.
fn model_changes(m: &Model, rev: i64) -> Vec<(Bytes, bool)> {
    let before = &m.revs[rev as usize - 2];
    let after = &m.revs[rev as usize - 1];
    let mut out = vec![];
    for (k, kv) in after {
        if before.get(k) != Some(kv) {
            out.push((k.clone(), false));
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            out.push((k.clone(), true));
        }
    }
    out.sort();
    out
}

fn check_changes(sm: &StateMachine, m: &Model) {
    let all = KeyRange::From(Bytes::from_static(&[0]));
    for rev in (m.compact.max(1) + 1)..=m.rev() {
        let (changes, _) = sm.changes_since(rev, &all, usize::MAX).unwrap();
        // A txn may put and then delete the same key (etcd allows it when the
        // delete's range end is "\0"): compare net effects, as the model
        // only knows the key space before and after each revision.
        let mut net: BTreeMap<Bytes, bool> = BTreeMap::new();
        for c in changes.iter().filter(|c| c.kv.mod_revision == rev) {
            net.insert(c.kv.key.clone(), c.is_delete());
        }
        let before = &m.revs[rev as usize - 2];
        let got: Vec<(Bytes, bool)> = net.into_iter().filter(|(k, del)| !*del || before.contains_key(k)).collect();
        assert_eq!(got, model_changes(m, rev), "changes at revision {rev}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_model(steps in prop::collection::vec(step(), 1..60)) {
        let mut sm = StateMachine::new();
        let mut m = Model::new();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Cmd(cmd) => {
                    if let Some(Op::Txn(t)) = &cmd.op
                        && state::validate_txn(t, 128).is_err() {
                            continue;
                        }
                    if let Some(Op::Put(p)) = &cmd.op
                        && state::validate_put(p).is_err() {
                            continue;
                        }
                    let got = sm.apply(i as u64 + 1, cmd);
                    let want = m.apply(cmd);
                    prop_assert_eq!(&got, &want, "step {}: {:?}", i, cmd);
                }
                Step::Read(r) => {
                    prop_assert_eq!(sm.range(r), m.range(r), "step {}: {:?}", i, r);
                }
            }
            prop_assert_eq!(sm.revision(), m.rev());
            prop_assert_eq!(sm.live_keys(), m.cur().len());
        }
        check_changes(&sm, &m);
        // A snapshot restores to the same state: same reads at every retained revision, same change log.
        let restored = StateMachine::restore(
            &sm.snapshot_meta(),
            sm.snapshot_keys().iter().map(|(k, h)| StateMachine::history_record(k, h)),
        );
        for rev in m.compact.max(1)..=m.rev() {
            let r = RangeRequest { key: Bytes::from_static(&[0]), range_end: Bytes::from_static(&[0]), revision: rev, ..Default::default() };
            prop_assert_eq!(restored.range(&r), m.range(&r));
        }
        check_changes(&restored, &m);
        prop_assert_eq!(restored.leases(), sm.leases());
    }
}
