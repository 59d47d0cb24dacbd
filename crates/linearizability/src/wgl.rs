//! The Wing–Gong–Lowe search for one key's sub-history.
//!
//! # How the search works
//!
//! The call and return events of the operations are sorted by time. The
//! search walks them from the front:
//!
//! * At a **call** event, it tries to linearize that operation *now*: apply
//!   it to the current model state and check the result against the observed
//!   output. If that works and the resulting configuration (set of
//!   linearized operations, model state) has not been seen before, the
//!   operation is pushed on a stack, its call and return events are removed
//!   ("lifted"), and the walk restarts from the front. Otherwise the walk
//!   moves on to the next event, i.e. tries a later concurrent operation
//!   instead.
//! * At a **return** event, the walk has passed the return of an operation
//!   that is not yet linearized, so no operation that was only invoked after
//!   it may go first. The current choice is a dead end: pop the last
//!   linearized operation, restore the state and its events, and continue
//!   just after its call event (try the next alternative).
//!
//! The history is linearizable once every operation with a known outcome is
//! linearized; it is not once the stack is empty at a dead end.
//!
//! Memoisation (Lowe's improvement) is what makes this practical: two
//! different orders that linearize the same set of operations and leave the
//! model in the same state have exactly the same future, so the second one
//! is skipped (see the `memo` module).
//!
//! # Indeterminate operations
//!
//! An operation with an unknown outcome has no return event (its return
//! time is +∞): it may be linearized at any point after its invocation, and
//! its output is unconstrained. It also does not have to be linearized at
//! all, because it may never have taken effect: once all operations with a
//! known outcome are placed, the remaining unknown ones can always be
//! appended at the end (with no observed output every step is legal), which
//! is indistinguishable from "took effect after everything else".
//!
//! Left alone, unknown operations make the search exponential: they stay
//! placeable forever, so every subset of them, in every order, would be a
//! distinct configuration. Two things keep it tractable.
//!
//! First, the memo table skips a configuration if one with the same known
//! operations placed and the same state but a *subset* of its unknown
//! operations was seen: an unused unknown operation can always stay unused,
//! so using fewer never hurts. That only pays off if configurations using
//! fewer unknown operations are explored first, so the search runs in
//! **layers**: layer *k* explores (depth-first, with the walk above) every
//! configuration reachable with exactly *k* unknown operations placed;
//! placing one more unknown operation defers the new configuration to layer
//! *k + 1*. Whenever a layer reaches a configuration, every configuration
//! that dominates it has been explored already, so no work is ever
//! superseded. Layers are slow to *find* a linearization that needs many
//! unknown operations, though, so the search first makes a quick
//! depth-first pass (deferred configurations explored most recent first)
//! with an eighth of the step budget, and only falls back to layers if that
//! pass runs out of steps. Refuting a history is where layers matter: it
//! means exhausting every configuration.
//!
//! Second, three reductions skip placements whose result is dominated, in
//! the same sense, by a configuration that is explored anyway:
//!
//! 1. **No-op placement.** An unknown operation that would not change the
//!    state (a failing cas, a put of the current value, a delete of an
//!    absent key) is not placed: the current configuration already
//!    dominates the result.
//! 2. **No hidden effects.** No put or delete (known or unknown) is placed
//!    right after an unknown operation: it would overwrite that operation's
//!    effect unseen, so placing the put or delete *instead* (a sibling
//!    configuration, since placing an unknown operation does not change
//!    which known operations are candidates) dominates.
//! 3. **Interchangeable twins.** Unknown operations with identical inputs
//!    are interchangeable once invoked (no return time, no output), so they
//!    are used strictly in invocation order; the others are symmetric
//!    copies of what is explored.
//!
//! A property test checks the verdicts of both passes against a literal
//! brute-force search of the definition on small random histories.
//!
//! # Equal timestamps
//!
//! When one operation returns at the same nanosecond another is invoked, the
//! two are treated as *concurrent* (call events sort before return events
//! at equal times). Clocks have finite resolution, so equal stamps do not
//! prove the first finished before the second started; treating them as
//! concurrent can only make the checker more permissive, never produce a
//! false "not linearizable". An operation is known to precede another only
//! when `return_ns < invoke_ns`.

use std::collections::HashMap;

use crate::bitset::Bitset;
use crate::events::EventTable;
use crate::memo::Memo;
use crate::model::{Command, Response};

/// One operation of a single key, with values interned to small integers.
#[derive(Debug, Clone)]
pub(crate) struct SearchOp {
    pub(crate) invoke_ns: u64,
    /// `None` means +∞: the operation's outcome is unknown.
    pub(crate) return_ns: Option<u64>,
    pub(crate) command: Command<u32>,
    /// `None` means "any output" (unknown outcome).
    pub(crate) observed: Option<Response<u32>>,
}

/// What the search concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SearchResult {
    Linearizable,
    /// `longest_prefix` lists indices into the searched operations, in the
    /// order of the longest valid linearization the search found.
    NotLinearizable {
        longest_prefix: Vec<usize>,
    },
    /// The step budget ran out before a conclusion.
    Timeout,
}

/// A configuration from which a layer starts a depth-first exploration.
#[derive(Debug)]
struct Root {
    /// Events of the known operations placed so far.
    removed: Bitset,
    /// Unknown operations placed so far, by slot.
    unknown: Bitset,
    state: Option<u32>,
    /// The last operation placed was an unknown one (reduction 2).
    after_unknown: bool,
    /// The linearization leading here, in [`Paths`].
    path: Option<usize>,
    depth: usize,
}

/// A known operation placed during a depth-first exploration.
#[derive(Debug)]
struct Frame {
    /// Position of its call event.
    call: usize,
    /// The state before it was applied.
    state: Option<u32>,
    /// Its node in [`Paths`], created only when a deferred configuration
    /// needs this frame's linearization.
    path: Option<usize>,
}

/// How one exploration ended.
enum Flow {
    Linearizable,
    Exhausted,
    Timeout,
}

/// The linearizations leading to deferred configurations, as a tree of
/// parent pointers, since they share long prefixes.
#[derive(Debug, Default)]
struct Paths {
    /// (operation, parent node)
    nodes: Vec<(usize, Option<usize>)>,
}

impl Paths {
    fn push(&mut self, parent: Option<usize>, op: usize) -> Option<usize> {
        self.nodes.push((op, parent));
        Some(self.nodes.len() - 1)
    }

    fn to_vec(&self, mut at: Option<usize>) -> Vec<usize> {
        let mut ops = Vec::new();
        while let Some(node) = at {
            let (op, parent) = self.nodes[node];
            ops.push(op);
            at = parent;
        }
        ops.reverse();
        ops
    }
}

/// State shared by all explorations of one search.
struct Search<'a> {
    ops: &'a [SearchOp],
    events: EventTable,
    known_total: usize,
    /// Unknown operations in invocation order.
    unknown_order: Vec<usize>,
    /// Each unknown operation's bit in `Root::unknown`.
    unknown_slot: Vec<usize>,
    /// For each unknown operation, the twin that must be placed first.
    twins: Vec<Option<usize>>,
    memo: Memo,
    paths: Paths,
    steps: u64,
    max_steps: u64,
    /// The longest linearization seen: a path plus the frames after it.
    longest: (Option<usize>, Vec<usize>),
    longest_len: usize,
}

/// The order in which deferred configurations are explored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Most recently deferred first: dives deep quickly, so it usually
    /// finds a linearization fast, but may explore a configuration before
    /// one that dominates it and then redo the work.
    DepthFirst,
    /// Layer by layer (fewest unknown operations first): never redoes work,
    /// which makes refutations fast, but reaches deep configurations late.
    Layered,
}

/// Searches for a linearization of `ops`, giving up after `max_steps`
/// steps (a step examines one event or one candidate operation, so the
/// budget bounds both time and the memo table's growth).
///
/// A quick depth-first pass gets an eighth of the budget; most histories
/// are settled by it. If it runs out, a layered pass starts afresh with
/// the rest (see the module docs).
pub(crate) fn search(ops: &[SearchOp], max_steps: u64) -> SearchResult {
    let mut quick = Search::new(ops, max_steps / 8);
    match quick.run(Order::DepthFirst) {
        Flow::Linearizable => return SearchResult::Linearizable,
        Flow::Exhausted => return quick.not_linearizable(),
        Flow::Timeout => {}
    }
    let mut thorough = Search::new(ops, max_steps.saturating_sub(quick.steps));
    match thorough.run(Order::Layered) {
        Flow::Linearizable => SearchResult::Linearizable,
        Flow::Exhausted => thorough.not_linearizable(),
        Flow::Timeout => SearchResult::Timeout,
    }
}

impl<'a> Search<'a> {
    fn new(ops: &'a [SearchOp], max_steps: u64) -> Self {
        let events = EventTable::new(
            ops.iter()
                .enumerate()
                .filter_map(|(i, op)| op.return_ns.map(|ret| (i, op.invoke_ns, ret))),
        );
        let mut unknown_order: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].return_ns.is_none())
            .collect();
        unknown_order.sort_by_key(|&i| (ops[i].invoke_ns, i));
        let mut unknown_slot = vec![usize::MAX; ops.len()];
        for (slot, &op) in unknown_order.iter().enumerate() {
            unknown_slot[op] = slot;
        }
        Search {
            ops,
            known_total: events.len() / 2,
            events,
            twins: earlier_twins(ops, &unknown_order),
            unknown_order,
            unknown_slot,
            memo: Memo::default(),
            paths: Paths::default(),
            steps: 0,
            max_steps,
            longest: (None, Vec::new()),
            longest_len: 0,
        }
    }

    /// Explores every configuration, deferred ones in `order`.
    fn run(&mut self, order: Order) -> Flow {
        let root = Root {
            removed: Bitset::new(self.events.len()),
            unknown: Bitset::new(self.unknown_order.len()),
            state: None,
            after_unknown: false,
            path: None,
            depth: 0,
        };
        self.memo.visit(&root.removed, root.state, &root.unknown);
        let mut pending = vec![root];
        let mut next_layer = Vec::new();
        loop {
            if pending.is_empty() && order == Order::Layered {
                // Start the next layer, in the order it was deferred.
                std::mem::swap(&mut pending, &mut next_layer);
                pending.reverse();
            }
            let Some(root) = pending.pop() else {
                return Flow::Exhausted;
            };
            // A configuration using fewer unknown operations may have been
            // reached since this one was deferred; then it adds nothing.
            if !self
                .memo
                .is_minimal(&root.removed, root.state, &root.unknown)
            {
                continue;
            }
            let flow = match order {
                Order::DepthFirst => {
                    let start = pending.len();
                    let flow = self.explore(&root, &mut pending);
                    // Deferred deepest-first, so reversing puts the deepest
                    // on top of the stack: keep diving.
                    pending[start..].reverse();
                    flow
                }
                Order::Layered => self.explore(&root, &mut next_layer),
            };
            if !matches!(flow, Flow::Exhausted) {
                return flow;
            }
        }
    }

    /// The verdict after an exhausted search.
    fn not_linearizable(&self) -> SearchResult {
        let (path, tail) = &self.longest;
        let mut longest_prefix = self.paths.to_vec(*path);
        longest_prefix.extend(tail);
        SearchResult::NotLinearizable { longest_prefix }
    }

    /// Depth-first exploration from `root` placing only known operations;
    /// configurations that place an unknown operation go to `deferred`.
    fn explore(&mut self, root: &Root, deferred: &mut Vec<Root>) -> Flow {
        let mut removed = root.removed.clone();
        let mut state = root.state;
        let mut unplaced = self.known_total - removed.count() / 2;
        let mut stack: Vec<Frame> = Vec::new();
        self.note_length(root, &stack);
        let mut pos = self.events.next_present(&removed, 0);
        loop {
            if unplaced == 0 {
                return Flow::Linearizable;
            }
            self.steps += 1;
            if self.steps > self.max_steps {
                return Flow::Timeout;
            }
            let at_call = pos < self.events.len() && self.events.get(pos).is_call;
            if at_call {
                let event = self.events.get(pos);
                let op = &self.ops[event.op];
                let hides_unknown =
                    stack.is_empty() && root.after_unknown && op.command.is_blind_write();
                let next = match op.command.step(&state, op.observed.as_ref()) {
                    Some(next) if !hides_unknown => next,
                    _ => {
                        pos = self.events.next_present(&removed, pos + 1);
                        continue;
                    }
                };
                removed.insert(pos);
                removed.insert(event.partner);
                if self.memo.visit(&removed, next, &root.unknown) {
                    stack.push(Frame {
                        call: pos,
                        state,
                        path: None,
                    });
                    state = next;
                    unplaced -= 1;
                    self.note_length(root, &stack);
                    pos = self.events.next_present(&removed, 0);
                    continue;
                }
                removed.remove(pos);
                removed.remove(event.partner);
                pos = self.events.next_present(&removed, pos + 1);
            } else {
                // The first pending return (or, defensively, the end): the
                // known candidates are exhausted. Unknown operations invoked
                // by then are candidates too, for the next layer.
                let deadline = if pos < self.events.len() {
                    self.events.get(pos).time
                } else {
                    u64::MAX
                };
                self.defer_unknown(root, &removed, state, &mut stack, deadline, deferred);
                let Some(frame) = stack.pop() else {
                    return Flow::Exhausted;
                };
                state = frame.state;
                removed.remove(frame.call);
                removed.remove(self.events.get(frame.call).partner);
                unplaced += 1;
                pos = self.events.next_present(&removed, frame.call + 1);
            }
        }
    }

    /// Queues, for the next layer, every configuration reached by placing
    /// one unknown operation invoked by `deadline` in the current one
    /// (`root` plus the known operations on `stack`).
    fn defer_unknown(
        &mut self,
        root: &Root,
        removed: &Bitset,
        state: Option<u32>,
        stack: &mut [Frame],
        deadline: u64,
        deferred: &mut Vec<Root>,
    ) {
        let right_after_unknown = stack.is_empty() && root.after_unknown;
        for i in 0..self.unknown_order.len() {
            let op_index = self.unknown_order[i];
            let op = &self.ops[op_index];
            if op.invoke_ns > deadline {
                break;
            }
            let slot = self.unknown_slot[op_index];
            if root.unknown.contains(slot) {
                continue;
            }
            self.steps += 1;
            let (next, _) = op.command.apply(&state);
            let worth_placing = next != state // reduction 1
                && !(right_after_unknown && op.command.is_blind_write()) // reduction 2
                && self.twins[op_index] // reduction 3
                    .is_none_or(|twin| root.unknown.contains(self.unknown_slot[twin]));
            if !worth_placing {
                continue;
            }
            let mut unknown = root.unknown.clone();
            unknown.insert(slot);
            if !self.memo.visit(removed, next, &unknown) {
                continue;
            }
            let parent = self.materialize(root, stack);
            deferred.push(Root {
                removed: removed.clone(),
                unknown,
                state: next,
                after_unknown: true,
                path: self.paths.push(parent, op_index),
                depth: root.depth + stack.len() + 1,
            });
        }
    }

    /// The [`Paths`] node for the linearization `root` + `stack`, creating
    /// the nodes of frames that do not have one yet.
    fn materialize(&mut self, root: &Root, stack: &mut [Frame]) -> Option<usize> {
        let first_missing = stack
            .iter()
            .rposition(|frame| frame.path.is_some())
            .map_or(0, |i| i + 1);
        let mut parent = match first_missing {
            0 => root.path,
            i => stack[i - 1].path,
        };
        for frame in &mut stack[first_missing..] {
            parent = self.paths.push(parent, self.events.get(frame.call).op);
            frame.path = parent;
        }
        parent
    }

    /// Remembers the linearization `root` + `stack` if it is the longest.
    fn note_length(&mut self, root: &Root, stack: &[Frame]) {
        let len = root.depth + stack.len();
        if len > self.longest_len {
            self.longest_len = len;
            let tail = stack.iter().map(|f| self.events.get(f.call).op).collect();
            self.longest = (root.path, tail);
        }
    }
}

/// For each unknown-outcome operation, the previous unknown operation with
/// the same command in invocation order (its "twin"), which must be placed
/// before it; see reduction 3 in the module docs.
fn earlier_twins(ops: &[SearchOp], unknown_order: &[usize]) -> Vec<Option<usize>> {
    let mut latest: HashMap<&Command<u32>, usize> = HashMap::new();
    let mut twins = vec![None; ops.len()];
    for &i in unknown_order {
        twins[i] = latest.insert(&ops[i].command, i);
    }
    twins
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn op(
        invoke_ns: u64,
        return_ns: Option<u64>,
        command: Command<u32>,
        observed: Option<Response<u32>>,
    ) -> SearchOp {
        SearchOp {
            invoke_ns,
            return_ns,
            command,
            observed,
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(search(&[], 10), SearchResult::Linearizable);
    }

    #[test]
    fn finds_an_order_different_from_call_order() {
        // Get is invoked first but must be linearized after the put.
        let ops = [
            op(0, Some(10), Command::Get, Some(Response::Read(Some(1)))),
            op(1, Some(9), Command::Put(1), Some(Response::Unit)),
        ];
        assert_eq!(search(&ops, 1_000), SearchResult::Linearizable);
    }

    #[test]
    fn reports_the_longest_prefix() {
        let ops = [
            op(0, Some(1), Command::Put(1), Some(Response::Unit)),
            op(2, Some(3), Command::Get, Some(Response::Read(Some(2)))),
        ];
        assert_eq!(
            search(&ops, 1_000),
            SearchResult::NotLinearizable {
                longest_prefix: vec![0]
            }
        );
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The get returns at 5 and the put is invoked at 5: equal stamps are
        // treated as overlapping, so the put may go first.
        let ops = [
            op(0, Some(5), Command::Get, Some(Response::Read(Some(1)))),
            op(5, Some(6), Command::Put(1), Some(Response::Unit)),
        ];
        assert_eq!(search(&ops, 1_000), SearchResult::Linearizable);
        // One nanosecond apart, they are ordered and the read is impossible.
        let ops = [
            op(0, Some(4), Command::Get, Some(Response::Read(Some(1)))),
            op(5, Some(6), Command::Put(1), Some(Response::Unit)),
        ];
        assert!(matches!(
            search(&ops, 1_000),
            SearchResult::NotLinearizable { .. }
        ));
    }

    #[test]
    fn unknown_operations_may_apply_late_or_never() {
        // The unknown put is visible to a read long after it was invoked...
        let late = [
            op(0, None, Command::Put(1), None),
            op(100, Some(101), Command::Get, Some(Response::Read(Some(1)))),
        ];
        assert_eq!(search(&late, 1_000), SearchResult::Linearizable);
        // ...or never.
        let never = [
            op(0, None, Command::Put(1), None),
            op(100, Some(101), Command::Get, Some(Response::Read(None))),
        ];
        assert_eq!(search(&never, 1_000), SearchResult::Linearizable);
    }

    #[test]
    fn budget_bounds_the_search() {
        // Many concurrent puts of distinct values followed by a read of a
        // value nobody wrote: refuting it needs far more than 50 steps.
        let mut ops: Vec<SearchOp> = (0..12)
            .map(|v| op(0, Some(100), Command::Put(v), Some(Response::Unit)))
            .collect();
        ops.push(op(
            200,
            Some(201),
            Command::Get,
            Some(Response::Read(Some(99))),
        ));
        assert_eq!(search(&ops, 50), SearchResult::Timeout);
        assert!(matches!(
            search(&ops, 10_000_000),
            SearchResult::NotLinearizable { .. }
        ));
    }

    /// The definition, executed literally: try every operation that may go
    /// next (no unplaced completed operation returned before it was
    /// invoked), with no reductions; `failed` only remembers exact
    /// (placed, state) pairs known to fail, to keep it fast.
    fn brute_force(
        ops: &[SearchOp],
        placed: &mut Vec<bool>,
        state: Option<u32>,
        failed: &mut HashSet<(Vec<bool>, Option<u32>)>,
    ) -> bool {
        let pending_returns = ops
            .iter()
            .zip(placed.iter())
            .filter(|(_, placed)| !**placed)
            .filter_map(|(op, _)| op.return_ns);
        let Some(deadline) = pending_returns.min() else {
            return true;
        };
        if failed.contains(&(placed.clone(), state)) {
            return false;
        }
        for i in 0..ops.len() {
            if placed[i] || ops[i].invoke_ns > deadline {
                continue;
            }
            if let Some(next) = ops[i].command.step(&state, ops[i].observed.as_ref()) {
                placed[i] = true;
                let found = brute_force(ops, placed, next, failed);
                placed[i] = false;
                if found {
                    return true;
                }
            }
        }
        failed.insert((placed.clone(), state));
        false
    }

    /// An operation whose outcome is unknown with probability 1 in `odds`.
    fn arb_op(odds: u8) -> impl Strategy<Value = SearchOp> {
        let value = 0u32..3;
        let command = prop_oneof![
            value.clone().prop_map(Command::Put),
            Just(Command::Get),
            Just(Command::Delete),
            (
                proptest::option::of(value.clone()),
                proptest::option::of(value.clone())
            )
                .prop_map(|(expected, new)| Command::Cas { expected, new }),
        ];
        (
            command,
            0u64..20,
            0u64..12,
            0..odds,
            proptest::option::of(value),
            any::<bool>(),
        )
            .prop_map(|(command, invoke_ns, duration, fate, read, swapped)| {
                let known = fate != 0;
                let observed = known.then_some(match command {
                    Command::Put(_) | Command::Delete => Response::Unit,
                    Command::Get => Response::Read(read),
                    Command::Cas { .. } => Response::Cas(swapped),
                });
                SearchOp {
                    invoke_ns,
                    return_ns: known.then_some(invoke_ns + duration),
                    command,
                    observed,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The memo, the reductions and both search orders must not change
        /// the verdict, on histories that are often not linearizable.
        #[test]
        fn agrees_with_brute_force(
            ops in (2u8..5).prop_flat_map(|odds| proptest::collection::vec(arb_op(odds), 3..12)),
        ) {
            let expected = brute_force(&ops, &mut vec![false; ops.len()], None, &mut HashSet::new());
            for order in [Order::DepthFirst, Order::Layered] {
                let mut search = Search::new(&ops, 10_000_000);
                let flow = search.run(order);
                prop_assert!(!matches!(flow, Flow::Timeout));
                prop_assert_eq!(matches!(flow, Flow::Linearizable), expected, "{:?}", order);
            }
            let verdict = search(&ops, 10_000_000);
            prop_assert_eq!(verdict == SearchResult::Linearizable, expected);
        }
    }
}
