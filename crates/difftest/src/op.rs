//! One request of the etcd v3 API, as the generator makes it and both
//! systems receive it.

use keel_kv::mvcc::{is_read_only, is_serializable};
use keel_kv::proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, TxnRequest,
};

/// A unary call of the KV, Lease or Maintenance service.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    LeaseLeases,
    Status,
    HashKv(HashKvRequest),
    Alarm(AlarmRequest),
    Defragment,
}

impl Op {
    /// Whether the request goes through the Raft log on Keel (and so is
    /// applied by a member before it answers). Keel answers Alarm locally.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Put(_)
                | Op::DeleteRange(_)
                | Op::Txn(_)
                | Op::Compact(_)
                | Op::LeaseGrant(_)
                | Op::LeaseRevoke(_)
        )
    }

    /// Whether a member answers from its own applied state without a
    /// read barrier, so that a member that lags behind the last write
    /// would answer from an older state.
    pub fn reads_locally(&self) -> bool {
        match self {
            Op::Range(r) => r.serializable,
            // A txn of serializable ranges only is served as they are.
            Op::Txn(t) => is_read_only(t) && is_serializable(t),
            Op::Status | Op::HashKv(_) | Op::Defragment | Op::Alarm(_) => true,
            _ => false,
        }
    }

    /// A one-line description that keeps large values readable.
    pub fn summary(&self) -> String {
        let text = format!("{self:?}");
        shorten(&text, 2000)
    }
}

/// Cuts `text` to about `max` characters, saying how much was left out.
pub fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}
