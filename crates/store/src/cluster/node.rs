//! The Raft driver: one thread that owns the `RawNode` and runs the `Ready`
//! loop (persist → send → apply → advance), as etcd's `raftNode` does.
//!
//! Batching falls out of the loop: every input waiting is taken before the
//! next `Ready`, so one fsync covers all proposals that arrived meanwhile,
//! exactly like the single-member writer's group commit.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use etcdpb::skiffpb::{command::Op, Command, MemberInfo, Proposal};
use parking_lot::Mutex;
use prost::Message as _;
use skiff_raft::{
    ConfChange, ConfChangeKind, Config as RaftConfig, ConfState, EntryKind, MemStorage, RawNode, Snapshot,
    SnapshotMetadata, StateRole, Storage,
};
use tokio::sync::oneshot;

use super::raftlog::RaftLog;
use super::transport::Transport;
use super::{cluster_id, member_id, ClusterConfig, Input, MemberChange, MemberReply, NodeHandle, Status};
use crate::error::{Result, StoreError};
use crate::snapshot;
use crate::state::Response;
use crate::store::{apply_commands, Shared};

/// A proposal not applied within this long is answered "request timed out"
/// (its outcome is unknown: it may still commit).
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// A ReadIndex round not answered within this long fails (no leader, or a
/// leader that lost its quorum); the client retries.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Entries kept in the Raft log behind a snapshot, so a follower that is only
/// a little behind catches up from the log instead of a whole snapshot.
const KEEP_BEHIND_SNAPSHOT: u64 = 1000;

struct ReadRound {
    ctx: Vec<u8>,
    started: Instant,
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

struct Node {
    id: u64,
    raw: RawNode<MemStorage>,
    storage: MemStorage,
    log: RaftLog,
    shared: Arc<Shared>,
    transport: Arc<Transport>,
    status: Arc<Status>,
    rx: std_mpsc::Receiver<Input>,
    self_tx: std_mpsc::Sender<Input>,
    tick: Duration,
    seq: u64,
    pending: HashMap<u64, (Instant, oneshot::Sender<Result<Response>>)>,
    member_waiters: Vec<(u64, Instant, MemberReply)>,
    read_queue: Vec<oneshot::Sender<Result<()>>>,
    read_round: Option<ReadRound>,
    reads_ready: Vec<(u64, Vec<oneshot::Sender<Result<()>>>)>,
    read_seq: u64,
    since_snapshot: u64,
    snapshotting: bool,
    /// This member's name and client URLs, published through the log.
    attributes: MemberInfo,
    last_publish: Option<Instant>,
    /// MoveLeader calls waiting for their target to lead, and how long they may wait.
    transfers: Vec<(u64, Instant, oneshot::Sender<Result<()>>)>,
    transfer_timeout: Duration,
    role: StateRole,
}

/// Open the Raft log, build the node and start its thread (and the peer
/// listener on the current Tokio runtime).
pub(crate) fn start(shared: Arc<Shared>, cfg: ClusterConfig) -> io::Result<NodeHandle> {
    let dir = shared.config.data_dir.join("member").join("raft");
    let (mut log, loaded) = RaftLog::open(&dir)?;
    let storage = loaded.storage;
    let id = cfg.self_id();
    let founders: Vec<MemberInfo> = cfg
        .initial
        .iter()
        .map(|(name, urls)| MemberInfo {
            id: member_id(urls),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: if *name == cfg.name { cfg.client_urls.clone() } else { vec![] },
            is_learner: false,
        })
        .collect();
    if !loaded.existed {
        // A founding member records the initial membership as the log's base;
        // one that joins an existing cluster waits for the leader's log.
        let voters: Vec<u64> = if cfg.new_cluster { founders.iter().map(|m| m.id).collect() } else { vec![] };
        let meta = SnapshotMetadata { conf_state: ConfState::with_voters(voters), index: 0, term: 0 };
        log.snapshot_mark(&meta);
        log.flush(true)?;
        storage.wl().set_conf_state(meta.conf_state);
    }
    // The state machine may be ahead of the log's base (a snapshot written
    // just before a crash): Raft replays from the base, the state machine
    // skips what it already holds.
    let base = storage.rl().snapshot_ref().metadata.index;
    let sm_index = shared.state.read().applied_index();
    if sm_index > base && sm_index <= storage.last_index().unwrap_or(0) {
        if let Ok(data) = std::fs::read(snapshot::path_for(&shared.config.snap_dir(), sm_index)) {
            let cs = storage.rl().snapshot_ref().metadata.conf_state.clone();
            let _ = storage.wl().create_snapshot(sm_index, cs, data);
        }
    } else if base > 0 {
        // Give the log's own snapshot its data, for followers that need it.
        if let Ok(data) = std::fs::read(snapshot::path_for(&shared.config.snap_dir(), base)) {
            storage.wl().set_snapshot_data(data);
        }
    }
    // The member table lives in the state machine (and so in snapshots). On
    // a first start it is seeded from --initial-cluster, which lists every
    // member at that time (also for a member that joins with `existing`).
    let members: Vec<MemberInfo> = {
        let mut sm = shared.state.write();
        if sm.members().is_empty() {
            for f in &founders {
                sm.upsert_member(MemberInfo { client_urls: vec![], ..f.clone() });
            }
        }
        let mut list: Vec<MemberInfo> = sm.members().values().cloned().collect();
        // This member knows its own client URLs before it has published them.
        if let Some(me) = list.iter_mut().find(|m| m.id == id) {
            me.client_urls = cfg.client_urls.clone();
        }
        list
    };
    let mut rc = RaftConfig::new(id);
    rc.election_tick = cfg.election_ticks.max(2);
    rc.heartbeat_tick = 1;
    rc.applied = base;
    rc.seed = rand::random();
    let raw = RawNode::new(&rc, storage.clone()).map_err(|e| io::Error::other(format!("raft: {e}")))?;

    let (tx, rx) = std_mpsc::channel();
    let rt = tokio::runtime::Handle::current();
    let transport = Transport::new(rt.clone(), tx.clone());
    for m in &members {
        if let (true, Some(url)) = (m.id != id, m.peer_urls.first()) {
            transport.add_peer(m.id, &m.name, url);
        }
    }
    for addr in &cfg.listen_peer {
        // SO_REUSEADDR: a member restarted right after a crash must get its
        // port back even while old connections linger in TIME_WAIT.
        let l = {
            let _g = rt.enter();
            let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            sock.set_reuseaddr(true)?;
            sock.bind(*addr)?;
            sock.listen(1024)?
        };
        tracing::info!(%addr, "listening for peers");
        rt.spawn(transport.clone().serve(l));
    }
    let hs = raw.raft().hard_state();
    let status = Arc::new(Status {
        id,
        cluster_id: cluster_id(&founders.iter().map(|m| m.id).collect::<Vec<_>>()),
        name: cfg.name.clone(),
        term: hs.term.into(),
        leader: 0.into(),
        last_index: storage.last_index().unwrap_or(0).into(),
        commit: hs.commit.into(),
        learner: false.into(),
        members: Mutex::new(members),
    });
    tracing::info!(member = format!("{id:x}"), term = hs.term, commit = hs.commit, base,
        last_index = storage.last_index().unwrap_or(0), applied = sm_index, "raft node starting");
    let node = Node {
        id,
        raw,
        storage,
        log,
        shared,
        transport,
        status: status.clone(),
        rx,
        self_tx: tx.clone(),
        tick: Duration::from_millis(cfg.tick_ms.max(1)),
        seq: 0,
        pending: HashMap::new(),
        member_waiters: Vec::new(),
        read_queue: Vec::new(),
        read_round: None,
        reads_ready: Vec::new(),
        read_seq: 0,
        since_snapshot: 0,
        snapshotting: false,
        attributes: MemberInfo { id, name: cfg.name.clone(), peer_urls: vec![], client_urls: cfg.client_urls.clone(), is_learner: false },
        last_publish: None,
        transfers: Vec::new(),
        transfer_timeout: Duration::from_millis(cfg.tick_ms.max(1) * cfg.election_ticks.max(2) * 2),
        role: StateRole::Follower,
    };
    let thread = std::thread::Builder::new().name("raft-node".into()).spawn(move || node.run())?;
    Ok(NodeHandle { tx: Mutex::new(tx), status, thread: Mutex::new(Some(thread)) })
}

impl Node {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Input::Stop) => break,
                Ok(input) => {
                    self.handle(input);
                    let mut stop = false;
                    for _ in 0..8192 {
                        match self.rx.try_recv() {
                            Ok(Input::Stop) => {
                                stop = true;
                                break;
                            }
                            Ok(i) => self.handle(i),
                            Err(_) => break,
                        }
                    }
                    if stop {
                        break;
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = (next_tick + self.tick).max(now);
                self.expire(now);
                self.maybe_publish(now);
            }
            self.start_read();
            while self.raw.has_ready() {
                if let Err(e) = self.handle_ready() {
                    // After a failed fsync the log's state is unknown: stop
                    // rather than risk acknowledging something lost.
                    let msg = format!("raft log write failed: {e}");
                    tracing::error!("{msg}; this member stops");
                    *self.shared.failed.lock() = Some(msg);
                    self.fail_all(StoreError::Stopped);
                    return;
                }
            }
            self.serve_reads();
        }
        self.fail_all(StoreError::Stopped);
        tracing::debug!("raft node stopped");
    }

    fn fail_all(&mut self, e: StoreError) {
        for (_, (_, r)) in self.pending.drain() {
            let _ = r.send(Err(e.clone()));
        }
        for r in self.read_queue.drain(..) {
            let _ = r.send(Err(e.clone()));
        }
        if let Some(round) = self.read_round.take() {
            for r in round.waiters {
                let _ = r.send(Err(e.clone()));
            }
        }
        for (_, ws) in self.reads_ready.drain(..) {
            for r in ws {
                let _ = r.send(Err(e.clone()));
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Propose(cmd, reply) => {
                self.seq += 1;
                let data = Proposal { origin: self.id, seq: self.seq, cmd: Some(cmd) }.encode_to_vec();
                match self.raw.propose(data) {
                    Ok(()) => {
                        self.pending.insert(self.seq, (Instant::now(), reply));
                    }
                    Err(_) => {
                        let _ = reply.send(Err(StoreError::NoLeader));
                    }
                }
            }
            Input::Read(reply) => self.read_queue.push(reply),
            Input::Peer(m) => {
                let _ = self.raw.step(m);
            }
            Input::Unreachable(id) => self.raw.report_unreachable(id),
            Input::SnapshotWritten(index) => {
                self.snapshotting = false;
                if let Err(e) = self.compact(index) {
                    tracing::error!(index, "raft log compaction failed: {e}");
                }
            }
            Input::Member(change, reply) => self.member_change(change, reply),
            Input::TransferLeader(target, reply) => {
                if self.role != StateRole::Leader {
                    let _ = reply.send(Err(StoreError::NotLeader));
                } else if !self.raw.raft().tracker.voters.contains(&target) {
                    let _ = reply.send(Err(StoreError::BadLeaderTransferee));
                } else if target == self.id {
                    let _ = reply.send(Ok(()));
                } else {
                    tracing::info!(to = format!("{target:x}"), "transferring leadership");
                    let _ = self.raw.transfer_leader(target);
                    self.transfers.push((target, Instant::now(), reply));
                }
            }
            Input::Stop => {}
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> =
            self.pending.iter().filter(|(_, (t, _))| now - *t > PROPOSAL_TIMEOUT).map(|(s, _)| *s).collect();
        for s in expired {
            if let Some((_, r)) = self.pending.remove(&s) {
                let _ = r.send(Err(StoreError::Timeout));
            }
        }
        if self.read_round.as_ref().is_some_and(|r| now - r.started > READ_TIMEOUT) {
            for r in self.read_round.take().unwrap().waiters {
                let _ = r.send(Err(StoreError::Timeout));
            }
        }
        self.member_waiters.retain(|(_, t, _)| now - *t < PROPOSAL_TIMEOUT * 2);
        let timeout = self.transfer_timeout;
        for (_, _, reply) in self.transfers.extract_if(.., |(_, t, _)| now - *t > timeout) {
            let _ = reply.send(Err(StoreError::LeaderTransferTimeout));
        }
    }

    /// One ReadIndex round at a time serves every read queued before it.
    fn start_read(&mut self) {
        if self.read_round.is_some() || self.read_queue.is_empty() {
            return;
        }
        self.read_seq += 1;
        let mut ctx = self.id.to_be_bytes().to_vec();
        ctx.extend_from_slice(&self.read_seq.to_be_bytes());
        let waiters = std::mem::take(&mut self.read_queue);
        match self.raw.read_index(ctx.clone()) {
            Ok(()) => self.read_round = Some(ReadRound { ctx, started: Instant::now(), waiters }),
            Err(_) => {
                for w in waiters {
                    let _ = w.send(Err(StoreError::NoLeader));
                }
            }
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.shared.state.read().applied_index();
        self.reads_ready.retain_mut(|(index, ws)| {
            if *index > applied {
                return true;
            }
            for w in ws.drain(..) {
                let _ = w.send(Ok(()));
            }
            false
        });
    }

    fn handle_ready(&mut self) -> io::Result<()> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.soft_state {
            self.status.leader.store(ss.leader_id, Ordering::Relaxed);
            for (_, _, reply) in self.transfers.extract_if(.., |(to, _, _)| *to == ss.leader_id) {
                let _ = reply.send(Ok(()));
            }
            if ss.role != self.role {
                tracing::info!(role = ?ss.role, leader = format!("{:x}", ss.leader_id), "raft role changed");
                if ss.role == StateRole::Leader {
                    // Leases get a full TTL from the new leader, as in etcd.
                    let sm = self.shared.state.read();
                    self.shared.lessor.lock().reset(&sm);
                }
                if self.role == StateRole::Leader {
                    // Proposals this member forwarded to itself may never commit now.
                    for (_, (_, r)) in self.pending.drain() {
                        let _ = r.send(Err(StoreError::LeaderChanged));
                    }
                }
                self.role = ss.role;
            }
        }
        if let Some(snap) = &rd.snapshot {
            self.install_snapshot(snap)?;
        }
        if !rd.entries.is_empty() {
            self.storage.wl().append(&rd.entries).map_err(|e| io::Error::other(e.to_string()))?;
            self.log.append(&rd.entries);
        }
        if let Some(hs) = rd.hard_state {
            self.storage.wl().set_hard_state(hs);
            self.log.hard_state(&hs);
            self.status.term.store(hs.term, Ordering::Relaxed);
            self.status.commit.store(hs.commit, Ordering::Relaxed);
        }
        self.log.flush(rd.must_sync)?;
        self.status.last_index.store(self.storage.last_index().unwrap_or(0), Ordering::Relaxed);
        self.transport.send(std::mem::take(&mut rd.messages));
        self.apply(&rd.committed_entries);
        for rs in std::mem::take(&mut rd.read_states) {
            if self.read_round.as_ref().is_some_and(|r| r.ctx == rs.request_ctx) {
                let round = self.read_round.take().unwrap();
                self.reads_ready.push((rs.index, round.waiters));
            }
        }
        self.raw.advance(rd);
        self.maybe_snapshot();
        Ok(())
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> io::Result<()> {
        let index = snap.metadata.index;
        let sm = snapshot::install(&self.shared.config.snap_dir(), index, &snap.data)?;
        let rev = sm.revision();
        {
            let mut state = self.shared.state.write();
            self.shared.lessor.lock().reset(&sm);
            *state = sm;
        }
        self.shared.rev_tx.send_replace(rev);
        self.log.snapshot_mark(&snap.metadata);
        self.storage.wl().apply_snapshot(snap.clone()).map_err(|e| io::Error::other(e.to_string()))?;
        self.refresh_members(&snap.metadata.conf_state);
        self.shared.metrics.snapshots_received.inc();
        tracing::info!(index, revision = rev, "installed snapshot from the leader");
        Ok(())
    }

    fn apply(&mut self, entries: &[skiff_raft::Entry]) {
        let applied = self.shared.state.read().applied_index();
        let mut batch: Vec<(u64, Command, Option<u64>)> = Vec::new();
        for e in entries {
            match e.kind {
                EntryKind::ConfChange => {
                    self.flush_apply(&mut batch);
                    self.apply_conf_change(e.index, &e.data, e.index > applied);
                    if e.index > applied {
                        apply_commands(&self.shared, &[(e.index, &Command::default())]);
                    }
                }
                EntryKind::Normal => {
                    if e.index <= applied {
                        continue; // already in the state machine's snapshot
                    }
                    if e.data.is_empty() {
                        batch.push((e.index, Command::default(), None));
                        continue;
                    }
                    match Proposal::decode(e.data.as_slice()) {
                        Ok(p) => {
                            let mine = (p.origin == self.id).then_some(p.seq);
                            batch.push((e.index, p.cmd.unwrap_or_default(), mine));
                        }
                        Err(err) => {
                            tracing::error!(index = e.index, "undecodable entry: {err}");
                            batch.push((e.index, Command::default(), None));
                        }
                    }
                }
            }
        }
        self.flush_apply(&mut batch);
    }

    fn flush_apply(&mut self, batch: &mut Vec<(u64, Command, Option<u64>)>) {
        if batch.is_empty() {
            return;
        }
        let results = {
            let cmds: Vec<(u64, &Command)> = batch.iter().map(|(i, c, _)| (*i, c)).collect();
            apply_commands(&self.shared, &cmds)
        };
        if batch.iter().any(|(_, c, _)| matches!(c.op, Some(Op::MemberAttributes(_)))) {
            let cs = self.raw.raft().tracker.conf_state();
            self.refresh_members(&cs);
        }
        self.since_snapshot += batch.len() as u64;
        for ((_, _, seq), r) in batch.drain(..).zip(results) {
            if let Some((_, reply)) = seq.and_then(|s| self.pending.remove(&s)) {
                let _ = reply.send(r);
            }
        }
    }

    // ------------------------------------------------------------ membership

    fn member_change(&mut self, change: MemberChange, reply: MemberReply) {
        let members = self.status.members();
        let cc = match change {
            MemberChange::Add { peer_urls, learner } => {
                if members.iter().any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
                    let _ = reply.send(Err(StoreError::PeerUrlExists));
                    return;
                }
                // The new member's name is not known yet (etcd too leaves it empty until it starts).
                let id = member_id(&peer_urls);
                let info = MemberInfo { id, name: String::new(), peer_urls, client_urls: vec![], is_learner: learner };
                let kind = if learner { ConfChangeKind::AddLearner } else { ConfChangeKind::AddVoter };
                ConfChange { kind, node_id: id, context: info.encode_to_vec() }
            }
            MemberChange::Remove(id) | MemberChange::Promote(id) if !members.iter().any(|m| m.id == id) => {
                let _ = reply.send(Err(StoreError::MemberNotFound));
                return;
            }
            MemberChange::Remove(id) => ConfChange { kind: ConfChangeKind::Remove, node_id: id, context: vec![] },
            MemberChange::Promote(id) => {
                let mut info = members.into_iter().find(|m| m.id == id).expect("checked above");
                if !info.is_learner {
                    let _ = reply.send(Err(StoreError::MemberNotLearner));
                    return;
                }
                // As etcd: a learner votes only once it holds at least 90% of
                // the leader's log, so promoting it cannot stall commits.
                // (Checked where this member leads; a follower passes the
                // request on through Raft unchecked.)
                if self.role == StateRole::Leader {
                    let leader_match = self.storage.last_index().unwrap_or(0);
                    let learner_match = self.raw.raft().tracker.progress.get(&id).map_or(0, |p| p.matched);
                    if (learner_match as f64) < leader_match as f64 * 0.9 {
                        let _ = reply.send(Err(StoreError::LearnerNotReady));
                        return;
                    }
                }
                info.is_learner = false;
                ConfChange { kind: ConfChangeKind::AddVoter, node_id: id, context: info.encode_to_vec() }
            }
        };
        let node_id = cc.node_id;
        match self.raw.propose_conf_change(&cc) {
            Ok(()) => self.member_waiters.push((node_id, Instant::now(), reply)),
            Err(_) => {
                let _ = reply.send(Err(StoreError::NoLeader));
            }
        }
    }

    /// `fresh`: the entry is newer than the state machine (not a replay of
    /// something a snapshot already holds), so the member table changes.
    fn apply_conf_change(&mut self, index: u64, data: &[u8], fresh: bool) {
        let Some(cc) = ConfChange::decode(data) else {
            tracing::error!(index, "undecodable conf change");
            return;
        };
        let cs = self.raw.apply_conf_change(&cc);
        if fresh {
            let mut sm = self.shared.state.write();
            match cc.kind {
                ConfChangeKind::Remove => sm.remove_member(cc.node_id),
                ConfChangeKind::AddVoter | ConfChangeKind::AddLearner => {
                    let info = MemberInfo::decode(cc.context.as_slice()).unwrap_or_default();
                    sm.upsert_member(MemberInfo { id: cc.node_id, ..info });
                }
            }
        }
        if cc.kind == ConfChangeKind::Remove {
            self.transport.remove_peer(cc.node_id);
        }
        self.refresh_members(&cs);
        tracing::info!(index, kind = ?cc.kind, member = format!("{:x}", cc.node_id), "membership changed");
        let members = self.status.members();
        let mut i = 0;
        while i < self.member_waiters.len() {
            if self.member_waiters[i].0 == cc.node_id {
                let (_, _, reply) = self.member_waiters.remove(i);
                let _ = reply.send(Ok(members.clone()));
            } else {
                i += 1;
            }
        }
    }

    /// Rebuild what `member list` shows from the state machine's member
    /// table and Raft's conf state (who is a learner), and connect to any
    /// member the transport does not know yet.
    fn refresh_members(&mut self, cs: &ConfState) {
        let mut list: Vec<MemberInfo> = self.shared.state.read().members().values().cloned().collect();
        for m in list.iter_mut() {
            m.is_learner = cs.learners.contains(&m.id);
            if m.id == self.id && m.client_urls.is_empty() {
                m.client_urls = self.attributes.client_urls.clone();
            }
        }
        if !cs.voters.is_empty() || !cs.learners.is_empty() {
            list.retain(|m| cs.contains(m.id) || m.id == self.id);
        }
        for m in &list {
            if let (true, false, Some(url)) = (m.id != self.id, self.transport.has_peer(m.id), m.peer_urls.first()) {
                self.transport.add_peer(m.id, &m.name, url);
            }
        }
        *self.status.members.lock() = list;
        self.status.learner.store(cs.learners.contains(&self.id), Ordering::Relaxed);
    }

    /// Publish this member's name and client URLs through the log once a
    /// leader exists, until the state machine shows them (etcd's
    /// `publish`); retried every few seconds while it does not.
    fn maybe_publish(&mut self, now: Instant) {
        if self.status.leader() == 0 || self.last_publish.is_some_and(|t| now - t < Duration::from_secs(3)) {
            return;
        }
        let published = self.shared.state.read().members().get(&self.id).is_some_and(|m| {
            m.name == self.attributes.name && m.client_urls == self.attributes.client_urls
        });
        if published {
            return;
        }
        self.last_publish = Some(now);
        self.seq += 1;
        let cmd = Command { op: Some(Op::MemberAttributes(self.attributes.clone())) };
        let data = Proposal { origin: self.id, seq: self.seq, cmd: Some(cmd) }.encode_to_vec();
        if self.raw.propose(data).is_ok() {
            tracing::debug!(name = %self.attributes.name, "publishing member attributes");
        }
    }

    // ------------------------------------------------------------- snapshots

    fn maybe_snapshot(&mut self) {
        if self.snapshotting || self.since_snapshot < self.shared.config.snapshot_count {
            return;
        }
        self.since_snapshot = 0;
        self.snapshotting = true;
        let shared = self.shared.clone();
        let tx = self.self_tx.clone();
        std::thread::spawn(move || {
            let (meta, keys) = {
                let sm = shared.state.read();
                (sm.snapshot_meta(), sm.snapshot_keys())
            };
            match snapshot::save(&shared.config.snap_dir(), &meta, &keys) {
                Ok(path) => {
                    shared.metrics.snapshots.inc();
                    tracing::info!(path = %path.display(), index = meta.applied_index, "snapshot written");
                    let _ = tx.send(Input::SnapshotWritten(meta.applied_index));
                }
                Err(e) => {
                    tracing::error!("snapshot failed: {e}");
                    let _ = tx.send(Input::SnapshotWritten(0));
                }
            }
        });
    }

    /// A snapshot at `index` is on disk: make it the log's snapshot (what a
    /// lagging follower is sent), drop entries well behind it and rewrite
    /// the log file without them.
    fn compact(&mut self, index: u64) -> io::Result<()> {
        if index == 0 || index <= self.storage.rl().snapshot_ref().metadata.index {
            return Ok(());
        }
        let data = std::fs::read(snapshot::path_for(&self.shared.config.snap_dir(), index))?;
        let cs = self.raw.raft().tracker.conf_state();
        let err = |e: skiff_raft::StorageError| io::Error::other(e.to_string());
        self.storage.wl().create_snapshot(index, cs, data).map_err(err)?;
        let first = self.storage.first_index().map_err(err)?;
        let upto = index.saturating_sub(KEEP_BEHIND_SNAPSHOT);
        if upto >= first {
            self.storage.wl().compact(upto).map_err(err)?;
        }
        let core = self.storage.rl();
        let meta = core.snapshot_ref().metadata.clone();
        let hs = core.hard_state();
        let entries = core.all_entries().to_vec();
        drop(core);
        self.log.rewrite(&meta, &hs, &entries)?;
        tracing::info!(index, first_kept = upto + 1, "raft log compacted");
        Ok(())
    }
}
