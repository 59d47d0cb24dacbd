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
/// except that a batch of commands the machine calls quick
/// ([`StateMachine::applies_quickly`]) may be applied on the node's driver
/// instead. `apply` must be deterministic: the same commands from the same
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

    /// Whether applying `command` takes only microseconds and never waits
    /// on IO. When every command of a small committed batch is quick and
    /// the apply thread has nothing to do, the node's driver applies the
    /// batch itself: one thread wake-up fewer between a write's commit and
    /// its answer, which on a lightly loaded node is a good part of a
    /// write's latency. A slow command applied there would hold up the
    /// driver, and with it heartbeats and replication, so the default says
    /// no to every command.
    fn applies_quickly(&self, command: &[u8]) -> bool {
        let _ = command;
        false
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
