//! Memory-backed directories. Per-container state (bundles, FIFOs, pid and
//! exit files, runc's own state) and the kubelet's secret and projected
//! volumes are small, short-lived files created in bursts; on a disk
//! filesystem every one of them costs an inode allocation (ext4's
//! `__ext4_new_inode` showed up as a large share of a pod burst's CPU).
//! Upstream keeps the same things in memory: containerd's state lives
//! under `/run` (a tmpfs on normal machines) and the kubelet mounts a tmpfs
//! for each secret and projected volume.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `f_type` of a tmpfs in `statfs(2)`.
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))
}

/// Whether `path` is on a tmpfs (itself a tmpfs mount, or inside one).
pub fn is_tmpfs(path: &Path) -> bool {
    let Ok(c) = cstr(path) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == TMPFS_MAGIC }
}

/// Mount a new tmpfs at `path` (which must exist) with `options`
/// (`size=…,mode=…`), nosuid and nodev.
pub fn mount(path: &Path, options: &str) -> io::Result<()> {
    let target = cstr(path)?;
    let fstype = CString::new("tmpfs").unwrap();
    let data = CString::new(options).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "options with a NUL byte"))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    if unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Make `path` a directory on a tmpfs: create it, and mount a tmpfs there
/// unless it already is on one. Never mounts over an existing tmpfs: after
/// an agent restart that one holds the state of running containers.
/// Returns whether it mounted.
pub fn ensure(path: &Path, options: &str) -> io::Result<bool> {
    std::fs::create_dir_all(path)?;
    if is_tmpfs(path) {
        return Ok(false);
    }
    mount(path, options)?;
    Ok(true)
}

/// Whether `path` is a mount point: on another device than its parent.
pub fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(path), std::fs::metadata(path.join(".."))) {
        (Ok(m), Ok(parent)) => m.is_dir() && m.dev() != parent.dev(),
        _ => false,
    }
}

/// Detach the mount at `path` (lazily: a process still inside it keeps it
/// until it leaves). Errors (not a mount point) are ignored.
pub fn unmount(path: &Path) {
    if let Ok(c) = cstr(path) {
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        unsafe { libc::geteuid() == 0 }
    }

    /// A mount point of `path` in this process's mount table.
    fn mounted(path: &Path) -> usize {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines().filter(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap())).count()
    }

    #[test]
    fn a_plain_directory_is_not_tmpfs() {
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        // The worktree is on a disk filesystem here; /dev/shm is a tmpfs where it exists.
        assert!(!is_tmpfs(d.path()) || is_tmpfs(Path::new(env!("CARGO_MANIFEST_DIR"))));
        assert!(!is_tmpfs(&d.path().join("missing")));
        if Path::new("/dev/shm").is_dir() {
            assert!(is_tmpfs(Path::new("/dev/shm")));
        }
    }

    #[test]
    fn ensure_mounts_once_and_never_over_a_tmpfs() {
        if !is_root() {
            eprintln!("skipping: mounting needs root");
            return;
        }
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let state = d.path().join("state");
        assert!(!is_mount_point(&state.parent().unwrap().join("missing")));
        assert!(ensure(&state, "size=1m,mode=0700").unwrap());
        assert!(is_tmpfs(&state));
        assert!(is_mount_point(&state));
        std::fs::create_dir(state.join("sub")).unwrap();
        assert!(!is_mount_point(&state.join("sub")));
        assert_eq!(mounted(&state), 1);
        std::fs::write(state.join("kept"), b"x").unwrap();
        // A second agent start finds the tmpfs and its files as they were.
        assert!(!ensure(&state, "size=1m,mode=0700").unwrap());
        assert_eq!(mounted(&state), 1);
        assert_eq!(std::fs::read(state.join("kept")).unwrap(), b"x");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        unmount(&state);
        assert_eq!(mounted(&state), 0);
        assert!(!is_tmpfs(&state));
        assert!(!is_mount_point(&state));
        assert!(!state.join("kept").exists());
    }
}
