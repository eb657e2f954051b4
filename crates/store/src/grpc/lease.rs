//! etcd's Lease service.

use std::pin::Pin;

use etcdpb::*;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;

pub struct LeaseService(pub Ctx);

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl lease_server::Lease for LeaseService {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        self.0.count("LeaseGrant");
        let r = req.get_ref();
        let mut resp = self.0.store.lease_grant(r.id, r.ttl).await?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.0.count("LeaseRevoke");
        let mut resp = self.0.store.lease_revoke(req.get_ref().id).await?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        self.0.count("LeaseKeepAlive");
        let ctx = self.0.clone();
        let out = futures::StreamExt::then(req.into_inner(), move |r| {
            let ctx = ctx.clone();
            async move {
                let r = r?;
                // An unknown lease answers TTL 0, as etcd does.
                let ttl = ctx.store.lease_renew(r.id).await?.unwrap_or(0);
                Ok(LeaseKeepAliveResponse { header: ctx.header(ctx.store.revision()), id: r.id, ttl })
            }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.0.count("LeaseTimeToLive");
        let mut resp = self.0.store.lease_time_to_live(req.get_ref().id, req.get_ref().keys);
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.0.count("LeaseLeases");
        let leases = self.0.store.lease_ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: self.0.header(self.0.store.revision()), leases }))
    }
}
