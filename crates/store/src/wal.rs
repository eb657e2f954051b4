//! The write-ahead log: every command, in order, checksummed and fsynced
//! before it is applied or acknowledged.
//!
//! The log is a directory of segment files named `<seq>-<first index>.wal`
//! (both hex). A segment is closed when a snapshot is taken or it grows past
//! [`SEGMENT_BYTES`]; segments wholly covered by a snapshot are deleted.
//!
//! On open, a record cut short at the end of the newest segment (a write that
//! a crash interrupted, so never acknowledged) is truncated away. Damage
//! anywhere else, or a gap in entry indexes, is reported as corruption: the
//! store refuses to start rather than silently drop acknowledged data.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use etcdpb::skiffpb::Entry;
use prost::Message;

use crate::record::{self, corrupt, Frame};

pub const SEGMENT_BYTES: u64 = 64 << 20;

pub struct Wal {
    dir: PathBuf,
    file: File,
    seq: u64,
    size: u64,
    last_index: u64,
    buf: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    seq: u64,
    first: u64,
    path: PathBuf,
}

fn segment_name(seq: u64, first: u64) -> String {
    format!("{seq:016x}-{first:016x}.wal")
}

fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segs = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".wal") else { continue };
        let Some((a, b)) = stem.split_once('-') else { continue };
        let (Ok(seq), Ok(first)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else { continue };
        segs.push(Segment { seq, first, path: e.path() });
    }
    segs.sort_by_key(|s| s.seq);
    Ok(segs)
}

/// Reserve the segment's blocks up front: an fdatasync after writing into
/// allocated space need not also commit a growing file size, which made
/// appends measurably slower here. Best effort: without it the log still works.
pub(crate) fn preallocate(f: &File) {
    // SAFETY: posix_fallocate only reads its integer arguments; the fd is owned by `f` and open.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, SEGMENT_BYTES as libc::off_t) };
    if rc != 0 {
        tracing::debug!("posix_fallocate failed ({rc}); the log grows by appending");
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Open (or create) the log in `dir` and return the entries after `after`
    /// (the snapshot's index), in order.
    pub fn open(dir: &Path, after: u64) -> io::Result<(Wal, Vec<Entry>)> {
        fs::create_dir_all(dir)?;
        let segs = list_segments(dir)?;
        let mut entries = Vec::new();
        let mut last_index = after;
        let mut expect: Option<u64> = None;
        let n = segs.len();
        let mut tail_size = 0;
        for (i, seg) in segs.iter().enumerate() {
            let newest = i + 1 == n;
            let data = fs::read(&seg.path)?;
            let mut pos = 0;
            loop {
                match record::decode(&data, pos) {
                    Frame::Record(payload, next) => {
                        let e = Entry::decode(payload).map_err(|e| {
                            corrupt(format!("wal {}: undecodable entry at offset {pos}: {e}", seg.path.display()))
                        })?;
                        if let Some(want) = expect
                            && e.index != want {
                                return Err(corrupt(format!(
                                    "wal {}: entry index {} at offset {pos}, expected {want}",
                                    seg.path.display(),
                                    e.index
                                )));
                            }
                        expect = Some(e.index + 1);
                        if e.index > after {
                            last_index = e.index;
                            entries.push(e);
                        } else {
                            last_index = last_index.max(e.index);
                        }
                        pos = next;
                    }
                    Frame::End => break,
                    // Preallocated space not yet written.
                    _ if data[pos..].iter().all(|b| *b == 0) => break,
                    Frame::Torn | Frame::Bad if newest && !record::any_record_after(&data, pos + 1) => {
                        tracing::warn!(segment = %seg.path.display(), offset = pos,
                            "truncating torn write at the end of the log");
                        let f = OpenOptions::new().write(true).open(&seg.path)?;
                        f.set_len(pos as u64)?;
                        preallocate(&f);
                        f.sync_all()?;
                        break;
                    }
                    _ => {
                        return Err(corrupt(format!(
                            "wal {}: corrupt record at offset {pos} (checksum mismatch or bad length)",
                            seg.path.display()
                        )));
                    }
                }
            }
            if newest {
                tail_size = pos as u64;
            }
        }
        if let Some(e) = entries.first() {
            // The first entry after the snapshot must follow it directly: anything else means entries are missing.
            if e.index != after + 1 {
                return Err(corrupt(format!("wal: first entry after snapshot {after} is {}", e.index)));
            }
        }
        if let Some(seg) = segs.last() {
            let file = OpenOptions::new().write(true).open(&seg.path)?;
            let wal = Wal { dir: dir.to_owned(), file, seq: seg.seq, size: tail_size, last_index, buf: Vec::new() };
            Ok((wal, entries))
        } else {
            let (file, seq) = Self::create_segment(dir, 0, after + 1)?;
            Ok((Wal { dir: dir.to_owned(), file, seq, size: 0, last_index: after, buf: Vec::new() }, entries))
        }
    }

    fn create_segment(dir: &Path, seq: u64, first: u64) -> io::Result<(File, u64)> {
        let path = dir.join(segment_name(seq, first));
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        preallocate(&file);
        file.sync_all()?;
        sync_dir(dir)?;
        Ok((file, seq))
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Append entries and fsync them: when this returns Ok they survive a crash.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        if self.size >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.buf.clear();
        for e in entries {
            debug_assert_eq!(e.index, self.last_index + 1);
            self.last_index = e.index;
            record::encode(&mut self.buf, &e.encode_to_vec());
        }
        self.file.write_all_at(&self.buf, self.size)?;
        self.file.sync_data()?;
        self.size += self.buf.len() as u64;
        Ok(())
    }

    /// Close the current segment and start a new one at the next index.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let (file, seq) = Self::create_segment(&self.dir, self.seq + 1, self.last_index + 1)?;
        self.file = file;
        self.seq = seq;
        self.size = 0;
        Ok(())
    }

    /// Delete segments whose entries are all at or below `index` (covered by a snapshot).
    pub fn purge(dir: &Path, index: u64) -> io::Result<usize> {
        let segs = list_segments(dir)?;
        let mut removed = 0;
        for pair in segs.windows(2) {
            // Entries of pair[0] end at pair[1].first - 1.
            if pair[1].first <= index + 1 {
                fs::remove_file(&pair[0].path)?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(dir)?;
        }
        Ok(removed)
    }

    /// Total bytes of all segments.
    pub fn disk_size(dir: &Path) -> u64 {
        list_segments(dir)
            .map(|s| s.iter().filter_map(|s| fs::metadata(&s.path).ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(i: u64) -> Entry {
        Entry { index: i, term: 0, data: Bytes::from(format!("cmd-{i}")) }
    }

    #[test]
    fn append_reopen_rotate_purge() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, got) = Wal::open(dir.path(), 0).unwrap();
        assert!(got.is_empty());
        w.append(&[entry(1), entry(2)]).unwrap();
        w.rotate().unwrap();
        w.append(&[entry(3)]).unwrap();
        drop(w);
        let (w, got) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(w.last_index(), 3);
        drop(w);
        let (_, got) = Wal::open(dir.path(), 2).unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![3]);
        assert_eq!(Wal::purge(dir.path(), 2).unwrap(), 1);
        let (mut w, got) = Wal::open(dir.path(), 2).unwrap();
        assert_eq!(got.len(), 1);
        w.append(&[entry(4)]).unwrap();
    }

    #[test]
    fn torn_tail_is_truncated_but_middle_corruption_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        for i in 1..=5 {
            w.append(&[entry(i)]).unwrap();
        }
        drop(w);
        let seg = list_segments(dir.path()).unwrap().pop().unwrap().path;
        let data = fs::read(&seg).unwrap();
        let written = data.iter().rposition(|b| *b != 0).unwrap() + 1;
        // Cut the last record in half: a crash mid-write (the rest of the segment stays preallocated zeros).
        let mut torn = data[..written - 3].to_vec();
        torn.resize(data.len(), 0);
        fs::write(&seg, &torn).unwrap();
        let (mut w, got) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(got.len(), 4);
        w.append(&[entry(5)]).unwrap();
        drop(w);
        let (_, got) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(got.len(), 5);
        // Flip a bit in the second record: corruption with intact records after it.
        let mut data = fs::read(&seg).unwrap();
        let second = crate::record::HEADER + entry(1).encode_to_vec().len() + crate::record::HEADER + 2;
        data[second] ^= 0x40;
        fs::write(&seg, &data).unwrap();
        let err = Wal::open(dir.path(), 0).err().expect("corruption must be reported");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
