//! Helpers for end-to-end tests that run real containers: a busybox image
//! built from Debian's busybox-static, an agent process, waiting on pods.

use super::{free_port, Kubectl};
use std::io::{BufRead, BufReader, Read};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Namespaces, mounts and cgroups need root; these tests skip otherwise.
pub fn is_root() -> bool {
    unsafe { geteuid() == 0 }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn sha(path: &Path) -> (String, u64) {
    let hex = sh(&format!("sha256sum {}", path.display())).split_whitespace().next().unwrap().to_string();
    (hex, std::fs::metadata(path).unwrap().len())
}

/// The busybox test image, built in `dir` and imported into the embedded
/// runtime at `runtime_root` (`skiff images import`); returns the tarball.
pub fn import_busybox(dir: &Path, runtime_root: &Path) -> std::path::PathBuf {
    let image = build_busybox_image(dir);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff")).args(["images", "import"]).arg(&image).arg("--runtime-root").arg(runtime_root).output().unwrap();
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    image
}

/// Mount-table helpers, shared with the benches.
#[path = "../../../bench/src/mounts.rs"]
#[allow(dead_code)]
mod mounts;
/// Lazily unmount every mount under a directory, deepest first: the
/// container root filesystems, the runtime's state tmpfs and the kubelet's
/// secret/projected volume tmpfs an agent left behind (killed with pods
/// still running), so that the test's directory can be removed and no mount
/// outlives the test.
#[allow(unused_imports)]
pub use mounts::{mounts_under, unmount_all_under};
use mounts::unescape_mountinfo;

/// The filesystem types of the mounts at exactly `path` (more than one
/// when something was mounted over it), oldest first.
pub fn mounts_at(path: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter(|l| l.split(' ').nth(4).map(unescape_mountinfo).is_some_and(|p| Path::new(&p) == path))
        .filter_map(|l| l.split_once(" - ").and_then(|(_, rest)| rest.split(' ').next()).map(str::to_string))
        .collect()
}

/// An OCI-layout tarball holding one layer: /bin/busybox and its applets.
pub fn build_busybox_image(dir: &Path) -> std::path::PathBuf {
    build_image(dir, "busybox:skiff-test", serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["sh"]}))
}

/// An OCI-layout tarball `<dir>/image-<name>.tar` of busybox-static, named
/// `name` (its `org.opencontainers.image.ref.name`), with `config` as the
/// image config's `config` (Entrypoint, Cmd, Env, …).
pub fn build_image(dir: &Path, name: &str, config: Value) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in sh("/bin/busybox --list").lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    let oci = dir.join("oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer = dir.join("layer.tar");
    sh(&format!("tar -C {} -cf {} .", root.display(), layer.display()));
    let (lhex, lsize) = sha(&layer);
    std::fs::rename(&layer, blobs.join(&lhex)).unwrap();
    let put = |v: Value| {
        let p = dir.join("blob");
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        let (hex, size) = sha(&p);
        std::fs::rename(&p, blobs.join(&hex)).unwrap();
        (hex, size)
    };
    let (chex, csize) = put(serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": config, "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{lhex}")]}}));
    let (mhex, msize) = put(serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{chex}"), "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{lhex}"), "size": lsize}]}));
    std::fs::write(oci.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{mhex}"), "size": msize, "annotations": {"org.opencontainers.image.ref.name": name}}]}).to_string()).unwrap();
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let tarball = dir.join(format!("image-{}.tar", name.replace(['/', ':'], "_")));
    sh(&format!("tar -C {} -cf {} .", oci.display(), tarball.display()));
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&oci).unwrap();
    tarball
}

pub struct Agent(pub Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skiff agent` for node `node` (node IP 127.0.0.1, kubelet port `port`),
/// with its runtime, CRI socket, pod logs and kubelet state under `d`, its
/// log appended to `<d>/agent.log`, and `extra` flags.
pub fn spawn_agent(kubeconfig: &Path, d: &Path, node: &str, port: u16, bridge: &str, pod_cidr: &str, extra: &[&str]) -> Agent {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("agent.log")).unwrap();
    Agent(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--node-name", node, "--node-ip", "127.0.0.1", "--port", &port.to_string(), "--bridge", bridge, "--pod-cidr", pod_cidr])
            .arg("--runtime-root")
            .arg(d.join("runtime"))
            .arg("--cri-socket")
            .arg(d.join("cri.sock"))
            .arg("--pod-log-dir")
            .arg(d.join("pods"))
            .arg("--root-dir")
            .arg(d.join("kubelet"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Finished pods leave the API at once, before the agent has removed their
/// sandboxes: wait (up to 30 s) until the runtime under `runtime_root`
/// records none, so stopping the agent leaves no pause process behind.
pub fn wait_sandboxes_gone(runtime_root: &Path) {
    let dir = runtime_root.join("state/sandboxes");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&dir).map(|r| r.count() > 0).unwrap_or(false) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn get(k: &Kubectl, pod: &str) -> Value {
    let out = k.run(&["get", "pod", pod, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

pub fn wait_pod(k: &Kubectl, pod: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = get(k, pod);
        if f(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "pod {pod}: timed out waiting for {what}; last: {:#}", p["status"]);
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn apply(k: &Kubectl, manifest: &str) {
    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["create", "--validate=false", "-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(manifest.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
}

/// `kubectl attach -i` to container `c`, which echoes each stdin line as `got <line>`.
pub fn attach(k: &Kubectl, pod: &str) {
    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["attach", "-i", pod, "-c", "c"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = c.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut input = c.stdin.take().unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    let word = format!("ping-{}", k.bin.rsplit('.').next().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    // The attach may start after the first line is written: repeat until echoed.
    let writer = std::thread::spawn({
        let word = word.clone();
        move || {
            use std::io::Write;
            for _ in 0..20 {
                if input.write_all(format!("{word}\n").as_bytes()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    });
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line == format!("got {word}") || Instant::now() > deadline {
            break;
        }
    }
    let _ = c.kill();
    let _ = c.wait();
    let _ = writer.join();
    assert!(seen.contains(&format!("got {word}")), "{}: {seen:?}, stderr: {}", k.bin, errors.join().unwrap());
}

/// `kubectl port-forward` to pod port 8080, where a server answers `hi` to each connection.
pub fn port_forward(k: &Kubectl, pod: &str) {
    let local = free_port();
    let mut c = Command::new(&k.bin).env("KUBECONFIG", &k.kubeconfig).args(["port-forward", &format!("pod/{pod}"), &format!("{local}:8080")]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("Forwarding from 127.0.0.1:"), "{first}");
    for _ in 0..2 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hi\n", "{}", k.bin);
    }
    let _ = c.kill();
    let _ = c.wait();
}
