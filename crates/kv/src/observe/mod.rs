//! Watching the whole cluster from any one member, for the web view.
//!
//! Every member serves `keel.kv.v1.Observe/Status` on its peer listener
//! (`status.rs`): its own role, term, indexes, followers' progress and
//! election counters, read from its metrics. [`ClusterObserver`]
//! (`gather.rs`) asks each member of the configuration for it, at the
//! address the configuration records, and reports the ones that do not
//! answer as down. The peer listener is used, rather than the other
//! members' metrics ports, because its addresses are already known to
//! every member (the Raft configuration carries them) and
//! already authenticated: nothing new to configure or publish. The same
//! call, timed every few seconds (`round_trip.rs`), gives etcd's peer
//! round trip histogram.

mod gather;
mod round_trip;
mod status;

pub use gather::{ClusterObserver, ClusterSnapshot, MemberReport};
pub(crate) use round_trip::probe_peers;
pub use round_trip::{PEER_PROBE_INTERVAL, PeerRoundTrips};
pub use status::member_status;
pub(crate) use status::{ObserveService, db_size_bytes};

pub use crate::proto::command::{FollowerProgress, MemberStatus, Role};
