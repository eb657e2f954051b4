//! The stable log: what the application has durably persisted.
//!
//! Raft only *reads* storage. Writes happen in the application, driven by
//! `Ready` (append entries, install snapshots, persist hard state) and by
//! its own compaction policy. That split is what keeps the core free of I/O.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::StorageError;
use crate::message::{ConfState, Entry, HardState, Snapshot};

type SResult<T> = std::result::Result<T, StorageError>;

/// Read access to the persisted log.
///
/// Index conventions: the log holds `first_index()..=last_index()`; the
/// entry just before `first_index()` is known only by its term (it is the
/// last entry covered by the snapshot), so `term(first_index() - 1)` works.
pub trait Storage {
    /// Persisted hard state and the membership as of the latest snapshot.
    fn initial_state(&self) -> SResult<(HardState, ConfState)>;
    /// Entries in `[lo, hi)`, stopping early once `max_size` bytes would be
    /// exceeded (but always at least one entry if any is in range).
    fn entries(&self, lo: u64, hi: u64, max_size: Option<u64>) -> SResult<Vec<Entry>>;
    fn term(&self, index: u64) -> SResult<u64>;
    fn first_index(&self) -> SResult<u64>;
    fn last_index(&self) -> SResult<u64>;
    /// The most recent snapshot, to send to a lagging follower.
    fn snapshot(&self) -> SResult<Snapshot>;
}

/// Keep entries from the front of `ents` while their total size fits in
/// `max_size`, always keeping the first.
pub fn limit_size(ents: &mut Vec<Entry>, max_size: Option<u64>) {
    let Some(max) = max_size else { return };
    let mut size = 0;
    let keep = ents
        .iter()
        .take_while(|e| {
            size += e.size();
            size <= max
        })
        .count();
    ents.truncate(keep.max(1));
}

/// The data behind [`MemStorage`].
#[derive(Debug, Default)]
pub struct MemStorageCore {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Index/term of the entry just before `entries[0]`; moves forward with
    /// compaction, which may lag behind the snapshot.
    dummy_index: u64,
    dummy_term: u64,
    entries: Vec<Entry>,
}

impl MemStorageCore {
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.snapshot.metadata.conf_state = cs;
    }

    fn first_index(&self) -> u64 {
        self.dummy_index + 1
    }

    fn last_index(&self) -> u64 {
        self.dummy_index + self.entries.len() as u64
    }

    /// All persisted entries (for tests and inspection).
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Attach the state-machine image to the current snapshot (an
    /// application that recovered the log's base from disk without it).
    pub fn set_snapshot_data(&mut self, data: Vec<u8>) {
        self.snapshot.data = data;
    }

    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Replace the whole log with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> SResult<()> {
        if snap.metadata.index <= self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.dummy_index = snap.metadata.index;
        self.dummy_term = snap.metadata.term;
        self.entries.clear();
        self.hard_state.commit = self.hard_state.commit.max(snap.metadata.index);
        self.hard_state.term = self.hard_state.term.max(snap.metadata.term);
        self.snapshot = snap;
        Ok(())
    }

    /// Record a snapshot of the application's state at `index` (which must
    /// be applied, hence present in the log).
    pub fn create_snapshot(&mut self, index: u64, cs: ConfState, data: Vec<u8>) -> SResult<()> {
        if index <= self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        let term = self.term(index)?;
        self.snapshot = Snapshot {
            metadata: crate::message::SnapshotMetadata {
                conf_state: cs,
                index,
                term,
            },
            data,
        };
        Ok(())
    }

    /// Discard entries up to and including `index`. Only indexes covered by
    /// the snapshot may be compacted, otherwise a lagging follower could be
    /// given a snapshot that still leaves a gap before `first_index`.
    pub fn compact(&mut self, index: u64) -> SResult<()> {
        if index <= self.dummy_index {
            return Err(StorageError::Compacted);
        }
        if index > self.snapshot.metadata.index {
            return Err(StorageError::Unavailable);
        }
        let term = self.term(index)?;
        let drop = (index - self.dummy_index) as usize;
        self.entries.drain(..drop);
        self.dummy_index = index;
        self.dummy_term = term;
        Ok(())
    }

    /// Append entries, overwriting any conflicting suffix (entries from a
    /// deposed leader). Entries below the first index are ignored.
    pub fn append(&mut self, ents: &[Entry]) -> SResult<()> {
        let Some(first_new) = ents.first().map(|e| e.index) else {
            return Ok(());
        };
        let first = self.first_index();
        if first_new + ents.len() as u64 <= first {
            return Ok(());
        }
        let ents = if first_new < first {
            &ents[(first - first_new) as usize..]
        } else {
            ents
        };
        let start = ents[0].index;
        assert!(
            start <= self.last_index() + 1,
            "gap in log: appending {start} after {}",
            self.last_index()
        );
        self.entries.truncate((start - first) as usize);
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    fn term(&self, index: u64) -> SResult<u64> {
        if index == self.dummy_index {
            return Ok(self.dummy_term);
        }
        if index < self.dummy_index {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        Ok(self.entries[(index - self.first_index()) as usize].term)
    }
}

/// An in-memory [`Storage`], shared by handle: the application writes to it
/// while the Raft node reads it, as with a WAL-backed store.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    core: Arc<RwLock<MemStorageCore>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A fresh storage for a founding member of a cluster with `cs`.
    pub fn new_with_conf_state(cs: ConfState) -> MemStorage {
        let s = MemStorage::new();
        s.wl().set_conf_state(cs);
        s
    }

    pub fn rl(&self) -> RwLockReadGuard<'_, MemStorageCore> {
        self.core.read().expect("MemStorage poisoned")
    }

    pub fn wl(&self) -> RwLockWriteGuard<'_, MemStorageCore> {
        self.core.write().expect("MemStorage poisoned")
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> SResult<(HardState, ConfState)> {
        let c = self.rl();
        Ok((c.hard_state, c.snapshot.metadata.conf_state.clone()))
    }

    fn entries(&self, lo: u64, hi: u64, max_size: Option<u64>) -> SResult<Vec<Entry>> {
        let c = self.rl();
        if lo <= c.dummy_index {
            return Err(StorageError::Compacted);
        }
        if hi > c.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let off = c.first_index();
        let mut ents = c.entries[(lo - off) as usize..(hi - off) as usize].to_vec();
        limit_size(&mut ents, max_size);
        Ok(ents)
    }

    fn term(&self, index: u64) -> SResult<u64> {
        self.rl().term(index)
    }

    fn first_index(&self) -> SResult<u64> {
        Ok(self.rl().first_index())
    }

    fn last_index(&self) -> SResult<u64> {
        Ok(self.rl().last_index())
    }

    fn snapshot(&self) -> SResult<Snapshot> {
        Ok(self.rl().snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_overwrites_conflicting_suffix() {
        let s = MemStorage::new();
        s.wl().append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).unwrap();
        s.wl().append(&[ent(2, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
    }

    #[test]
    fn compact_requires_snapshot_and_keeps_boundary_term() {
        let s = MemStorage::new();
        s.wl().append(&[ent(1, 1), ent(2, 2), ent(3, 3)]).unwrap();
        assert_eq!(s.wl().compact(2), Err(StorageError::Unavailable));
        s.wl()
            .create_snapshot(2, ConfState::default(), vec![1])
            .unwrap();
        s.wl().compact(2).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 2);
        assert_eq!(s.term(1), Err(StorageError::Compacted));
        assert_eq!(s.entries(2, 4, None), Err(StorageError::Compacted));
        assert_eq!(s.entries(3, 4, None).unwrap(), vec![ent(3, 3)]);
    }

    #[test]
    fn entries_respect_size_limit_but_return_one() {
        let s = MemStorage::new();
        s.wl().append(&[ent(1, 1), ent(2, 1), ent(3, 1)]).unwrap();
        assert_eq!(s.entries(1, 4, Some(0)).unwrap().len(), 1);
        assert_eq!(s.entries(1, 4, Some(48)).unwrap().len(), 2);
        assert_eq!(s.entries(1, 4, None).unwrap().len(), 3);
    }

    #[test]
    fn apply_snapshot_resets_log() {
        let s = MemStorage::new();
        s.wl().append(&[ent(1, 1), ent(2, 1)]).unwrap();
        let snap = Snapshot {
            metadata: crate::message::SnapshotMetadata {
                index: 5,
                term: 3,
                ..Default::default()
            },
            data: vec![],
        };
        s.wl().apply_snapshot(snap.clone()).unwrap();
        assert_eq!(s.first_index().unwrap(), 6);
        assert_eq!(s.last_index().unwrap(), 5);
        assert_eq!(s.term(5).unwrap(), 3);
        assert_eq!(
            s.wl().apply_snapshot(snap),
            Err(StorageError::SnapshotOutOfDate)
        );
    }
}
