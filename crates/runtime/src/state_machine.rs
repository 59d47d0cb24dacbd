//! The one trait a user implements: the replicated state machine.

use std::io::Read;

use bytes::Bytes;
use keel_raft::{LogIndex, Term};

use crate::error::StateMachineError;

/// A committed command, handed to [`StateMachine::apply`] in log order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Its position in the log: unique, and increasing from command to
    /// command (with gaps where Raft's own entries are).
    pub index: LogIndex,
    /// The term of the leader that appended it.
    pub term: Term,
    /// What was passed to [`crate::Node::propose`].
    pub data: Bytes,
}

/// The application's state, replicated by applying the same commands in the
/// same order on every node.
///
/// All methods run one at a time, in order, so an implementation needs no
/// locking; they run on the node's apply thread, where blocking IO is fine,
/// except that a small batch the machine can apply at once
/// ([`StateMachine::try_apply_quickly`]) may be applied on the node's
/// driver instead. `apply` must be deterministic: the same commands from the same
/// state give the same state and responses.
pub trait StateMachine: Send + 'static {
    /// What applying one command answers its proposer, handed back by
    /// [`crate::Node::propose`] as it is: a typed value, not bytes to
    /// decode again.
    type Response: Send + 'static;

    /// Applies committed commands in order and returns one response per
    /// command, which the proposer receives.
    ///
    /// `applied_through` is the index the machine has applied through after
    /// this call. It may exceed the last command's index, because entries
    /// Raft uses internally (leader no-ops, configuration changes) count as
    /// applied without reaching the machine. A machine that persists its
    /// state should store it atomically with the data and report it from
    /// [`StateMachine::applied_index`].
    ///
    /// An error stops the node: after a failed apply, state and log no
    /// longer agree.
    fn apply(
        &mut self,
        commands: &[Command],
        applied_through: LogIndex,
    ) -> Result<Vec<Self::Response>, StateMachineError>;

    /// The index the machine has applied through. Called once at start: the
    /// node replays only the log after it. An in-memory machine returns the
    /// index of the snapshot it was restored from (0 when fresh), and is
    /// restored from the newest snapshot on start.
    fn applied_index(&self) -> LogIndex;

    /// [`StateMachine::apply`], but only if it takes microseconds and
    /// waits for nothing: no IO wait, no lock that another thread may hold
    /// for long. If the machine cannot promise that for these commands,
    /// it changes nothing and returns `None`, and they are applied on the
    /// apply thread as usual.
    ///
    /// The node tries this on its driver for a small committed batch while
    /// the apply thread has nothing to do: the answers then leave without
    /// waking that thread, which on a lightly loaded node is a good part
    /// of a write's latency. A machine that blocked here would hold up the
    /// driver, and with it heartbeats and replication, so the default
    /// never tries.
    fn try_apply_quickly(
        &mut self,
        commands: &[Command],
        applied_through: LogIndex,
    ) -> Option<Result<Vec<Self::Response>, StateMachineError>> {
        let _ = (commands, applied_through);
        None
    }

    /// A consistent copy of the current state, as a stream of bytes that
    /// [`StateMachine::restore`] can read back.
    ///
    /// The reader is consumed on another thread while later commands are
    /// applied, so it must not observe them: serialize up front, or hold a
    /// point-in-time view such as a read transaction.
    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError>;

    /// Replaces the whole state with a snapshot's contents, which cover
    /// every entry through `index`.
    fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError>;
}

/// The unit machine holds nothing and answers nothing: the node loop's
/// unit tests run the loop without ever applying.
#[cfg(test)]
impl StateMachine for () {
    type Response = ();

    fn apply(&mut self, commands: &[Command], _: LogIndex) -> Result<Vec<()>, StateMachineError> {
        Ok(vec![(); commands.len()])
    }

    fn applied_index(&self) -> LogIndex {
        LogIndex(0)
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        Ok(Box::new(std::io::empty()))
    }

    fn restore(&mut self, _: LogIndex, _: &mut dyn Read) -> Result<(), StateMachineError> {
        Ok(())
    }
}
