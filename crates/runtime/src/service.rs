//! The CRI v1 gRPC services over [`Runtime`], and serving them on a unix
//! socket for outside CRI clients (crictl) and for Skiff's own kubelet.

use crate::streaming::Pending;
use crate::{sandbox, timefmt::now_nanos, Runtime};
use skiff_cri as cri;
use skiff_cri::image_service_server::{ImageService, ImageServiceServer};
use skiff_cri::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The services, cheap to clone.
#[derive(Clone)]
pub struct Cri(pub Arc<Runtime>);

fn internal(e: anyhow::Error) -> Status {
    Status::internal(format!("{e:#}"))
}

impl Runtime {
    /// Take over the sandboxes and containers an earlier agent left: pause
    /// processes still alive, containers whose keeper still runs (or has
    /// written their exit). Call once, before serving CRI.
    pub fn adopt(&self) {
        let state = self.cfg.state_dir();
        for (m, config) in crate::persist::load_sandboxes(&state) {
            let alive = std::path::Path::new(&format!("/proc/{}/ns/net", m.pid)).exists();
            tracing::info!(sandbox = %m.id, pid = m.pid, alive, "adopting sandbox");
            let sb = sandbox::Sandbox { id: m.id.clone(), config, pause: None, pid: m.pid, ip: m.ip, ready: alive, created_at: m.created_at };
            self.sandboxes.lock().insert(m.id, sb);
        }
        for (m, config) in crate::persist::load_containers(&state) {
            if !self.sandboxes.lock().contains_key(&m.sandbox_id) {
                continue;
            }
            let id = m.id.clone();
            let running = m.state == cri::ContainerState::ContainerRunning as i32;
            self.containers.lock().insert(id.clone(), crate::container::Container::restored(m, config));
            if running {
                tracing::info!(container = %id, "adopting running container");
                if let Err(e) = self.supervise(&id) {
                    tracing::warn!(container = %id, "adopting: {e:#}");
                }
            }
        }
        self.remove_orphan_layers();
    }

    /// Writable layers on disk whose container has no bundle: after a
    /// reboot the in-memory state (bundles and records) is gone, and so
    /// are the containers. Directories of the older layout (bundle and record
    /// on disk, with a `rootfs` mount point) are left alone.
    fn remove_orphan_layers(&self) {
        let Ok(rd) = std::fs::read_dir(self.cfg.root.join("containers")) else { return };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().to_string();
            let p = e.path();
            if self.cfg.bundle(&id).exists() || p.join("rootfs").exists() || p.join("meta.json").exists() {
                continue;
            }
            tracing::info!(container = %id, "removing the writable layer of a container that is gone");
            let _ = std::fs::remove_dir_all(&p);
        }
    }

    pub async fn run_sandbox(self: &Arc<Self>, config: cri::PodSandboxConfig) -> anyhow::Result<String> {
        let id = crate::new_id();
        let hostname = if config.hostname.is_empty() { config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default() } else { config.hostname.clone() };
        let rt = self.clone();
        let sid = id.clone();
        let (child, ip) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut child = sandbox::spawn_pause(&rt.cfg.pause_exe, &hostname)?;
            match crate::net::attach(&rt.cfg, &sid, child.id()) {
                Ok(ip) => Ok((child, ip.to_string())),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(e)
                }
            }
        })
        .await??;
        tracing::info!(sandbox = %id, %ip, pid = child.id(), "sandbox ready");
        let pid = child.id();
        let sb = sandbox::Sandbox { id: id.clone(), config, pause: Some(child), pid, ip, ready: true, created_at: now_nanos() };
        crate::persist::save_sandbox(&self.cfg.state_dir(), &sb);
        self.sandboxes.lock().insert(id.clone(), sb);
        // The pause process is not killed with the agent: it is adopted after a restart.
        Ok(id)
    }

    pub async fn stop_sandbox(self: &Arc<Self>, id: &str) -> anyhow::Result<()> {
        let ids: Vec<String> = self.containers.lock().values().filter(|c| c.sandbox_id == id).map(|c| c.id.clone()).collect();
        for c in ids {
            self.stop_container(&c, 0).await?;
        }
        let pause = {
            let mut sbs = self.sandboxes.lock();
            let Some(sb) = sbs.get_mut(id) else { return Ok(()) };
            if !sb.ready {
                return Ok(());
            }
            sb.ready = false;
            (sb.pause.take(), sb.pid)
        };
        let rt = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            let (p, pid) = pause;
            crate::net::detach(&rt.cfg, &id);
            match p {
                Some(mut p) => {
                    let _ = p.kill();
                    let _ = p.wait();
                }
                // Adopted from an earlier agent: not our child.
                None if pid > 0 => unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                },
                None => {}
            }
        })
        .await?;
        Ok(())
    }

    pub async fn remove_sandbox(self: &Arc<Self>, id: &str) -> anyhow::Result<()> {
        self.stop_sandbox(id).await?;
        let ids: Vec<String> = self.containers.lock().values().filter(|c| c.sandbox_id == id).map(|c| c.id.clone()).collect();
        for c in ids {
            self.remove_container(&c).await?;
        }
        self.sandboxes.lock().remove(id);
        crate::persist::remove_sandbox(&self.cfg.state_dir(), id);
        Ok(())
    }

    pub fn container_status(&self, id: &str) -> Option<cri::ContainerStatus> {
        let cs = self.containers.lock();
        let c = cs.get(id)?;
        Some(cri::ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: c.config.image.clone(),
            image_ref: c.image.id.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.config.mounts.clone(),
            log_path: c.log_path.clone(),
        })
    }
}

fn labels_match(sel: &std::collections::HashMap<String, String>, labels: &std::collections::HashMap<String, String>) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse { version: "0.1.0".into(), runtime_name: "skiff".into(), runtime_version: env!("CARGO_PKG_VERSION").into(), runtime_api_version: "v1".into() }))
    }
    async fn run_pod_sandbox(&self, r: Request<cri::RunPodSandboxRequest>) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let config = r.into_inner().config.ok_or_else(|| Status::invalid_argument("config is required"))?;
        let id = self.0.run_sandbox(config).await.map_err(internal)?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id: id }))
    }
    async fn stop_pod_sandbox(&self, r: Request<cri::StopPodSandboxRequest>) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        self.0.stop_sandbox(&r.into_inner().pod_sandbox_id).await.map_err(internal)?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }
    async fn remove_pod_sandbox(&self, r: Request<cri::RemovePodSandboxRequest>) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        self.0.remove_sandbox(&r.into_inner().pod_sandbox_id).await.map_err(internal)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }
    async fn pod_sandbox_status(&self, r: Request<cri::PodSandboxStatusRequest>) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        let sbs = self.0.sandboxes.lock();
        let sb = sbs.get(&id).ok_or_else(|| Status::not_found(format!("sandbox {id} not found")))?;
        let status = cri::PodSandboxStatus {
            id: sb.id.clone(),
            metadata: sb.config.metadata.clone(),
            state: if sb.ready { cri::PodSandboxState::SandboxReady } else { cri::PodSandboxState::SandboxNotready } as i32,
            created_at: sb.created_at,
            network: Some(cri::PodSandboxNetworkStatus { ip: sb.ip.clone(), additional_ips: vec![] }),
            labels: sb.config.labels.clone(),
            annotations: sb.config.annotations.clone(),
            runtime_handler: String::new(),
        };
        Ok(Response::new(cri::PodSandboxStatusResponse { status: Some(status), info: Default::default() }))
    }
    async fn list_pod_sandbox(&self, r: Request<cri::ListPodSandboxRequest>) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let sbs = self.0.sandboxes.lock();
        let items = sbs
            .values()
            .filter(|s| f.id.is_empty() || s.id == f.id)
            .filter(|s| labels_match(&f.label_selector, &s.config.labels))
            .map(|s| cri::PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: if s.ready { 0 } else { 1 },
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: String::new(),
            })
            .filter(|s| f.state.as_ref().is_none_or(|st| st.state == s.state))
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }
    async fn create_container(&self, r: Request<cri::CreateContainerRequest>) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let r = r.into_inner();
        let config = r.config.ok_or_else(|| Status::invalid_argument("config is required"))?;
        // Mounting the overlay and writing the bundle block: keep them off the async workers.
        let rt = self.0.clone();
        let id = tokio::task::spawn_blocking(move || rt.create_container(&r.pod_sandbox_id, config)).await.map_err(|e| Status::internal(e.to_string()))?.map_err(internal)?;
        Ok(Response::new(cri::CreateContainerResponse { container_id: id }))
    }
    async fn start_container(&self, r: Request<cri::StartContainerRequest>) -> Result<Response<cri::StartContainerResponse>, Status> {
        self.0.start_container(&r.into_inner().container_id).await.map_err(internal)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }
    async fn stop_container(&self, r: Request<cri::StopContainerRequest>) -> Result<Response<cri::StopContainerResponse>, Status> {
        let r = r.into_inner();
        self.0.stop_container(&r.container_id, r.timeout).await.map_err(internal)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }
    async fn remove_container(&self, r: Request<cri::RemoveContainerRequest>) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        self.0.remove_container(&id).await.map_err(internal)?;
        self.0.cpu_rates.forget(&id);
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }
    async fn list_containers(&self, r: Request<cri::ListContainersRequest>) -> Result<Response<cri::ListContainersResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let cs = self.0.containers.lock();
        let containers = cs
            .values()
            .filter(|c| f.id.is_empty() || c.id == f.id)
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id == f.pod_sandbox_id)
            .filter(|c| f.state.as_ref().is_none_or(|s| s.state == c.state as i32))
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(|c| cri::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.image.id.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }
    async fn container_status(&self, r: Request<cri::ContainerStatusRequest>) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let id = r.into_inner().container_id;
        let status = self.0.container_status(&id).ok_or_else(|| Status::not_found(format!("container {id} not found")))?;
        Ok(Response::new(cri::ContainerStatusResponse { status: Some(status), info: Default::default() }))
    }
    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let r = r.into_inner();
        let (stdout, stderr, exit_code) = self.0.exec_sync(&r.container_id, &r.cmd, r.timeout).await.map_err(internal)?;
        Ok(Response::new(cri::ExecSyncResponse { stdout, stderr, exit_code }))
    }
    async fn exec(&self, r: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>, Status> {
        let r = r.into_inner();
        self.running(&r.container_id)?;
        if r.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd must not be empty"));
        }
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout, or stderr must be set"));
        }
        let p = Pending::Exec { container_id: r.container_id, cmd: r.cmd, tty: r.tty, stdin: r.stdin, stdout: r.stdout, stderr: r.stderr };
        Ok(Response::new(cri::ExecResponse { url: self.0.streaming().await.map_err(internal)?.register(p) }))
    }
    async fn attach(&self, r: Request<cri::AttachRequest>) -> Result<Response<cri::AttachResponse>, Status> {
        let r = r.into_inner();
        self.running(&r.container_id)?;
        let p = Pending::Attach { container_id: r.container_id, tty: r.tty, stdin: r.stdin, stdout: r.stdout, stderr: r.stderr };
        Ok(Response::new(cri::AttachResponse { url: self.0.streaming().await.map_err(internal)?.register(p) }))
    }
    async fn port_forward(&self, r: Request<cri::PortForwardRequest>) -> Result<Response<cri::PortForwardResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        if !self.0.sandboxes.lock().get(&id).is_some_and(|s| s.ready) {
            return Err(Status::not_found(format!("sandbox {id} not found or not ready")));
        }
        let p = Pending::PortForward { sandbox_id: id };
        Ok(Response::new(cri::PortForwardResponse { url: self.0.streaming().await.map_err(internal)?.register(p) }))
    }
    async fn container_stats(&self, r: Request<cri::ContainerStatsRequest>) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = r.into_inner().container_id;
        let rt = self.0.clone();
        let stats = tokio::task::spawn_blocking(move || rt.container_stats(&id).ok_or_else(|| Status::not_found(format!("container {id} not found"))))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(cri::ContainerStatsResponse { stats: Some(stats) }))
    }
    /// Stats of the running containers that match the filter.
    async fn list_container_stats(&self, r: Request<cri::ListContainerStatsRequest>) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = r.into_inner().filter.unwrap_or_default();
        let ids: Vec<String> = self
            .0
            .containers
            .lock()
            .values()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning)
            .filter(|c| f.id.is_empty() || c.id == f.id)
            .filter(|c| f.pod_sandbox_id.is_empty() || c.sandbox_id == f.pod_sandbox_id)
            .filter(|c| labels_match(&f.label_selector, &c.config.labels))
            .map(|c| c.id.clone())
            .collect();
        let rt = self.0.clone();
        let stats = tokio::task::spawn_blocking(move || ids.iter().filter_map(|id| rt.container_stats(id)).collect()).await.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }
}

impl Cri {
    fn running(&self, id: &str) -> Result<(), Status> {
        match self.0.containers.lock().get(id) {
            Some(c) if c.state == cri::ContainerState::ContainerRunning => Ok(()),
            Some(_) => Err(Status::failed_precondition(format!("container {id} is not running"))),
            None => Err(Status::not_found(format!("container {id} not found"))),
        }
    }
}

fn image_of(r: &crate::images::ImageRecord) -> cri::Image {
    cri::Image { id: r.id.clone(), repo_tags: r.tags.clone(), repo_digests: vec![], size: r.size, uid: None, username: r.user.clone(), spec: None, pinned: false }
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(&self, _: Request<cri::ListImagesRequest>) -> Result<Response<cri::ListImagesResponse>, Status> {
        Ok(Response::new(cri::ListImagesResponse { images: self.0.images.list().iter().map(image_of).collect() }))
    }
    async fn image_status(&self, r: Request<cri::ImageStatusRequest>) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        Ok(Response::new(cri::ImageStatusResponse { image: self.0.images.find(&name).as_ref().map(image_of), info: Default::default() }))
    }
    async fn pull_image(&self, r: Request<cri::PullImageRequest>) -> Result<Response<cri::PullImageResponse>, Status> {
        let r = r.into_inner();
        let name = r.image.map(|i| i.image).unwrap_or_default();
        let auth = r.auth.map(|a| (a.username, a.password));
        match crate::pull::pull(&self.0.images, &name, auth).await {
            Ok(img) => Ok(Response::new(cri::PullImageResponse { image_ref: img.id })),
            Err(e) => Err(Status::unknown(format!("failed to pull and unpack image \"{name}\": {e:#}"))),
        }
    }
    async fn remove_image(&self, r: Request<cri::RemoveImageRequest>) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.0.images.remove(&name).map_err(internal)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }
}

/// Serve both services on a unix socket until the task is dropped.
pub async fn serve_unix(rt: Arc<Runtime>, path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    let cri = Cri(rt);
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(cri.clone()))
        .add_service(ImageServiceServer::new(cri))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a reboot the state tmpfs is empty: adopt removes the writable
    /// layers no bundle names, and keeps those of live bundles and of the
    /// older on-disk layout.
    #[test]
    fn adopt_removes_writable_layers_without_a_bundle() {
        let d = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let root = d.path().join("runtime");
        let rt = Runtime::new(crate::Config { root: root.clone(), ..Default::default() }).unwrap();
        let state = rt.cfg.state_dir();
        assert_eq!(state, root.join("state"));
        for id in ["orphan", "live", "old"] {
            std::fs::create_dir_all(rt.cfg.rw_dir(id).join("upper")).unwrap();
        }
        std::fs::create_dir_all(rt.cfg.bundle("live")).unwrap();
        std::fs::create_dir_all(rt.cfg.rw_dir("old").join("rootfs")).unwrap();
        rt.adopt();
        let left = |id: &str| rt.cfg.rw_dir(id).exists();
        let (orphan, live, old) = (left("orphan"), left("live"), left("old"));
        crate::tmpfs::unmount(&state);
        assert!(!orphan, "the orphan's writable layer is still there");
        assert!(live && old);
    }
}
