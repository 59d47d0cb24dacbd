//! One request of each workload, on the etcd KV API.

use bytes::Bytes;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, TxnRequest, request_op::Request,
};
use tonic::transport::Channel;

use crate::args::{Consistency, Workload};
use crate::keys::KeyGen;

/// What a client needs to issue requests.
pub(crate) struct Requester {
    pub(crate) client: KvClient<Channel>,
    pub(crate) keys: KeyGen,
    pub(crate) value: Bytes,
    pub(crate) workload: Workload,
    pub(crate) serializable: bool,
    pub(crate) write_fraction: f64,
}

impl Requester {
    pub(crate) fn new(
        client: KvClient<Channel>,
        keys: KeyGen,
        value_size: usize,
        workload: Workload,
        consistency: Consistency,
        write_fraction: f64,
    ) -> Requester {
        Requester {
            client,
            keys,
            value: Bytes::from(vec![b'v'; value_size]),
            workload,
            serializable: consistency == Consistency::Serializable,
            write_fraction,
        }
    }

    /// Sends request number `seq` and waits for its answer.
    pub(crate) async fn send(&mut self, seq: u64) -> Result<(), tonic::Status> {
        let key = Bytes::from(self.keys.key(seq));
        let write = match self.workload {
            Workload::Put | Workload::Txn => true,
            Workload::Get => false,
            Workload::Mixed => self.keys.fraction() < self.write_fraction,
        };
        let put = PutRequest {
            key: key.clone(),
            value: self.value.clone(),
            ..PutRequest::default()
        };
        match (self.workload, write) {
            (Workload::Txn, _) => {
                let txn = TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(put)),
                    }],
                    ..TxnRequest::default()
                };
                self.client.txn(txn).await?;
            }
            (_, true) => {
                self.client.put(put).await?;
            }
            (_, false) => {
                let range = RangeRequest {
                    key,
                    serializable: self.serializable,
                    ..RangeRequest::default()
                };
                self.client.range(range).await?;
            }
        }
        Ok(())
    }
}
