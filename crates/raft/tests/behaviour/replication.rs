use skiff_raft::{Entry, HardState, MemStorage, Message, MessageType, StateRole};

use crate::harness::Net;

fn ents(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry {
            index: i as u64 + 1,
            term: t,
            ..Default::default()
        })
        .collect()
}

/// Replace node `id` with one whose persisted log has the given terms.
fn with_log(n: &mut Net, id: u64, terms: &[u64], term: u64) {
    let cs = n.node(id).rn.raft().tracker.conf_state();
    let s = MemStorage::new_with_conf_state(cs);
    s.wl().append(&ents(terms)).unwrap();
    s.wl().set_hard_state(HardState {
        term,
        vote: 0,
        commit: 0,
    });
    n.add(id, s);
}

#[test]
fn replicates_and_applies_in_order() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    for i in 0..10u8 {
        n.propose(1, &[i]).unwrap();
    }
    for id in [1, 2, 3] {
        assert_eq!(
            n.node(id).applied,
            (0..10u8).map(|i| vec![i]).collect::<Vec<_>>()
        );
    }
    assert_eq!(n.entries(2), n.entries(1));
}

#[test]
fn follower_forwards_proposals() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(3, b"via-follower").unwrap();
    assert_eq!(n.node(1).applied, vec![b"via-follower".to_vec()]);
}

#[test]
fn fast_backtracking_skips_whole_terms() {
    // Raft paper figure 7 style: the follower holds a long divergent tail.
    let mut n = Net::with(&[1, 2, 3], |c| c.pre_vote = false);
    let leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    with_log(&mut n, 1, &leader_log, 6);
    with_log(&mut n, 3, &leader_log, 6);
    with_log(&mut n, 2, &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], 3);
    n.campaign(1);
    assert_eq!(n.state(1), StateRole::Leader);
    let rejects = n
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::AppendResponse && m.reject)
        .count();
    // One rejection per divergent term at most (naive: one per entry = 8).
    assert!(rejects <= 2, "rejections: {rejects}");
    assert_eq!(n.entries(2), n.entries(1));
    assert_eq!(n.committed(2), 11);
}

#[test]
fn backtracking_follower_with_short_log() {
    let mut n = Net::with(&[1, 2, 3], |c| c.pre_vote = false);
    with_log(&mut n, 1, &[1; 20], 1);
    with_log(&mut n, 3, &[1; 20], 1);
    with_log(&mut n, 2, &[1; 3], 1);
    n.campaign(1);
    let rejects = n
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::AppendResponse && m.reject)
        .count();
    assert!(
        rejects <= 1,
        "short log: one hint jumps to its end ({rejects})"
    );
    assert_eq!(n.entries(2), n.entries(1));
}

#[test]
fn commits_only_current_term_entries() {
    let mut n = Net::with(&[1, 2, 3], |c| c.pre_vote = false);
    // Entry 2 (term 2) sits on 1 and 2: a quorum, but from an old term.
    with_log(&mut n, 1, &[1, 2], 2);
    with_log(&mut n, 2, &[1, 2], 2);
    with_log(&mut n, 3, &[1], 2);
    n.rn(1).campaign().unwrap();
    n.flush();
    let votes = n.take(|m| m.msg_type == MessageType::RequestVote);
    for v in votes {
        n.step(v);
    }
    for r in n.take(|m| m.msg_type == MessageType::RequestVoteResponse) {
        n.step(r);
    }
    assert_eq!(n.state(1), StateRole::Leader);
    let term = n.term(1);
    let held = n.take(|m| m.msg_type == MessageType::Append);
    // Node 2 confirms it holds index 2 (as after an earlier round).
    let mut ack = Message::new(MessageType::AppendResponse, 1, 2);
    ack.term = term;
    ack.index = 2;
    n.step(ack);
    assert_eq!(
        n.committed(1),
        0,
        "old-term entry on a quorum must not commit by counting"
    );
    // Once the no-op of the current term replicates, both commit.
    n.queue.extend(held);
    n.deliver();
    assert_eq!(n.committed(1), 3);
    assert_eq!(n.committed(2), 3);
}

#[test]
fn batching_respects_max_size_and_pipelines() {
    let mut n = Net::with(&[1, 2], |c| {
        c.max_size_per_msg = 100;
        c.max_inflight_msgs = 2;
    });
    n.campaign(1);
    // Follower 2 goes quiet: the leader may only have 2 appends in flight.
    n.cut.insert((1, 2));
    for i in 0..20u8 {
        n.rn(1).propose(vec![i; 60]).unwrap();
    }
    n.flush();
    n.cut.clear();
    let appends = n.take(|m| m.msg_type == MessageType::Append && m.to == 2);
    // Each proposal broadcast at most one message; flow control caps it.
    assert!(appends.len() <= 2, "inflight window: {}", appends.len());
    // After heal, heartbeats unblock the window and everything replicates
    // in messages of at most one 84-byte entry each (100-byte cap).
    n.tick(1, 3);
    let big = n
        .delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::Append && m.entries.len() > 1)
        .count();
    assert_eq!(big, 0);
    assert_eq!(n.node(2).applied.len(), 20);
}

#[test]
fn figure_8_old_term_entry_is_not_committed_then_overwritten() {
    let mut n = Net::with(&[1, 2, 3, 4, 5], |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    n.campaign(1);
    // (a) S1 replicates "a" at index 2 only to S2.
    n.partition(&[1, 2], &[3, 4, 5]);
    n.propose(1, b"a").unwrap();
    assert_eq!(n.committed(1), 1);
    // (b) S5 wins with S3, S4 and appends index 2, 3 only locally.
    n.heal();
    n.isolate(1);
    n.partition(&[2], &[3, 4, 5]);
    n.drop_types.insert(MessageType::Append);
    while n.state(5) != StateRole::Leader {
        n.campaign(5);
    }
    n.propose(5, b"b").unwrap();
    // (c) S5 down; S1 wins with S2, S3, S4 and replicates index 2 (old term)
    // to everyone, but its own-term entry never gets out.
    n.heal();
    n.restart(1);
    n.isolate(5);
    n.filter = Some(Box::new(|m: &mut Message| {
        if m.msg_type == MessageType::Append {
            let t = m.term;
            m.entries.retain(|e| e.term != t);
        }
        false
    }));
    while n.state(1) != StateRole::Leader {
        n.campaign(1);
    }
    n.tick(1, 3);
    for id in [2, 3, 4] {
        assert_eq!(
            n.entries(id).len(),
            2,
            "S{id} holds the term-1 entry at index 2"
        );
    }
    assert_eq!(
        n.committed(1),
        1,
        "replicated on a majority, yet not committed (figure 8c)"
    );
    // (d) S1 down; S5 wins and overwrites index 2 everywhere.
    n.heal();
    n.restart(5);
    n.isolate(1);
    while n.state(5) != StateRole::Leader {
        n.campaign(5);
    }
    n.propose(5, b"c").unwrap();
    for id in [2, 3, 4, 5] {
        assert_eq!(
            n.node(id).applied,
            vec![b"b".to_vec(), b"c".to_vec()],
            "S{id}"
        );
    }
    // S1 rejoins and its uncommitted "a" is discarded.
    n.heal();
    n.tick_all(3);
    assert_eq!(n.node(1).applied, vec![b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(n.entries(1), n.entries(5));
}
