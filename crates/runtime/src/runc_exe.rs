//! runc started from a sealed copy of itself in memory.
//!
//! Every `runc init` (the process that becomes a container) first makes
//! sure it is not running from the host's runc binary, which a container
//! could otherwise reopen through `/proc/<pid>/exe` and overwrite
//! (CVE-2019-5736). Unless it already runs from a sealed memfd, it makes a
//! read-only bind mount of itself in a temporary file, re-executes from it
//! and unmounts it again: an extra exec of runc, and three mount-table
//! changes under the kernel's global mount lock, for every container. In a
//! burst of pod starts those queue behind every other container's mounts.
//!
//! runc itself accepts a better way (see its `cloned_binary.c`): when
//! `/proc/self/exe` is a memfd sealed against every change, the check passes
//! at once. So the runtime makes that copy once at startup, seals it, and
//! starts runc from it; `runc init` re-executes `/proc/self/exe`, which is
//! then that memfd. The protection is the same (a sealed memfd cannot be
//! written by anyone); only the per-container copy is gone.
//!
//! The memfd lives in this process, so the copy is reached by a path: a
//! symlink in the runtime's state directory to `/proc/<our pid>/fd/<n>`,
//! named `runc` so that runc's processes still show as `runc`. A restarted
//! agent replaces the link. Where any step fails (an old kernel, or
//! `vm.memfd_noexec` forbidding executable memfds), the runtime uses the
//! runc binary as configured and runc does its own copy as before.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// runc's seals for its own copies (`RUNC_MEMFD_SEALS`): no more seals,
/// no shrinking, no growing, no writing. runc accepts exactly these.
const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// `MFD_EXEC` (Linux 6.3): an executable memfd, said explicitly so the
/// kernel does not warn; older kernels refuse the flag, and get none.
const MFD_EXEC: libc::c_uint = 0x10;

/// The sealed copies, by binary, kept open for the life of the process.
static COPIES: std::sync::Mutex<Vec<(PathBuf, OwnedFd)>> = std::sync::Mutex::new(Vec::new());

/// Where `runc` names a binary: as given if it has a slash, else found on PATH.
fn resolve(runc: &str) -> Option<PathBuf> {
    if runc.contains('/') {
        return Some(PathBuf::from(runc));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(runc)).find(|p| p.is_file())
}

fn sealed_copy(binary: &Path) -> Result<OwnedFd> {
    let name = c"runc";
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new fd or -1.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
    if fd < 0 {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("memfd_create");
    }
    // SAFETY: fd was just returned to us and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut out = File::from(fd.try_clone()?);
    let mut src = File::open(binary).with_context(|| format!("opening {}", binary.display()))?;
    std::io::copy(&mut src, &mut out).context("copying runc")?;
    out.flush()?;
    // SAFETY: plain fcntl/fchmod calls on a valid fd.
    unsafe {
        if libc::fchmod(fd.as_raw_fd(), 0o755) != 0 {
            return Err(std::io::Error::last_os_error()).context("fchmod");
        }
        if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) != 0 {
            return Err(std::io::Error::last_os_error()).context("sealing the copy");
        }
    }
    Ok(fd)
}

/// Make the sealed copy of `runc` and a `runc` symlink to it in `dir`;
/// returns the link's path, or why not (the caller keeps `runc` as it is).
pub fn prepare(runc: &str, dir: &Path) -> Result<PathBuf> {
    let binary = resolve(runc).with_context(|| format!("{runc} not found on PATH"))?;
    let raw = {
        let mut copies = COPIES.lock().unwrap_or_else(|e| e.into_inner());
        match copies.iter().find(|(b, _)| *b == binary) {
            Some((_, fd)) => fd.as_raw_fd(),
            None => {
                let fd = sealed_copy(&binary)?;
                let raw = fd.as_raw_fd();
                copies.push((binary, fd));
                raw
            }
        }
    };
    std::fs::create_dir_all(dir)?;
    let link = dir.join("runc");
    let tmp = dir.join(".runc.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("/proc/{}/fd/{raw}", std::process::id()), &tmp)?;
    std::fs::rename(&tmp, &link)?;
    // The copy must actually run (vm.memfd_noexec can forbid it).
    let out = std::process::Command::new(&link).arg("--version").output().with_context(|| format!("running {}", link.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&link);
        bail!("{} --version: {}", link.display(), out.status);
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed copy runs, carries runc's exact seals, and refuses writes.
    #[test]
    fn the_copy_is_sealed_as_runc_expects_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        // Any binary will do for the sealing; `true` is everywhere.
        let fd = sealed_copy(&resolve("true").unwrap()).unwrap();
        // SAFETY: fcntl F_GET_SEALS on a valid fd.
        assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) }, SEALS);
        let mut f = File::from(fd.try_clone().unwrap());
        assert!(f.write_all(b"x").is_err(), "a sealed memfd takes no writes");
        let link = dir.path().join("true");
        std::os::unix::fs::symlink(format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd()), &link).unwrap();
        assert!(std::process::Command::new(&link).status().unwrap().success());
    }
}
