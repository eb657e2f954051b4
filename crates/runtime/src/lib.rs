//! Skiff's embedded container runtime. It implements the CRI v1
//! RuntimeService and ImageService (`service.rs`), in-process and on a unix
//! socket, over: an image store of unpacked layers (`images.rs`), overlayfs
//! root filesystems, runc with a spec we generate (`spec.rs`) under a keeper
//! process that outlives the agent (`shim.rs`, `keeper.rs`), a pause
//! process per pod that owns its network/IPC/UTS namespaces (`sandbox.rs`,
//! `pause.rs`), a bridge network wired over rtnetlink (`net/`), and CRI log files
//! (`logs.rs`).

pub mod container;
pub mod cpuset;
pub mod images;
pub mod keeper;
pub mod layers;
pub mod logs;
pub mod net;
pub mod pause;
pub mod persist;
pub mod pull;
pub mod runc_exe;
pub mod sandbox;
pub mod service;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod streaming;
pub mod timefmt;
pub mod tmpfs;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the runtime keeps its state and which helpers it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Images, layers and the containers' writable layers
    /// (`/var/lib/skiff/runtime`): what must survive a reboot.
    pub root: PathBuf,
    /// Per-container and per-sandbox state that lives only as long as the
    /// processes do: bundles (config.json, FIFOs, pid and exit files),
    /// runc's `--root`, sandbox records. A tmpfs, mounted at startup if
    /// the directory is not on one already; `None` is `<root>/state`, so
    /// runtimes with different roots never share it.
    pub state: Option<PathBuf>,
    /// The OCI runtime binary.
    pub runc: String,
    /// The skiff binary: its `pause` subcommand is each sandbox's PID 1, its
    /// `keeper` keeps terminal and stdinOnce containers.
    pub pause_exe: PathBuf,
    /// The node bridge and the pod subnet it hands addresses from.
    pub bridge: String,
    pub pod_cidr: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: "/var/lib/skiff/runtime".into(),
            state: None,
            runc: "runc".into(),
            pause_exe: std::env::current_exe().unwrap_or_else(|_| "skiff".into()),
            bridge: "skiff0".into(),
            pod_cidr: "10.244.0.0/24".into(),
        }
    }
}

/// The runtime: its sandboxes and containers, in memory and recorded on
/// disk (`persist.rs`) so a restarted agent adopts them (`Runtime::adopt`).
pub struct Runtime {
    pub cfg: Config,
    pub images: images::Images,
    pub sandboxes: Mutex<HashMap<String, sandbox::Sandbox>>,
    pub containers: Arc<Mutex<HashMap<String, container::Container>>>,
    /// Started on the first Exec/Attach/PortForward.
    streaming: tokio::sync::OnceCell<Arc<streaming::Server>>,
    /// Previous CPU samples, for the rate in ContainerStats.
    pub cpu_rates: stats::CpuRates,
}

impl Config {
    /// The state directory (see [`Config::state`]).
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| self.root.join("state"))
    }

    /// runc's `--root`: its own per-container state, kept in memory like the bundles.
    pub fn runc_root(&self) -> PathBuf {
        self.state_dir().join("runc")
    }

    /// A container's bundle: config.json, the keeper's FIFOs, pid and exit
    /// files, the record, and the mount point of its root filesystem.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.state_dir().join("containers").join(id)
    }

    /// A container's writable layer (overlay `upper` and `work`), on disk.
    pub fn rw_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }
}

/// Options of the state tmpfs: private to root, and bounded. A container
/// needs a few tens of KiB (its spec, its record, runc's state.json).
pub const STATE_TMPFS: &str = "mode=0700,size=64m";

impl Runtime {
    pub fn new(mut cfg: Config) -> anyhow::Result<Arc<Self>> {
        let images = images::Images::new(&cfg.root)?;
        std::fs::create_dir_all(cfg.root.join("containers"))?;
        let state = cfg.state_dir();
        match tmpfs::ensure(&state, STATE_TMPFS) {
            Ok(true) => tracing::info!(dir = %state.display(), "mounted a tmpfs for the runtime's state"),
            Ok(false) => {}
            Err(e) => tracing::warn!(dir = %state.display(), "cannot mount a tmpfs for the runtime's state, keeping it on disk: {e}"),
        }
        std::fs::create_dir_all(state.join("containers"))?;
        match runc_exe::prepare(&cfg.runc, &state.join("bin")) {
            Ok(link) => {
                tracing::debug!(runc = %cfg.runc, copy = %link.display(), "starting runc from a sealed copy in memory");
                cfg.runc = link.display().to_string();
            }
            Err(e) => tracing::info!(runc = %cfg.runc, "runc will copy itself for each container: {e:#}"),
        }
        Ok(Arc::new(Self { cfg, images, sandboxes: Mutex::default(), containers: Arc::default(), streaming: Default::default(), cpu_rates: Default::default() }))
    }
}

impl Runtime {
    /// The streaming server, started on first use.
    pub async fn streaming(self: &Arc<Self>) -> anyhow::Result<Arc<streaming::Server>> {
        let weak = Arc::downgrade(self);
        self.streaming.get_or_try_init(|| streaming::Server::start(weak)).await.cloned()
    }
}

/// A random 64-hex-digit ID, as container runtimes name things.
pub fn new_id() -> String {
    (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect()
}
