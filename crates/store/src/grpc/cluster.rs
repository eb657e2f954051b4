//! etcd's Cluster service: the member list (one member until Raft arrives).

use etcdpb::*;
use tonic::{Request, Response, Status};

use super::Ctx;

pub struct ClusterService(pub Ctx);

#[tonic::async_trait]
impl cluster_server::Cluster for ClusterService {
    async fn member_list(&self, _req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.0.count("MemberList");
        let id = &self.0.id;
        Ok(Response::new(MemberListResponse {
            header: self.0.header(self.0.store.revision()),
            members: vec![Member {
                id: id.member_id,
                name: id.name.clone(),
                peer_ur_ls: id.peer_urls.clone(),
                client_ur_ls: id.client_urls.clone(),
                is_learner: false,
            }],
        }))
    }
}
