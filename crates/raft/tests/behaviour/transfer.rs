use skiff_raft::{Error, MessageType, StateRole};

use crate::harness::Net;

#[test]
fn transfer_to_up_to_date_follower() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    let term = n.term(1);
    n.rn(1).transfer_leader(2).unwrap();
    n.deliver();
    assert_eq!(n.leader(), Some(2));
    assert_eq!(n.term(2), term + 1);
    assert_eq!(n.state(1), StateRole::Follower);
    assert_eq!(n.count_delivered(MessageType::TimeoutNow), 1);
    assert!(
        !n.delivered
            .iter()
            .any(|m| m.from == 2 && m.msg_type == MessageType::RequestPreVote),
        "transfer skips pre-vote"
    );
}

#[test]
fn transfer_to_lagging_follower_catches_it_up_and_blocks_proposals() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.cut.insert((1, 3));
    for i in 0..5u8 {
        n.propose(1, &[i]).unwrap();
    }
    n.heal();
    n.rn(1).transfer_leader(3).unwrap();
    assert_eq!(
        n.rn(1).propose(b"during".to_vec()),
        Err(Error::ProposalDropped)
    );
    n.deliver();
    assert_eq!(n.leader(), Some(3));
    assert_eq!(n.node(3).applied.len(), 5);
}

#[test]
fn transfer_requested_on_follower_is_forwarded() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.rn(3).transfer_leader(3).unwrap();
    n.deliver();
    assert_eq!(n.leader(), Some(3));
}

#[test]
fn transfer_to_unreachable_node_is_aborted_after_election_timeout() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.isolate(3);
    n.rn(1).transfer_leader(3).unwrap();
    n.deliver();
    assert_eq!(n.rn(1).propose(b"x".to_vec()), Err(Error::ProposalDropped));
    n.tick(1, 10);
    assert_eq!(n.leader(), Some(1));
    assert_eq!(n.node(1).rn.raft().lead_transferee, 0);
    n.propose(1, b"y").unwrap();
    assert_eq!(n.node(2).applied, vec![b"y".to_vec()]);
}
