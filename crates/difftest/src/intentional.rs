//! The divergences from etcd that Keel keeps on purpose. Each rule here
//! has an entry in docs/etcd-compatibility.md saying why; anything else
//! that differs is a bug.

use crate::op::Op;
use crate::reply::Reply;

/// Why the difference between `etcd` and `keel` for `op` is intended, or
/// `None` when it is not.
pub fn intentional(_op: &Op, _etcd: &Reply, _keel: &Reply) -> Option<&'static str> {
    None
}
