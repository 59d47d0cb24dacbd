//! The benchmark's ceiling: etcd's KV API served from memory, with no
//! replication and no disk. What Keel reaches as a fraction of this is what
//! consensus and durability cost on top of the API itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use clap::Parser;
use keel_kv::proto::etcdserverpb::kv_server::{Kv, KvServer};
use keel_kv::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
    request_op, response_op,
};
use keel_kv::proto::mvccpb::KeyValue;
use tonic::{Request, Response, Status};

/// Serve etcd's KV API from memory (benchmark ceiling only: not durable,
/// not replicated).
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2399")]
    listen: SocketAddr,
}

#[derive(Default)]
struct Store {
    revision: i64,
    kvs: BTreeMap<Bytes, KeyValue>,
}

impl Store {
    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.revision,
            ..ResponseHeader::default()
        })
    }

    fn put(&mut self, req: PutRequest) -> PutResponse {
        self.revision += 1;
        let revision = self.revision;
        let kv = self.kvs.entry(req.key.clone()).or_insert_with(|| KeyValue {
            key: req.key,
            create_revision: revision,
            ..KeyValue::default()
        });
        kv.mod_revision = revision;
        kv.version += 1;
        kv.value = req.value;
        PutResponse {
            header: self.header(),
            ..PutResponse::default()
        }
    }

    fn range(&self, req: &RangeRequest) -> RangeResponse {
        let kvs: Vec<KeyValue> = if req.range_end.is_empty() {
            self.kvs.get(&req.key).cloned().into_iter().collect()
        } else {
            self.kvs
                .range(req.key.clone()..req.range_end.clone())
                .map(|(_, kv)| kv.clone())
                .collect()
        };
        RangeResponse {
            header: self.header(),
            count: kvs.len() as i64,
            kvs,
            more: false,
        }
    }
}

struct Ceiling {
    store: Mutex<Store>,
}

impl Ceiling {
    fn store(&self) -> Result<std::sync::MutexGuard<'_, Store>, Status> {
        self.store
            .lock()
            .map_err(|_| Status::internal("store lock poisoned"))
    }
}

#[tonic::async_trait]
impl Kv for Ceiling {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        Ok(Response::new(self.store()?.range(req.get_ref())))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        Ok(Response::new(self.store()?.put(req.into_inner())))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let mut store = self.store()?;
        let deleted = i64::from(store.kvs.remove(&req.get_ref().key).is_some());
        store.revision += deleted;
        Ok(Response::new(DeleteRangeResponse {
            header: store.header(),
            deleted,
            prev_kvs: Vec::new(),
        }))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let mut store = self.store()?;
        let mut responses = Vec::new();
        for op in req.into_inner().success {
            let response = match op.request {
                Some(request_op::Request::RequestPut(put)) => {
                    response_op::Response::ResponsePut(store.put(put))
                }
                Some(request_op::Request::RequestRange(range)) => {
                    response_op::Response::ResponseRange(store.range(&range))
                }
                _ => {
                    return Err(Status::unimplemented(
                        "the ceiling serves put and range ops",
                    ));
                }
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(Response::new(TxnResponse {
            header: store.header(),
            succeeded: true,
            responses,
        }))
    }

    async fn compact(
        &self,
        _req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(CompactionResponse {
            header: self.store()?.header(),
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ceiling = Ceiling {
        store: Mutex::new(Store {
            revision: 1,
            ..Store::default()
        }),
    };
    eprintln!(
        "keel-ceiling: serving etcd's KV API from memory on {}",
        args.listen
    );
    tonic::transport::Server::builder()
        .add_service(KvServer::new(ceiling))
        .serve_with_shutdown(args.listen, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
