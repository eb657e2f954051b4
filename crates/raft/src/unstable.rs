//! The not-yet-persisted tail of the log.
//!
//! New entries (and a snapshot received from the leader) live here until the
//! application persists them from a `Ready` and calls `advance`. Keeping them
//! apart from `Storage` is what lets Raft stay pure: it never writes, it only
//! hands out what needs writing.

use crate::message::{Entry, Snapshot};

#[derive(Debug, Default)]
pub struct Unstable {
    /// A snapshot to install, from the leader. Entries (if any) follow it.
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    /// Index of `entries[0]` (or where it would be).
    pub offset: u64,
}

impl Unstable {
    pub fn new(offset: u64) -> Unstable {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
        }
    }

    /// First index known only from the unstable snapshot.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    pub fn maybe_last_index(&self) -> Option<u64> {
        if !self.entries.is_empty() {
            return Some(self.offset + self.entries.len() as u64 - 1);
        }
        self.snapshot.as_ref().map(|s| s.metadata.index)
    }

    pub fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            let s = self.snapshot.as_ref()?;
            return (s.metadata.index == index).then_some(s.metadata.term);
        }
        let last = self.maybe_last_index()?;
        if index > last {
            return None;
        }
        Some(self.entries[(index - self.offset) as usize].term)
    }

    /// Entries up to `index` (with `term`) were persisted. The term check
    /// guards against the entries having been replaced meanwhile.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset {
            return;
        }
        if self.maybe_term(index) == Some(term) {
            let n = (index + 1 - self.offset) as usize;
            self.entries.drain(..n);
            self.offset = index + 1;
        }
    }

    pub fn stable_snap_to(&mut self, index: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.snapshot = None;
        }
    }

    pub fn restore(&mut self, snap: Snapshot) {
        self.offset = snap.metadata.index + 1;
        self.entries.clear();
        self.snapshot = Some(snap);
    }

    /// Append `ents`, which start at or before our end; anything we hold
    /// from that index on is a conflicting suffix and is replaced.
    pub fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(after) = ents.first().map(|e| e.index) else {
            return;
        };
        let end = self.offset + self.entries.len() as u64;
        if after == end {
            // Directly after what we have.
        } else if after <= self.offset {
            // Replaces everything unstable (and possibly part of storage,
            // which the application overwrites when it persists these).
            self.offset = after;
            self.entries.clear();
        } else {
            assert!(after < end, "gap in unstable log: {after} after {end}");
            self.entries.truncate((after - self.offset) as usize);
        }
        self.entries.extend_from_slice(ents);
    }

    /// Entries in `[lo, hi)`; the caller has checked the bounds.
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        assert!(lo >= self.offset && hi <= self.offset + self.entries.len() as u64 && lo <= hi);
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::SnapshotMetadata;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn truncate_and_append_cases() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&[ent(5, 1), ent(6, 1)]);
        u.truncate_and_append(&[ent(7, 1)]);
        assert_eq!(u.maybe_last_index(), Some(7));
        u.truncate_and_append(&[ent(6, 2)]);
        assert_eq!(u.entries, vec![ent(5, 1), ent(6, 2)]);
        u.truncate_and_append(&[ent(4, 3)]);
        assert_eq!(u.offset, 4);
        assert_eq!(u.entries, vec![ent(4, 3)]);
    }

    #[test]
    fn stable_to_checks_term() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&[ent(1, 1), ent(2, 1)]);
        u.stable_to(1, 2);
        assert_eq!(u.offset, 1);
        u.stable_to(1, 1);
        assert_eq!(u.offset, 2);
        assert_eq!(u.entries, vec![ent(2, 1)]);
    }

    #[test]
    fn snapshot_term_and_restore() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&[ent(1, 1)]);
        let snap = Snapshot {
            metadata: SnapshotMetadata {
                index: 10,
                term: 4,
                ..Default::default()
            },
            data: vec![],
        };
        u.restore(snap);
        assert_eq!(u.maybe_term(10), Some(4));
        assert_eq!(u.maybe_term(9), None);
        assert_eq!(u.maybe_first_index(), Some(11));
        assert_eq!(u.maybe_last_index(), Some(10));
        u.stable_snap_to(10);
        assert!(u.snapshot.is_none());
    }
}
