//! A small helper for test harnesses to record a [`History`] as it happens.
//!
//! The recorder exists so harnesses do not have to remember which
//! operations are still in flight: anything invoked but never completed is
//! recorded as [`Outcome::Unknown`] when the history is finished, which is
//! exactly what a crashed or timed-out client means for linearizability.

use thiserror::Error;

use crate::history::{History, Operation, Outcome};
use crate::model::OpKind;

/// Handle for an in-flight operation, returned by [`HistoryRecorder::invoke`].
///
/// Deliberately neither `Clone` nor `Copy`: completing consumes it, so an
/// operation cannot be completed twice.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct OpId {
    recorder: u64,
    index: usize,
}

/// Why [`HistoryRecorder::complete`] refused a completion.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The id was issued by a different recorder.
    #[error("operation id belongs to a different recorder")]
    ForeignId,
    /// The completion time is before the invocation time.
    #[error("completion at {now_ns}ns is before the invocation at {invoke_ns}ns")]
    ClockWentBackwards { invoke_ns: u64, now_ns: u64 },
    /// An `Ok` outcome whose output has the wrong shape for the operation.
    #[error("invalid outcome: {0}")]
    InvalidOutcome(#[from] crate::history::HistoryError),
}

/// Records invocations and completions; see the module docs.
///
/// Not internally synchronised: concurrent harnesses wrap it in a `Mutex`
/// and read the clock while holding the lock, so the recorded order is
/// consistent with the timestamps.
#[derive(Debug)]
pub struct HistoryRecorder {
    id: u64,
    ops: Vec<Operation>,
}

impl Default for HistoryRecorder {
    fn default() -> Self {
        HistoryRecorder::new()
    }
}

impl HistoryRecorder {
    /// A recorder with no operations.
    pub fn new() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        // Distinguishes recorders so an `OpId` cannot silently complete an
        // unrelated operation in another recorder.
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        HistoryRecorder {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ops: Vec::new(),
        }
    }

    /// Records that `client` sent `op` at `now_ns`.
    pub fn invoke(&mut self, client: u64, op: OpKind, now_ns: u64) -> OpId {
        self.ops.push(Operation::unknown(client, op, now_ns));
        OpId {
            recorder: self.id,
            index: self.ops.len() - 1,
        }
    }

    /// Records that the operation `id` finished at `now_ns` with `outcome`.
    /// Completing with [`Outcome::Unknown`] is allowed (e.g. a timeout): the
    /// return time is kept for reports but the checker ignores it.
    ///
    /// If the completion is refused the operation stays `Unknown`, which is
    /// the conservative reading of a harness bug.
    pub fn complete(&mut self, id: OpId, outcome: Outcome, now_ns: u64) -> Result<(), RecordError> {
        if id.recorder != self.id {
            return Err(RecordError::ForeignId);
        }
        let op = self
            .ops
            .get_mut(id.index)
            .expect("an OpId from this recorder always indexes a recorded operation");
        if now_ns < op.invoke_ns {
            return Err(RecordError::ClockWentBackwards {
                invoke_ns: op.invoke_ns,
                now_ns,
            });
        }
        let completed = Operation {
            return_ns: Some(now_ns),
            outcome,
            ..op.clone()
        };
        completed.validate()?;
        *op = completed;
        Ok(())
    }

    /// Number of operations recorded so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The finished history; never-completed operations stay `Unknown`.
    pub fn finish(self) -> History {
        let mut history = History::new();
        for op in self.ops {
            history.push_trusted(op);
        }
        history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Output;

    #[test]
    fn uncompleted_operations_become_unknown() {
        let mut rec = HistoryRecorder::new();
        let a = rec.invoke(1, OpKind::put("k", "v"), 10);
        let _b = rec.invoke(2, OpKind::get("k"), 11);
        rec.complete(a, Outcome::Ok(Output::Unit), 20)
            .expect("valid completion");
        let history = rec.finish();
        assert_eq!(history.ops()[0].return_ns, Some(20));
        assert_eq!(history.ops()[0].outcome, Outcome::Ok(Output::Unit));
        assert_eq!(history.ops()[1].return_ns, None);
        assert_eq!(history.ops()[1].outcome, Outcome::Unknown);
    }

    #[test]
    fn rejects_bad_completions() {
        let mut rec = HistoryRecorder::new();
        let mut other = HistoryRecorder::new();
        let foreign = other.invoke(1, OpKind::get("k"), 0);
        assert_eq!(
            rec.complete(foreign, Outcome::Failed, 1),
            Err(RecordError::ForeignId)
        );
        let a = rec.invoke(1, OpKind::get("k"), 10);
        assert_eq!(
            rec.complete(a, Outcome::Failed, 9),
            Err(RecordError::ClockWentBackwards {
                invoke_ns: 10,
                now_ns: 9
            })
        );
        let b = rec.invoke(1, OpKind::get("k"), 10);
        assert!(matches!(
            rec.complete(b, Outcome::Ok(Output::Unit), 12),
            Err(RecordError::InvalidOutcome(_))
        ));
    }
}
