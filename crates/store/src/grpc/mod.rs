//! The etcd v3 gRPC face of the store: KV, Watch, Lease, Cluster.MemberList
//! and Maintenance.Status, with etcd's response headers and error statuses.

mod cluster;
mod kv;
mod lease;
mod maintenance;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use etcdpb::ResponseHeader;
use tonic::transport::server::Router;

use crate::store::Store;

/// Who this member is, for response headers, Status and MemberList.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub cluster_id: u64,
    pub member_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl Identity {
    /// IDs derived from the member's name and peer URLs, stable across restarts
    /// (etcd derives them from the same inputs, by a different hash).
    pub fn new(name: &str, peer_urls: Vec<String>, client_urls: Vec<String>) -> Identity {
        let member_id = fnv64(format!("{name}|{}", peer_urls.join(",")).as_bytes());
        let cluster_id = fnv64(&member_id.to_be_bytes());
        Identity { name: name.to_owned(), cluster_id, member_id, peer_urls, client_urls }
    }
}

fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

/// Shared by every service: the store plus how to stamp response headers.
#[derive(Clone)]
pub struct Ctx {
    pub store: Store,
    pub id: Identity,
    /// How often watchers that asked for progress notifications get one when idle.
    pub progress_interval: Duration,
}

/// Without Raft, a single member is the leader of term 1.
pub const RAFT_TERM: u64 = 1;

impl Identity {
    /// The identity of a member of a Raft cluster: IDs as Raft knows them.
    pub fn for_cluster(status: &crate::cluster::Status, peer_urls: Vec<String>, client_urls: Vec<String>) -> Identity {
        Identity {
            name: status.name.clone(),
            cluster_id: status.cluster_id,
            member_id: status.id,
            peer_urls,
            client_urls,
        }
    }
}

impl Ctx {
    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.id.cluster_id,
            member_id: self.id.member_id,
            revision,
            raft_term: self.raft_term(),
        })
    }

    pub fn raft_term(&self) -> u64 {
        self.store.cluster().map_or(RAFT_TERM, |c| c.term())
    }

    /// Fill a header the state machine left with only a revision.
    pub fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).filter(|r| *r != 0).unwrap_or_else(|| self.store.revision());
        *h = self.header(rev);
    }

    fn count(&self, method: &'static str) {
        self.store.metrics().grpc_requests.get_or_create(&crate::metrics::MethodLabel { method }).inc();
    }
}

/// Largest gRPC message accepted: the request limit plus room for framing,
/// as etcd does, so oversize writes get etcd's "request is too large".
fn max_message(ctx: &Ctx) -> usize {
    ctx.store.config().max_request_bytes + 512 * 1024
}

/// Build the gRPC router with every etcd service.
/// The transport's own hard cap; the etcd-compatible limit is checked in the
/// handlers so that oversize requests get grpc-go's code and message.
const HARD_MESSAGE_CAP: usize = 64 << 20;

/// Refuse a request over the gRPC message limit as grpc-go (and so etcd) does.
pub(crate) fn check_message_size(ctx: &Ctx, len: usize) -> Result<(), tonic::Status> {
    let max = max_message(ctx);
    if len > max {
        return Err(tonic::Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {max})")));
    }
    Ok(())
}

pub fn router(ctx: Ctx) -> Router {
    let max = max_message(&ctx);
    tonic::transport::Server::builder()
        .add_service(etcdpb::kv_server::KvServer::new(kv::KvService(ctx.clone())).max_decoding_message_size(HARD_MESSAGE_CAP))
        .add_service(
            etcdpb::watch_server::WatchServer::new(watch::WatchService(ctx.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(etcdpb::lease_server::LeaseServer::new(lease::LeaseService(ctx.clone())))
        .add_service(etcdpb::cluster_server::ClusterServer::new(cluster::ClusterService(ctx.clone())))
        .add_service(etcdpb::maintenance_server::MaintenanceServer::new(maintenance::MaintenanceService(ctx)))
}

/// Serve the etcd API on `addr` until `shutdown` resolves.
pub async fn serve(
    ctx: Ctx,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // Without TCP_NODELAY, small responses wait on delayed ACKs (~40 ms).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    router(ctx).serve_with_incoming_shutdown(incoming, shutdown).await
}

/// Serve Prometheus metrics over plain HTTP at `/metrics` (and `/health`).
pub async fn serve_metrics(store: Store, listener: tokio::net::TcpListener) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};
    loop {
        let Ok((conn, _)) = listener.accept().await else { continue };
        let store = store.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let store = store.clone();
                async move {
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, store.metrics().render()),
                        "/health" => (StatusCode::OK, "{\"health\":\"true\"}".to_string()),
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    Ok::<_, std::convert::Infallible>(
                        Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap(),
                    )
                }
            });
            let io = hyper_util::rt::TokioIo::new(conn);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
        });
    }
}

pub fn local_addr(l: &tokio::net::TcpListener) -> SocketAddr {
    l.local_addr().expect("bound listener has an address")
}
