//! Raft's plain-data types to and from their protobuf form (`skiffpb.Raft*`),
//! for the peer transport and the Raft log file. The Raft core stays free of
//! any encoding library; this is the one place that knows both.

use etcdpb::skiffpb::{
    RaftEntry, RaftHardState, RaftMessage, RaftSnapshotChunk, RaftSnapshotMeta,
};
use skiff_raft::{
    ConfState, Entry, EntryKind, HardState, Message, MessageType, SnapshotChunk, SnapshotMetadata,
};

const TYPES: [MessageType; 19] = [
    MessageType::Hup,
    MessageType::Beat,
    MessageType::CheckQuorum,
    MessageType::Propose,
    MessageType::Append,
    MessageType::AppendResponse,
    MessageType::RequestVote,
    MessageType::RequestVoteResponse,
    MessageType::RequestPreVote,
    MessageType::RequestPreVoteResponse,
    MessageType::Snapshot,
    MessageType::SnapshotResponse,
    MessageType::Heartbeat,
    MessageType::HeartbeatResponse,
    MessageType::Unreachable,
    MessageType::TransferLeader,
    MessageType::TimeoutNow,
    MessageType::ReadIndex,
    MessageType::ReadIndexResponse,
];

fn type_code(t: MessageType) -> u32 {
    TYPES.iter().position(|x| *x == t).expect("every type is listed") as u32
}

pub fn entry_to_pb(e: &Entry) -> RaftEntry {
    RaftEntry {
        term: e.term,
        index: e.index,
        kind: matches!(e.kind, EntryKind::ConfChange) as u32,
        data: e.data.clone().into(),
    }
}

pub fn entry_from_pb(e: RaftEntry) -> Entry {
    Entry {
        term: e.term,
        index: e.index,
        kind: if e.kind == 1 { EntryKind::ConfChange } else { EntryKind::Normal },
        data: e.data.to_vec(),
    }
}

pub fn meta_to_pb(m: &SnapshotMetadata) -> RaftSnapshotMeta {
    RaftSnapshotMeta {
        index: m.index,
        term: m.term,
        voters: m.conf_state.voters.iter().copied().collect(),
        learners: m.conf_state.learners.iter().copied().collect(),
    }
}

pub fn meta_from_pb(m: RaftSnapshotMeta) -> SnapshotMetadata {
    SnapshotMetadata {
        conf_state: ConfState {
            voters: m.voters.into_iter().collect(),
            learners: m.learners.into_iter().collect(),
        },
        index: m.index,
        term: m.term,
    }
}

pub fn hard_state_to_pb(h: &HardState) -> RaftHardState {
    RaftHardState { term: h.term, vote: h.vote, commit: h.commit }
}

pub fn hard_state_from_pb(h: RaftHardState) -> HardState {
    HardState { term: h.term, vote: h.vote, commit: h.commit }
}

pub fn message_to_pb(m: &Message) -> RaftMessage {
    RaftMessage {
        msg_type: type_code(m.msg_type),
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.iter().map(entry_to_pb).collect(),
        commit: m.commit,
        snapshot: m.snapshot.as_ref().map(|c| RaftSnapshotChunk {
            meta: Some(meta_to_pb(&c.metadata)),
            offset: c.offset,
            total_len: c.total_len,
            data: c.data.clone().into(),
            done: c.done,
        }),
        snapshot_offset: m.snapshot_offset,
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.clone().into(),
        lease_tick: m.lease_tick,
    }
}

/// `None` for an unknown message type (a newer peer, or garbage).
pub fn message_from_pb(m: RaftMessage) -> Option<Message> {
    let msg_type = *TYPES.get(m.msg_type as usize)?;
    Some(Message {
        msg_type,
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.into_iter().map(entry_from_pb).collect(),
        commit: m.commit,
        snapshot: m.snapshot.map(|c| SnapshotChunk {
            metadata: meta_from_pb(c.meta.unwrap_or_default()),
            offset: c.offset,
            total_len: c.total_len,
            data: c.data.to_vec(),
            done: c.done,
        }),
        snapshot_offset: m.snapshot_offset,
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.to_vec(),
        lease_tick: m.lease_tick,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        for t in TYPES {
            let m = Message {
                msg_type: t,
                to: 2,
                from: 3,
                term: 7,
                log_term: 6,
                index: 40,
                entries: vec![Entry { term: 7, index: 41, kind: EntryKind::ConfChange, data: vec![1, 2] }],
                commit: 39,
                snapshot: Some(SnapshotChunk {
                    metadata: SnapshotMetadata { conf_state: ConfState::with_voters([1, 2, 3]), index: 5, term: 2 },
                    offset: 10,
                    total_len: 20,
                    data: vec![9; 10],
                    done: true,
                }),
                snapshot_offset: 4,
                reject: true,
                reject_hint: 3,
                context: b"ctx".to_vec(),
                lease_tick: 99,
            };
            assert_eq!(message_from_pb(message_to_pb(&m)), Some(m));
        }
        assert_eq!(message_from_pb(RaftMessage { msg_type: 99, ..Default::default() }), None);
    }
}
