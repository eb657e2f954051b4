use skiff_raft::{Message, MessageType, Storage};

use crate::harness::Net;

const DATA: &[u8] = b"abcdefghijklmnopqr"; // 18 bytes = 5 chunks of 4

fn lagging_follower() -> Net {
    let mut n = Net::with(&[1, 2, 3], |c| {
        c.snapshot_chunk_size = 4;
        c.max_snapshot_chunks_inflight = 2;
    });
    n.campaign(1);
    n.isolate(3);
    for i in 0..5u8 {
        n.propose(1, &[i]).unwrap();
    }
    n.compact(1, DATA);
    n.heal();
    n
}

fn chunks_to(n: &Net, to: u64) -> Vec<&Message> {
    n.delivered
        .iter()
        .filter(|m| m.msg_type == MessageType::Snapshot && m.to == to)
        .collect()
}

#[test]
fn lagging_follower_gets_snapshot_in_chunks() {
    let mut n = lagging_follower();
    n.tick(1, 3);
    let chunks = chunks_to(&n, 3);
    assert_eq!(chunks.len(), 5, "18 bytes in 4-byte chunks");
    assert!(chunks.last().unwrap().snapshot.as_ref().unwrap().done);
    let snap = n.node(3).store.snapshot().unwrap();
    assert_eq!(snap.data, DATA);
    assert_eq!(snap.metadata.index, 6);
    assert_eq!(n.entries(3), n.entries(1));
    n.propose(1, b"after").unwrap();
    assert_eq!(n.node(3).applied, vec![b"after".to_vec()]);
    assert_eq!(n.committed(3), n.committed(1));
}

#[test]
fn lost_and_reordered_chunks_are_resent() {
    let mut n = lagging_follower();
    let mut dropped = false;
    n.filter = Some(Box::new(move |m: &mut Message| {
        if m.msg_type == MessageType::Snapshot
            && m.snapshot.as_ref().unwrap().offset == 4
            && !dropped
        {
            dropped = true;
            return true;
        }
        false
    }));
    n.tick(1, 6);
    assert!(chunks_to(&n, 3).len() > 5, "the gap forced a resend");
    assert_eq!(n.node(3).store.snapshot().unwrap().data, DATA);
    assert_eq!(n.entries(3), n.entries(1));
}

#[test]
fn snapshot_installed_while_entries_keep_arriving() {
    let mut n = lagging_follower();
    let mut n_props = 0u8;
    // A stale append captured before compaction, delivered late.
    let mut stale = Message::new(MessageType::Append, 3, 1);
    stale.term = n.term(1);
    stale.index = 1;
    stale.log_term = n.term(1);
    stale.entries = n.entries(2)[1..3].to_vec();
    n.rn(1).tick();
    // Pump by hand: after every chunk the leader takes a new proposal, and
    // every chunk is delivered twice.
    for _ in 0..200 {
        let msgs = n.take(|_| true);
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            let chunk = m.msg_type == MessageType::Snapshot;
            n.step(m.clone());
            if chunk {
                n.step(m);
                n.rn(1).propose(vec![100 + n_props]).unwrap();
                n_props += 1;
                if n_props == 3 {
                    n.step(stale.clone());
                }
            }
        }
        n.rn(1).tick();
    }
    assert!(n_props >= 5);
    n.tick(1, 2);
    n.step(stale);
    n.deliver();
    assert_eq!(n.entries(3), n.entries(1));
    // The stale append may legitimately let 3 apply entries 2..3 before the
    // snapshot replaces the rest of the prefix; after that, every proposal.
    let applied: Vec<_> = n.node(3).applied.iter().map(|d| d[0]).collect();
    let (old, new): (Vec<u8>, Vec<u8>) = applied.iter().partition(|&&d| d < 100);
    assert_eq!(old, (0..old.len() as u8).collect::<Vec<_>>());
    assert_eq!(new, (0..n_props).map(|i| 100 + i).collect::<Vec<_>>());
}

#[test]
fn follower_restart_mid_stream_restarts_transfer() {
    let mut n = lagging_follower();
    let mut seen = 0;
    n.filter = Some(Box::new(move |m: &mut Message| {
        if m.msg_type == MessageType::Snapshot {
            seen += 1;
            return seen == 3; // drop one so the stream stalls mid-way
        }
        false
    }));
    n.tick(1, 1);
    assert!(n.node(3).store.snapshot().unwrap().data.is_empty());
    n.restart(3); // the partial copy was in memory only
    n.tick(1, 6);
    assert_eq!(n.node(3).store.snapshot().unwrap().data, DATA);
    assert_eq!(n.entries(3), n.entries(1));
}

#[test]
fn lost_answer_to_installed_snapshot_is_recovered() {
    let mut n = lagging_follower();
    let (mut done_seen, mut dropped) = (false, false);
    n.filter = Some(Box::new(move |m: &mut Message| {
        if m.msg_type == MessageType::Snapshot && m.snapshot.as_ref().unwrap().done {
            done_seen = true;
        }
        if done_seen && !dropped && m.msg_type == MessageType::AppendResponse && m.from == 3 {
            dropped = true;
            return true;
        }
        false
    }));
    n.tick(1, 4);
    let pr = n.node(1).rn.status().progress[&3].clone();
    assert_eq!(pr.state, skiff_raft::ProgressState::Replicate, "{pr:?}");
    n.propose(1, b"z").unwrap();
    assert_eq!(n.node(3).applied, vec![b"z".to_vec()]);
}
