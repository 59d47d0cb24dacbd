//! The public entry point: split a history per key, search each key, and
//! summarise the verdict.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::explain::explain;
use crate::history::{History, Operation, Outcome};
use crate::model::OpKind;
use crate::wgl::{SearchOp, SearchResult, search};

/// Tuning for [`check_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Maximum number of search steps *per key* before giving up with
    /// [`CheckResult::Timeout`]. A step is one attempt to place or un-place
    /// an operation; it is a deterministic, machine-independent bound on
    /// both running time and memory (the memo table grows by at most one
    /// entry per step). Linearizability checking is NP-complete in general,
    /// so without a bound a pathological history could run forever.
    pub max_steps: u64,
}

impl Default for CheckConfig {
    /// Ten million steps: a few seconds at most on a laptop, while ordinary
    /// test histories need a few steps per operation.
    fn default() -> Self {
        CheckConfig {
            max_steps: 10_000_000,
        }
    }
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's sub-history has a linearization.
    Linearizable,
    /// `key`'s sub-history has none. `explanation` gives the longest
    /// linearizable prefix found and why none of the operations that could
    /// come next fits.
    NotLinearizable { key: String, explanation: String },
    /// The search for `key` ran out of steps (no key was found to be
    /// non-linearizable before that).
    Timeout { key: String },
}

impl CheckResult {
    /// Whether the verdict is [`CheckResult::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => f.write_str("linearizable"),
            CheckResult::NotLinearizable { key, explanation } => {
                write!(f, "NOT linearizable (key {key:?})\n{explanation}")
            }
            CheckResult::Timeout { key } => {
                write!(f, "unknown: search step budget exhausted on key {key:?}")
            }
        }
    }
}

/// Checks `history` with the default [`CheckConfig`].
pub fn check(history: &History) -> CheckResult {
    check_with(history, &CheckConfig::default())
}

/// Checks `history` one key at a time, in sorted key order.
///
/// Linearizability is local (Herlihy & Wing): the whole history is
/// linearizable iff each per-key sub-history is, because every operation
/// touches one key. Checking keys separately turns one huge search into
/// several small ones.
///
/// The first non-linearizable key (in sorted order) is reported. A key that
/// times out is remembered but the remaining keys are still checked, since
/// a definite violation elsewhere is more useful than "don't know".
pub fn check_with(history: &History, config: &CheckConfig) -> CheckResult {
    let mut first_timeout: Option<String> = None;
    for (key, indices) in partition(history.ops()) {
        let search_ops = prepare(history.ops(), &indices);
        match search(&search_ops, config.max_steps) {
            SearchResult::Linearizable => {}
            SearchResult::Timeout => {
                first_timeout.get_or_insert_with(|| key.to_owned());
            }
            SearchResult::NotLinearizable { longest_prefix } => {
                let prefix: Vec<usize> = longest_prefix.iter().map(|&i| indices[i]).collect();
                return CheckResult::NotLinearizable {
                    key: key.to_owned(),
                    explanation: explain(history.ops(), &indices, &prefix),
                };
            }
        }
    }
    match first_timeout {
        Some(key) => CheckResult::Timeout { key },
        None => CheckResult::Linearizable,
    }
}

/// Groups the indices of the operations that matter, per key.
///
/// Dropped up front, because they cannot affect the verdict:
/// * `Failed` operations, which by definition did not take effect;
/// * `Get`s with an unknown outcome, which neither change the state nor
///   constrain it (skipping them shrinks the search for free).
fn partition(ops: &[Operation]) -> BTreeMap<&str, Vec<usize>> {
    let mut per_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        let irrelevant = matches!(
            (&op.outcome, &op.op),
            (Outcome::Failed, _) | (Outcome::Unknown, OpKind::Get { .. })
        );
        if !irrelevant {
            per_key.entry(op.op.key()).or_default().push(index);
        }
    }
    per_key
}

/// Converts one key's operations into search form, interning every value
/// to a `u32` so the model state is a small `Copy` value that hashes
/// cheaply. The result is parallel to `indices`.
fn prepare(ops: &[Operation], indices: &[usize]) -> Vec<SearchOp> {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut intern = |value: &str| -> u32 {
        if let Some(&id) = ids.get(value) {
            return id;
        }
        let id = u32::try_from(ids.len()).expect("fewer than 2^32 distinct values per key");
        ids.insert(value.to_owned(), id);
        id
    };
    let mut search_ops = Vec::with_capacity(indices.len());
    for &index in indices {
        let op = &ops[index];
        let command = op.op.command(&mut intern);
        let (return_ns, observed) = match &op.outcome {
            Outcome::Ok(output) => (op.return_ns, Some(output.response(&mut intern))),
            // The return time of an unknown operation is ignored: it may
            // still take effect after the client stopped waiting.
            Outcome::Unknown | Outcome::Failed => (None, None),
        };
        search_ops.push(SearchOp {
            invoke_ns: op.invoke_ns,
            return_ns,
            command,
            observed,
        });
    }
    search_ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Output;

    #[test]
    fn partition_drops_failed_ops_and_unknown_reads() {
        let history = History::from_ops(vec![
            Operation::ok(1, OpKind::put("b", "1"), 0, 1, Output::Unit),
            Operation::failed(1, OpKind::put("a", "1"), 0, 1),
            Operation::unknown(2, OpKind::get("a"), 0),
            Operation::unknown(2, OpKind::put("a", "2"), 0),
        ])
        .expect("valid history");
        let parts = partition(history.ops());
        assert_eq!(parts.keys().copied().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(parts["a"], vec![3]);
        assert_eq!(parts["b"], vec![0]);
    }

    #[test]
    fn timeout_is_reported_when_nothing_fails() {
        let mut ops: Vec<Operation> = (0..10)
            .map(|v| Operation::ok(v, OpKind::put("k", v.to_string()), 0, 100, Output::Unit))
            .collect();
        ops.push(Operation::ok(
            99,
            OpKind::get("k"),
            200,
            201,
            Output::Read(Some("never".into())),
        ));
        let history = History::from_ops(ops).expect("valid history");
        let config = CheckConfig { max_steps: 20 };
        assert_eq!(
            check_with(&history, &config),
            CheckResult::Timeout { key: "k".into() }
        );
        assert!(matches!(
            check(&history),
            CheckResult::NotLinearizable { .. }
        ));
    }
}
