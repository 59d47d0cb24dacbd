//! A linearizability checker for histories of a key-value store.
//!
//! Keel's end-to-end tests drive a cluster with concurrent clients (while
//! crashing and partitioning nodes), record what each client saw, and ask
//! this crate whether those observations are consistent with a single,
//! atomic key-value store. That is *linearizability*: there must be one
//! total order of the operations that (1) respects real time — if A
//! returned before B was invoked, A comes first — and (2) is a legal
//! sequential execution of the [model](model) (every read sees the latest
//! write, every cas succeeds iff the value matched).
//!
//! # The algorithm
//!
//! The search is Wing & Gong's, with Lowe's "just-in-time linearization" and
//! memoisation, the approach popularised by Knossos and Porcupine:
//!
//! 1. The history is split **per key** ([`check_with`]). All operations are
//!    single-key and linearizability is local, so each key can be checked on
//!    its own — this keeps each search small.
//! 2. For a key, call and return events are sorted by time into a linked
//!    list. Walking it, the search tries to linearize each invoked
//!    operation as early as possible; when it reaches the return of an
//!    operation it has not yet placed, it backtracks and tries the next
//!    candidate. Details are in the `wgl` module.
//! 3. Each reached configuration — the set of placed operations (a bitset)
//!    plus the model state — is memoised, so a configuration reached twice
//!    through different orders is explored once.
//! 4. A step budget ([`CheckConfig::max_steps`]) bounds the work; exceeding
//!    it yields [`CheckResult::Timeout`] instead of hanging (the problem is
//!    NP-complete in general).
//!
//! For a state machine other than the KV registers, [`check_model`] runs the
//! same search over any sequential [`Model`] (module [`sequential`]).
//!
//! # Outcomes
//!
//! * [`Outcome::Ok`]: the operation took effect at some instant between
//!   its invocation and its return, and its output must match the model.
//! * [`Outcome::Failed`]: it definitely did not take effect; it is ignored.
//! * [`Outcome::Unknown`]: the client cannot tell (timeout, crash). The
//!   operation may take effect at any instant after its invocation — even
//!   after the client gave up, since a proposal can sit in a Raft log and
//!   commit later — or never. Its return time is treated as +∞ and its
//!   output is unconstrained. Reads with an unknown outcome are dropped
//!   since they can neither change nor constrain anything.
//!
//! Two operations are ordered only if one's `return_ns` is *strictly less*
//! than the other's `invoke_ns`; equal timestamps count as concurrent.
//!
//! # Example
//!
//! ```
//! use keel_linearizability::{check, CheckResult, History, Operation, OpKind, Output};
//!
//! let history = History::from_ops(vec![
//!     Operation::ok(1, OpKind::put("x", "1"), 0, 10, Output::Unit),
//!     // Invoked after the put returned, yet reads nothing: a stale read.
//!     Operation::ok(2, OpKind::get("x"), 20, 30, Output::Read(None)),
//! ])
//! .expect("well-formed operations");
//! let CheckResult::NotLinearizable { key, explanation } = check(&history) else {
//!     panic!("a stale read must be rejected");
//! };
//! assert_eq!(key, "x");
//! assert!(explanation.contains("it would return \"1\""));
//! ```

mod bitset;
mod check;
mod events;
mod explain;
mod history;
mod jsonl;
mod memo;
pub mod model;
mod recorder;
pub mod sequential;
mod wgl;

pub use check::{CheckConfig, CheckResult, check, check_with};
pub use history::{History, HistoryError, Operation, Outcome};
pub use jsonl::{InvalidOperation, ParseError};
pub use model::{OpKind, Output};
pub use recorder::{HistoryRecorder, OpId, RecordError};
pub use sequential::{Model, ModelOp, ModelVerdict, check_model};
