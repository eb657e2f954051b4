use skiff_raft::{MessageType, ReadOnlyOption, ReadState};

use crate::harness::Net;

fn rs(index: u64, ctx: &[u8]) -> ReadState {
    ReadState {
        index,
        request_ctx: ctx.to_vec(),
    }
}

#[test]
fn leader_read_index_needs_quorum_heartbeat() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    let c = n.committed(1);
    n.isolate(1);
    n.rn(1).read_index(b"r1".to_vec()).unwrap();
    n.deliver();
    assert!(
        n.node(1).read_states.is_empty(),
        "cannot confirm leadership alone"
    );
    n.heal();
    n.rn(1).read_index(b"r2".to_vec()).unwrap();
    n.deliver();
    // Confirming r2 also confirms the earlier r1.
    assert_eq!(n.node(1).read_states, vec![rs(c, b"r1"), rs(c, b"r2")]);
}

#[test]
fn follower_read_is_forwarded_to_leader() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    n.rn(3).read_index(b"f".to_vec()).unwrap();
    n.deliver();
    assert_eq!(n.node(3).read_states, vec![rs(n.committed(1), b"f")]);
    assert!(n.count_delivered(MessageType::ReadIndexResponse) == 1);
}

#[test]
fn new_leader_answers_reads_only_after_committing_in_its_term() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    // 2 takes over, but its no-op does not get out yet.
    n.drop_types.insert(MessageType::Append);
    n.rn(1).transfer_leader(2).unwrap();
    n.deliver();
    assert_eq!(n.leader(), Some(2));
    n.rn(2).read_index(b"r".to_vec()).unwrap();
    n.deliver();
    assert!(
        n.node(2).read_states.is_empty(),
        "commit index may be stale until the no-op commits"
    );
    n.heal();
    n.tick(2, 2);
    let noop = n.last_index(2);
    assert_eq!(n.node(2).read_states, vec![rs(noop, b"r")]);
}

#[test]
fn lease_based_reads_skip_the_round_trip() {
    let mut n = Net::with(&[1, 2, 3], |c| {
        c.read_only_option = ReadOnlyOption::LeaseBased
    });
    n.campaign(1);
    let before = n.delivered.len();
    n.rn(1).read_index(b"l".to_vec()).unwrap();
    n.flush();
    assert_eq!(n.node(1).read_states, vec![rs(n.committed(1), b"l")]);
    n.deliver();
    assert_eq!(n.delivered.len(), before, "no messages needed");
}

#[test]
fn lease_reads_stop_once_leadership_is_being_transferred() {
    let mut n = Net::with(&[1, 2, 3], |c| {
        c.read_only_option = ReadOnlyOption::LeaseBased
    });
    n.campaign(1);
    n.deliver();
    n.rn(1).transfer_leader(2).unwrap();
    // TimeoutNow is out: node 2 may now win without waiting for 1's lease.
    let timeout_now = n.take(|m| m.msg_type == MessageType::TimeoutNow);
    assert_eq!(timeout_now.len(), 1);
    n.rn(1).read_index(b"t".to_vec()).unwrap();
    n.flush();
    assert!(n.node(1).read_states.is_empty(), "a lease read after TimeoutNow could be stale");
    // A quorum confirming leadership (2 has not seen TimeoutNow) releases the read.
    n.deliver();
    assert_eq!(n.node(1).read_states, vec![rs(n.committed(1), b"t")]);
}

/// Check-quorum looks once per election timeout, so an isolated leader can
/// stay leader for almost two; its lease must lapse one election timeout
/// after it sent what a quorum last acknowledged, because from then on the
/// followers may elect someone else.
#[test]
fn lease_lapses_an_election_timeout_after_the_last_acknowledged_send() {
    let mut n = Net::with(&[1, 2, 3], |c| {
        c.read_only_option = ReadOnlyOption::LeaseBased
    });
    n.campaign(1);
    n.isolate(1);
    n.tick(1, 8);
    n.rn(1).read_index(b"in".to_vec()).unwrap();
    n.flush();
    assert_eq!(n.node(1).read_states, vec![rs(n.committed(1), b"in")]);
    n.tick(1, 2);
    assert_eq!(n.state(1), skiff_raft::StateRole::Leader, "check-quorum has not caught up yet");
    n.rn(1).read_index(b"out".to_vec()).unwrap();
    n.flush();
    assert_eq!(
        n.node(1).read_states,
        vec![rs(n.committed(1), b"in")],
        "a lease read now could miss writes of a newer leader"
    );
}

/// A restarted follower does not know the leader, yet before the crash it
/// may have acknowledged the heartbeat a lease rests on: with lease reads
/// it refuses votes for its first election timeout.
#[test]
fn restarted_follower_honours_leases_it_may_have_granted() {
    let mut n = Net::with(&[1, 2, 3], |c| {
        c.read_only_option = ReadOnlyOption::LeaseBased
    });
    n.campaign(1);
    n.isolate(1);
    n.restart(2);
    n.campaign(3);
    assert_ne!(n.state(3), skiff_raft::StateRole::Leader);
    assert_ne!(n.state(2), skiff_raft::StateRole::Leader);
}
