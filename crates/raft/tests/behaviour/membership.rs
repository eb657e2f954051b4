use skiff_raft::{ConfChange, ConfChangeKind, Error, MessageType, StateRole};

use crate::harness::Net;

fn cc(kind: ConfChangeKind, node_id: u64) -> ConfChange {
    ConfChange {
        kind,
        node_id,
        context: vec![],
    }
}

fn with_learner() -> Net {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"before").unwrap();
    n.add_joining(4, &[1, 2, 3]);
    n.rn(1)
        .propose_conf_change(&cc(ConfChangeKind::AddLearner, 4))
        .unwrap();
    n.deliver();
    n.tick(1, 2);
    n
}

#[test]
fn learner_receives_log_but_does_not_count_or_campaign() {
    let mut n = with_learner();
    assert!(n.node(1).rn.raft().tracker.learners.contains(&4));
    assert_eq!(n.node(4).applied, vec![b"before".to_vec()]);
    assert!(n.node(4).rn.raft().is_learner());
    // With both other voters cut off, the learner's ack does not commit.
    n.partition(&[1, 4], &[2, 3]);
    let c = n.committed(1);
    n.propose(1, b"stuck").unwrap();
    assert_eq!(n.committed(1), c);
    assert_eq!(n.last_index(4), n.last_index(1));
    // And a learner never campaigns, however long it waits.
    n.isolate(4);
    n.tick(4, 100);
    assert_eq!(n.state(4), StateRole::Follower);
    assert!(
        !n.delivered
            .iter()
            .any(|m| m.from == 4 && m.msg_type == MessageType::RequestPreVote)
    );
}

#[test]
fn caught_up_learner_is_promoted_lagging_one_is_refused() {
    let mut n = with_learner();
    n.isolate(4);
    for i in 0..3u8 {
        n.propose(1, &[i]).unwrap();
    }
    assert_eq!(
        n.rn(1)
            .propose_conf_change(&cc(ConfChangeKind::AddVoter, 4)),
        Err(Error::ProposalDropped)
    );
    n.heal();
    n.tick(1, 2);
    assert!(n.node(1).rn.raft().learner_caught_up(4));
    n.rn(1)
        .propose_conf_change(&cc(ConfChangeKind::AddVoter, 4))
        .unwrap();
    n.deliver();
    n.tick(1, 1);
    for id in [1, 2, 3, 4] {
        assert!(
            n.node(id).rn.raft().tracker.voters.contains(&4),
            "node {id}"
        );
    }
    // 4 voters: quorum is 3, so 1 + 4 alone cannot commit, 1 + 2 + 4 can.
    n.partition(&[1, 4], &[2, 3]);
    let c = n.committed(1);
    n.propose(1, b"two").unwrap();
    assert_eq!(n.committed(1), c);
    n.heal();
    n.partition(&[1, 2, 4], &[3]);
    n.tick(1, 2);
    assert!(n.committed(1) > c);
}

#[test]
fn one_conf_change_at_a_time() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.isolate(1);
    n.rn(1)
        .propose_conf_change(&cc(ConfChangeKind::AddLearner, 4))
        .unwrap();
    assert_eq!(
        n.rn(1)
            .propose_conf_change(&cc(ConfChangeKind::AddLearner, 5)),
        Err(Error::ProposalDropped)
    );
    n.heal();
    n.tick(1, 2);
    n.rn(1)
        .propose_conf_change(&cc(ConfChangeKind::AddLearner, 5))
        .unwrap();
}

#[test]
fn removing_a_follower_shrinks_the_quorum() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.rn(1)
        .propose_conf_change(&cc(ConfChangeKind::Remove, 3))
        .unwrap();
    n.deliver();
    n.isolate(3);
    n.cut.insert((1, 2));
    n.cut.insert((2, 1));
    n.heal();
    n.isolate(3);
    n.propose(1, b"two-node").unwrap();
    assert_eq!(n.node(2).applied, vec![b"two-node".to_vec()]);
    assert_eq!(n.node(1).rn.raft().tracker.voters.len(), 2);
}

#[test]
fn leader_removes_itself_and_hands_over() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    n.rn(1)
        .propose_conf_change(&cc(ConfChangeKind::Remove, 1))
        .unwrap();
    n.deliver();
    assert_eq!(
        n.state(1),
        StateRole::Follower,
        "removed leader steps down once it applies"
    );
    n.tick_all(3);
    let l = n
        .leader()
        .expect("TimeoutNow made a caught-up voter campaign");
    assert!(l == 2 || l == 3);
    assert!(!n.node(l).rn.raft().tracker.voters.contains(&1));
    n.propose(l, b"y").unwrap();
    let other = if l == 2 { 3 } else { 2 };
    assert_eq!(n.node(other).applied, vec![b"x".to_vec(), b"y".to_vec()]);
    // The removed node never campaigns again.
    n.isolate(1);
    n.tick(1, 100);
    assert_eq!(n.state(1), StateRole::Follower);
}
