//! Turns a failed search into a report a person can act on.
//!
//! "Not linearizable" alone is useless when debugging a consensus bug. The
//! most telling evidence is where the search got stuck: the longest order
//! of operations that *is* consistent with the model, the value it leaves
//! behind, and, for each operation that would have to come next, why it
//! cannot.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::history::{Operation, Outcome};
use crate::model::apply;

/// How many prefix operations to print; the ones nearest the failure are
/// the interesting ones.
const PREFIX_SHOWN: usize = 20;

/// Builds the explanation for one key.
///
/// * `considered`: history indices of the operations the search used.
/// * `prefix`: history indices of the longest linearization found, in order.
pub(crate) fn explain(ops: &[Operation], considered: &[usize], prefix: &[usize]) -> String {
    let mut out = String::new();
    let known = considered
        .iter()
        .filter(|&&i| matches!(ops[i].outcome, Outcome::Ok(_)))
        .count();
    let placed_known = prefix
        .iter()
        .filter(|&&i| matches!(ops[i].outcome, Outcome::Ok(_)))
        .count();
    // Writing to a String cannot fail, hence the ignored results below.
    let _ = writeln!(
        out,
        "longest linearizable prefix: {} operations ({placed_known} of {known} completed ones):",
        prefix.len(),
    );
    let hidden = prefix.len().saturating_sub(PREFIX_SHOWN);
    if hidden > 0 {
        let _ = writeln!(out, "  ... {hidden} earlier operations");
    }
    for &i in &prefix[hidden..] {
        let _ = writeln!(out, "  #{i} {}", ops[i]);
    }

    let mut state: Option<String> = None;
    for &i in prefix {
        state = apply(state.as_deref(), &ops[i].op).0;
    }
    match &state {
        Some(value) => {
            let _ = writeln!(out, "value after the prefix: {value:?}");
        }
        None => {
            let _ = writeln!(out, "value after the prefix: <absent>");
        }
    }

    let placed: HashSet<usize> = prefix.iter().copied().collect();
    let unplaced: Vec<usize> = considered
        .iter()
        .copied()
        .filter(|i| !placed.contains(i))
        .collect();
    // The earliest return among unplaced completed operations: everything
    // that could go next must have been invoked by then.
    let deadline = unplaced
        .iter()
        .filter(|&&i| matches!(ops[i].outcome, Outcome::Ok(_)))
        .filter_map(|&i| ops[i].return_ns.map(|ret| (ret, i)))
        .min();
    let Some((deadline_ns, deadline_op)) = deadline else {
        // Cannot happen for a genuine failure; keep the report honest.
        let _ = writeln!(out, "every completed operation was placed");
        return out;
    };
    let _ = writeln!(
        out,
        "no remaining operation can be placed next (it must be invoked by {deadline_ns}ns, \
         when #{deadline_op} returned):"
    );
    let (candidates, unknown): (Vec<usize>, Vec<usize>) = unplaced
        .into_iter()
        .filter(|&i| ops[i].invoke_ns <= deadline_ns)
        .partition(|&i| matches!(ops[i].outcome, Outcome::Ok(_)));
    for i in candidates {
        let op = &ops[i];
        let (_, would_return) = apply(state.as_deref(), &op.op);
        let reason = match &op.outcome {
            Outcome::Ok(observed) if *observed != would_return => {
                format!(
                    "from that value it would return {would_return}, but it returned {observed}"
                )
            }
            _ => "fits here, but nothing can follow it".to_owned(),
        };
        let _ = writeln!(out, "  #{i} {op}: {reason}");
    }
    if !unknown.is_empty() {
        let _ = writeln!(
            out,
            "  (and {} operations with unknown outcome, none of which leads to a linearization)",
            unknown.len()
        );
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OpKind, Output};

    #[test]
    fn names_the_prefix_the_state_and_the_blocked_operation() {
        let ops = vec![
            Operation::ok(1, OpKind::put("x", "new"), 0, 10, Output::Unit),
            Operation::ok(
                2,
                OpKind::get("x"),
                20,
                30,
                Output::Read(Some("old".into())),
            ),
        ];
        let text = explain(&ops, &[0, 1], &[0]);
        assert!(
            text.contains("1 operations (1 of 2 completed ones)"),
            "{text}"
        );
        assert!(text.contains(r#"#0 client 1 put("x", "new")"#), "{text}");
        assert!(text.contains(r#"value after the prefix: "new""#), "{text}");
        assert!(
            text.contains(r#"#1 client 2 get("x") -> "old" [20ns, 30ns]: from that value it would return "new", but it returned "old""#),
            "{text}"
        );
    }

    #[test]
    fn unknown_operations_are_summarised_not_blamed() {
        let ops = vec![
            Operation::unknown(1, OpKind::put("x", "a"), 0),
            Operation::ok(2, OpKind::get("x"), 20, 30, Output::Read(Some("b".into()))),
        ];
        let text = explain(&ops, &[0, 1], &[]);
        assert!(
            text.contains("0 operations (0 of 1 completed ones)"),
            "{text}"
        );
        assert!(text.contains("#1 client 2 get"), "{text}");
        assert!(!text.contains("#0 client 1"), "{text}");
        assert!(
            text.contains("and 1 operations with unknown outcome"),
            "{text}"
        );
    }

    #[test]
    fn long_prefixes_are_truncated() {
        let mut ops: Vec<Operation> = (0..30u64)
            .map(|t| {
                Operation::ok(
                    1,
                    OpKind::put("x", t.to_string()),
                    t * 2,
                    t * 2 + 1,
                    Output::Unit,
                )
            })
            .collect();
        ops.push(Operation::ok(
            2,
            OpKind::get("x"),
            100,
            101,
            Output::Read(None),
        ));
        let considered: Vec<usize> = (0..31).collect();
        let prefix: Vec<usize> = (0..30).collect();
        let text = explain(&ops, &considered, &prefix);
        assert!(text.contains("... 10 earlier operations"), "{text}");
        assert!(!text.contains("#9 "), "{text}");
        assert!(text.contains("#29 "), "{text}");
        assert!(text.contains("it returned <absent>"), "{text}");
    }
}
