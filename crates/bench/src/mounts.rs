//! Leaving no mount behind. A bench's agent mounts under its temporary
//! directory (the runtime's state tmpfs, container root filesystems, the
//! kubelet's secret and projected volume tmpfs); a killed agent leaves them,
//! and removing the directory would only empty them.

use std::path::{Path, PathBuf};

/// Mount points strictly under `dir`, deepest first.
fn under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Field 5 is the mount point (octal escapes only for whitespace and `\`,
    // which a tempdir path does not have).
    let mut found: Vec<PathBuf> = info.lines().filter_map(|l| l.split(' ').nth(4)).map(PathBuf::from).filter(|p| p.starts_with(dir) && p != dir).collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything under its directory when dropped: declare it
/// after the temporary directory and before the processes that mount, so it
/// runs after they are killed and before the directory is removed.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        for m in under(&self.0) {
            if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}
