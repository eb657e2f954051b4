//! A one-layer OCI image of Debian's busybox-static, built on the spot, so
//! benches that run real containers need no registry. The integration tests
//! build the same image in their harness (crates/skiff/tests/common/node.rs);
//! test helpers cannot be linked from a binary crate, hence this small twin.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

/// The name pods use; `skiff images import` stores it as docker.io/library/….
pub const IMAGE: &str = "busybox:skiff-bench";

fn run(cmd: &str) -> Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().with_context(|| format!("run {cmd}"))?;
    ensure!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// Moves `file` into the blob store under its digest; returns (hex, size).
fn store_blob(file: &Path, blobs: &Path) -> Result<(String, u64)> {
    let hex = run(&format!("sha256sum {}", file.display()))?.split_whitespace().next().context("sha256sum output")?.to_string();
    let size = std::fs::metadata(file)?.len();
    std::fs::rename(file, blobs.join(&hex))?;
    Ok((hex, size))
}

/// Writes an OCI-layout tarball holding /bin/busybox and its applet links
/// under `dir` and returns its path.
pub fn build(dir: &Path) -> Result<PathBuf> {
    build_named(dir, IMAGE, json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}))
}

/// [`build`] with another name (`org.opencontainers.image.ref.name`) and
/// image `config` (e.g. an Entrypoint for a sandbox "pause" image); the
/// tarball is `<dir>/image-<name>.tar`.
pub fn build_named(dir: &Path, name: &str, config: Value) -> Result<PathBuf> {
    ensure!(Path::new("/bin/busybox").exists(), "/bin/busybox missing (apt-get install busybox-static)");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::create_dir_all(root.join("tmp"))?;
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))?;
    for applet in run("/bin/busybox --list")?.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    let oci = dir.join("oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let layer = dir.join("layer.tar");
    run(&format!("tar -C {} -cf {} .", root.display(), layer.display()))?;
    let (layer_hex, layer_size) = store_blob(&layer, &blobs)?;
    let json_blob = |v: Value| -> Result<(String, u64)> {
        let p = dir.join("blob.json");
        std::fs::write(&p, serde_json::to_vec(&v)?)?;
        store_blob(&p, &blobs)
    };
    let (cfg_hex, cfg_size) = json_blob(json!({"architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]}}))?;
    let (man_hex, man_size) = json_blob(json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cfg_hex}"), "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": layer_size}]}))?;
    std::fs::write(oci.join("index.json"), json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{man_hex}"), "size": man_size, "annotations": {"org.opencontainers.image.ref.name": name}}]}).to_string())?;
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let tarball = dir.join(format!("image-{}.tar", name.replace(['/', ':'], "_")));
    run(&format!("tar -C {} -cf {} .", oci.display(), tarball.display()))?;
    std::fs::remove_dir_all(&root)?;
    std::fs::remove_dir_all(&oci)?;
    Ok(tarball)
}
