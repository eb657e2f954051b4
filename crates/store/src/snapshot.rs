//! Snapshots of the state machine, so the log can be truncated and restarts
//! don't replay all history.
//!
//! A snapshot file `<applied index>.snap` holds a `SnapshotMeta` record and
//! then one `SnapshotKeyHistory` record per key, framed like the WAL. It is
//! written to a temporary name, fsynced and renamed, so a crash leaves either
//! the old snapshot or the new one, never half of one. A damaged snapshot is
//! an error: the log before it may already be gone.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use etcdpb::skiffpb::{SnapshotKeyHistory, SnapshotMeta};
use prost::Message;

use crate::record::{self, corrupt, Frame};
use crate::state::{StateMachine, Version};
use crate::wal::sync_dir;

fn snap_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:016x}.snap"))
}

fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".snap") {
            if let Ok(i) = u64::from_str_radix(stem, 16) {
                out.push((i, e.path()));
            }
        } else if name.ends_with(".snap.tmp") {
            // Left by a crash mid-write; never renamed, so never trusted.
            let _ = fs::remove_file(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Write a snapshot of the given state, then drop older snapshots.
pub fn save(dir: &Path, meta: &SnapshotMeta, keys: &[(Bytes, Vec<Version>)]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = snap_path(dir, meta.applied_index);
    let tmp = path.with_extension("snap.tmp");
    let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
    let mut buf = Vec::new();
    record::encode(&mut buf, &meta.encode_to_vec());
    for (k, hist) in keys {
        if buf.len() > (1 << 20) {
            w.write_all(&buf)?;
            buf.clear();
        }
        record::encode(&mut buf, &StateMachine::history_record(k, hist).encode_to_vec());
    }
    w.write_all(&buf)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    for (i, p) in list(dir)? {
        if i < meta.applied_index {
            fs::remove_file(p)?;
        }
    }
    Ok(path)
}

/// The path of the snapshot file for `index` (which may not exist).
pub fn path_for(dir: &Path, index: u64) -> PathBuf {
    snap_path(dir, index)
}

/// Install a snapshot file received whole from a Raft leader (its bytes are
/// exactly a snapshot file's): decode it first, so garbage is never made the
/// newest snapshot, then write it like [`save`] and return the state.
pub fn install(dir: &Path, index: u64, data: &[u8]) -> io::Result<StateMachine> {
    let sm = decode(data, &format!("received snapshot {index}"))?;
    fs::create_dir_all(dir)?;
    let path = snap_path(dir, index);
    let tmp = path.with_extension("snap.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    for (i, p) in list(dir)? {
        if i < index {
            fs::remove_file(p)?;
        }
    }
    Ok(sm)
}

/// Load the newest snapshot, if there is one.
pub fn load_latest(dir: &Path) -> io::Result<Option<StateMachine>> {
    fs::create_dir_all(dir)?;
    let Some((_, path)) = list(dir)?.pop() else { return Ok(None) };
    let data = fs::read(&path)?;
    decode(&data, &path.display().to_string()).map(Some)
}

fn decode(data: &[u8], what: &str) -> io::Result<StateMachine> {
    let bad = |w: &str| corrupt(format!("snapshot {what}: {w}"));
    let Frame::Record(m, mut pos) = record::decode(data, 0) else { return Err(bad("unreadable header")) };
    let meta = SnapshotMeta::decode(m).map_err(|_| bad("undecodable header"))?;
    let mut keys = Vec::with_capacity(meta.key_count as usize);
    loop {
        match record::decode(data, pos) {
            Frame::Record(r, next) => {
                keys.push(SnapshotKeyHistory::decode(r).map_err(|_| bad("undecodable key record"))?);
                pos = next;
            }
            Frame::End => break,
            _ => return Err(bad(&format!("corrupt record at offset {pos}"))),
        }
    }
    if keys.len() as u64 != meta.key_count {
        return Err(bad(&format!("holds {} keys, header says {}", keys.len(), meta.key_count)));
    }
    Ok(StateMachine::restore(&meta, keys))
}
