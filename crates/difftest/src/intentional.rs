//! The divergences from etcd 3.4 that Keel keeps on purpose. Each rule here
//! has an entry in docs/etcd-compatibility.md saying why; anything else
//! that differs is a bug.

use keel_kv::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use keel_kv::proto::etcdserverpb::{AlarmResponse, DefragmentResponse};
use prost::Message;

use crate::op::Op;
use crate::reply::Reply;

/// Keel refuses a sort order or target outside its enum, as etcd 3.6 does;
/// etcd 3.4 crashes on such a target and ignores such an order.
pub const INVALID_SORT: &str = "an out-of-range sort order or target is refused (etcd 3.6's rule); \
     etcd 3.4 panics on such a target and silently skips sorting on such an order";
/// Keel fills the header of every Maintenance response.
pub const MAINTENANCE_HEADER: &str = "Keel fills the response header of Alarm and Defragment; \
     etcd 3.4 leaves it out (3.5 fills Alarm's)";

/// A request past the gRPC receive limit is refused by the gRPC library
/// before Keel or etcd sees it, each library with its own code and text.
pub const TRANSPORT_TOO_LARGE: &str = "a message past the 2 MiB gRPC receive limit is refused by the \
     gRPC library: grpc-go says ResourceExhausted, tonic OutOfRange, in their own words";

/// The largest message both servers' gRPC layers accept: etcd's
/// `--max-request-bytes` plus its 512 KiB allowance.
const GRPC_RECEIVE_BYTES_MAX: usize = 2 * 1024 * 1024;

/// A request etcd 3.4 must not be sent (it would crash, or it answers in a
/// way Keel deliberately does not copy), with the reply Keel owes instead
/// and why.
pub fn instead_of_reference(op: &Op) -> Option<(Reply, &'static str)> {
    let Op::Range(r) = op else {
        return None;
    };
    // Past the gRPC limit the request never reaches etcd's code: it can be
    // sent, and both refuse it in the transport.
    if r.encoded_len() > GRPC_RECEIVE_BYTES_MAX {
        return None;
    }
    let valid =
        SortOrder::try_from(r.sort_order).is_ok() && SortTarget::try_from(r.sort_target).is_ok();
    if valid {
        return None;
    }
    let message = if r.key.is_empty() {
        "etcdserver: key is not provided"
    } else {
        "etcdserver: invalid sort option"
    };
    let reply = Reply::Error {
        code: "InvalidArgument".into(),
        message: message.into(),
    };
    Some((reply, INVALID_SORT))
}

/// Why the difference between `etcd` and `keel` for `op` is intended, or
/// `None` when it is not. Both replies are normalized.
pub fn intentional(op: &Op, etcd: &Reply, keel: &Reply) -> Option<&'static str> {
    match (op, etcd, keel) {
        (Op::Alarm(_), Reply::Alarm(theirs), Reply::Alarm(ours)) if theirs.header.is_none() => {
            let ours = AlarmResponse {
                header: None,
                ..ours.clone()
            };
            (ours == *theirs).then_some(MAINTENANCE_HEADER)
        }
        (Op::Defragment, Reply::Defragment(theirs), Reply::Defragment(_))
            if theirs.header.is_none() =>
        {
            (*theirs == DefragmentResponse { header: None }).then_some(MAINTENANCE_HEADER)
        }
        (
            _,
            Reply::Error { code, message },
            Reply::Error {
                code: ours,
                message: text,
            },
        ) if code == "ResourceExhausted"
            && message.starts_with("grpc: received message larger than max")
            && ours == "OutOfRange"
            && text.starts_with("Error, decoded message length too large") =>
        {
            Some(TRANSPORT_TOO_LARGE)
        }
        _ => None,
    }
}
