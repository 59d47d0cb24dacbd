//! The linearizability verdict on a run's client history, and the
//! refutation a violation report holds. Kept apart from the recording
//! (`history.rs`) so that the invariants can name a refutation without
//! depending on the nodes' replies.

use std::fmt;

use keel_linearizability::{CheckConfig, CheckResult, History, check_with};

/// The linearizability verdict of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, respecting real time, explains every
    /// answer.
    Linearizable,
    /// The checker's step budget ran out: neither proof nor refutation.
    Inconclusive {
        /// The key (or the state machine) whose history was too long.
        key: String,
    },
    /// No such order exists.
    Violated(Refutation),
}

/// A client history the checker proved has no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refutation {
    /// The key whose sub-history has none.
    pub key: String,
    /// The checker's account: the longest linearizable prefix and the
    /// operation that cannot follow it.
    pub explanation: String,
}

impl fmt::Display for Refutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}: {}", self.key, self.explanation)
    }
}

/// Search steps per key before the checker gives up.
pub const CHECK_STEPS_MAX: u64 = 2_000_000;

/// Checks `history`, giving up on a key after [`CHECK_STEPS_MAX`] steps.
pub fn verdict(history: &History) -> Verdict {
    let config = CheckConfig {
        max_steps: CHECK_STEPS_MAX,
    };
    match check_with(history, &config) {
        CheckResult::Linearizable => Verdict::Linearizable,
        CheckResult::Timeout { key } => Verdict::Inconclusive { key },
        CheckResult::NotLinearizable { key, explanation } => {
            Verdict::Violated(Refutation { key, explanation })
        }
    }
}
