//! [`RaftMachine`]: the KV state machine as the `keel` runtime drives it.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use keel::{Command, LogIndex, StateMachine, StateMachineError};

use super::pipe;
use crate::mvcc::EntryPayload;
use crate::state_machine::KvStateMachine;

/// Wraps the member's [`KvStateMachine`], which the gRPC services share
/// (they read the store directly; only this adapter writes it).
pub struct RaftMachine {
    sm: Arc<KvStateMachine>,
}

impl RaftMachine {
    /// The store must be opened without `durable_apply`: the Raft log is the
    /// durability source, and [`StateMachine::snapshot`] flushes the store
    /// before the runtime may discard the log behind it.
    pub fn new(sm: Arc<KvStateMachine>) -> RaftMachine {
        RaftMachine { sm }
    }
}

impl StateMachine for RaftMachine {
    /// One redb transaction for the whole batch. It records
    /// `applied_through` (which may be past the last command: leader no-ops
    /// and configuration entries never reach the machine) together with
    /// the data, so the persisted applied index never disagrees with it.
    fn apply(
        &mut self,
        commands: &[Command],
        applied_through: LogIndex,
    ) -> Result<Vec<Bytes>, StateMachineError> {
        let mut entries: Vec<(u64, u64, EntryPayload<'_>)> = commands
            .iter()
            .map(|c| (c.index.0, c.term.0, EntryPayload::Command(&c.data)))
            .collect();
        if let Some(last) = commands.last()
            && applied_through > last.index
        {
            entries.push((applied_through.0, last.term.0, EntryPayload::Other));
        }
        let applied = self.sm.apply(&entries)?;
        // The store skips entries it already holds; the runtime never hands
        // it those (it replays only after `applied_index`), but an empty
        // answer keeps the response count right even if it did.
        let mut applied = applied.into_iter().peekable();
        Ok(commands
            .iter()
            .map(|c| {
                while applied.next_if(|a| a.index < c.index.0).is_some() {}
                applied
                    .next_if(|a| a.index == c.index.0)
                    .and_then(|a| a.result)
                    .unwrap_or_default()
            })
            .collect())
    }

    /// The applied index as of opening the store, which is the durable one:
    /// the runtime calls this once, at start, and replays the log after it.
    fn applied_index(&self) -> LogIndex {
        LogIndex(self.sm.position().applied_index)
    }

    /// Flushes the store (apply commits do not fsync) so that the state the
    /// snapshot stands for is durable here before the runtime compacts the
    /// log behind it, then streams a redb read transaction from another
    /// thread: a point in time, never the whole state in memory.
    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        self.sm.flush()?;
        Ok(pipe::stream_snapshot(self.sm.clone())?)
    }

    fn restore(
        &mut self,
        index: LogIndex,
        mut data: &mut dyn Read,
    ) -> Result<(), StateMachineError> {
        self.sm.restore_snapshot(&mut data, index.0)?;
        Ok(())
    }
}
