//! The Raft log on disk: entries with their terms, the hard state (term,
//! vote, commit) and snapshot marks, as checksummed records (`record.rs`
//! framing) in files `<seq>.rlog` under `member/raft`.
//!
//! Why not the single-member WAL: a follower's log can be *overwritten* (a
//! deposed leader's uncommitted tail), and term and vote must be durable.
//! Replay handles both by applying records in order: an entry at an index
//! already present replaces it and everything after it, the last hard state
//! wins, and a snapshot mark resets the log's base. Compaction writes a new
//! file (mark, hard state, retained entries), fsyncs it, then deletes the
//! older files, so a crash at any point leaves a complete log.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use etcdpb::skiffpb::{raft_log_record::Rec, RaftLogRecord};
use prost::Message;
use skiff_raft::{Entry, HardState, MemStorage, Snapshot, SnapshotMetadata};

use super::codec;
use crate::record::{self, corrupt, Frame};
use crate::wal::{preallocate, sync_dir};

pub struct RaftLog {
    dir: PathBuf,
    file: File,
    seq: u64,
    size: u64,
    buf: Vec<u8>,
}

fn file_name(seq: u64) -> String {
    format!("{seq:016x}.rlog")
}

fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rlog") {
            if let Ok(seq) = u64::from_str_radix(stem, 16) {
                out.push((seq, e.path()));
            }
        } else if name.ends_with(".rlog.tmp") {
            let _ = fs::remove_file(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// What replay found: the storage Raft reads, and whether anything was there.
pub struct Loaded {
    pub storage: MemStorage,
    pub existed: bool,
}

impl RaftLog {
    /// Open the log, replaying it into a fresh [`MemStorage`]. A record cut
    /// short at the end of the newest file (a crash mid-append, never acted
    /// on) is truncated; damage anywhere else refuses to start.
    pub fn open(dir: &Path) -> io::Result<(RaftLog, Loaded)> {
        fs::create_dir_all(dir)?;
        let files = list(dir)?;
        let storage = MemStorage::new();
        let n = files.len();
        let mut tail = 0u64;
        for (i, (_, path)) in files.iter().enumerate() {
            let newest = i + 1 == n;
            let data = fs::read(path)?;
            let mut pos = 0;
            loop {
                match record::decode(&data, pos) {
                    Frame::Record(payload, next) => {
                        let rec = RaftLogRecord::decode(payload)
                            .map_err(|e| corrupt(format!("raft log {}: offset {pos}: {e}", path.display())))?;
                        replay(&storage, rec).map_err(|e| corrupt(format!("raft log {}: {e}", path.display())))?;
                        pos = next;
                    }
                    Frame::End => break,
                    _ if data[pos..].iter().all(|b| *b == 0) => break,
                    Frame::Torn | Frame::Bad if newest && !record::any_record_after(&data, pos + 1) => {
                        tracing::warn!(file = %path.display(), offset = pos, "truncating torn write at the end of the raft log");
                        let f = OpenOptions::new().write(true).open(path)?;
                        f.set_len(pos as u64)?;
                        preallocate(&f);
                        f.sync_all()?;
                        break;
                    }
                    _ => return Err(corrupt(format!("raft log {}: corrupt record at offset {pos}", path.display()))),
                }
            }
            if newest {
                tail = pos as u64;
            }
        }
        let existed = !files.is_empty();
        let (file, seq, size) = match files.last() {
            Some((seq, path)) => (OpenOptions::new().write(true).open(path)?, *seq, tail),
            None => {
                let path = dir.join(file_name(0));
                let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
                preallocate(&f);
                f.sync_all()?;
                sync_dir(dir)?;
                (f, 0, 0)
            }
        };
        Ok((RaftLog { dir: dir.to_owned(), file, seq, size, buf: Vec::new() }, Loaded { storage, existed }))
    }

    fn push(&mut self, rec: Rec) {
        record::encode(&mut self.buf, &RaftLogRecord { rec: Some(rec) }.encode_to_vec());
    }

    pub fn append(&mut self, entries: &[Entry]) {
        for e in entries {
            self.push(Rec::Entry(codec::entry_to_pb(e)));
        }
    }

    pub fn hard_state(&mut self, hs: &HardState) {
        self.push(Rec::HardState(codec::hard_state_to_pb(hs)));
    }

    pub fn snapshot_mark(&mut self, meta: &SnapshotMetadata) {
        self.push(Rec::Snapshot(codec::meta_to_pb(meta)));
    }

    /// Write what was queued; with `sync`, fdatasync before returning (so
    /// messages that depend on it may be sent).
    pub fn flush(&mut self, sync: bool) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.size)?;
            self.size += self.buf.len() as u64;
            self.buf.clear();
        }
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Replace the log with a new file holding `meta` (the snapshot it now
    /// starts after), `hs` and `entries`, then delete the older files.
    pub fn rewrite(&mut self, meta: &SnapshotMetadata, hs: &HardState, entries: &[Entry]) -> io::Result<()> {
        self.flush(true)?;
        let seq = self.seq + 1;
        let path = self.dir.join(file_name(seq));
        let tmp = path.with_extension("rlog.tmp");
        let mut buf = Vec::new();
        let mut push = |rec: Rec| record::encode(&mut buf, &RaftLogRecord { rec: Some(rec) }.encode_to_vec());
        push(Rec::Snapshot(codec::meta_to_pb(meta)));
        push(Rec::HardState(codec::hard_state_to_pb(hs)));
        for e in entries {
            push(Rec::Entry(codec::entry_to_pb(e)));
        }
        let f = OpenOptions::new().create(true).truncate(true).write(true).open(&tmp)?;
        preallocate(&f);
        f.write_all_at(&buf, 0)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        for (s, p) in list(&self.dir)? {
            if s < seq {
                fs::remove_file(p)?;
            }
        }
        sync_dir(&self.dir)?;
        self.file = f;
        self.seq = seq;
        self.size = buf.len() as u64;
        Ok(())
    }
}

fn replay(storage: &MemStorage, rec: RaftLogRecord) -> Result<(), String> {
    let mut core = storage.wl();
    match rec.rec {
        Some(Rec::Entry(e)) => {
            let e = codec::entry_from_pb(e);
            let last = core.all_entries().last().map(|e| e.index);
            let first = core.snapshot_ref().metadata.index + 1;
            if e.index > last.map_or(first, |l| l + 1) {
                return Err(format!("entry {} leaves a gap after {last:?}", e.index));
            }
            core.append(&[e]).map_err(|e| e.to_string())
        }
        Some(Rec::HardState(h)) => {
            core.set_hard_state(codec::hard_state_from_pb(h));
            Ok(())
        }
        Some(Rec::Snapshot(m)) => {
            let meta = codec::meta_from_pb(m);
            if meta.index == 0 {
                core.set_conf_state(meta.conf_state);
                return Ok(());
            }
            if meta.index <= core.snapshot_ref().metadata.index {
                return Ok(());
            }
            // As at run time: the snapshot replaces the whole log; entries
            // after it (a compacted log's tail) follow the mark in the file.
            core.apply_snapshot(Snapshot { metadata: meta, data: Vec::new() }).map_err(|e| e.to_string())
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_raft::{ConfState, Storage};

    fn e(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![index as u8], ..Default::default() }
    }

    #[test]
    fn replay_overwrites_tail_and_keeps_hard_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, loaded) = RaftLog::open(dir.path()).unwrap();
        assert!(!loaded.existed);
        log.snapshot_mark(&SnapshotMetadata { conf_state: ConfState::with_voters([1, 2, 3]), index: 0, term: 0 });
        log.append(&[e(1, 1), e(2, 1), e(3, 1)]);
        log.hard_state(&HardState { term: 1, vote: 1, commit: 1 });
        log.flush(true).unwrap();
        // A new leader overwrites index 2 onwards.
        log.append(&[e(2, 2)]);
        log.hard_state(&HardState { term: 2, vote: 3, commit: 2 });
        log.flush(true).unwrap();
        drop(log);
        let (mut log, loaded) = RaftLog::open(dir.path()).unwrap();
        let s = &loaded.storage;
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        let (hs, cs) = s.initial_state().unwrap();
        assert_eq!(hs, HardState { term: 2, vote: 3, commit: 2 });
        assert_eq!(cs, ConfState::with_voters([1, 2, 3]));
        // Compaction: a new file starting after index 1.
        let meta = SnapshotMetadata { conf_state: cs.clone(), index: 1, term: 1 };
        log.rewrite(&meta, &hs, &[e(2, 2)]).unwrap();
        log.append(&[e(3, 2)]);
        log.flush(true).unwrap();
        drop(log);
        let (_, loaded) = RaftLog::open(dir.path()).unwrap();
        let s = &loaded.storage;
        assert_eq!(s.first_index().unwrap(), 2);
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.term(1).unwrap(), 1);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
