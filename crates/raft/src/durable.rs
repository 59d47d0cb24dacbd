//! The caller's proof that its log is durable, which
//! [`crate::Raft::persisted`] requires.

use crate::types::{LogIndex, Term};

/// Evidence from the caller's log store that its log is on stable storage
/// through some entry.
///
/// A node counts its own log toward a quorum, and answers with
/// acknowledgements, only for entries that are durable; acknowledging an
/// entry still in a write buffer loses a committed entry on a crash.
/// [`crate::Raft::persisted`] therefore takes a proof, not just an index:
/// a store whose sync alone builds its proof (keel-storage's `Durable`,
/// which only a store's `sync` constructs) makes "only what storage
/// made durable is acknowledged" a fact the compiler checks for its
/// callers. Implement it only for a value that a completed sync hands out.
pub trait DurabilityProof {
    /// The last entry, `(index, term)`, that the store holds durably: every
    /// entry up to it is on stable storage.
    fn durable_through(&self) -> (LogIndex, Term);
}
