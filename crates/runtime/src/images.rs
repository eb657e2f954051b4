//! The image store. An image is a record (`images/<config hex>.json`: tags,
//! layer digests, the image config's process defaults) plus its layers,
//! each unpacked once under `layers/<hex>/` and shared by every image and
//! container that uses it (overlayfs lower directories).
//!
//! Images come in as tarballs, in OCI layout (`index.json`) or docker-archive
//! (`manifest.json`) form. Pulling from registries is not written yet.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the store keeps about one image.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the image config.
    pub id: String,
    pub tags: Vec<String>,
    /// Layer digest hexes, bottom first.
    pub layers: Vec<String>,
    pub size: u64,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// `busybox` → `docker.io/library/busybox:latest`, as Kubernetes names images.
pub fn normalize(name: &str) -> String {
    let name = name.trim();
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') && !r.is_empty() => (r.to_string(), t.to_string()),
        _ => (name.to_string(), "latest".to_string()),
    };
    let repo = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => repo,
        Some(_) => format!("docker.io/{repo}"),
    };
    format!("{repo}:{tag}")
}

/// The image store under `root`.
pub struct Images {
    pub(crate) root: PathBuf,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
}

fn hex_of(digest: &str) -> &str {
    digest.rsplit(':').next().unwrap_or(digest)
}

impl Images {
    pub fn new(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join("images"))?;
        std::fs::create_dir_all(root.join("layers"))?;
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn layer_dir(&self, hex: &str) -> PathBuf {
        self.root.join("layers").join(hex)
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let Ok(rd) = std::fs::read_dir(self.root.join("images")) else { return vec![] };
        rd.flatten().filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()).collect()
    }

    /// Find by tag (normalized), by id, or by id hex prefix.
    pub fn find(&self, name: &str) -> Option<ImageRecord> {
        let norm = normalize(name);
        self.list().into_iter().find(|r| r.id == name || r.tags.contains(&norm) || (name.len() >= 12 && hex_of(&r.id).starts_with(hex_of(name))))
    }

    pub fn remove(&self, name: &str) -> Result<()> {
        if let Some(r) = self.find(name) {
            std::fs::remove_file(self.root.join("images").join(format!("{}.json", hex_of(&r.id))))?;
        }
        Ok(())
    }

    /// Import an OCI-layout or docker-archive tarball; `tag` names it when the archive does not.
    pub fn import(&self, tarball: &Path, tag: Option<&str>) -> Result<ImageRecord> {
        let tmp = self.root.join(format!("import-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&tmp)?;
        let r = self.import_dir(tarball, &tmp, tag);
        let _ = std::fs::remove_dir_all(&tmp);
        r
    }

    fn import_dir(&self, tarball: &Path, tmp: &Path, tag: Option<&str>) -> Result<ImageRecord> {
        untar(tarball, tmp)?;
        let read_json = |p: &Path| -> Result<Value> { Ok(serde_json::from_slice(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)?) };
        let blob = |d: &str| tmp.join("blobs/sha256").join(hex_of(d));
        let (config_path, layer_paths, mut tags) = if tmp.join("index.json").exists() {
            let index = read_json(&tmp.join("index.json"))?;
            let desc = &index["manifests"][0];
            let mut tags = vec![];
            if let Some(n) = desc["annotations"]["org.opencontainers.image.ref.name"].as_str() {
                tags.push(n.to_string());
            }
            let manifest_digest = desc["digest"].as_str().context("index without manifests")?;
            crate::layers::verify(&blob(manifest_digest), manifest_digest).context("the image manifest")?;
            let manifest = read_json(&blob(manifest_digest))?;
            let mut layers = vec![];
            for digest in manifest["layers"].as_array().into_iter().flatten().filter_map(|l| l["digest"].as_str()) {
                crate::layers::verify(&blob(digest), digest).context("an image layer")?;
                layers.push(blob(digest));
            }
            let config_digest = manifest["config"]["digest"].as_str().context("manifest without config")?;
            crate::layers::verify(&blob(config_digest), config_digest).context("the image config")?;
            (blob(config_digest), layers, tags)
        } else if tmp.join("manifest.json").exists() {
            let m = &read_json(&tmp.join("manifest.json"))?[0];
            let layers: Vec<PathBuf> = strings(&m["Layers"]).iter().map(|l| tmp.join(l)).collect();
            let config = tmp.join(m["Config"].as_str().context("manifest without Config")?);
            // A docker archive names layers by the digests of their uncompressed
            // tars (the config's rootfs.diff_ids): check those that are stored uncompressed.
            let diff_ids = strings(&read_json(&config)?["rootfs"]["diff_ids"]);
            if diff_ids.len() == layers.len() {
                for (l, d) in layers.iter().zip(&diff_ids) {
                    if !crate::layers::is_gzip(l) {
                        crate::layers::verify(l, d).context("an image layer")?;
                    }
                }
            }
            (config, layers, strings(&m["RepoTags"]))
        } else {
            bail!("{} is neither an OCI layout nor a docker archive", tarball.display());
        };
        if let Some(t) = tag {
            tags.push(t.to_string());
        }
        self.store(&config_path, layer_paths, &tags)
    }

    /// Record an image from its config and layer files (unpacking new layers).
    pub fn store(&self, config_path: &Path, layer_paths: Vec<PathBuf>, tags: &[String]) -> Result<ImageRecord> {
        let config_bytes = std::fs::read(config_path)?;
        let config: Value = serde_json::from_slice(&config_bytes)?;
        let id = format!("sha256:{}", sha256_hex(config_path)?);
        let mut rec = ImageRecord {
            id: id.clone(),
            tags: tags.iter().map(|t| normalize(t)).collect(),
            env: strings(&config["config"]["Env"]),
            entrypoint: strings(&config["config"]["Entrypoint"]),
            cmd: strings(&config["config"]["Cmd"]),
            working_dir: config["config"]["WorkingDir"].as_str().unwrap_or("").to_string(),
            user: config["config"]["User"].as_str().unwrap_or("").to_string(),
            ..Default::default()
        };
        for lp in layer_paths {
            let hex = sha256_hex(&lp)?;
            rec.size += std::fs::metadata(&lp)?.len();
            let dir = self.layer_dir(&hex);
            if !dir.exists() {
                let part = dir.with_extension("partial");
                let _ = std::fs::remove_dir_all(&part);
                std::fs::create_dir_all(&part)?;
                untar(&lp, &part)?;
                crate::layers::convert_whiteouts(&part).with_context(|| format!("converting the whiteouts of layer {hex}"))?;
                std::fs::rename(&part, &dir)?;
            }
            rec.layers.push(hex);
        }
        // The same image stored again keeps its other names.
        if let Some(old) = self.list().into_iter().find(|r| r.id == rec.id) {
            for t in old.tags {
                if !rec.tags.contains(&t) {
                    rec.tags.push(t);
                }
            }
        }
        // Tags move to the newest image that claims them.
        for mut other in self.list() {
            if other.id != rec.id && other.tags.iter().any(|t| rec.tags.contains(t)) {
                other.tags.retain(|t| !rec.tags.contains(t));
                self.save(&other)?;
            }
        }
        self.save(&rec)?;
        Ok(rec)
    }

    fn save(&self, rec: &ImageRecord) -> Result<()> {
        let p = self.root.join("images").join(format!("{}.json", hex_of(&rec.id)));
        std::fs::write(&p, serde_json::to_vec_pretty(rec)?)?;
        Ok(())
    }
}

/// Unpack with GNU tar (it detects gzip itself and keeps owners and modes).
fn untar(file: &Path, dir: &Path) -> Result<()> {
    let st = Command::new("tar").arg("-xf").arg(file).arg("-C").arg(dir).status().context("running tar")?;
    if !st.success() {
        bail!("tar -xf {} failed: {st}", file.display());
    }
    Ok(())
}

fn sha256_hex(file: &Path) -> Result<String> {
    crate::layers::sha256_file(file)
}

#[cfg(test)]
mod tests {
    use super::normalize;

    /// An OCI layout with one layer that deletes a file (whiteout); written
    /// with GNU tar, as `skiff images import` reads it.
    fn oci_layout(dir: &std::path::Path) -> std::path::PathBuf {
        use crate::layers::sha256_file;
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/hello"), "hi").unwrap();
        std::fs::write(rootfs.join("etc/.wh.old"), "").unwrap();
        let oci = dir.join("oci");
        let blobs = oci.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let layer = dir.join("layer.tar");
        assert!(std::process::Command::new("tar").arg("-cf").arg(&layer).arg("-C").arg(&rootfs).arg(".").status().unwrap().success());
        let put = |p: &std::path::Path| {
            let hex = sha256_file(p).unwrap();
            std::fs::copy(p, blobs.join(&hex)).unwrap();
            hex
        };
        let lhex = put(&layer);
        let cfg = dir.join("config.json");
        std::fs::write(&cfg, serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{lhex}")]}}).to_string()).unwrap();
        let chex = put(&cfg);
        let man = dir.join("manifest.json");
        std::fs::write(&man, serde_json::json!({"schemaVersion": 2, "config": {"digest": format!("sha256:{chex}")},
            "layers": [{"digest": format!("sha256:{lhex}")}]}).to_string()).unwrap();
        let mhex = put(&man);
        std::fs::write(oci.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": format!("sha256:{mhex}"),
            "annotations": {"org.opencontainers.image.ref.name": "test:1"}}]}).to_string()).unwrap();
        std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let tarball = dir.join("image.tar");
        assert!(std::process::Command::new("tar").arg("-cf").arg(&tarball).arg("-C").arg(&oci).arg(".").status().unwrap().success());
        tarball
    }

    #[test]
    fn import_verifies_digests_and_converts_whiteouts() {
        if unsafe { libc::geteuid() } != 0 {
            return eprintln!("skipped: whiteouts need root (mknod)");
        }
        let d = tempfile::tempdir().unwrap();
        let images = super::Images::new(&d.path().join("store")).unwrap();
        let rec = images.import(&oci_layout(&d.path().join("good")), None).unwrap();
        assert_eq!(rec.tags, vec!["docker.io/library/test:1"]);
        let layer = images.layer_dir(&rec.layers[0]);
        assert_eq!(std::fs::read_to_string(layer.join("etc/hello")).unwrap(), "hi");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(layer.join("etc/old")).unwrap().file_type().is_char_device(), "whiteout converted");

        // The same layout with one layer byte changed is refused, and nothing is stored.
        let bad = d.path().join("bad");
        let tarball = oci_layout(&bad);
        let unpacked = bad.join("unpacked");
        std::fs::create_dir_all(&unpacked).unwrap();
        assert!(std::process::Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&unpacked).status().unwrap().success());
        let blob = std::fs::read_dir(unpacked.join("blobs/sha256")).unwrap().map(|e| e.unwrap().path())
            .find(|p| std::fs::metadata(p).unwrap().len() > 5000).unwrap();
        let mut bytes = std::fs::read(&blob).unwrap();
        let at = bytes.iter().position(|b| *b == b'h').unwrap();
        bytes[at] = b'H';
        std::fs::write(&blob, bytes).unwrap();
        let tampered = bad.join("tampered.tar");
        assert!(std::process::Command::new("tar").arg("-cf").arg(&tampered).arg("-C").arg(&unpacked).arg(".").status().unwrap().success());
        let images2 = super::Images::new(&d.path().join("store2")).unwrap();
        let err = format!("{:#}", images2.import(&tampered, None).unwrap_err());
        assert!(err.contains("does not match its digest"), "{err}");
        assert!(images2.list().is_empty());
    }
    #[test]
    fn names_normalize_like_docker() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("me/app"), "docker.io/me/app:latest");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize("registry.k8s.io/pause:3.9"), "registry.k8s.io/pause:3.9");
    }
}
