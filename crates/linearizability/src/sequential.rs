//! Linearizability against any sequential model, not only the KV registers.
//!
//! The KV checker ([`crate::check`]) splits a history per key and searches
//! each key with interned values. An embedder's state machine has no keys
//! the checker knows of, so this search treats the whole machine as one
//! object: a [`Model`] says what a request does to the state and what it
//! answers, and [`check_model`] looks for one order of the operations that
//! respects real time and that the model accepts. It is the same search
//! (Wing & Gong with Lowe's just-in-time linearization, memoised on the
//! set of placed operations and the model state), written over the
//! model's own types.
//!
//! An operation whose outcome is unknown may take effect at any point
//! after its invocation or never; since its answer is unconstrained,
//! "never" is the same as "last", so the search succeeds once every
//! operation with a known answer is placed.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

use crate::bitset::Bitset;

/// A sequential specification: from a state and a request, the next state
/// and the response a correct, atomic implementation would give.
pub trait Model {
    /// The state of the specified object. Hashed to memoise the search, so
    /// keep it small (a counter's value, not a copy of a database).
    type State: Clone + Eq + Hash + Debug;
    /// What a client asks.
    type Request: Debug;
    /// What the object answers.
    type Response: PartialEq + Debug;

    /// The state before any request.
    fn init(&self) -> Self::State;

    /// Applies `request` to `state`.
    fn step(&self, state: &Self::State, request: &Self::Request) -> (Self::State, Self::Response);
}

/// One client operation as observed from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelOp<Q, R> {
    /// Who issued it (for explanations only).
    pub client: u64,
    pub request: Q,
    /// When it was invoked, in any unit shared by the whole history.
    pub invoke: u64,
    /// When it returned and what it answered; `None` when the outcome is
    /// unknown (a timeout, a crash). Operations that certainly did not take
    /// effect should be left out of the history altogether.
    pub returned: Option<(u64, R)>,
}

/// The answer of [`check_model`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelVerdict {
    Linearizable,
    /// The search ran out of its step budget: neither proof nor refutation.
    Inconclusive,
    NotLinearizable {
        /// Which operation could not be placed, and what the model said at
        /// the furthest point the search reached.
        explanation: String,
    },
}

/// One event of the history: an operation's call or its return.
#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    is_call: bool,
    /// The return of an operation with an unknown outcome: after everything.
    at_infinity: bool,
}

/// The history as a doubly linked list of events in time order, from which
/// placed operations are unlinked and to which backtracking relinks them.
struct Events {
    events: Vec<Event>,
    /// `next[0]` is the head; event `i` lives at node `i + 1`.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The node of each operation's return.
    return_node: Vec<usize>,
}

const NIL: usize = usize::MAX;

impl Events {
    fn new<Q, R>(ops: &[ModelOp<Q, R>]) -> Events {
        let mut keyed: Vec<(u64, bool, Event)> = Vec::with_capacity(ops.len() * 2);
        for (op, o) in ops.iter().enumerate() {
            keyed.push((
                o.invoke,
                false,
                Event {
                    op,
                    is_call: true,
                    at_infinity: false,
                },
            ));
            let (at, at_infinity) = match &o.returned {
                Some((at, _)) => (*at, false),
                None => (u64::MAX, true),
            };
            keyed.push((
                at,
                true,
                Event {
                    op,
                    is_call: false,
                    at_infinity,
                },
            ));
        }
        // Calls sort before returns at one instant: equal times are
        // concurrent, never ordered.
        keyed.sort_by_key(|&(at, is_return, event)| (at, is_return, event.op));
        let events: Vec<Event> = keyed.into_iter().map(|(_, _, e)| e).collect();
        let nodes = events.len() + 1;
        let next = (0..nodes)
            .map(|n| if n + 1 < nodes { n + 1 } else { NIL })
            .collect();
        let prev = (0..nodes)
            .map(|n| if n == 0 { NIL } else { n - 1 })
            .collect();
        let mut return_node = vec![0; ops.len()];
        for (i, e) in events.iter().enumerate() {
            if !e.is_call {
                return_node[e.op] = i + 1;
            }
        }
        Events {
            events,
            next,
            prev,
            return_node,
        }
    }

    fn event(&self, node: usize) -> Event {
        self.events[node - 1]
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        if n != NIL {
            self.prev[n] = node;
        }
    }

    /// Takes an operation's call (at `call`) and its return out of the list.
    fn lift(&mut self, call: usize) {
        let ret = self.return_node[self.event(call).op];
        self.unlink(call);
        self.unlink(ret);
    }

    /// Undoes the most recent [`Events::lift`] of `call`.
    fn unlift(&mut self, call: usize) {
        let ret = self.return_node[self.event(call).op];
        self.relink(ret);
        self.relink(call);
    }
}

/// Whether `ops` is linearizable with respect to `model`, exploring at most
/// `max_steps` placements.
pub fn check_model<M: Model>(
    model: &M,
    ops: &[ModelOp<M::Request, M::Response>],
    max_steps: u64,
) -> ModelVerdict {
    let mut events = Events::new(ops);
    let mut placed = Bitset::new(ops.len());
    let mut seen: HashSet<(Bitset, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    // The deepest dead end, for the explanation.
    let mut deepest: Option<(usize, usize, M::State)> = None;
    let mut cursor = events.next[0];
    let mut steps = 0u64;
    loop {
        let head = events.next[0];
        if head == NIL || events.event(head).at_infinity {
            return ModelVerdict::Linearizable;
        }
        steps += 1;
        if steps > max_steps {
            return ModelVerdict::Inconclusive;
        }
        let event = events.event(cursor);
        if event.is_call {
            let op = &ops[event.op];
            let (next_state, response) = model.step(&state, &op.request);
            let accepted = match &op.returned {
                Some((_, observed)) => *observed == response,
                None => true,
            };
            if accepted {
                let mut with = placed.clone();
                with.insert(event.op);
                if seen.insert((with.clone(), next_state.clone())) {
                    stack.push((cursor, std::mem::replace(&mut state, next_state)));
                    placed = with;
                    events.lift(cursor);
                    cursor = events.next[0];
                    continue;
                }
            }
            cursor = events.next[cursor];
        } else {
            if deepest
                .as_ref()
                .is_none_or(|(depth, ..)| stack.len() > *depth)
            {
                deepest = Some((stack.len(), event.op, state.clone()));
            }
            let Some((call, previous)) = stack.pop() else {
                return refuted(model, ops, deepest);
            };
            state = previous;
            placed.remove(events.event(call).op);
            events.unlift(call);
            cursor = events.next[call];
        }
    }
}

fn refuted<M: Model>(
    model: &M,
    ops: &[ModelOp<M::Request, M::Response>],
    deepest: Option<(usize, usize, M::State)>,
) -> ModelVerdict {
    let (depth, op, state) = deepest.expect("a refutation follows a dead end");
    let o = &ops[op];
    let (_, expected) = model.step(&state, &o.request);
    let observed = o
        .returned
        .as_ref()
        .map(|(at, response)| format!("answered {response:?} at {at}"))
        .unwrap_or_else(|| "has an unknown outcome".into());
    ModelVerdict::NotLinearizable {
        explanation: format!(
            "client {}'s {:?}, invoked at {}, {observed}; after the longest linearizable \
             prefix ({depth} operations) the model is in state {state:?}, \
             where it would answer {expected:?}",
            o.client, o.request, o.invoke
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter: `Some(n)` adds `n` and answers the new value, `None` reads.
    struct Counter;

    impl Model for Counter {
        type State = i64;
        type Request = Option<i64>;
        type Response = i64;
        fn init(&self) -> i64 {
            0
        }
        fn step(&self, state: &i64, request: &Option<i64>) -> (i64, i64) {
            let next = state + request.unwrap_or(0);
            (next, next)
        }
    }

    fn ok(
        client: u64,
        request: Option<i64>,
        invoke: u64,
        at: u64,
        response: i64,
    ) -> ModelOp<Option<i64>, i64> {
        ModelOp {
            client,
            request,
            invoke,
            returned: Some((at, response)),
        }
    }

    #[test]
    fn concurrent_increments_in_either_order_are_linearizable() {
        let ops = [
            ok(1, Some(1), 0, 10, 2),
            ok(2, Some(1), 1, 9, 1),
            ok(3, None, 11, 12, 2),
        ];
        assert_eq!(
            check_model(&Counter, &ops, 1_000),
            ModelVerdict::Linearizable
        );
    }

    #[test]
    fn a_stale_read_is_refuted() {
        let ops = [ok(1, Some(1), 0, 10, 1), ok(2, None, 11, 12, 0)];
        let ModelVerdict::NotLinearizable { explanation } = check_model(&Counter, &ops, 1_000)
        else {
            panic!("a read after an acknowledged increment must see it");
        };
        assert!(explanation.contains("would answer 1"), "{explanation}");
    }

    #[test]
    fn an_unknown_increment_may_or_may_not_have_happened() {
        let unknown = ModelOp {
            client: 1,
            request: Some(5),
            invoke: 0,
            returned: None,
        };
        let seen = [unknown.clone(), ok(2, None, 20, 21, 5)];
        let unseen = [unknown, ok(2, None, 20, 21, 0)];
        assert_eq!(
            check_model(&Counter, &seen, 1_000),
            ModelVerdict::Linearizable
        );
        assert_eq!(
            check_model(&Counter, &unseen, 1_000),
            ModelVerdict::Linearizable
        );
    }

    #[test]
    fn an_increment_applied_twice_is_refuted() {
        let ops = [ok(1, Some(1), 0, 10, 1), ok(2, None, 11, 12, 2)];
        assert!(!matches!(
            check_model(&Counter, &ops, 1_000),
            ModelVerdict::Linearizable
        ));
    }

    #[test]
    fn a_small_budget_is_inconclusive_rather_than_wrong() {
        let ops: Vec<_> = (0..20)
            .map(|c| ok(c, Some(1), 0, 100, 20 - c as i64))
            .collect();
        assert_eq!(check_model(&Counter, &ops, 5), ModelVerdict::Inconclusive);
    }
}
