//! etcd's Maintenance service: Status (for `etcdctl endpoint status`) and Alarm.

use etcdpb::*;
use tonic::{Request, Response, Status};

use super::{Ctx, RAFT_TERM};

fn skiff_err(e: crate::StoreError) -> Status {
    e.into()
}

/// The etcd API version Skiff's store speaks.
pub const API_VERSION: &str = "3.4.0";

pub struct MaintenanceService(pub Ctx);

#[tonic::async_trait]
impl maintenance_server::Maintenance for MaintenanceService {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.0.count("Status");
        let store = &self.0.store;
        let size = store.disk_size() as i64;
        let applied = store.applied_index();
        let (leader, raft_index, raft_term, is_learner) = match store.cluster() {
            Some(c) => (c.leader(), c.commit().max(applied), c.term(), c.is_learner()),
            None => (self.0.id.member_id, applied, RAFT_TERM, false),
        };
        let mut errors = vec![];
        if leader == 0 {
            errors.push("etcdserver: no leader".to_string());
        }
        Ok(Response::new(StatusResponse {
            header: self.0.header(store.revision()),
            version: API_VERSION.into(),
            db_size: size,
            leader,
            raft_index,
            raft_term,
            raft_applied_index: applied,
            errors,
            db_size_in_use: size,
            is_learner,
        }))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.0.count("MoveLeader");
        let store = &self.0.store;
        if store.cluster().is_none() {
            // A lone member leads already; etcd answers the same way for itself.
            if req.get_ref().target_id == self.0.id.member_id {
                return Ok(Response::new(MoveLeaderResponse { header: self.0.header(store.revision()) }));
            }
            return Err(skiff_err(crate::StoreError::BadLeaderTransferee));
        }
        store.move_leader(req.get_ref().target_id).await.map_err(skiff_err)?;
        Ok(Response::new(MoveLeaderResponse { header: self.0.header(store.revision()) }))
    }

    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        self.0.count("Alarm");
        if req.get_ref().action != alarm_request::AlarmAction::Get as i32 {
            return Err(Status::unimplemented("skiff: alarms cannot be raised or cleared by hand"));
        }
        // Skiff raises no alarms: it has no space quota and detects corruption at start-up.
        Ok(Response::new(AlarmResponse { header: self.0.header(self.0.store.revision()), alarms: vec![] }))
    }
}
