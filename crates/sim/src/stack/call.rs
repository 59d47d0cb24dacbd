//! One client request inside the client layer of the member it reached:
//! what it waits for, its deadline and backoff. The world holds the calls
//! in flight; the request path (`requests.rs`) moves them along.

use keel::Error;
use keel_raft::NodeId;
use tokio::sync::oneshot;

use super::app::Operation;
use crate::time::Micros;

/// What a call waits for; `R` is the state machine's response.
pub(super) enum Waiting<R> {
    /// On its way to the member, or backing off.
    Nothing,
    Proposal(oneshot::Receiver<Result<R, Error>>),
    Read(oneshot::Receiver<Result<(), Error>>),
    /// Forwarded to the leader; its reply travels back.
    Forwarded,
}

/// One request inside the client layer of its member.
pub(super) struct Call<Op, R> {
    pub(super) client: usize,
    pub(super) operation: Operation<Op>,
    pub(super) member: NodeId,
    /// The member's life the call belongs to; a crash ends the call.
    pub(super) incarnation: u64,
    pub(super) deadline: Micros,
    pub(super) backoff: Micros,
    pub(super) waiting: Waiting<R>,
    /// The most recent error, reported if the deadline passes.
    pub(super) last_error: Option<Error>,
    /// How often the client sent this request again after not hearing
    /// back; once it did, no refusal of a later attempt is definite.
    pub(super) resends: u32,
}
