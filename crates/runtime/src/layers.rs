//! Image layers on disk: content digests, and OCI whiteouts turned into
//! what overlayfs understands.
//!
//! Why whiteouts: an image layer deletes a file of a lower layer by
//! shipping an empty `.wh.<name>` next to where it was, and hides a whole
//! lower directory with `.wh..wh..opq` inside it. `tar` unpacks those
//! markers as ordinary files, which overlayfs would show as they are (and
//! the deleted file would come back). overlayfs itself marks a deletion with
//! a 0/0 character device and an opaque directory with the
//! `trusted.overlay.opaque=y` xattr, so each unpacked layer is converted once.
//!
//! Why digests: a layer or config whose bytes do not hash to the digest the
//! manifest names is corrupt or tampered with, and must not be stored.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// Check that `path` hashes to `digest` (`sha256:<hex>`); other algorithms
/// are refused rather than trusted unchecked.
pub fn verify(path: &Path, digest: &str) -> Result<()> {
    let Some(want) = digest.strip_prefix("sha256:") else {
        bail!("unsupported digest algorithm in {digest:?} (only sha256 is verified)");
    };
    let got = sha256_file(path)?;
    if got != want {
        bail!("content of {digest} does not match its digest (it hashes to sha256:{got})");
    }
    Ok(())
}

/// Whether a file starts with the gzip magic (compressed layers hash
/// differently from the uncompressed diff IDs).
pub fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b]
}

fn cstr(p: &Path) -> Result<CString> {
    Ok(CString::new(p.as_os_str().as_bytes())?)
}

/// Convert the whiteout markers under `dir` (one unpacked layer) into
/// overlayfs whiteouts; returns how many were converted.
pub fn convert_whiteouts(dir: &Path) -> Result<usize> {
    let mut converted = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let path = e.path();
        let ft = e.file_type()?;
        if name == OPAQUE {
            std::fs::remove_file(&path)?;
            let (attr, value) = (c"trusted.overlay.opaque", b"y");
            let r = unsafe { libc::lsetxattr(cstr(dir)?.as_ptr(), attr.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
            if r != 0 {
                bail!("marking {} opaque: {}", dir.display(), std::io::Error::last_os_error());
            }
            converted += 1;
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            std::fs::remove_file(&path)?;
            let target = dir.join(hidden);
            if let Ok(md) = std::fs::symlink_metadata(&target) {
                if md.is_dir() {
                    std::fs::remove_dir_all(&target)?;
                } else {
                    std::fs::remove_file(&target)?;
                }
            }
            let r = unsafe { libc::mknod(cstr(&target)?.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) };
            if r != 0 {
                bail!("whiteout {}: {}", target.display(), std::io::Error::last_os_error());
            }
            converted += 1;
        } else if ft.is_dir() {
            converted += convert_whiteouts(&path)?;
        }
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn digests_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("blob");
        std::fs::write(&f, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&f).unwrap(), abc);
        verify(&f, &format!("sha256:{abc}")).unwrap();
        let err = verify(&f, "sha256:00").unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
        assert!(verify(&f, "md5:00").is_err());
        assert!(!is_gzip(&f));
    }

    /// Converted whiteouts hide lower files and directories under a real
    /// overlay mount (root only: mknod of a device and trusted xattrs).
    #[test]
    fn whiteouts_hide_lower_files_in_an_overlay() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (lower, upper_layer, work, upper, merged) =
            (d.path().join("l0"), d.path().join("l1"), d.path().join("w"), d.path().join("u"), d.path().join("m"));
        for p in [&lower, &upper_layer, &work, &upper, &merged] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::create_dir_all(lower.join("etc/conf.d")).unwrap();
        std::fs::write(lower.join("etc/gone"), "x").unwrap();
        std::fs::write(lower.join("etc/kept"), "x").unwrap();
        std::fs::write(lower.join("etc/conf.d/old"), "x").unwrap();
        // The upper layer as tar unpacked it: markers as plain files.
        std::fs::create_dir_all(upper_layer.join("etc/conf.d")).unwrap();
        std::fs::write(upper_layer.join("etc/.wh.gone"), "").unwrap();
        std::fs::write(upper_layer.join("etc/conf.d/.wh..wh..opq"), "").unwrap();
        std::fs::write(upper_layer.join("etc/conf.d/new"), "y").unwrap();
        assert_eq!(convert_whiteouts(&upper_layer).unwrap(), 2);
        assert!(std::fs::symlink_metadata(upper_layer.join("etc/gone")).unwrap().file_type().is_char_device());
        assert!(!upper_layer.join("etc/.wh.gone").exists());

        let opts = format!("lowerdir={}:{},upperdir={},workdir={}", upper_layer.display(), lower.display(), upper.display(), work.display());
        let r = unsafe {
            libc::mount(c"overlay".as_ptr(), cstr(&merged).unwrap().as_ptr(), c"overlay".as_ptr(), 0, CString::new(opts).unwrap().as_ptr().cast())
        };
        assert_eq!(r, 0, "mount: {}", std::io::Error::last_os_error());
        let seen = |p: &str| merged.join(p).exists();
        let result = (seen("etc/kept"), seen("etc/gone"), seen("etc/conf.d/new"), seen("etc/conf.d/old"));
        unsafe { libc::umount2(cstr(&merged).unwrap().as_ptr(), libc::MNT_DETACH) };
        assert_eq!(result, (true, false, true, false), "(kept, gone, new, old)");
    }
}
