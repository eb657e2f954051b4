//! Follower-side reassembly of a chunked snapshot.
//!
//! Chunks can be dropped, duplicated or reordered by the network. The
//! receiver only ever extends a contiguous prefix; anything else is ignored
//! and the follower tells the leader how many bytes it holds, so the leader
//! resumes from there. The partial copy lives in memory only: losing it in a
//! crash just means the leader streams again.

use crate::message::{Snapshot, SnapshotChunk, SnapshotMetadata};

#[derive(Debug, Default)]
pub(crate) struct SnapshotReceiver {
    meta: Option<SnapshotMetadata>,
    /// Who is streaming (leader id, leader term) and the total length.
    /// Two leaders may each hold a snapshot at the same index whose bytes
    /// differ (encoding is the application's business), so bytes from
    /// different streams must never be spliced together.
    stream: (u64, u64, u64),
    data: Vec<u8>,
}

pub(crate) enum ChunkOutcome {
    /// Still incomplete; we hold this many bytes of the snapshot.
    Partial(u64),
    Complete(Snapshot),
}

impl SnapshotReceiver {
    /// Take `chunk` from leader `from` in term `term`.
    pub fn receive(&mut self, from: u64, term: u64, chunk: SnapshotChunk) -> ChunkOutcome {
        let stream = (from, term, chunk.total_len);
        let same = self.stream == stream
            && self
                .meta
                .as_ref()
                .is_some_and(|m| m.index == chunk.metadata.index && m.term == chunk.metadata.term);
        if !same {
            self.meta = None;
            self.data.clear();
            if chunk.offset != 0 {
                return ChunkOutcome::Partial(0);
            }
            self.meta = Some(chunk.metadata.clone());
            self.stream = stream;
        }
        let held = self.data.len() as u64;
        let end = chunk.offset + chunk.data.len() as u64;
        if chunk.offset > held {
            return ChunkOutcome::Partial(held); // a gap: an earlier chunk is missing
        }
        if end > held {
            self.data
                .extend_from_slice(&chunk.data[(held - chunk.offset) as usize..]);
        }
        if chunk.done && end == chunk.total_len && self.data.len() as u64 == chunk.total_len {
            let metadata = self.meta.take().expect("set above");
            return ChunkOutcome::Complete(Snapshot {
                metadata,
                data: std::mem::take(&mut self.data),
            });
        }
        ChunkOutcome::Partial(self.data.len() as u64)
    }

    pub fn clear(&mut self) {
        self.meta = None;
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, data: &[u8], done: bool) -> SnapshotChunk {
        SnapshotChunk {
            metadata: SnapshotMetadata {
                index: 5,
                term: 2,
                ..Default::default()
            },
            offset,
            total_len: 6,
            data: data.to_vec(),
            done,
        }
    }

    #[test]
    fn reassembles_despite_gaps_duplicates_and_overlap() {
        let mut r = SnapshotReceiver::default();
        assert!(matches!(
            r.receive(1, 1, chunk(2, b"cd", false)),
            ChunkOutcome::Partial(0)
        ));
        assert!(matches!(
            r.receive(1, 1, chunk(0, b"ab", false)),
            ChunkOutcome::Partial(2)
        ));
        assert!(matches!(
            r.receive(1, 1, chunk(4, b"ef", true)),
            ChunkOutcome::Partial(2)
        ));
        assert!(matches!(
            r.receive(1, 1, chunk(0, b"ab", false)),
            ChunkOutcome::Partial(2)
        ));
        assert!(matches!(
            r.receive(1, 1, chunk(1, b"bcd", false)),
            ChunkOutcome::Partial(4)
        ));
        match r.receive(1, 1, chunk(4, b"ef", true)) {
            ChunkOutcome::Complete(s) => {
                assert_eq!(s.data, b"abcdef");
                assert_eq!(s.metadata.index, 5);
            }
            ChunkOutcome::Partial(n) => panic!("incomplete at {n}"),
        }
    }

    #[test]
    fn same_index_from_another_leader_is_not_spliced() {
        let mut r = SnapshotReceiver::default();
        r.receive(1, 1, chunk(0, b"ab", false));
        assert!(matches!(
            r.receive(2, 2, chunk(2, b"cd", false)),
            ChunkOutcome::Partial(0)
        ));
        assert!(matches!(
            r.receive(2, 2, chunk(0, b"AB", false)),
            ChunkOutcome::Partial(2)
        ));
    }

    #[test]
    fn new_snapshot_restarts() {
        let mut r = SnapshotReceiver::default();
        r.receive(1, 1, chunk(0, b"ab", false));
        let mut c = chunk(0, b"xy", false);
        c.metadata.index = 9;
        assert!(matches!(r.receive(1, 1, c), ChunkOutcome::Partial(2)));
        assert!(matches!(
            r.receive(1, 1, chunk(2, b"cd", false)),
            ChunkOutcome::Partial(0)
        ));
    }
}
