//! etcd's KV service.

use etcdpb::*;
use tonic::{Request, Response, Status};

use prost::Message;

use super::{check_message_size, Ctx};

pub struct KvService(pub Ctx);

#[tonic::async_trait]
impl kv_server::Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.0.count("Range");
        check_message_size(&self.0, req.get_ref().encoded_len())?;
        if !req.get_ref().serializable {
            self.0.store.linearizable_barrier().await?;
        }
        let mut resp = self.0.store.range(req.get_ref())?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.0.count("Put");
        check_message_size(&self.0, req.get_ref().encoded_len())?;
        let mut resp = self.0.store.put(req.into_inner()).await?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        self.0.count("DeleteRange");
        check_message_size(&self.0, req.get_ref().encoded_len())?;
        let mut resp = self.0.store.delete_range(req.into_inner()).await?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.0.count("Txn");
        check_message_size(&self.0, req.get_ref().encoded_len())?;
        let mut resp = self.0.store.txn(req.into_inner()).await?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        self.0.count("Compact");
        check_message_size(&self.0, req.get_ref().encoded_len())?;
        let mut resp = self.0.store.compact(req.get_ref().revision).await?;
        self.0.fill(&mut resp.header);
        Ok(Response::new(resp))
    }
}
