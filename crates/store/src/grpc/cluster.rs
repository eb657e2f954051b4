//! etcd's Cluster service: the member list, and membership changes through Raft.

use etcdpb::skiffpb::MemberInfo;
use etcdpb::*;
use tonic::{Request, Response, Status};

use super::Ctx;
use crate::cluster::MemberChange;

pub struct ClusterService(pub Ctx);

/// Marks a request a follower forwarded to the leader.
const FORWARDED: &str = "skiff-forwarded";

fn member(m: MemberInfo) -> Member {
    Member { id: m.id, name: m.name, peer_ur_ls: m.peer_urls, client_ur_ls: m.client_urls, is_learner: m.is_learner }
}

impl ClusterService {
    fn members(&self) -> Vec<Member> {
        let id = &self.0.id;
        match self.0.store.cluster() {
            Some(c) => c
                .members()
                .into_iter()
                .map(|mut m| {
                    if m.id == id.member_id && m.client_urls.is_empty() {
                        m.client_urls = id.client_urls.clone();
                    }
                    member(m)
                })
                .collect(),
            None => vec![Member {
                id: id.member_id,
                name: id.name.clone(),
                peer_ur_ls: id.peer_urls.clone(),
                client_ur_ls: id.client_urls.clone(),
                is_learner: false,
            }],
        }
    }

    /// The leader's first client URL when this member is a follower that knows it.
    fn leader_client_url(&self) -> Option<String> {
        let c = self.0.store.cluster()?;
        let leader = c.leader();
        if leader == 0 || leader == c.id {
            return None;
        }
        c.members().into_iter().find(|m| m.id == leader)?.client_urls.into_iter().next()
    }

    async fn change(&self, change: MemberChange) -> Result<Vec<Member>, Status> {
        Ok(self.0.store.member_change(change).await?.into_iter().map(member).collect())
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for ClusterService {
    async fn member_list(&self, _req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.0.count("MemberList");
        Ok(Response::new(MemberListResponse { header: self.0.header(self.0.store.revision()), members: self.members() }))
    }

    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.0.count("MemberAdd");
        let r = req.into_inner();
        if r.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument("etcdserver: member peer URLs not provided"));
        }
        let id = crate::cluster::member_id(&r.peer_ur_ls);
        let members = self.change(MemberChange::Add { peer_urls: r.peer_ur_ls, learner: r.is_learner }).await?;
        let added = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(MemberAddResponse { header: self.0.header(self.0.store.revision()), member: added, members }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.0.count("MemberRemove");
        let members = self.change(MemberChange::Remove(req.get_ref().id)).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.0.header(self.0.store.revision()), members }))
    }

    async fn member_update(&self, _req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.0.count("MemberUpdate");
        Err(Status::unimplemented("skiff: changing a member's peer URLs is not supported; remove and re-add it"))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.0.count("MemberPromote");
        // Only the leader knows how far the learner got: a follower hands the
        // request to the leader's client URL, as etcd forwards it to the leader.
        let forwarded_here = req.metadata().contains_key(FORWARDED);
        if let Some(url) = self.leader_client_url().filter(|_| !forwarded_here) {
            let forwarded = async {
                let ch = tonic::transport::Endpoint::from_shared(url)
                    .map_err(|e| Status::unavailable(e.to_string()))?
                    .connect_timeout(std::time::Duration::from_secs(2))
                    .timeout(std::time::Duration::from_secs(10))
                    .connect()
                    .await
                    .map_err(|e| Status::unavailable(format!("etcdserver: forwarding to the leader: {e}")))?;
                let mut fwd = Request::new(MemberPromoteRequest { id: req.get_ref().id });
                // Forwarded once at most: two members with stale views must not bounce it.
                fwd.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
                cluster_client::ClusterClient::new(ch).member_promote(fwd).await
            };
            return forwarded.await;
        }
        let members = self.change(MemberChange::Promote(req.get_ref().id)).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.0.header(self.0.store.revision()), members }))
    }
}
