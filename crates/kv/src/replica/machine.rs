//! [`RaftMachine`]: the KV state machine as the `keel` runtime drives it.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use keel::{Command, LogIndex, StateMachine, StateMachineError};

use super::pipe;
use crate::mvcc::{Applied, EntryPayload};
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
    /// The encoded `CommandResult`: it is produced inside the store's
    /// apply transaction and crosses the forward RPC as it is.
    type Response = Bytes;

    /// One redb transaction for the whole batch. It records
    /// `applied_through` (which may be past the last command: leader no-ops
    /// and configuration entries never reach the machine) together with
    /// the data, so the persisted applied index never disagrees with it.
    fn apply(
        &mut self,
        commands: &[Command],
        applied_through: LogIndex,
    ) -> Result<Vec<Bytes>, StateMachineError> {
        let applied = self.sm.apply(&entries(commands, applied_through))?;
        Ok(results(commands, applied))
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

    /// Applies a batch of small puts at once, unless the store is held by
    /// another thread (`KvStateMachine::try_apply`). A put is a few rows
    /// written in one store transaction that does not sync; anything else
    /// (ranges, txns, compactions, lease revocations: work that grows with
    /// the store) waits for the apply thread.
    fn try_apply_quickly(
        &mut self,
        commands: &[Command],
        applied_through: LogIndex,
    ) -> Option<Result<Vec<Bytes>, StateMachineError>> {
        if !commands.iter().all(|c| is_small_put(&c.data)) {
            return None;
        }
        let applied = self.sm.try_apply(&entries(commands, applied_through))?;
        Some(
            applied
                .map(|applied| results(commands, applied))
                .map_err(StateMachineError::from),
        )
    }
}

/// The store's view of a batch: each command's payload, and past the last
/// command (leader no-ops and configuration entries never reach the
/// machine) an entry that only moves the applied index, so that the
/// persisted applied index never disagrees with the runtime's.
fn entries(commands: &[Command], applied_through: LogIndex) -> Vec<(u64, u64, EntryPayload<'_>)> {
    let mut entries: Vec<(u64, u64, EntryPayload<'_>)> = commands
        .iter()
        .map(|c| (c.index.0, c.term.0, EntryPayload::Command(&c.data)))
        .collect();
    if let Some(last) = commands.last()
        && applied_through > last.index
    {
        entries.push((applied_through.0, last.term.0, EntryPayload::Other));
    }
    entries
}

/// Each command's encoded result, in order. The store skips entries it
/// already holds; the runtime never hands it those (it replays only after
/// `applied_index`), but an empty answer keeps the count right even if it
/// did.
fn results(commands: &[Command], applied: Vec<Applied>) -> Vec<Bytes> {
    let mut applied = applied.into_iter().peekable();
    commands
        .iter()
        .map(|c| {
            while applied.next_if(|a| a.index < c.index.0).is_some() {}
            applied
                .next_if(|a| a.index == c.index.0)
                .and_then(|a| a.result)
                .unwrap_or_default()
        })
        .collect()
}

/// Whether an encoded command is a put of at most [`QUICK_PUT_BYTES_MAX`].
/// A put is the `Command`'s field 1, and prost writes fields in number
/// order, so an encoded put's first byte is that field's key.
fn is_small_put(command: &[u8]) -> bool {
    command.len() <= QUICK_PUT_BYTES_MAX && command.first() == Some(&PUT_FIELD_KEY)
}

/// The key of `Command.put` (field 1, length-delimited) on the wire.
const PUT_FIELD_KEY: u8 = (1 << 3) | 2;

/// The largest put tried on the runtime's driver.
const QUICK_PUT_BYTES_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use keel::Term;

    use super::*;
    use crate::command::encode;
    use crate::proto::command::command::Op;
    use crate::proto::etcdserverpb::PutRequest;

    fn put(index: u64, key: &str) -> Command {
        Command {
            index: LogIndex(index),
            term: Term(1),
            data: encode(Op::Put(PutRequest {
                key: key.to_owned().into(),
                value: vec![index as u8; 10_000].into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn only_small_puts_are_quick() {
        let small = encode(Op::Put(PutRequest {
            key: b"k".to_vec().into(),
            value: vec![1; 256].into(),
            ..Default::default()
        }));
        assert!(is_small_put(&small));
        assert!(!is_small_put(&put(1, "k").data), "10 kB value");
        let delete = encode(Op::DeleteRange(Default::default()));
        assert!(!is_small_put(&delete));
        // An empty `caller` (field 30: key 0xF2 0x01, length 0) written
        // ahead of the put: valid protobuf, but not what prost writes.
        let caller_first = [&[0xF2, 0x01, 0x00][..], &small[..]].concat();
        assert!(!is_small_put(&caller_first));
    }

    /// The simulator's path: the runtime's adapter over a store in memory,
    /// snapshots streamed through the pipe's thread and restored into
    /// another such machine.
    #[test]
    fn machine_over_an_in_memory_store_snapshots_and_restores() {
        let sm = KvStateMachine::in_memory().unwrap();
        let mut machine = RaftMachine::new(sm.clone());
        let commands: Vec<Command> = (1..=50).map(|i| put(i, &format!("k{i}"))).collect();
        let results = machine.apply(&commands, LogIndex(52)).unwrap();
        assert_eq!(results.len(), 50);
        assert!(results.iter().all(|r| !r.is_empty()));

        let mut data = Vec::new();
        machine.snapshot().unwrap().read_to_end(&mut data).unwrap();
        assert!(data.len() > 50 * 10_000, "several of the pipe's chunks");

        let other = KvStateMachine::in_memory().unwrap();
        let mut restored = RaftMachine::new(other.clone());
        restored
            .restore(LogIndex(52), &mut data.as_slice())
            .unwrap();
        assert_eq!(restored.applied_index(), LogIndex(52));
        assert_eq!(other.position(), sm.position());
        assert_eq!(
            other.store().hash_kv(0).unwrap(),
            sm.store().hash_kv(0).unwrap()
        );
    }
}
