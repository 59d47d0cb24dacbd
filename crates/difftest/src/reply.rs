//! A response, or a gRPC error, with the fields that legitimately differ
//! between two correct systems taken out, so that what remains must be
//! equal field by field.
//!
//! What is ignored, and why (docs/etcd-compatibility.md repeats this):
//! - every response header's `cluster_id`, `member_id` and `raft_term`:
//!   identities and terms of different clusters;
//! - Status: only its shape is compared (a header or not, which numbers are
//!   zero, which strings are empty): version, database size, Raft indexes
//!   and the leader's ID describe the implementation, not the data;
//! - HashKV's `hash`: etcd hashes its bolt database's own key encoding,
//!   which Keel does not share; the revisions beside it are compared;
//! - LeaseTimeToLive's remaining `TTL`: each system's clock counts it; two
//!   positive values within [`TTL_SLACK_SECONDS`] count as equal;
//! - LeaseLeases' order: etcd lists leases from a Go map, in random order,
//!   so both lists are sorted by ID;
//! - Alarm members' IDs: member IDs differ; only whether one is named.

use keel_kv::proto::etcdserverpb::response_op::Response;
use keel_kv::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DefragmentResponse, DeleteRangeResponse, HashKvResponse,
    LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseTimeToLiveResponse,
    PutResponse, RangeResponse, ResponseHeader, StatusResponse, TxnResponse,
};

/// How far apart two clocks' remaining TTLs of one lease may be, in
/// seconds: the requests reach the two systems some time apart, and each
/// rounds differently.
pub const TTL_SLACK_SECONDS: i64 = 2;

/// What one system answered to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    LeaseLeases(LeaseLeasesResponse),
    Status(StatusResponse),
    HashKv(HashKvResponse),
    Alarm(AlarmResponse),
    Defragment(DefragmentResponse),
    /// A gRPC error: its code (by name) and message, exactly.
    Error {
        code: String,
        message: String,
    },
}

impl Reply {
    pub fn error(status: &tonic::Status) -> Reply {
        Reply::Error {
            code: format!("{:?}", status.code()),
            message: status.message().to_owned(),
        }
    }

    /// Whether the call never reached a server that answered: the process
    /// is gone or the connection broke (tonic's own messages).
    pub fn is_transport_failure(&self) -> bool {
        match self {
            Reply::Error { code, message } => {
                (code == "Unavailable" && message.contains("connect"))
                    || (code == "Unknown" && message == "transport error")
            }
            _ => false,
        }
    }

    /// The header revision, if the reply carries one.
    pub fn revision(&self) -> Option<i64> {
        let header = match self {
            Reply::Range(r) => r.header.as_ref(),
            Reply::Put(r) => r.header.as_ref(),
            Reply::DeleteRange(r) => r.header.as_ref(),
            Reply::Txn(r) => r.header.as_ref(),
            Reply::Compact(r) => r.header.as_ref(),
            Reply::LeaseGrant(r) => r.header.as_ref(),
            Reply::LeaseRevoke(r) => r.header.as_ref(),
            Reply::LeaseTimeToLive(r) => r.header.as_ref(),
            Reply::LeaseLeases(r) => r.header.as_ref(),
            Reply::Status(r) => r.header.as_ref(),
            Reply::HashKv(r) => r.header.as_ref(),
            Reply::Alarm(r) => r.header.as_ref(),
            Reply::Defragment(r) => r.header.as_ref(),
            Reply::Error { .. } => None,
        };
        header.map(|h| h.revision)
    }

    /// This reply without the fields that may legitimately differ.
    pub fn normalized(mut self) -> Reply {
        match &mut self {
            Reply::Range(r) => range(r),
            Reply::Put(r) => header(&mut r.header),
            Reply::DeleteRange(r) => header(&mut r.header),
            Reply::Txn(r) => txn(r),
            Reply::Compact(r) => header(&mut r.header),
            Reply::LeaseGrant(r) => header(&mut r.header),
            Reply::LeaseRevoke(r) => header(&mut r.header),
            Reply::LeaseTimeToLive(r) => {
                header(&mut r.header);
                r.keys.sort();
            }
            Reply::LeaseLeases(r) => {
                header(&mut r.header);
                r.leases.sort_by_key(|l| l.id);
            }
            Reply::Status(r) => status_shape(r),
            Reply::HashKv(r) => {
                header(&mut r.header);
                r.hash = 0;
            }
            Reply::Alarm(r) => {
                header(&mut r.header);
                for alarm in &mut r.alarms {
                    alarm.member_id = u64::from(alarm.member_id != 0);
                }
            }
            Reply::Defragment(r) => header(&mut r.header),
            Reply::Error { .. } => {}
        }
        self
    }

    /// Makes `self`'s remaining lease TTL equal to `reference`'s when the
    /// two are within [`TTL_SLACK_SECONDS`] of each other, both positive.
    pub fn forgive_ttl(&mut self, reference: &Reply) {
        if let (Reply::LeaseTimeToLive(ours), Reply::LeaseTimeToLive(theirs)) = (self, reference) {
            if ours.ttl > 0 && theirs.ttl > 0 && (ours.ttl - theirs.ttl).abs() <= TTL_SLACK_SECONDS
            {
                ours.ttl = theirs.ttl;
            }
        }
    }
}

fn header(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn range(r: &mut RangeResponse) {
    header(&mut r.header);
}

fn txn(r: &mut TxnResponse) {
    header(&mut r.header);
    for op in &mut r.responses {
        match &mut op.response {
            Some(Response::ResponseRange(r)) => range(r),
            Some(Response::ResponsePut(r)) => header(&mut r.header),
            Some(Response::ResponseDeleteRange(r)) => header(&mut r.header),
            Some(Response::ResponseTxn(r)) => txn(r),
            None => {}
        }
    }
}

/// Keeps of a Status which fields are set, and the header's revision.
fn status_shape(r: &mut StatusResponse) {
    header(&mut r.header);
    let set = |v: u64| u64::from(v != 0);
    r.version = if r.version.is_empty() {
        String::new()
    } else {
        "<set>".into()
    };
    r.db_size = i64::from(r.db_size != 0);
    r.db_size_in_use = i64::from(r.db_size_in_use != 0);
    r.leader = set(r.leader);
    r.raft_index = set(r.raft_index);
    r.raft_term = set(r.raft_term);
    r.raft_applied_index = set(r.raft_applied_index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_and_terms_are_ignored_but_revisions_are_not() {
        let a = Reply::Put(PutResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 5,
                raft_term: 3,
            }),
            prev_kv: None,
        });
        let b = Reply::Put(PutResponse {
            header: Some(ResponseHeader {
                cluster_id: 9,
                member_id: 8,
                revision: 5,
                raft_term: 7,
            }),
            prev_kv: None,
        });
        assert_eq!(a.clone().normalized(), b.normalized());
        let c = Reply::Put(PutResponse {
            header: Some(ResponseHeader {
                revision: 6,
                ..Default::default()
            }),
            prev_kv: None,
        });
        assert_ne!(a.normalized(), c.normalized());
    }

    #[test]
    fn remaining_ttls_within_the_slack_are_forgiven() {
        let ttl = |ttl| {
            Reply::LeaseTimeToLive(LeaseTimeToLiveResponse {
                ttl,
                ..Default::default()
            })
        };
        let mut ours = ttl(58);
        ours.forgive_ttl(&ttl(60));
        assert_eq!(ours, ttl(60));
        let mut gone = ttl(-1);
        gone.forgive_ttl(&ttl(1));
        assert_eq!(gone, ttl(-1));
    }
}
