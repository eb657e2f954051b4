use skiff_raft::{Message, MessageType, StateRole};

use crate::harness::Net;

#[test]
fn leader_elected_after_randomized_timeout() {
    let mut n = Net::new(&[1, 2, 3]);
    n.tick_all(30);
    let l = n.leader().expect("a leader within 3 election timeouts");
    let term = n.term(l);
    for id in [1, 2, 3] {
        assert_eq!(n.term(id), term);
        if id != l {
            assert_eq!(n.state(id), StateRole::Follower);
            assert_eq!(n.node(id).rn.raft().lead, l);
        }
    }
    // The leader's no-op commits everywhere.
    assert_eq!(n.committed(1), n.last_index(l));
}

#[test]
fn timeouts_are_randomized_per_node_and_reproducible() {
    let timeouts = |seed| {
        let n = Net::with(&[1, 2, 3], |c| c.seed = seed);
        (1..=3)
            .map(|id| n.node(id).rn.raft().randomized_election_timeout())
            .collect::<Vec<_>>()
    };
    assert_eq!(timeouts(5), timeouts(5));
    let t = timeouts(5);
    assert!(t.iter().all(|&x| (10..20).contains(&x)));
    assert!(t[0] != t[1] || t[1] != t[2], "some spread expected: {t:?}");
}

#[test]
fn candidate_with_stale_log_loses() {
    let mut n = Net::with(&[1, 2, 3], |c| {
        c.pre_vote = false;
        c.check_quorum = false;
    });
    n.campaign(1);
    n.isolate(3);
    n.propose(1, b"x").unwrap();
    n.heal();
    n.drop_types.insert(MessageType::Append);
    n.drop_types.insert(MessageType::Heartbeat);
    n.campaign(3);
    // 1 and 2 hold an entry 3 lacks: both refuse (§5.4.1).
    assert_eq!(n.state(3), StateRole::Follower);
    assert_eq!(n.node(1).rn.raft().vote, 0);
    assert_eq!(n.node(2).rn.raft().vote, 0);
}

#[test]
fn pre_vote_keeps_partitioned_node_term() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    let term = n.term(1);
    n.isolate(3);
    n.tick(3, 100);
    assert_eq!(n.state(3), StateRole::PreCandidate);
    assert_eq!(n.term(3), term, "pre-vote never bumps the term");
    n.heal();
    n.tick_all(5);
    assert_eq!(n.leader(), Some(1));
    assert_eq!(n.term(1), term);
    assert_eq!(n.state(3), StateRole::Follower);
}

#[test]
fn rejoining_node_does_not_depose_leader() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.isolate(3);
    n.tick(3, 50);
    n.propose(1, b"a").unwrap();
    n.heal();
    for _ in 0..3 {
        n.tick(3, 1);
    }
    assert_eq!(n.leader(), Some(1));
    assert!(
        !n.delivered
            .iter()
            .any(|m| m.from == 3 && m.msg_type == MessageType::RequestVote)
    );
    n.propose(1, b"b").unwrap();
    assert_eq!(n.node(3).applied, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn followers_ignore_vote_requests_within_lease() {
    let mut n = Net::with(&[1, 2, 3], |c| c.pre_vote = false);
    n.campaign(1);
    let term = n.term(1);
    // Node 3 campaigns on its own (e.g. a long GC pause), term + 1.
    n.isolate(3);
    n.campaign(3);
    n.heal();
    let reqs = n.take(|m| m.msg_type == MessageType::RequestVote);
    assert!(reqs.is_empty(), "isolated: requests were dropped");
    let mut m = Message::new(MessageType::RequestVote, 2, 3);
    m.term = term + 1;
    m.index = n.last_index(3);
    m.log_term = term;
    n.step(m);
    assert_eq!(n.term(2), term, "in lease: request ignored, term unchanged");
    assert!(
        n.take(|m| m.msg_type == MessageType::RequestVoteResponse)
            .is_empty()
    );
}

#[test]
fn check_quorum_leader_steps_down_when_isolated() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.isolate(1);
    n.tick(1, 10);
    n.tick(1, 10);
    assert_eq!(n.state(1), StateRole::Follower);
    // Meanwhile the majority elects a new leader.
    n.tick(2, 30);
    n.tick(3, 30);
    let l = n.leader().unwrap();
    assert!(l == 2 || l == 3);
}

#[test]
fn split_votes_resolve() {
    let mut n = Net::with(&[1, 2, 3, 4, 5], |c| c.pre_vote = false);
    n.tick_all(100);
    assert!(n.leader().is_some());
    let l = n.leader().unwrap();
    let leaders = [1, 2, 3, 4, 5]
        .iter()
        .filter(|&&id| n.state(id) == StateRole::Leader && n.term(id) == n.term(l))
        .count();
    assert_eq!(leaders, 1);
}

#[test]
fn single_node_elects_itself_and_commits() {
    let mut n = Net::new(&[1]);
    n.campaign(1);
    assert_eq!(n.state(1), StateRole::Leader);
    n.propose(1, b"solo").unwrap();
    assert_eq!(n.node(1).applied, vec![b"solo".to_vec()]);
}

#[test]
fn restart_recovers_term_vote_and_log_from_storage() {
    let mut n = Net::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    let (term, last) = (n.term(2), n.last_index(2));
    let vote = n.node(2).rn.raft().vote;
    n.restart(2);
    assert_eq!(n.term(2), term);
    assert_eq!(n.node(2).rn.raft().vote, vote);
    assert_eq!(n.last_index(2), last);
    // It re-applies committed entries from its storage, then rejoins.
    n.tick(1, 2);
    assert_eq!(n.node(2).applied, vec![b"x".to_vec()]);
    assert_eq!(n.leader(), Some(1));
}

#[test]
fn step_refuses_local_messages() {
    let mut n = Net::new(&[1, 2, 3]);
    let r = n.rn(1).step(Message::new(MessageType::Hup, 1, 2));
    assert_eq!(r, Err(skiff_raft::Error::StepLocalMsg));
}
