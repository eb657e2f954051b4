//! The Raft log as the core sees it: persisted entries (`Storage`) followed
//! by the unstable tail, plus the commit and apply cursors.

use crate::error::StorageError;
use crate::message::{Entry, Snapshot};
use crate::storage::{Storage, limit_size};
use crate::unstable::Unstable;

type SResult<T> = std::result::Result<T, StorageError>;

pub struct RaftLog<S: Storage> {
    pub(crate) storage: S,
    pub(crate) unstable: Unstable,
    /// Highest index known to be stored on a quorum.
    pub(crate) committed: u64,
    /// Highest index the application has applied (as acknowledged through
    /// `advance`). Always `<= committed`.
    pub(crate) applied: u64,
    /// Cap on the bytes of committed entries handed out per `Ready`.
    pub(crate) max_apply_size: Option<u64>,
}

impl<S: Storage> RaftLog<S> {
    pub fn new(storage: S, max_apply_size: Option<u64>) -> RaftLog<S> {
        let first = storage.first_index().expect("storage first_index");
        let last = storage.last_index().expect("storage last_index");
        RaftLog {
            storage,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            applied: first - 1,
            max_apply_size,
        }
    }

    pub fn committed(&self) -> u64 {
        self.committed
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.storage.first_index().expect("storage first_index"))
    }

    pub fn last_index(&self) -> u64 {
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.storage.last_index().expect("storage last_index"))
    }

    /// Term of the entry at `index`. The entry just before `first_index` is
    /// answerable (snapshot boundary); earlier ones are `Compacted`.
    pub fn term(&self, index: u64) -> SResult<u64> {
        let dummy = self.first_index() - 1;
        if index < dummy {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if let Some(t) = self.unstable.maybe_term(index) {
            return Ok(t);
        }
        self.storage.term(index)
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("last term must be known")
    }

    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Raft's election restriction (§5.4.1): a candidate's log is at least
    /// as up to date as ours.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && last_index >= self.last_index())
    }

    /// Append to the unstable tail, returning the new last index.
    pub fn append(&mut self, ents: &[Entry]) -> u64 {
        if let Some(first) = ents.first() {
            assert!(
                first.index > self.committed,
                "appending at {} would overwrite committed {}",
                first.index,
                self.committed
            );
            self.unstable.truncate_and_append(ents);
        }
        self.last_index()
    }

    /// The follower side of AppendEntries: if our log matches the leader's
    /// at (`index`, `log_term`), splice `ents` in and advance the commit
    /// index (only as far as the entries we now know match). Returns the
    /// index of the last new entry, or `None` on a mismatch.
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        commit: u64,
        ents: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + ents.len() as u64;
        let conflict = self.find_conflict(ents);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with committed {}",
                self.committed
            );
            let start = (conflict - (index + 1)) as usize;
            self.append(&ents[start..]);
        }
        self.commit_to(commit.min(last_new));
        Some(last_new)
    }

    /// Index of the first entry in `ents` that is new or conflicts with our
    /// log, or 0 if we already hold all of them. Skipping entries we have
    /// keeps duplicated/reordered appends from truncating a longer log.
    fn find_conflict(&self, ents: &[Entry]) -> u64 {
        ents.iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// For backtracking: the largest index `<= index` whose term is `<= term`
    /// and the term there (the search stops at the log's start).
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term => i -= 1,
                Ok(t) => return (i, t),
                Err(_) => return (i, 0),
            }
        }
    }

    /// First index of the term that entry `index` belongs to, not going
    /// below `floor` or the log's first index.
    pub fn first_index_of_term_at(&self, index: u64, floor: u64) -> u64 {
        let Ok(term) = self.term(index) else {
            return index;
        };
        let floor = floor.max(self.first_index());
        let mut i = index;
        while i > floor && self.term(i - 1).is_ok_and(|t| t == term) {
            i -= 1;
        }
        i
    }

    pub fn commit_to(&mut self, commit: u64) {
        if commit > self.committed {
            assert!(
                commit <= self.last_index(),
                "commit {commit} beyond last index {}",
                self.last_index()
            );
            self.committed = commit;
        }
    }

    pub fn applied_to(&mut self, index: u64) {
        if index == 0 {
            return;
        }
        assert!(
            index <= self.committed && index >= self.applied,
            "applied {index} out of range"
        );
        self.applied = index;
    }

    /// Entries starting at `lo`, up to `max_size` bytes.
    pub fn entries(&self, lo: u64, max_size: Option<u64>) -> SResult<Vec<Entry>> {
        let last = self.last_index();
        if lo > last {
            return Ok(Vec::new());
        }
        self.slice(lo, last + 1, max_size)
    }

    /// Every entry we hold (for tests and inspection).
    pub fn all_entries(&self) -> Vec<Entry> {
        match self.entries(self.first_index(), None) {
            Ok(e) => e,
            Err(StorageError::Compacted) => self.all_entries(), // raced with compaction
            Err(e) => panic!("{e}"),
        }
    }

    /// Entries in `[lo, hi)`, combining storage and the unstable tail.
    pub fn slice(&self, lo: u64, hi: u64, max_size: Option<u64>) -> SResult<Vec<Entry>> {
        if lo < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if hi > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        if lo >= hi {
            return Ok(Vec::new());
        }
        let off = self.unstable.offset;
        let mut ents = Vec::new();
        if lo < off {
            ents = self.storage.entries(lo, hi.min(off), max_size)?;
            if (ents.len() as u64) < hi.min(off) - lo {
                return Ok(ents); // hit the size limit
            }
        }
        if hi > off {
            ents.extend_from_slice(self.unstable.slice(lo.max(off), hi));
        }
        limit_size(&mut ents, max_size);
        Ok(ents)
    }

    pub fn has_next_committed_entries(&self) -> bool {
        self.committed > self.applied.max(self.first_index() - 1)
    }

    /// Committed entries the application has not applied yet. They may still
    /// be unstable: the `Ready` contract has the application persist the
    /// `Ready`'s entries before applying.
    pub fn next_committed_entries(&self) -> Vec<Entry> {
        if !self.has_next_committed_entries() {
            return Vec::new();
        }
        let lo = (self.applied + 1).max(self.first_index());
        self.slice(lo, self.committed + 1, self.max_apply_size)
            .expect("committed entries must be available")
    }

    pub fn snapshot(&self) -> SResult<Snapshot> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.storage.snapshot(),
        }
    }

    /// Replace the log with a snapshot from the leader.
    pub fn restore(&mut self, snap: Snapshot) {
        self.committed = snap.metadata.index;
        self.unstable.restore(snap);
    }

    pub fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
    }

    pub fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemStorage> {
        let s = MemStorage::new();
        let ents: Vec<_> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| ent(i as u64 + 1, t))
            .collect();
        s.wl().append(&ents).unwrap();
        RaftLog::new(s, None)
    }

    #[test]
    fn maybe_append_matches_and_truncates() {
        let mut l = log_with(&[1, 2, 3]);
        assert_eq!(l.maybe_append(3, 2, 3, &[]), None);
        assert_eq!(l.maybe_append(1, 1, 3, &[ent(2, 4)]), Some(2));
        assert_eq!(l.last_index(), 2);
        assert_eq!(l.committed, 2, "commit only to last new entry");
        // Duplicate (stale) append of an already-held prefix keeps the tail.
        l.append(&[ent(3, 4)]);
        assert_eq!(l.maybe_append(1, 1, 0, &[ent(2, 4)]), Some(2));
        assert_eq!(l.last_index(), 3);
    }

    #[test]
    fn find_conflict_by_term_walks_back() {
        let l = log_with(&[1, 1, 2, 2, 5]);
        assert_eq!(l.find_conflict_by_term(5, 3), (4, 2));
        assert_eq!(l.find_conflict_by_term(5, 5), (5, 5));
        assert_eq!(l.find_conflict_by_term(9, 1), (2, 1));
        assert_eq!(l.find_conflict_by_term(5, 0), (0, 0));
        assert_eq!(l.first_index_of_term_at(4, 0), 3);
        assert_eq!(l.first_index_of_term_at(4, 4), 4);
    }

    #[test]
    fn slice_spans_storage_and_unstable() {
        let mut l = log_with(&[1, 1]);
        l.append(&[ent(3, 2), ent(4, 2)]);
        assert_eq!(l.slice(2, 5, None).unwrap().len(), 3);
        assert_eq!(l.slice(2, 5, Some(30)).unwrap().len(), 1);
        assert_eq!(l.slice(0, 2, None), Err(StorageError::Compacted));
        assert_eq!(l.term(4), Ok(2));
        assert_eq!(l.term(5), Err(StorageError::Unavailable));
    }

    #[test]
    fn committed_entries_respect_applied() {
        let mut l = log_with(&[1, 1, 1]);
        l.commit_to(2);
        assert_eq!(l.next_committed_entries().len(), 2);
        l.applied_to(1);
        assert_eq!(l.next_committed_entries(), vec![ent(2, 1)]);
        l.applied_to(2);
        assert!(!l.has_next_committed_entries());
    }
}
