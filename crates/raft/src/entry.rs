//! What the log holds: [`Entry`] and its [`Payload`], and the
//! [`SnapshotMeta`] describing the prefix a snapshot replaces. Apart from
//! `types.rs` because they carry a [`Membership`], which is built from
//! the types there.

use bytes::Bytes;

use crate::membership::Membership;
use crate::types::{LogIndex, Term};

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The empty entry a new leader appends to commit its predecessors'
    /// entries (§5.4.2, §8).
    Blank,
    /// An opaque command for the state machine.
    Command(Bytes),
    /// A new cluster configuration. It takes effect as soon as it is appended
    /// to a log, not when it commits (thesis §4.1).
    Membership(Membership),
}

/// One log entry: `(term, index, payload)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The term of the leader that appended it.
    pub term: Term,
    /// Its position in the log, from 1.
    pub index: LogIndex,
    /// What it carries.
    pub payload: Payload,
}

impl Entry {
    /// Bytes this entry contributes to a message, used for `max_msg_bytes`.
    pub fn size_bytes(&self) -> u64 {
        let payload = match &self.payload {
            Payload::Blank => 0,
            Payload::Command(data) => data.len() as u64,
            Payload::Membership(m) => {
                let addresses: usize = m.addresses().values().map(|a| 8 + a.len()).sum();
                (8 * m.node_count() + addresses) as u64
            }
        };
        16 + payload
    }
}

/// Describes a snapshot: the log prefix it replaces and the configuration
/// in force at its last index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last entry the snapshot covers.
    pub index: LogIndex,
    /// That entry's term.
    pub term: Term,
    /// The configuration as of `index`.
    pub membership: Membership,
}
