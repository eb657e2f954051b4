//! The in-process store: what the API server and the gRPC face call.
//!
//! Writes become [`Command`]s and go to one writer thread. It takes every
//! command waiting (group commit), appends them to the WAL with a single
//! fsync, applies them to the state machine in order and only then answers
//! the callers. So an acknowledged write is durable, and a read that follows
//! an acknowledged write sees it.
//!
//! Reads take a read lock on the state machine and never touch the log.
//! Watchers are cursors into the state machine's change log (see
//! [`Watcher`]): a writer only bumps a revision counter, so no watcher,
//! however slow, can hold up a write.
//!
//! Raft slots in at exactly one place: the writer thread's "append to the
//! WAL" becomes "replicate through Raft", and committed entries are applied
//! the same way.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::{Duration, Instant};

use etcdpb::skiffpb::{self, command::Op, Command, Entry};
use etcdpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, Event, KeyValue,
    LeaseGrantResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use parking_lot::{Mutex, RwLock};
use prost::Message;
use tokio::sync::{oneshot, watch};

use crate::error::{Result, StoreError};
use crate::keyrange::KeyRange;
use crate::metrics::Metrics;
use crate::state::{self, Response, StateMachine};
use crate::{cluster, snapshot, wal::Wal};

/// Most commands one group commit takes.
const MAX_BATCH: usize = 4096;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Applied entries between snapshots (etcd's `--snapshot-count`).
    pub snapshot_count: u64,
    /// Largest accepted write request (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Most operations in one txn (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// A watcher this many revisions behind the head is cancelled (0: never).
    pub watch_max_lag: i64,
    /// How often the lessor looks for expired leases.
    pub lease_check_interval: Duration,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            snapshot_count: 100_000,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            watch_max_lag: 1_000_000,
            lease_check_interval: Duration::from_millis(250),
        }
    }
    pub(crate) fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("member").join("wal")
    }
    pub(crate) fn snap_dir(&self) -> PathBuf {
        self.data_dir.join("member").join("snap")
    }
}

struct Proposal {
    cmd: Command,
    reply: oneshot::Sender<Result<Response>>,
}

/// State shared by the handle, the writer thread and watchers.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) state: RwLock<StateMachine>,
    /// The latest applied revision; watchers wait on it.
    pub(crate) rev_tx: watch::Sender<i64>,
    pub(crate) lessor: Mutex<Lessor>,
    pub(crate) metrics: Metrics,
    pub(crate) failed: Mutex<Option<String>>,
    pub(crate) snapshotting: AtomicBool,
}

struct Inner {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<Proposal>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when the store is a member of a Raft cluster: writes and
    /// linearizable reads go through the Raft node instead of the writer.
    node: Option<cluster::NodeHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            node.stop();
        }
        self.tx.lock().take();
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
    }
}

/// A cloneable handle to an open store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Lease expiry is wall-clock time, so it lives outside the state machine:
/// the lessor decides a lease has expired and proposes its revocation, which
/// every replica then applies identically.
#[derive(Default)]
pub(crate) struct Lessor {
    pub(crate) expiry: HashMap<i64, Instant>,
}

impl Lessor {
    /// Every lease gets its full TTL again from now: on restart, and when a
    /// member becomes leader (it cannot know how long the old leader had left).
    pub(crate) fn reset(&mut self, sm: &StateMachine) {
        let now = Instant::now();
        self.expiry = sm.leases().iter().map(|(&id, l)| (id, now + Duration::from_secs(l.ttl as u64))).collect();
    }
}

impl Store {
    /// Open the store in `config.data_dir`: load the newest snapshot, replay
    /// the log after it, and start the writer. Must run inside a Tokio runtime.
    pub fn open(config: Config) -> std::io::Result<Store> {
        let (shared, wal) = Self::recover(config)?;
        let (tx, rx) = mpsc::channel();
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new().name("store-writer".into()).spawn(move || writer_loop(shared, wal, rx))?
        };
        let inner =
            Arc::new(Inner { shared, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)), node: None });
        tokio::spawn(lease_expiry_loop(Arc::downgrade(&inner)));
        Ok(Store { inner })
    }

    /// Open the store as a member of a Raft cluster (see [`cluster`]): the
    /// state machine is recovered from its snapshot, the Raft log from
    /// `member/raft`, and committed entries are applied by the Raft node.
    pub fn open_cluster(config: Config, cluster: cluster::ClusterConfig) -> std::io::Result<Store> {
        let shared = Self::recover_snapshot_only(config)?;
        let node = cluster::start(shared.clone(), cluster)?;
        let inner = Arc::new(Inner { shared, tx: Mutex::new(None), writer: Mutex::new(None), node: Some(node) });
        tokio::spawn(lease_expiry_loop(Arc::downgrade(&inner)));
        Ok(Store { inner })
    }

    fn recover_snapshot_only(config: Config) -> std::io::Result<Arc<Shared>> {
        let sm = snapshot::load_latest(&config.snap_dir())?.unwrap_or_default();
        tracing::info!(dir = %config.data_dir.display(), snapshot_index = sm.applied_index(), revision = sm.revision(),
            "store state recovered from snapshot; the Raft log follows");
        Ok(Self::shared_for(config, sm))
    }

    fn shared_for(config: Config, sm: StateMachine) -> Arc<Shared> {
        let mut lessor = Lessor::default();
        lessor.reset(&sm);
        let metrics = Metrics::default();
        metrics.revision.set(sm.revision());
        metrics.keys.set(sm.live_keys() as i64);
        metrics.leases.set(sm.leases().len() as i64);
        let (rev_tx, _) = watch::channel(sm.revision());
        Arc::new(Shared {
            state: RwLock::new(sm),
            rev_tx,
            lessor: Mutex::new(lessor),
            metrics,
            failed: Mutex::new(None),
            snapshotting: AtomicBool::new(false),
            config,
        })
    }

    fn recover(config: Config) -> std::io::Result<(Arc<Shared>, Wal)> {
        let started = Instant::now();
        let mut sm = snapshot::load_latest(&config.snap_dir())?.unwrap_or_default();
        let snap_index = sm.applied_index();
        let (wal, entries) = Wal::open(&config.wal_dir(), snap_index)?;
        let replayed = entries.len();
        for e in entries {
            let cmd = Command::decode(e.data.as_ref())
                .map_err(|err| crate::record::corrupt(format!("wal entry {}: {err}", e.index)))?;
            let _ = sm.apply(e.index, &cmd);
        }
        tracing::info!(dir = %config.data_dir.display(), snapshot_index = snap_index, replayed,
            revision = sm.revision(), keys = sm.live_keys(), elapsed_ms = started.elapsed().as_millis() as u64,
            "store recovered");
        // A restart forgets how long leases had left; like etcd, give each its full TTL again (shared_for).
        Ok((Self::shared_for(config, sm), wal))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub fn config(&self) -> &Config {
        &self.shared().config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared().metrics
    }

    /// The Raft view of this member, when it is part of a cluster.
    pub fn cluster(&self) -> Option<&Arc<cluster::Status>> {
        self.inner.node.as_ref().map(|n| &n.status)
    }

    /// Wait until this member has applied everything committed before the
    /// call (Raft ReadIndex), so a local read that follows is linearizable.
    /// A single-member store applies before it acknowledges, so it is
    /// always up to date.
    pub async fn linearizable_barrier(&self) -> Result<()> {
        let Some(node) = &self.inner.node else { return Ok(()) };
        let (tx, rx) = oneshot::channel();
        node.send(cluster::Input::Read(tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Change the membership (etcd's Cluster API); answers the members after the change.
    pub async fn member_change(&self, change: cluster::MemberChange) -> Result<Vec<etcdpb::skiffpb::MemberInfo>> {
        let Some(node) = &self.inner.node else { return Err(StoreError::Unhealthy) };
        let (tx, rx) = oneshot::channel();
        node.send(cluster::Input::Member(change, tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Hand the leadership to `target` (etcd's MoveLeader); answers once it leads.
    pub async fn move_leader(&self, target: u64) -> Result<()> {
        let Some(node) = &self.inner.node else { return Err(StoreError::BadLeaderTransferee) };
        let (tx, rx) = oneshot::channel();
        node.send(cluster::Input::TransferLeader(target, tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Append a command to the log and wait until it is durable and applied.
    async fn propose(&self, cmd: Command) -> Result<Response> {
        if let Some(msg) = self.shared().failed.lock().clone() {
            return Err(StoreError::Storage(msg));
        }
        if cmd.encoded_len() > self.config().max_request_bytes {
            return Err(StoreError::RequestTooLarge);
        }
        let (reply, rx) = oneshot::channel();
        if let Some(node) = &self.inner.node {
            node.propose(cmd, reply)?;
            return rx.await.map_err(|_| StoreError::Stopped)?;
        }
        {
            let tx = self.inner.tx.lock();
            let tx = tx.as_ref().ok_or(StoreError::Stopped)?;
            tx.send(Proposal { cmd, reply }).map_err(|_| StoreError::Stopped)?;
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    // ------------------------------------------------------------------ KV

    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse> {
        state::validate_range(r)?;
        self.shared().state.read().range(r)
    }

    pub async fn put(&self, p: PutRequest) -> Result<PutResponse> {
        state::validate_put(&p)?;
        match self.propose(Command { op: Some(Op::Put(p)) }).await? {
            Response::Put(r) => Ok(r),
            other => unreachable!("put answered with {other:?}"),
        }
    }

    pub async fn delete_range(&self, d: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        state::validate_delete(&d)?;
        match self.propose(Command { op: Some(Op::DeleteRange(d)) }).await? {
            Response::DeleteRange(r) => Ok(r),
            other => unreachable!("delete answered with {other:?}"),
        }
    }

    pub async fn txn(&self, t: TxnRequest) -> Result<TxnResponse> {
        state::validate_txn(&t, self.config().max_txn_ops)?;
        if state::txn_is_read_only(&t) {
            self.linearizable_barrier().await?;
            return self.shared().state.read().read_txn(&t);
        }
        match self.propose(Command { op: Some(Op::Txn(t)) }).await? {
            Response::Txn(r) => Ok(r),
            other => unreachable!("txn answered with {other:?}"),
        }
    }

    pub async fn compact(&self, revision: i64) -> Result<CompactionResponse> {
        {
            // Cheap early answers that need no log entry.
            let sm = self.shared().state.read();
            if revision <= sm.compact_revision() {
                return Err(StoreError::Compacted);
            }
            if revision > sm.revision() {
                return Err(StoreError::FutureRev);
            }
        }
        let cmd = Command { op: Some(Op::Compact(CompactionRequest { revision, physical: false })) };
        match self.propose(cmd).await? {
            Response::Compact(r) => Ok(r),
            other => unreachable!("compact answered with {other:?}"),
        }
    }

    pub fn revision(&self) -> i64 {
        self.shared().state.read().revision()
    }

    /// A receiver that changes whenever the head revision does.
    pub fn subscribe_revision(&self) -> watch::Receiver<i64> {
        self.shared().rev_tx.subscribe()
    }

    pub fn compact_revision(&self) -> i64 {
        self.shared().state.read().compact_revision()
    }

    pub fn applied_index(&self) -> u64 {
        self.shared().state.read().applied_index()
    }

    /// Bytes on disk (log and snapshots), for Status.dbSize.
    pub fn disk_size(&self) -> u64 {
        let snap: u64 = std::fs::read_dir(self.config().snap_dir())
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        Wal::disk_size(&self.config().wal_dir()) + snap
    }

    /// Run `f` on the state machine under the read lock (tests and diagnostics).
    pub fn with_state<T>(&self, f: impl FnOnce(&StateMachine) -> T) -> T {
        f(&self.shared().state.read())
    }

    /// Write a snapshot now and truncate the log behind it.
    pub async fn snapshot(&self) -> std::io::Result<()> {
        let shared = self.inner.shared.clone();
        tokio::task::spawn_blocking(move || take_snapshot(&shared)).await.expect("snapshot task")
    }

    // -------------------------------------------------------------- leases

    /// Grant a lease. An `id` of 0 asks the store to choose one.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse> {
        if ttl > state::MAX_LEASE_TTL {
            return Err(StoreError::LeaseTtlTooLarge);
        }
        let id = if id != 0 { id } else { self.new_lease_id() };
        let cmd = Command { op: Some(Op::LeaseGrant(skiffpb::LeaseGrant { id, ttl })) };
        match self.propose(cmd).await? {
            Response::LeaseGrant(r) => Ok(r),
            other => unreachable!("lease grant answered with {other:?}"),
        }
    }

    fn new_lease_id(&self) -> i64 {
        let sm = self.shared().state.read();
        loop {
            let id = rand::random::<i64>() & i64::MAX;
            if id != 0 && sm.lease(id).is_none() {
                return id;
            }
        }
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevokeResponse> {
        if self.shared().state.read().lease(id).is_none() {
            return Err(StoreError::LeaseNotFound);
        }
        let cmd = Command { op: Some(Op::LeaseRevoke(skiffpb::LeaseRevoke { id })) };
        match self.propose(cmd).await? {
            Response::LeaseRevoke(r) => Ok(r),
            other => unreachable!("lease revoke answered with {other:?}"),
        }
    }

    /// Renew a lease; returns its TTL, or `None` if the lease does not exist.
    pub fn lease_keep_alive(&self, id: i64) -> Option<i64> {
        let ttl = self.shared().state.read().lease(id)?.ttl;
        self.shared().lessor.lock().expiry.insert(id, Instant::now() + Duration::from_secs(ttl as u64));
        Some(ttl)
    }

    /// Renew a lease; in a cluster the renewal goes through the log so every
    /// member (and so any future leader) moves the deadline.
    pub async fn lease_renew(&self, id: i64) -> Result<Option<i64>> {
        if self.inner.node.is_none() {
            return Ok(self.lease_keep_alive(id));
        }
        let cmd = Command { op: Some(Op::LeaseKeepAlive(skiffpb::LeaseRevoke { id })) };
        match self.propose(cmd).await {
            Ok(Response::LeaseGrant(r)) => Ok(Some(r.ttl)),
            Ok(other) => unreachable!("keep-alive answered with {other:?}"),
            Err(StoreError::LeaseNotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Remaining and granted TTL of a lease; TTL -1 when it does not exist (as etcd answers).
    pub fn lease_time_to_live(&self, id: i64, with_keys: bool) -> LeaseTimeToLiveResponse {
        let sm = self.shared().state.read();
        let Some(lease) = sm.lease(id) else {
            return LeaseTimeToLiveResponse { id, ttl: -1, ..Default::default() };
        };
        let remaining = match self.shared().lessor.lock().expiry.get(&id) {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                // Round up like etcd, so a fresh lease reports its full TTL.
                (left.as_millis() as i64 + 999) / 1000
            }
            None => lease.ttl,
        };
        LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl: remaining,
            granted_ttl: lease.ttl,
            keys: if with_keys { lease.keys.iter().cloned().collect() } else { vec![] },
        }
    }

    pub fn lease_ids(&self) -> Vec<i64> {
        self.shared().state.read().leases().keys().copied().collect()
    }

    // --------------------------------------------------------------- watch

    /// Start a watcher. `start_revision == 0` means "changes after now".
    pub fn watch(&self, opts: WatchOptions) -> Watcher {
        let mut rev_rx = self.shared().rev_tx.subscribe();
        rev_rx.mark_changed();
        let current = self.revision();
        // 0 means "after now"; a negative start is, as in etcd, a revision below any compaction.
        let next_rev = if opts.start_revision != 0 { opts.start_revision } else { current + 1 };
        self.metrics().watchers.inc();
        Watcher {
            shared: self.inner.shared.clone(),
            range: KeyRange::new(&opts.key, &opts.range_end),
            next_rev,
            opts,
            rev_rx,
        }
    }
}

// ---------------------------------------------------------------- writer

fn writer_loop(shared: Arc<Shared>, mut wal: Wal, rx: mpsc::Receiver<Proposal>) {
    let mut since_snapshot = 0u64;
    let mut batch: Vec<Proposal> = Vec::with_capacity(MAX_BATCH);
    let mut entries: Vec<Entry> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if let Some(msg) = shared.failed.lock().clone() {
            for p in batch.drain(..) {
                let _ = p.reply.send(Err(StoreError::Storage(msg.clone())));
            }
            continue;
        }
        entries.clear();
        let mut index = wal.last_index();
        for p in &batch {
            index += 1;
            entries.push(Entry { index, term: 0, data: p.cmd.encode_to_vec().into() });
        }
        let t = Instant::now();
        if let Err(e) = wal.append(&entries) {
            // After a failed fsync the file's state is unknown: stop taking
            // writes rather than risk acknowledging something lost.
            let msg = format!("wal append failed: {e}");
            tracing::error!("{msg}; the store no longer accepts writes");
            *shared.failed.lock() = Some(msg.clone());
            shared.metrics.proposals_failed.inc_by(batch.len() as u64);
            for p in batch.drain(..) {
                let _ = p.reply.send(Err(StoreError::Storage(msg.clone())));
            }
            continue;
        }
        shared.metrics.wal_fsync_seconds.observe(t.elapsed().as_secs_f64());
        shared.metrics.commit_batch_size.observe(batch.len() as f64);
        let results = {
            let cmds: Vec<(u64, &Command)> = batch.iter().zip(&entries).map(|(p, e)| (e.index, &p.cmd)).collect();
            apply_commands(&shared, &cmds)
        };
        since_snapshot += batch.len() as u64;
        for (p, r) in batch.drain(..).zip(results) {
            let _ = p.reply.send(r);
        }
        if since_snapshot >= shared.config.snapshot_count && !shared.snapshotting.load(Ordering::Acquire) {
            since_snapshot = 0;
            // The snapshot will cover at least everything before the new
            // segment, so the old segments can go once it is written.
            if let Err(e) = wal.rotate() {
                tracing::error!("wal rotate failed: {e}");
                continue;
            }
            shared.snapshotting.store(true, Ordering::Release);
            let shared = shared.clone();
            std::thread::spawn(move || {
                if let Err(e) = take_snapshot(&shared) {
                    tracing::error!("snapshot failed: {e}");
                }
            });
        }
    }
    tracing::debug!("store writer stopped");
}

/// Apply log entries to the state machine in order under one write lock,
/// publish the new revision to watchers and update the lessor. Shared by the
/// single-member writer and the Raft node, so both apply identically.
pub(crate) fn apply_commands(shared: &Shared, cmds: &[(u64, &Command)]) -> Vec<Result<Response>> {
    let t = Instant::now();
    let mut results = Vec::with_capacity(cmds.len());
    let (rev, keys, leases) = {
        let mut sm = shared.state.write();
        for (index, cmd) in cmds {
            results.push(sm.apply(*index, cmd));
        }
        (sm.revision(), sm.live_keys(), sm.leases().len())
    };
    shared.metrics.apply_seconds.observe(t.elapsed().as_secs_f64());
    shared.metrics.revision.set(rev);
    shared.metrics.keys.set(keys as i64);
    shared.metrics.leases.set(leases as i64);
    shared.rev_tx.send_replace(rev);
    let mut lessor = shared.lessor.lock();
    let now = Instant::now();
    for ((_, cmd), r) in cmds.iter().zip(&results) {
        match (&cmd.op, r) {
            (Some(Op::LeaseGrant(g)), Ok(Response::LeaseGrant(resp))) => {
                lessor.expiry.insert(g.id, now + Duration::from_secs(resp.ttl as u64));
            }
            (Some(Op::LeaseKeepAlive(k)), Ok(Response::LeaseGrant(resp))) => {
                lessor.expiry.insert(k.id, now + Duration::from_secs(resp.ttl as u64));
            }
            (Some(Op::LeaseRevoke(rv)), Ok(_)) => {
                lessor.expiry.remove(&rv.id);
            }
            (Some(Op::Compact(c)), Ok(_)) => {
                shared.metrics.compact_revision.set(c.revision);
            }
            _ => {}
        }
    }
    results
}

pub(crate) fn take_snapshot(shared: &Shared) -> std::io::Result<()> {
    shared.snapshotting.store(true, Ordering::Release);
    let result = (|| {
        let t = Instant::now();
        // Copy under the read lock (values are shared, so this is cheap), write without it.
        let (meta, keys) = {
            let sm = shared.state.read();
            (sm.snapshot_meta(), sm.snapshot_keys())
        };
        let path = snapshot::save(&shared.config.snap_dir(), &meta, &keys)?;
        let purged = Wal::purge(&shared.config.wal_dir(), meta.applied_index)?;
        shared.metrics.snapshots.inc();
        tracing::info!(path = %path.display(), index = meta.applied_index, keys = keys.len(), purged_segments = purged,
            elapsed_ms = t.elapsed().as_millis() as u64, "snapshot written");
        Ok(())
    })();
    shared.snapshotting.store(false, Ordering::Release);
    result
}

async fn lease_expiry_loop(inner: Weak<Inner>) {
    let interval = match inner.upgrade() {
        Some(i) => i.shared.config.lease_check_interval,
        None => return,
    };
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        let store = Store { inner };
        // In a cluster only the leader expires leases (followers renew through it).
        if store.cluster().is_some_and(|c| !c.is_leader()) {
            continue;
        }
        let now = Instant::now();
        let expired: Vec<i64> = {
            let mut lessor = store.shared().lessor.lock();
            let ids: Vec<i64> = lessor.expiry.iter().filter(|(_, t)| **t <= now).map(|(id, _)| *id).collect();
            for id in &ids {
                // Don't propose the same revocation every tick while one is in flight.
                lessor.expiry.insert(*id, now + Duration::from_secs(3));
            }
            ids
        };
        for id in expired {
            tracing::debug!(lease = id, "lease expired; revoking");
            let cmd = Command { op: Some(Op::LeaseRevoke(skiffpb::LeaseRevoke { id })) };
            match store.propose(cmd).await {
                Ok(_) | Err(StoreError::LeaseNotFound) => {}
                Err(e) => tracing::warn!(lease = id, "revoking expired lease failed: {e}"),
            }
        }
    }
}

// ----------------------------------------------------------------- watch

#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub key: bytes::Bytes,
    pub range_end: bytes::Bytes,
    pub start_revision: i64,
    pub prev_kv: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

/// Why a watcher stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchEnd {
    /// The revision it needed next has been compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    /// It fell further behind the head than the store allows.
    #[error("watcher is {lag} revisions behind the head of the log, more than the allowed {max}; restart it from a recent revision")]
    TooSlow { lag: i64, max: i64 },
    #[error("etcdserver: server stopped")]
    Stopped,
}

/// A batch of events, and the revision through which the watcher has now seen everything.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    pub events: Vec<Event>,
    pub revision: i64,
    /// More changes are already committed past this batch.
    pub more: bool,
}

/// A cursor into the store's change log. Each call to [`Watcher::next`]
/// returns the next changes in revision order, exactly once, with no gaps,
/// whether they were committed long ago (catch-up) or just now.
pub struct Watcher {
    shared: Arc<Shared>,
    range: KeyRange,
    next_rev: i64,
    opts: WatchOptions,
    rev_rx: watch::Receiver<i64>,
}

/// Most events per batch (a revision is never split, so a batch may exceed it).
const WATCH_BATCH: usize = 1000;

impl Watcher {
    /// The next revision this watcher will report.
    pub fn next_revision(&self) -> i64 {
        self.next_rev
    }

    /// If no matching event is pending, the head revision (what a progress
    /// notification reports), and the cursor moves past everything up to it.
    pub fn synced_revision(&mut self) -> Option<i64> {
        let shared = self.shared.clone();
        let sm = shared.state.read();
        self.synced_revision_in(&sm)
    }

    /// [`Watcher::synced_revision`] against a state the caller has locked.
    pub fn synced_revision_in(&mut self, sm: &StateMachine) -> Option<i64> {
        let head = sm.revision();
        if self.next_rev > head {
            return Some(head);
        }
        let (pending, _) = sm.changes_since(self.next_rev, &self.range, usize::MAX).ok()?;
        if pending.iter().any(|c| self.wants(c.is_delete())) {
            return None;
        }
        // Nothing this watcher would report lies between its cursor and the head.
        self.next_rev = head + 1;
        Some(head)
    }

    fn wants(&self, is_delete: bool) -> bool {
        if is_delete { !self.opts.no_delete } else { !self.opts.no_put }
    }

    /// The next batch of matching events already in `sm`, if any, without
    /// waiting. Lets one task drive many watchers under one read lock.
    pub fn next_in(&mut self, sm: &StateMachine) -> Result<Option<WatchBatch>, WatchEnd> {
        if self.next_rev < sm.compact_revision() || self.next_rev < 0 {
            // (-1 when nothing was ever compacted, as etcd reports it.)
            return Err(WatchEnd::Compacted { compact_revision: sm.compact_revision() });
        }
        let max = self.shared.config.watch_max_lag;
        let lag = sm.revision() - self.next_rev;
        if max > 0 && lag > max {
            return Err(WatchEnd::TooSlow { lag, max });
        }
        let (changes, next) = sm
            .changes_since(self.next_rev, &self.range, WATCH_BATCH)
            .map_err(|_| WatchEnd::Compacted { compact_revision: sm.compact_revision() })?;
        self.next_rev = next;
        let events: Vec<Event> = changes
            .into_iter()
            .filter(|c| self.wants(c.is_delete()))
            .map(|c| Event {
                r#type: if c.is_delete() { 1 } else { 0 },
                // Like etcd, a put that creates the key has no prev_kv, even when the
                // same revision deleted an older incarnation of it first.
                prev_kv: if self.opts.prev_kv && (c.is_delete() || c.kv.create_revision != c.kv.mod_revision) {
                    sm.prev_of(&c.kv)
                } else {
                    None
                },
                kv: Some(KeyValue::clone(&c.kv)),
            })
            .collect();
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(WatchBatch { events, revision: next - 1, more: next <= sm.revision() }))
    }

    /// Wait for and return the next batch of matching events.
    pub async fn next(&mut self) -> Result<WatchBatch, WatchEnd> {
        loop {
            self.rev_rx.borrow_and_update();
            let batch = {
                let shared = self.shared.clone();
                let sm = shared.state.read();
                self.next_in(&sm)?
            };
            if let Some(b) = batch {
                return Ok(b);
            }
            if self.rev_rx.changed().await.is_err() {
                return Err(WatchEnd::Stopped);
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.metrics.watchers.dec();
    }
}
