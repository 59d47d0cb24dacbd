//! Recorded client operations and the validated [`History`] that holds them.
//!
//! A history is what a test harness observed from the outside: who invoked
//! what, when, and what (if anything) came back. [`History`] only accepts
//! well-formed operations, so the checker can rely on every completed
//! operation having a return time and an output of the right shape.

use std::fmt;

use thiserror::Error;

use crate::model::{OpKind, Output};

/// What the client learned about an operation's effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The operation completed and returned this output.
    Ok(Output),
    /// The operation definitely did not take effect (e.g. rejected before
    /// being proposed). The checker drops it from the history.
    Failed,
    /// The client cannot tell whether the operation took effect (timeout,
    /// connection lost, crash). It may have taken effect at any moment after
    /// its invocation — even after the client gave up — or never; its
    /// output, if any, is unknown.
    Unknown,
}

/// One client operation as observed by a test harness.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client (process) that issued the operation; used only in reports.
    pub client: u64,
    /// What was asked for.
    pub op: OpKind,
    /// When the request was sent, in nanoseconds on any clock shared by all
    /// clients of the history.
    pub invoke_ns: u64,
    /// When the response arrived; `None` if it never did.
    pub return_ns: Option<u64>,
    /// What the client learned.
    pub outcome: Outcome,
}

impl Operation {
    /// An operation that completed with `output` at `return_ns`.
    pub fn ok(client: u64, op: OpKind, invoke_ns: u64, return_ns: u64, output: Output) -> Self {
        Operation {
            client,
            op,
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Ok(output),
        }
    }

    /// An operation known not to have taken effect.
    pub fn failed(client: u64, op: OpKind, invoke_ns: u64, return_ns: u64) -> Self {
        Operation {
            client,
            op,
            invoke_ns,
            return_ns: Some(return_ns),
            outcome: Outcome::Failed,
        }
    }

    /// An operation whose effect is indeterminate.
    pub fn unknown(client: u64, op: OpKind, invoke_ns: u64) -> Self {
        Operation {
            client,
            op,
            invoke_ns,
            return_ns: None,
            outcome: Outcome::Unknown,
        }
    }

    /// Checks the invariants that [`History`] guarantees.
    pub fn validate(&self) -> Result<(), HistoryError> {
        if let Some(ret) = self.return_ns {
            if ret < self.invoke_ns {
                return Err(HistoryError::ReturnBeforeInvoke {
                    invoke_ns: self.invoke_ns,
                    return_ns: ret,
                });
            }
        }
        if let Outcome::Ok(output) = &self.outcome {
            if self.return_ns.is_none() {
                return Err(HistoryError::OkWithoutReturn);
            }
            if !self.op.accepts_output(output) {
                return Err(HistoryError::OutputMismatch {
                    op: self.op.name(),
                    output: output.clone(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} {}", self.client, self.op)?;
        match &self.outcome {
            Outcome::Ok(output) => write!(f, " -> {output}")?,
            Outcome::Failed => f.write_str(" -> failed")?,
            Outcome::Unknown => f.write_str(" -> unknown")?,
        }
        match self.return_ns {
            Some(ret) => write!(f, " [{}ns, {}ns]", self.invoke_ns, ret),
            None => write!(f, " [{}ns, never returned]", self.invoke_ns),
        }
    }
}

/// Why an [`Operation`] is not acceptable in a [`History`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    /// The clock ran backwards; the harness's timestamps cannot be trusted.
    #[error("returned at {return_ns}ns, before it was invoked at {invoke_ns}ns")]
    ReturnBeforeInvoke { invoke_ns: u64, return_ns: u64 },
    /// A successful operation must have a return time to bound it.
    #[error("outcome is ok but there is no return time")]
    OkWithoutReturn,
    /// E.g. a `get` recorded with a cas result.
    #[error("a {op} cannot produce the output {output:?}")]
    OutputMismatch { op: &'static str, output: Output },
}

/// A validated list of operations, in recording order.
///
/// The order of operations in the list carries no meaning for the check
/// (only the timestamps do); it is kept so reports and JSON Lines files can
/// refer to an operation by its position (`#index`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Builds a history, rejecting the first malformed operation (reported
    /// with its index).
    pub fn from_ops(ops: Vec<Operation>) -> Result<Self, (usize, HistoryError)> {
        for (index, op) in ops.iter().enumerate() {
            op.validate().map_err(|e| (index, e))?;
        }
        Ok(History { ops })
    }

    /// Appends an operation after validating it.
    pub fn push(&mut self, op: Operation) -> Result<(), HistoryError> {
        op.validate()?;
        self.ops.push(op);
        Ok(())
    }

    /// For callers that construct operations which are valid by
    /// construction (the recorder); still checked in debug builds.
    pub(crate) fn push_trusted(&mut self, op: Operation) {
        debug_assert_eq!(op.validate(), Ok(()));
        self.ops.push(op);
    }

    /// The operations, in recording order.
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// Number of operations (including failed ones).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the history has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_return_before_invoke() {
        let op = Operation::ok(1, OpKind::put("k", "v"), 10, 5, Output::Unit);
        assert_eq!(
            History::new().push(op),
            Err(HistoryError::ReturnBeforeInvoke {
                invoke_ns: 10,
                return_ns: 5
            })
        );
    }

    #[test]
    fn rejects_ok_without_return_and_mismatched_output() {
        let mut op = Operation::ok(1, OpKind::get("k"), 0, 5, Output::Read(None));
        op.return_ns = None;
        assert_eq!(op.validate(), Err(HistoryError::OkWithoutReturn));
        let op = Operation::ok(1, OpKind::get("k"), 0, 5, Output::Cas(true));
        let err = History::from_ops(vec![op]).expect_err("mismatched output must be rejected");
        assert_eq!(err.0, 0);
        assert!(matches!(
            err.1,
            HistoryError::OutputMismatch { op: "get", .. }
        ));
    }

    #[test]
    fn accepts_unknown_and_failed_without_outputs() {
        let ops = vec![
            Operation::unknown(1, OpKind::put("k", "v"), 0),
            Operation::failed(2, OpKind::delete("k"), 0, 3),
        ];
        let history = History::from_ops(ops).expect("valid operations");
        assert_eq!(history.len(), 2);
    }

    #[test]
    fn display_is_readable() {
        let op = Operation::ok(3, OpKind::get("x"), 1, 2, Output::Read(Some("v".into())));
        assert_eq!(op.to_string(), r#"client 3 get("x") -> "v" [1ns, 2ns]"#);
    }
}
