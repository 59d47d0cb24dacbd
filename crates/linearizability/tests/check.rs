//! End-to-end behaviour of the checker on known-good and known-bad
//! histories, a property test against real sequential executions, and a
//! larger history to keep the search fast.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use keel_linearizability::{
    CheckConfig, CheckResult, History, HistoryRecorder, OpKind, Operation, Outcome, Output, check,
    check_with, model,
};
use proptest::prelude::*;

fn put(client: u64, key: &str, value: &str, invoke: u64, ret: u64) -> Operation {
    Operation::ok(client, OpKind::put(key, value), invoke, ret, Output::Unit)
}

fn get(client: u64, key: &str, read: Option<&str>, invoke: u64, ret: u64) -> Operation {
    let output = Output::Read(read.map(str::to_owned));
    Operation::ok(client, OpKind::get(key), invoke, ret, output)
}

fn delete(client: u64, key: &str, invoke: u64, ret: u64) -> Operation {
    Operation::ok(client, OpKind::delete(key), invoke, ret, Output::Unit)
}

#[allow(clippy::too_many_arguments)]
fn cas(
    client: u64,
    key: &str,
    expected: Option<&str>,
    new: Option<&str>,
    swapped: bool,
    invoke: u64,
    ret: u64,
) -> Operation {
    let op = OpKind::cas(key, expected, new);
    Operation::ok(client, op, invoke, ret, Output::Cas(swapped))
}

fn history(ops: Vec<Operation>) -> History {
    History::from_ops(ops).expect("test histories are well-formed")
}

fn assert_linearizable(ops: Vec<Operation>) {
    let result = check(&history(ops));
    assert_eq!(result, CheckResult::Linearizable, "{result}");
}

/// Asserts the history is rejected on `key` and returns the explanation.
fn assert_rejected(ops: Vec<Operation>, key: &str) -> String {
    match check(&history(ops)) {
        CheckResult::NotLinearizable {
            key: bad,
            explanation,
        } => {
            assert_eq!(bad, key, "{explanation}");
            explanation
        }
        other => panic!("expected key {key:?} to be rejected, got {other}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(vec![]);
}

#[test]
fn sequential_puts_and_gets() {
    assert_linearizable(vec![
        get(1, "x", None, 0, 5),
        put(1, "x", "1", 10, 20),
        get(2, "x", Some("1"), 30, 40),
        put(2, "x", "2", 50, 60),
        get(1, "x", Some("2"), 70, 80),
    ]);
}

#[test]
fn overlapping_put_and_get_may_go_either_way() {
    for read in [None, Some("1")] {
        assert_linearizable(vec![put(1, "x", "1", 0, 100), get(2, "x", read, 10, 20)]);
    }
    // Two concurrent puts: a later read may see either, and a second later
    // read must agree with the first.
    for winner in ["a", "b"] {
        assert_linearizable(vec![
            put(1, "x", "a", 0, 50),
            put(2, "x", "b", 10, 60),
            get(3, "x", Some(winner), 70, 80),
            get(1, "x", Some(winner), 90, 95),
        ]);
    }
    let explanation = assert_rejected(
        vec![
            put(1, "x", "a", 0, 50),
            put(2, "x", "b", 10, 60),
            get(3, "x", Some("a"), 70, 80),
            get(1, "x", Some("b"), 90, 95),
        ],
        "x",
    );
    assert!(explanation.contains("get(\"x\")"), "{explanation}");
}

#[test]
fn stale_read_is_rejected() {
    let explanation = assert_rejected(
        vec![
            put(1, "x", "1", 0, 10),
            put(1, "x", "2", 20, 30),
            get(2, "x", Some("1"), 40, 50),
        ],
        "x",
    );
    assert!(
        explanation.contains("it would return \"2\", but it returned \"1\""),
        "{explanation}"
    );
    assert!(
        explanation.contains("#2 client 2 get(\"x\")"),
        "{explanation}"
    );
}

#[test]
fn lost_write_is_rejected() {
    assert_rejected(
        vec![
            put(1, "x", "1", 0, 10),
            get(2, "x", None, 20, 30),
            get(3, "x", None, 40, 50),
        ],
        "x",
    );
    // The same reads are fine if the write was still in flight.
    assert_linearizable(vec![
        put(1, "x", "1", 0, 100),
        get(2, "x", None, 20, 30),
        get(3, "x", None, 40, 50),
    ]);
}

#[test]
fn read_of_failed_write_is_rejected() {
    let explanation = assert_rejected(
        vec![
            Operation::failed(1, OpKind::put("x", "1"), 0, 10),
            get(2, "x", Some("1"), 20, 30),
        ],
        "x",
    );
    // The failed put is not even a candidate.
    assert!(!explanation.contains("put("), "{explanation}");
}

#[test]
fn read_of_unknown_write_is_accepted() {
    assert_linearizable(vec![
        Operation::unknown(1, OpKind::put("x", "1"), 0),
        get(2, "x", Some("1"), 20, 30),
    ]);
    // It may take effect long after the client gave up on it...
    let mut timed_out = Operation::unknown(1, OpKind::put("x", "1"), 0);
    timed_out.return_ns = Some(10);
    assert_linearizable(vec![
        timed_out,
        get(2, "x", None, 20, 30),
        get(2, "x", Some("1"), 40, 50),
    ]);
    // ...or never.
    assert_linearizable(vec![
        Operation::unknown(1, OpKind::put("x", "1"), 0),
        get(2, "x", None, 20, 30),
    ]);
}

#[test]
fn unknown_write_cannot_be_seen_before_invocation_or_unseen_after() {
    assert_rejected(
        vec![
            get(2, "x", Some("1"), 0, 10),
            Operation::unknown(1, OpKind::put("x", "1"), 20),
        ],
        "x",
    );
    // Once observed, the write stays (nothing overwrote it).
    assert_rejected(
        vec![
            Operation::unknown(1, OpKind::put("x", "1"), 0),
            get(2, "x", Some("1"), 20, 30),
            get(2, "x", None, 40, 50),
        ],
        "x",
    );
}

#[test]
fn unknown_reads_constrain_nothing() {
    assert_linearizable(vec![
        put(1, "x", "1", 0, 10),
        Operation::unknown(2, OpKind::get("x"), 20),
        get(3, "x", Some("1"), 30, 40),
    ]);
}

#[test]
fn cas_semantics() {
    assert_linearizable(vec![
        cas(1, "x", None, Some("a"), true, 0, 10),
        cas(1, "x", Some("a"), Some("b"), true, 20, 30),
        cas(2, "x", Some("a"), Some("c"), false, 40, 50),
        get(3, "x", Some("b"), 60, 70),
        cas(3, "x", Some("b"), None, true, 80, 90),
        get(3, "x", None, 100, 110),
    ]);
    // A cas that claims to have failed although the value matched.
    assert_rejected(
        vec![
            put(1, "x", "a", 0, 10),
            cas(2, "x", Some("a"), Some("b"), false, 20, 30),
        ],
        "x",
    );
    // A cas that claims success although the value did not match.
    assert_rejected(
        vec![
            put(1, "x", "z", 0, 10),
            cas(2, "x", Some("a"), Some("b"), true, 20, 30),
        ],
        "x",
    );
    // Two racing cas from the same value cannot both win...
    assert_rejected(
        vec![
            put(1, "x", "a", 0, 10),
            cas(2, "x", Some("a"), Some("b"), true, 20, 40),
            cas(3, "x", Some("a"), Some("c"), true, 25, 45),
        ],
        "x",
    );
    // ...but one may win and the other lose, in either order.
    assert_linearizable(vec![
        put(1, "x", "a", 0, 10),
        cas(2, "x", Some("a"), Some("b"), false, 20, 40),
        cas(3, "x", Some("a"), Some("c"), true, 25, 45),
        get(1, "x", Some("c"), 50, 60),
    ]);
    // An unknown cas that succeeded is visible; its swap is modelled.
    assert_linearizable(vec![
        put(1, "x", "a", 0, 10),
        Operation::unknown(2, OpKind::cas("x", Some("a"), Some("b")), 20),
        get(3, "x", Some("b"), 50, 60),
    ]);
}

#[test]
fn delete_semantics() {
    assert_linearizable(vec![
        put(1, "x", "1", 0, 10),
        delete(1, "x", 20, 30),
        get(2, "x", None, 40, 50),
        delete(2, "x", 60, 70),
    ]);
    assert_rejected(
        vec![
            put(1, "x", "1", 0, 10),
            delete(1, "x", 20, 30),
            get(2, "x", Some("1"), 40, 50),
        ],
        "x",
    );
    for read in [None, Some("1")] {
        assert_linearizable(vec![
            put(1, "x", "1", 0, 10),
            delete(1, "x", 20, 50),
            get(2, "x", read, 30, 40),
        ]);
    }
}

#[test]
fn only_the_bad_key_is_reported() {
    let explanation = assert_rejected(
        vec![
            put(1, "a", "1", 0, 10),
            put(1, "b", "1", 0, 10),
            put(1, "c", "1", 0, 10),
            get(2, "a", Some("1"), 20, 30),
            get(2, "b", Some("0"), 20, 30),
            get(2, "c", Some("1"), 20, 30),
        ],
        "b",
    );
    assert!(!explanation.contains("\"a\""), "{explanation}");
    assert!(!explanation.contains("\"c\""), "{explanation}");
}

#[test]
fn step_budget_turns_hard_searches_into_timeouts() {
    let mut ops: Vec<Operation> = (0..14)
        .map(|c| put(c, "x", &c.to_string(), 0, 100))
        .collect();
    ops.push(get(99, "x", Some("nobody wrote this"), 200, 210));
    let history = history(ops);
    let config = CheckConfig { max_steps: 1_000 };
    assert_eq!(
        check_with(&history, &config),
        CheckResult::Timeout { key: "x".into() }
    );
}

#[test]
fn recorder_histories_are_checkable() {
    let mut rec = HistoryRecorder::new();
    let w = rec.invoke(1, OpKind::put("x", "1"), 0);
    let r = rec.invoke(2, OpKind::get("x"), 5);
    rec.complete(r, Outcome::Ok(Output::Read(Some("1".into()))), 8)
        .expect("valid completion");
    rec.complete(w, Outcome::Ok(Output::Unit), 10)
        .expect("valid completion");
    let _lost = rec.invoke(3, OpKind::put("x", "2"), 20);
    let r = rec.invoke(2, OpKind::get("x"), 30);
    rec.complete(r, Outcome::Ok(Output::Read(Some("2".into()))), 40)
        .expect("valid completion");
    let history = rec.finish();
    assert_eq!(history.ops()[2].outcome, Outcome::Unknown);
    assert_eq!(check(&history), CheckResult::Linearizable);
}

/// A tiny deterministic PRNG (SplitMix64), so the large test needs no
/// extra dependency and always runs the same history.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Simulates `clients` clients, each issuing operations back to back against
/// a correct store. Every operation takes effect at a random instant within
/// its interval; outputs come from applying the model in that order.
fn simulate(seed: u64, clients: u64, total: usize, keys: u64) -> Vec<Operation> {
    let mut rng = SplitMix(seed);
    let mut free_at = vec![0u64; clients as usize];
    // (linearization point, operation without output yet, applied?)
    let mut planned: Vec<(u64, Operation, bool)> = Vec::with_capacity(total);
    for _ in 0..total {
        let client = rng.below(clients);
        let invoke = free_at[client as usize] + rng.below(20);
        let ret = invoke + 1 + rng.below(200);
        free_at[client as usize] = ret + 1;
        let key = format!("k{}", rng.below(keys));
        let value = format!("v{}", rng.below(6));
        let other = format!("v{}", rng.below(6));
        let op = match rng.below(10) {
            0..=2 => OpKind::put(key, value),
            3..=6 => OpKind::get(key),
            7 => OpKind::delete(key),
            _ => OpKind::cas(key, Some(&value), Some(&other)),
        };
        let point = invoke + rng.below(ret - invoke + 1);
        // 5% failed, 10% unknown (half of which did take effect).
        let (outcome, applied) = match rng.below(20) {
            0 => (Outcome::Failed, false),
            1 => (Outcome::Unknown, true),
            2 => (Outcome::Unknown, false),
            _ => (Outcome::Ok(Output::Unit), true),
        };
        let op = Operation {
            client,
            op,
            invoke_ns: invoke,
            return_ns: Some(ret),
            outcome,
        };
        planned.push((point, op, applied));
    }
    planned.sort_by_key(|(point, _, _)| *point);
    let mut store: HashMap<String, String> = HashMap::new();
    let mut ops = Vec::with_capacity(total);
    for (_, mut op, applied) in planned {
        if applied {
            let key = op.op.key().to_owned();
            let (next, output) = model::apply(store.get(&key).map(String::as_str), &op.op);
            match next {
                Some(value) => store.insert(key, value),
                None => store.remove(&key),
            };
            if matches!(op.outcome, Outcome::Ok(_)) {
                op.outcome = Outcome::Ok(output);
            }
        }
        ops.push(op);
    }
    ops
}

#[test]
fn large_history_is_checked_quickly() {
    let ops = simulate(7, 5, 2_000, 3);
    assert_eq!(ops.len(), 2_000);
    let good = history(ops.clone());
    let started = Instant::now();
    assert_eq!(check(&good), CheckResult::Linearizable);
    let elapsed = started.elapsed();

    // Corrupt the last successful read: it now returns a value that was
    // never written, which must be caught and pinned on the right key.
    let mut bad = ops;
    let (index, key) = bad
        .iter()
        .enumerate()
        .rev()
        .find(|(_, op)| matches!(op.op, OpKind::Get { .. }) && matches!(op.outcome, Outcome::Ok(_)))
        .map(|(i, op)| (i, op.op.key().to_owned()))
        .expect("the simulation produces successful reads");
    bad[index].outcome = Outcome::Ok(Output::Read(Some("never-written".into())));
    let started = Instant::now();
    let explanation = assert_rejected(bad, &key);
    let elapsed_bad = started.elapsed();
    eprintln!("large history: accepted in {elapsed:?}, rejected in {elapsed_bad:?}");
    assert!(explanation.contains(&format!("#{index} ")), "{explanation}");
    // Generous bound (debug builds, busy CI machines); release is ~100x faster.
    let limit = Duration::from_secs(20);
    assert!(
        elapsed < limit && elapsed_bad < limit,
        "{elapsed:?} / {elapsed_bad:?}"
    );
}

/// One generated operation: what it is, its timing slack around its
/// linearization point, and what the client learned.
#[derive(Debug, Clone)]
struct Spec {
    kind: u8,
    key: u8,
    value: u8,
    expected: Option<u8>,
    new: Option<u8>,
    before: u64,
    after: u64,
    fate: u8,
    client: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (0u8..4, 0u8..2, 0u8..4),
        (proptest::option::of(0u8..4), proptest::option::of(0u8..4)),
        (0u64..40, 0u64..40, 0u8..12, 0u64..4),
    )
        .prop_map(
            |((kind, key, value), (expected, new), (before, after, fate, client))| Spec {
                kind,
                key,
                value,
                expected,
                new,
                before,
                after,
                fate,
                client,
            },
        )
}

/// Builds a history from a real sequential execution: operation `i` takes
/// effect at time `1000 + 10 i` (if it takes effect at all) and its interval
/// is stretched around that point, so intervals overlap randomly.
fn from_execution(specs: &[Spec]) -> Vec<Operation> {
    let mut store: HashMap<String, String> = HashMap::new();
    let value = |n: u8| format!("v{n}");
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let key = format!("k{}", s.key);
            let op = match s.kind {
                0 => OpKind::put(&key, value(s.value)),
                1 => OpKind::get(&key),
                2 => OpKind::delete(&key),
                _ => OpKind::Cas {
                    key: key.clone(),
                    expected: s.expected.map(value),
                    new: s.new.map(value),
                },
            };
            let point = 1000 + 10 * i as u64;
            let (invoke, ret) = (point - s.before, point + s.after);
            // fate 0: failed (not applied); 1: unknown, applied; 2: unknown,
            // not applied; otherwise completed.
            let applied = s.fate != 0 && s.fate != 2;
            let (next, output) = model::apply(store.get(&key).map(String::as_str), &op);
            if applied {
                match next {
                    Some(v) => store.insert(key, v),
                    None => store.remove(&key),
                };
            }
            let (outcome, return_ns) = match s.fate {
                0 => (Outcome::Failed, Some(ret)),
                1 | 2 => (Outcome::Unknown, (s.after % 2 == 0).then_some(ret)),
                _ => (Outcome::Ok(output), Some(ret)),
            };
            Operation {
                client: s.client,
                op,
                invoke_ns: invoke,
                return_ns,
                outcome,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn real_executions_are_accepted(specs in proptest::collection::vec(spec(), 0..40)) {
        let result = check(&history(from_execution(&specs)));
        prop_assert_eq!(result, CheckResult::Linearizable);
    }

    #[test]
    fn reads_of_never_written_values_are_rejected(
        specs in proptest::collection::vec(spec(), 0..40),
        pick in any::<prop::sample::Index>(),
    ) {
        let mut ops = from_execution(&specs);
        let reads: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, op)| {
                matches!(op.op, OpKind::Get { .. }) && matches!(op.outcome, Outcome::Ok(_))
            })
            .map(|(i, _)| i)
            .collect();
        let target = if reads.is_empty() {
            ops.push(get(9, "k0", None, 5000, 5001));
            ops.len() - 1
        } else {
            reads[pick.index(reads.len())]
        };
        ops[target].outcome = Outcome::Ok(Output::Read(Some("never-written".into())));
        let key = ops[target].op.key().to_owned();
        match check(&history(ops)) {
            CheckResult::NotLinearizable { key: bad, .. } => prop_assert_eq!(bad, key),
            other => prop_assert!(false, "expected a rejection, got {}", other),
        }
    }
}
