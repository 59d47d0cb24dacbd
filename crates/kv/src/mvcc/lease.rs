//! A lease as the replicated state holds it. Its own module because the
//! auth checks (which keys a lease revocation touches) read it as well as
//! the store that keeps it.

use std::collections::BTreeSet;

use bytes::Bytes;

/// A lease as the state machine knows it: its granted TTL and the keys
/// attached to it. Expiry deadlines are leader-local (see `lessor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseState {
    pub ttl_seconds: i64,
    pub keys: BTreeSet<Bytes>,
    /// The Raft index of the entry that granted the lease: a lease revoked
    /// and granted again under its ID is another lease, and a leader's
    /// deadline belongs to one grant.
    pub granted_index: u64,
}
