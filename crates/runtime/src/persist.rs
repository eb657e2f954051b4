//! Sandboxes and containers recorded (JSON next to their state, in the
//! runtime's state directory: a tmpfs that outlives the agent but not a
//! reboot, like the processes it describes), so that a restarted agent
//! adopts what is still running instead of recreating it.

use crate::container::Container;
use crate::images::ImageRecord;
use crate::sandbox::Sandbox;
use base64::Engine;
use prost::Message;
use serde::{Deserialize, Serialize};
use skiff_cri as cri;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
pub struct ContainerMeta {
    pub id: String,
    pub sandbox_id: String,
    /// The CRI config, protobuf then base64.
    pub config: String,
    pub image: ImageRecord,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub state: i32,
    pub cgroup: String,
    pub log_path: String,
    pub bundle: PathBuf,
}

#[derive(Serialize, Deserialize)]
pub struct SandboxMeta {
    pub id: String,
    pub config: String,
    pub pid: u32,
    pub ip: String,
    pub created_at: i64,
}

fn b64(m: &impl Message) -> String {
    base64::engine::general_purpose::STANDARD.encode(m.encode_to_vec())
}

pub fn decode<M: Message + Default>(s: &str) -> Option<M> {
    M::decode(base64::engine::general_purpose::STANDARD.decode(s).ok()?.as_slice()).ok()
}

pub fn save_container(c: &Container) {
    let m = ContainerMeta {
        id: c.id.clone(),
        sandbox_id: c.sandbox_id.clone(),
        config: b64(&c.config),
        image: c.image.clone(),
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        reason: c.reason.clone(),
        state: c.state as i32,
        cgroup: c.cgroup.clone(),
        log_path: c.log_path.clone(),
        bundle: c.bundle.clone(),
    };
    if let Ok(j) = serde_json::to_vec(&m) {
        let _ = std::fs::write(c.bundle.join("meta.json"), j);
    }
}

pub fn load_containers(state: &Path) -> Vec<(ContainerMeta, cri::ContainerConfig)> {
    let Ok(rd) = std::fs::read_dir(state.join("containers")) else { return vec![] };
    rd.flatten()
        .filter_map(|e| {
            let m: ContainerMeta = serde_json::from_slice(&std::fs::read(e.path().join("meta.json")).ok()?).ok()?;
            let cfg = decode(&m.config)?;
            Some((m, cfg))
        })
        .collect()
}

fn sandbox_file(state: &Path, id: &str) -> PathBuf {
    state.join("sandboxes").join(format!("{id}.json"))
}

pub fn save_sandbox(state: &Path, sb: &Sandbox) {
    let m = SandboxMeta { id: sb.id.clone(), config: b64(&sb.config), pid: sb.pid, ip: sb.ip.clone(), created_at: sb.created_at };
    let _ = std::fs::create_dir_all(state.join("sandboxes"));
    if let Ok(j) = serde_json::to_vec(&m) {
        let _ = std::fs::write(sandbox_file(state, &sb.id), j);
    }
}

pub fn remove_sandbox(state: &Path, id: &str) {
    let _ = std::fs::remove_file(sandbox_file(state, id));
}

pub fn load_sandboxes(state: &Path) -> Vec<(SandboxMeta, cri::PodSandboxConfig)> {
    let Ok(rd) = std::fs::read_dir(state.join("sandboxes")) else { return vec![] };
    rd.flatten()
        .filter_map(|e| {
            let m: SandboxMeta = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            let cfg = decode(&m.config)?;
            Some((m, cfg))
        })
        .collect()
}
