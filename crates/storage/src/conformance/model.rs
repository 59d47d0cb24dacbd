//! The model-based check of the [`LogStore`] contract: random operation
//! sequences run against a store and against the obvious implementation
//! of the contract, compared after every step and every crash.

use keel_raft::{Entry, HardState, LogIndex, Term};

use super::{CrashKeeps, Harness, entries, hard_state, read_all};
use crate::store::LogStore;

/// One step of a random workload; each is interpreted relative to the
/// current log, so every sequence is valid.
#[derive(Clone, Debug)]
pub enum Op {
    /// Append `count` entries starting `back` entries before the end
    /// (clamped to the first index), overwriting what is there.
    Append {
        /// How far before the end to start.
        back: u64,
        /// How many entries.
        count: u64,
    },
    /// Set this hard state.
    SetHardState {
        /// Its term.
        term: u64,
        /// Its vote, if any.
        vote: Option<u64>,
        /// Its commit index.
        commit: u64,
    },
    /// Compact to `back` entries before the last one, with its real term or,
    /// if `conflict`, a different one (which discards the whole log).
    Compact {
        /// How far before the last entry.
        back: u64,
        /// Whether to compact at another term than the entry's.
        conflict: bool,
    },
    /// Install a snapshot `ahead` entries past the end of the log.
    CompactBeyond {
        /// How far past the end.
        ahead: u64,
    },
    /// Make every write so far durable.
    Sync,
    /// Crash and recover the store.
    Crash,
}

/// The obvious implementation of the contract, for comparison: a log as
/// the store should report it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Model {
    base: (u64, u64),
    entries: Vec<Entry>,
    hard_state: HardState,
}

/// One write to a store, which the model replays onto what a crash keeps.
#[derive(Clone, Debug)]
pub(super) enum Write {
    Append(Vec<Entry>),
    HardState(HardState),
    Compact(u64, u64),
}

impl Model {
    /// The log `store` reports.
    pub(super) fn of<S: LogStore>(store: &S) -> Model {
        let base = store.first_index().prev();
        let base_term = store
            .term(base)
            .expect("the compaction point always has a term");
        Model {
            base: (base.0, base_term.0),
            entries: read_all(store),
            hard_state: store.hard_state().clone(),
        }
    }

    fn last(&self) -> u64 {
        self.base.0 + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Option<u64> {
        if index == self.base.0 {
            return Some(self.base.1);
        }
        let k = index.checked_sub(self.base.0 + 1)?;
        self.entries.get(k as usize).map(|e| e.term.0)
    }

    fn apply(&mut self, write: &Write) {
        match write {
            Write::Append(batch) => self.append(batch),
            Write::HardState(hs) => self.hard_state = hs.clone(),
            Write::Compact(upto, term) => self.compact(*upto, *term),
        }
    }

    fn append(&mut self, batch: &[Entry]) {
        let start = batch[0].index.0;
        self.entries.truncate((start - self.base.0 - 1) as usize);
        self.entries.extend_from_slice(batch);
    }

    fn compact(&mut self, upto: u64, term: u64) {
        if upto <= self.base.0 {
            return;
        }
        if self.term(upto) == Some(term) {
            self.entries.drain(..(upto - self.base.0) as usize);
        } else {
            self.entries.clear();
        }
        self.base = (upto, term);
    }

    /// Every state a crash may leave if `self` is durable and `unsynced`
    /// were written since: `self` first, then each longer prefix of
    /// `unsynced`, torn appends included.
    pub(super) fn crash_outcomes(&self, unsynced: &[Write]) -> Vec<Model> {
        let mut outcomes = vec![self.clone()];
        let mut state = self.clone();
        for write in unsynced {
            if let Write::Append(batch) = write {
                for kept in 1..batch.len() {
                    let mut torn = state.clone();
                    torn.append(&batch[..kept]);
                    outcomes.push(torn);
                }
            }
            state.apply(write);
            outcomes.push(state.clone());
        }
        outcomes
    }
}

/// Makes `writes` to `store`, in order.
pub(super) fn write_all<S: LogStore>(store: &mut S, writes: &[Write]) {
    for write in writes {
        match write {
            Write::Append(batch) => store.append(batch),
            Write::HardState(hs) => store.set_hard_state(hs.clone()),
            Write::Compact(upto, term) => store.compact(LogIndex(*upto), Term(*term)),
        }
    }
}

/// Checks that a crash left one of `outcomes` (from
/// [`Model::crash_outcomes`]), the first if the harness's crash keeps
/// nothing, and returns the one it left.
pub(super) fn recovered<H: Harness>(store: &H::Store, outcomes: &[Model], at: &str) -> Model {
    let found = Model::of(store);
    match H::CRASH_KEEPS {
        CrashKeeps::Nothing => assert_eq!(
            found, outcomes[0],
            "{at}: the crash must keep exactly the durable state"
        ),
        CrashKeeps::APrefix => assert!(
            outcomes.contains(&found),
            "{at}: the crash left {found:?}, which is the durable state plus no prefix of the \
             unsynced writes; it could have left any of {outcomes:?}"
        ),
    }
    found
}

/// Runs `ops` against a store from `h` and against a model, checking after
/// every step that the store reports the model's state, after every sync
/// that the proof matches, and after every crash that the durable state
/// survived with what [`Harness::CRASH_KEEPS`] allows of the writes since.
pub fn check_against_model<H: Harness>(h: &mut H, ops: &[Op]) {
    let mut store = h.create();
    let (mut view, mut durable) = (Model::default(), Model::default());
    let mut unsynced: Vec<Write> = Vec::new();
    let mut next_term = 1;
    for (step, op) in ops.iter().enumerate() {
        let write = match *op {
            Op::Append { back, count } => {
                let start = (view.last() + 1).saturating_sub(back).max(view.base.0 + 1);
                let batch = entries(start, start + count.max(1) - 1, next_term);
                next_term += 1;
                Some(Write::Append(batch))
            }
            Op::SetHardState { term, vote, commit } => Some(Write::HardState(hard_state(
                term,
                vote.filter(|&v| v != 0),
                commit,
            ))),
            Op::Compact { back, conflict } => {
                let upto = view.last().saturating_sub(back);
                let term = view.term(upto).unwrap_or(0) + u64::from(conflict) * 1000;
                Some(Write::Compact(upto, term))
            }
            Op::CompactBeyond { ahead } => Some(Write::Compact(view.last() + ahead, next_term)),
            Op::Sync => {
                let proof = store.sync().expect("sync succeeds");
                durable = view.clone();
                unsynced.clear();
                assert_eq!(
                    proof.last_index(),
                    LogIndex(durable.last()),
                    "step {step}: proof index"
                );
                assert_eq!(
                    Some(proof.last_term().0),
                    durable.term(durable.last()),
                    "step {step}: proof term"
                );
                assert_eq!(
                    proof.hard_state(),
                    &durable.hard_state,
                    "step {step}: proof hard state"
                );
                None
            }
            Op::Crash => {
                store = h.crash_and_recover(store);
                let outcomes = durable.crash_outcomes(&unsynced);
                durable = recovered::<H>(&store, &outcomes, &format!("step {step}"));
                view = durable.clone();
                unsynced.clear();
                None
            }
        };
        if let Some(write) = write {
            write_all(&mut store, std::slice::from_ref(&write));
            view.apply(&write);
            unsynced.push(write);
        }
        assert_matches_model(&store, &view, step, op);
    }
}

fn assert_matches_model<S: LogStore>(store: &S, model: &Model, step: usize, op: &Op) {
    let at = || format!("after step {step} ({op:?})");
    assert_eq!(
        store.first_index(),
        LogIndex(model.base.0 + 1),
        "first index {}",
        at()
    );
    assert_eq!(
        store.last_index(),
        LogIndex(model.last()),
        "last index {}",
        at()
    );
    assert_eq!(
        store.term(LogIndex(model.base.0)),
        Some(Term(model.base.1)),
        "snapshot term {}",
        at()
    );
    assert_eq!(store.hard_state(), &model.hard_state, "hard state {}", at());
    assert_eq!(read_all(store), model.entries, "entries {}", at());
}
