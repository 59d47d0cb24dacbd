//! Keys attached to leases before the timed phase (`--lease-keys`): a store
//! whose leases hold many keys, as Kubernetes' events make one. A server
//! that works out, on every write, what all the leases hold pays for it on
//! every put, whatever the put's own key — Keel did until 2026-12-07, at
//! ten times etcd's CPU per put with 100,000 such keys, and no row without
//! leases could show it.

use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::lease_client::LeaseClient;
use keel_kv::proto::etcdserverpb::request_op::Request as Op;
use keel_kv::proto::etcdserverpb::{LeaseGrantRequest, PutRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use crate::BenchError;

/// Keys each lease holds.
const KEYS_PER_LEASE: u64 = 1_000;

/// Puts per Txn: under etcd's default limit of 128 operations.
const PUTS_PER_TXN: u64 = 100;

/// Long enough that no lease expires during a run.
const LEASE_TTL_SECONDS: i64 = 3_600;

/// The name of the `n`th leased key: outside the benchmark's own keys,
/// which are digits.
fn leased_key(n: u64) -> Vec<u8> {
    format!("lease-key-{n}").into_bytes()
}

/// Grants a lease for every [`KEYS_PER_LEASE`] keys and attaches `keys`
/// keys to them.
pub(crate) async fn attach(channel: Channel, keys: u64) -> Result<(), BenchError> {
    let mut leases = LeaseClient::new(channel.clone());
    let mut kv = KvClient::new(channel);
    let mut lease = 0;
    for start in (0..keys).step_by(PUTS_PER_TXN as usize) {
        if start % KEYS_PER_LEASE == 0 {
            let grant = LeaseGrantRequest {
                ttl: LEASE_TTL_SECONDS,
                id: 0,
            };
            lease = leases
                .lease_grant(grant)
                .await
                .map_err(BenchError::Prepare)?
                .into_inner()
                .id;
        }
        let success = (start..keys.min(start + PUTS_PER_TXN))
            .map(|n| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: leased_key(n).into(),
                    value: b"v".to_vec().into(),
                    lease,
                    ..PutRequest::default()
                })),
            })
            .collect();
        let txn = TxnRequest {
            success,
            ..TxnRequest::default()
        };
        kv.txn(txn).await.map_err(BenchError::Prepare)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leased_keys_are_never_the_benchmarks_own() {
        let own = crate::keys::key_bytes(7, 16);
        assert!(own.iter().all(u8::is_ascii_digit), "{own:?}");
        assert!(!leased_key(7).iter().all(u8::is_ascii_digit));
    }
}
