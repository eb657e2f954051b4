//! Pod volumes and environment from the API: emptyDir and hostPath
//! directories, configMap and secret volumes written as files (rewritten
//! every few seconds so edits reach running pods), projected volumes
//! (configMap, secret, downwardAPI and serviceAccountToken sources, the
//! last from [`crate::sa_token`]), and env/envFrom
//! references to configMaps, secrets and the pod's own fields.
//!
//! Secret and projected volumes (every pod's kube-api-access token is one)
//! each get a tmpfs of their own, as upstream's kubelet does: their
//! contents never reach the disk, and a burst of pods does not pay a disk
//! inode allocation per file. configMap and downwardAPI volumes stay on
//! disk, as upstream.

use crate::client::Api;
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::Value;
use skiff_cri as cri;
use skiff_runtime::tmpfs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The pod's volumes directory.
pub fn pod_dir(root: &Path, pod: &Value) -> PathBuf {
    root.join("pods").join(s(&pod["metadata"]["uid"]))
}

/// A configMap's or secret's files: key → bytes (secret data is base64).
async fn source_files(api: &Api, ns: &str, kind: &str, name: &str) -> Result<Option<Vec<(String, Vec<u8>)>>> {
    let (code, obj) = api.get(&format!("/api/v1/namespaces/{ns}/{kind}/{name}")).await?;
    if code == 404 {
        return Ok(None);
    }
    if code != 200 {
        bail!("reading {kind}/{name}: {code}");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut files = vec![];
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let raw = s(v);
        files.push((k.clone(), if kind == "secrets" { b64.decode(raw.as_bytes()).unwrap_or_default() } else { raw.into_bytes() }));
    }
    for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
        files.push((k.clone(), b64.decode(s(v).as_bytes()).unwrap_or_default()));
    }
    Ok(Some(files))
}

/// Make every volume's host directory (and refresh configMap/secret contents).
pub async fn prepare(api: &Api, root: &Path, pod: &Value, pod_ip: &str, host_ip: &str) -> Result<()> {
    let ns = s(&pod["metadata"]["namespace"]);
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let dir = pod_dir(root, pod).join("volumes").join(s(&v["name"]));
        if v["downwardAPI"].is_object() {
            write_files(&dir, crate::downward::files(pod, &v["downwardAPI"]["items"], pod_ip, host_ip))?;
            continue;
        }
        if v["projected"].is_object() {
            memory_dir(&dir, VOLUME_TMPFS)?;
            let mut files = vec![];
            for src in v["projected"]["sources"].as_array().into_iter().flatten() {
                if src["downwardAPI"].is_object() {
                    files.extend(crate::downward::files(pod, &src["downwardAPI"]["items"], pod_ip, host_ip));
                    continue;
                }
                if src["serviceAccountToken"].is_object() {
                    let token = crate::sa_token::token(api, pod, &src["serviceAccountToken"]).await?;
                    files.push((s(&src["serviceAccountToken"]["path"]), token.into_bytes()));
                    continue;
                }
                let (kind, r) = if src["configMap"].is_object() { ("configmaps", &src["configMap"]) } else if src["secret"].is_object() { ("secrets", &src["secret"]) } else { continue };
                match source_files(api, &ns, kind, &s(&r["name"])).await? {
                    Some(f) => files.extend(select(f, &r["items"])),
                    None if r["optional"] == true => {}
                    None => bail!("{} \"{}\" not found", kind.trim_end_matches('s'), s(&r["name"])),
                }
            }
            write_files(&dir, files)?;
            continue;
        }
        let (kind, name, optional) = if v["configMap"].is_object() {
            ("configmaps", s(&v["configMap"]["name"]), v["configMap"]["optional"] == true)
        } else if v["secret"].is_object() {
            ("secrets", s(&v["secret"]["secretName"]), v["secret"]["optional"] == true)
        } else if v["hostPath"].is_object() {
            let p = s(&v["hostPath"]["path"]);
            if matches!(v["hostPath"]["type"].as_str(), Some("DirectoryOrCreate")) {
                std::fs::create_dir_all(&p)?;
            }
            continue;
        } else if v["emptyDir"]["medium"] == "Memory" {
            memory_dir(&dir, &format!("mode=0777,size={}", memory_volume_size(pod, &v["emptyDir"]["sizeLimit"])))?;
            continue;
        } else {
            std::fs::create_dir_all(&dir)?;
            continue;
        };
        if kind == "secrets" {
            memory_dir(&dir, VOLUME_TMPFS)?;
        } else {
            std::fs::create_dir_all(&dir)?;
        }
        let Some(files) = source_files(api, &ns, kind, &name).await? else {
            if optional {
                continue;
            }
            bail!("{} \"{name}\" not found", kind.trim_end_matches('s'));
        };
        write_files(&dir, select(files, &v[if kind == "secrets" { "secret" } else { "configMap" }]["items"]))?;
    }
    Ok(())
}

/// Options of a secret or projected volume's tmpfs. Secrets and configMaps
/// are at most 1 MiB each; the cap keeps a volume from taking the node's memory.
const VOLUME_TMPFS: &str = "mode=0755,size=64m";

/// False once a mount was refused (not root, no CAP_SYS_ADMIN): volumes
/// then stay plain directories, with one warning.
static MOUNTS_WORK: AtomicBool = AtomicBool::new(true);

/// The size of an emptyDir with medium Memory, in bytes, as upstream's
/// kubelet sizes it (SizeMemoryBackedVolumes): the node's allocatable
/// memory, or less, the pod's memory limit (when every container has one),
/// or less still, the volume's own sizeLimit. Pages in a tmpfs are memory
/// the pod could not otherwise have used, so no larger cap makes sense.
fn memory_volume_size(pod: &Value, size_limit: &Value) -> i64 {
    let mut size = crate::node::allocatable_memory();
    if let Some(limit) = pod_memory_limit(pod).filter(|&l| l > 0 && l <= size) {
        size = limit;
    }
    if let Some(limit) = size_limit.as_str().and_then(crate::resources::milli).map(|m| (m / 1000) as i64).filter(|&l| l > 0 && l <= size) {
        size = limit;
    }
    size
}

/// The pod's memory limit when every container declares one (upstream's
/// pod cgroup rule): its app containers and sidecars together, or its
/// largest init container if that is more.
fn pod_memory_limit(pod: &Value) -> Option<i64> {
    let limit = |c: &Value| c["resources"]["limits"]["memory"].as_str().and_then(crate::resources::milli).map(|m| (m / 1000) as i64);
    let (mut running, mut init) = (0i64, 0i64);
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        running += limit(c)?;
    }
    for c in pod["spec"]["initContainers"].as_array().into_iter().flatten() {
        if crate::status::is_sidecar(c) {
            running += limit(c)?;
        } else {
            init = init.max(limit(c)?);
        }
    }
    Some(running.max(init))
}

/// A secret, projected or memory-medium emptyDir volume's directory, on a
/// tmpfs of its own (mounted with `options`) before any file is written
/// (once: later syncs find the mount). When mounting is not possible, a
/// plain directory: never a reason to fail the pod.
fn memory_dir(dir: &Path, options: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    if !MOUNTS_WORK.load(Ordering::Relaxed) || tmpfs::is_mount_point(dir) {
        return Ok(());
    }
    if let Err(e) = tmpfs::mount(dir, options) {
        if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
            if MOUNTS_WORK.swap(false, Ordering::Relaxed) {
                tracing::warn!("cannot mount tmpfs for secret, projected and memory emptyDir volumes ({e}); keeping them in plain directories");
            }
        } else {
            tracing::warn!(dir = %dir.display(), "mounting a tmpfs for a volume: {e}; keeping a plain directory");
        }
    }
    Ok(())
}

/// Remove the pod's volume directories: first unmount the tmpfs of its
/// secret, projected and memory emptyDir volumes (else removing would only empty them,
/// and leak the mounts).
pub fn remove(root: &Path, pod: &Value) {
    remove_dir(&pod_dir(root, pod));
}

/// [`remove`] by the pod directory's path (housekeeping knows only the uid).
pub fn remove_dir(dir: &Path) {
    for e in std::fs::read_dir(dir.join("volumes")).into_iter().flatten().flatten() {
        if tmpfs::is_mount_point(&e.path()) {
            tmpfs::unmount(&e.path());
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A source's keys as files: all of them, or only `items` (key → path).
fn select(files: Vec<(String, Vec<u8>)>, items: &Value) -> Vec<(String, Vec<u8>)> {
    let items = items.as_array().cloned().unwrap_or_default();
    files
        .into_iter()
        .filter_map(|(k, data)| {
            let rel = if items.is_empty() { Some(k.clone()) } else { items.iter().find(|i| i["key"] == k.as_str()).map(|i| s(&i["path"])) };
            rel.map(|r| (r, data))
        })
        .collect()
}

/// Write files under `dir`, each replaced whole (write, then rename) so a
/// reader never sees half a file; rewritten on every sync, which is how
/// changes to the sources reach running containers.
fn write_files(dir: &Path, files: Vec<(String, Vec<u8>)>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (rel, data) in files {
        if rel.is_empty() || rel.contains("..") || rel.starts_with('/') {
            continue;
        }
        let path = dir.join(&rel);
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p)?;
        }
        if std::fs::read(&path).is_ok_and(|old| old == data) {
            continue;
        }
        let tmp = path.with_extension("skiff-tmp");
        std::fs::write(&tmp, &data)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

/// The container's bind mounts for its volumeMounts.
pub fn mounts(root: &Path, pod: &Value, c: &Value) -> Result<Vec<cri::Mount>> {
    let mut out = vec![];
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        let name = s(&m["name"]);
        let vol = pod["spec"]["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == name.as_str()).with_context(|| format!("volume {name} not found"))?;
        let mut host = if vol["hostPath"].is_object() { PathBuf::from(s(&vol["hostPath"]["path"])) } else { pod_dir(root, pod).join("volumes").join(&name) };
        if let Some(sub) = m["subPath"].as_str().filter(|p| !p.is_empty() && !p.contains("..")) {
            host = host.join(sub);
        }
        let ro = m["readOnly"] == true || ["configMap", "secret", "downwardAPI", "projected"].iter().any(|k| vol[*k].is_object());
        out.push(cri::Mount { container_path: s(&m["mountPath"]), host_path: host.display().to_string(), readonly: ro });
    }
    Ok(out)
}

/// The container's environment: envFrom first, then env (later wins).
pub async fn env(api: &Api, pod: &Value, c: &Value, pod_ip: &str, host_ip: &str) -> Result<Vec<cri::KeyValue>> {
    let ns = s(&pod["metadata"]["namespace"]);
    let mut out: Vec<cri::KeyValue> = vec![];
    let put = |k: String, v: String, out: &mut Vec<cri::KeyValue>| {
        out.retain(|e| e.key != k);
        out.push(cri::KeyValue { key: k, value: v });
    };
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let (kind, r) = if from["configMapRef"].is_object() { ("configmaps", &from["configMapRef"]) } else { ("secrets", &from["secretRef"]) };
        match source_files(api, &ns, kind, &s(&r["name"])).await? {
            Some(files) => {
                for (k, v) in files {
                    put(format!("{}{k}", s(&from["prefix"])), String::from_utf8_lossy(&v).to_string(), &mut out);
                }
            }
            None if r["optional"] == true => {}
            None => bail!("{} \"{}\" not found", kind.trim_end_matches('s'), s(&r["name"])),
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        let vf = &e["valueFrom"];
        let value = if let Some(path) = vf["fieldRef"]["fieldPath"].as_str() {
            crate::downward::field(pod, path, pod_ip, host_ip).unwrap_or_default()
        } else if let Some((kind, r)) = [("configmaps", &vf["configMapKeyRef"]), ("secrets", &vf["secretKeyRef"])].into_iter().find(|(_, r)| r.is_object()) {
            let key = s(&r["key"]);
            let found = source_files(api, &ns, kind, &s(&r["name"])).await?.and_then(|f| f.into_iter().find(|(k, _)| *k == key));
            match found {
                Some((_, v)) => String::from_utf8_lossy(&v).to_string(),
                None if r["optional"] == true => continue,
                None => bail!("couldn't find key {key} in {} {}/{}", kind.trim_end_matches('s'), ns, s(&r["name"])),
            }
        } else if vf["resourceFieldRef"].is_object() {
            crate::downward::resource(pod, Some(c), &vf["resourceFieldRef"])
        } else {
            s(&e["value"])
        };
        put(s(&e["name"]), value, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_empty_dirs_are_sized_as_upstream_sizes_them() {
        let node = crate::node::allocatable_memory();
        let pod = |containers: Value, init: Value| serde_json::json!({"spec": {"containers": containers, "initContainers": init}});
        let lim = |m: &str| serde_json::json!({"resources": {"limits": {"memory": m}}});
        // No pod limit (a container without one), no sizeLimit: the node's allocatable memory.
        let open = pod(serde_json::json!([lim("64Mi"), {}]), serde_json::json!([]));
        assert_eq!(pod_memory_limit(&open), None);
        assert_eq!(memory_volume_size(&open, &Value::Null), node);
        // Every container limited: app containers and sidecars add up, init containers take the max.
        let mut sidecar = lim("16Mi");
        sidecar["restartPolicy"] = serde_json::json!("Always");
        let limited = pod(serde_json::json!([lim("64Mi"), lim("32Mi")]), serde_json::json!([lim("80Mi"), sidecar]));
        assert_eq!(pod_memory_limit(&limited), Some(112 << 20));
        assert_eq!(memory_volume_size(&limited, &Value::Null), 112 << 20);
        let big_init = pod(serde_json::json!([lim("64Mi")]), serde_json::json!([lim("1Gi")]));
        assert_eq!(pod_memory_limit(&big_init), Some(1 << 30));
        // A sizeLimit below the pod's limit wins; one above it, or zero, does not.
        assert_eq!(memory_volume_size(&limited, &serde_json::json!("8Mi")), 8 << 20);
        assert_eq!(memory_volume_size(&limited, &serde_json::json!("1Gi")), 112 << 20);
        assert_eq!(memory_volume_size(&limited, &serde_json::json!("0")), 112 << 20);
        assert_eq!(memory_volume_size(&open, &serde_json::json!("10M")), 10_000_000);
    }

    /// A secret volume's tmpfs: mounted once, its files replaced in place on
    /// an update, and unmounted before the pod's directory is removed.
    #[test]
    fn memory_volumes_are_mounted_once_updated_and_unmounted() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: mounting needs root");
            return;
        }
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let pod = serde_json::json!({"metadata": {"uid": "u1"}});
        let vol = pod_dir(d.path(), &pod).join("volumes/tok");
        memory_dir(&vol, VOLUME_TMPFS).unwrap();
        assert!(tmpfs::is_tmpfs(&vol) && tmpfs::is_mount_point(&vol));
        write_files(&vol, vec![("token".into(), b"one".to_vec())]).unwrap();
        // The next sync: no second mount (which would hide the files), then the update.
        memory_dir(&vol, VOLUME_TMPFS).unwrap();
        assert_eq!(std::fs::read(vol.join("token")).unwrap(), b"one");
        write_files(&vol, vec![("token".into(), b"two".to_vec())]).unwrap();
        assert_eq!(std::fs::read(vol.join("token")).unwrap(), b"two");
        let mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.split(' ').nth(4) == vol.to_str()).count();
        assert_eq!(mounts(), 1);
        remove(d.path(), &pod);
        assert_eq!(mounts(), 0);
        assert!(!pod_dir(d.path(), &pod).exists());
    }
}
