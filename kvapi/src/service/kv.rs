//! The KV service: `Range`, `Put`, `DeleteRange`, `Txn` and `Compact` (etcd `v3rpc/key.go`).

use prost::Message;
use tonic::{Request, Response, Status};

use crate::context::Ctx;
use crate::convert;
use crate::pb::etcdserverpb::{self as pb, kv_server::Kv};
use crate::status::kv_error;
use crate::validate;

pub struct KvService {
    ctx: Ctx,
}

impl KvService {
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    /// etcd refuses proposals larger than `--max-request-bytes`.
    fn check_size(&self, message: &impl Message) -> Result<(), Status> {
        validate::check_request_size(message.encoded_len(), self.ctx.config.max_request_bytes)
            .map_err(Status::from)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        validate::check_range_request(&r)?;
        let (resp, header) = self
            .ctx
            .node
            .range(convert::range_request(r)?)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(convert::range_response(resp, Some(header))))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let r = request.into_inner();
        validate::check_put_request(&r)?;
        self.check_size(&r)?;
        let (resp, header) = self
            .ctx
            .node
            .put(convert::put_request(r))
            .await
            .map_err(kv_error)?;
        Ok(Response::new(convert::put_response(resp, Some(header))))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let r = request.into_inner();
        validate::check_delete_request(&r)?;
        self.check_size(&r)?;
        let (resp, header) = self
            .ctx
            .node
            .delete_range(convert::delete_range_request(r))
            .await
            .map_err(kv_error)?;
        Ok(Response::new(convert::delete_range_response(
            resp,
            Some(header),
        )))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let r = request.into_inner();
        validate::check_txn(&r, self.ctx.config.max_txn_ops)?;
        if !validate::is_txn_read_only(&r) {
            self.check_size(&r)?;
        }
        let (resp, header) = self
            .ctx
            .node
            .txn(convert::txn_request(r)?)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(convert::txn_response(resp, Some(header))))
    }

    /// Compaction is always physical here: the call returns once it is applied.
    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let r = request.into_inner();
        let header = self
            .ctx
            .node
            .compact(r.revision, r.physical)
            .await
            .map_err(kv_error)?;
        Ok(Response::new(pb::CompactionResponse {
            header: Some(convert::header(header)),
        }))
    }
}
