//! Test your own state machine the way Keel tests itself.
//!
//! Implement [`Service`] for a type that knows your [`StateMachine`], a
//! sequential model of it (what each request does to an abstract state and
//! what it answers), and how clients talk to it; then call
//! [`check_service`] from a plain `#[test]`. Each seed runs a 3- or
//! 5-member cluster of the production node loop and applier around your
//! machine, one thread and virtual time, through a fault schedule drawn
//! from the seed: crashes that lose unsynced writes (and restarts from the
//! snapshots your machine wrote), partitions, message loss, duplication
//! and reordering, paused members, slow and failing disks. Clients send
//! your requests to random members, which forward writes to the leader and
//! retry as a client layer does. At the end:
//!
//! - the clients' history must be linearizable with respect to your model
//!   (a response your model would not give, at any order that respects
//!   real time, is a violation — a double apply, a stale read, a lost
//!   write);
//! - every member applied each log entry exactly once, in order;
//! - members that applied the same entries hold the same state (compared
//!   as your machine's snapshot bytes, so `snapshot` must serialise
//!   deterministically);
//! - the healed cluster acknowledged a write.
//!
//! A run is a pure function of its seed: a failing seed fails again, step
//! for step, and the panic message says how to rerun it alone.
//!
//! # Retries and exactly-once
//!
//! With [`ServiceOptions::retry_unknown`] (the default), a write whose
//! outcome is unknown (no answer before the request's deadline, a broken
//! connection, a leader that lost leadership before it applied) is sent
//! again, with the same request, to a member the client picks, up to
//! three times, as real clients do. The first
//! attempt may have committed, so a correct machine must recognise the
//! retry — typically by the client id and sequence number that
//! [`Service::request`] is given to put into each request — and answer it
//! without applying it twice. Turn it off for a machine that does not
//! deduplicate; such writes then stay "unknown" in the history.
//!
//! ```
//! use bytes::Bytes;
//! use keel::{Command, LogIndex, StateMachine, StateMachineError};
//! use keel_sim::service::{Service, ServiceOptions, check_service};
//!
//! /// A register that clients overwrite; each write answers the previous value.
//! #[derive(Default)]
//! struct Register {
//!     value: u64,
//!     applied: LogIndex,
//! }
//!
//! impl StateMachine for Register {
//!     type Response = u64;
//!
//!     fn apply(&mut self, commands: &[Command], through: LogIndex) -> Result<Vec<u64>, StateMachineError> {
//!         self.applied = through;
//!         let mut previous = Vec::new();
//!         for c in commands {
//!             let new = u64::from_le_bytes(c.data.as_ref().try_into()?);
//!             previous.push(std::mem::replace(&mut self.value, new));
//!         }
//!         Ok(previous)
//!     }
//!     fn applied_index(&self) -> LogIndex {
//!         self.applied
//!     }
//!     fn snapshot(&mut self) -> Result<Box<dyn std::io::Read + Send>, StateMachineError> {
//!         Ok(Box::new(std::io::Cursor::new(self.value.to_le_bytes())))
//!     }
//!     fn restore(&mut self, index: LogIndex, data: &mut dyn std::io::Read) -> Result<(), StateMachineError> {
//!         let mut bytes = [0; 8];
//!         data.read_exact(&mut bytes)?;
//!         (self.value, self.applied) = (u64::from_le_bytes(bytes), index);
//!         Ok(())
//!     }
//! }
//!
//! struct RegisterService;
//!
//! impl Service for RegisterService {
//!     type Machine = Register;
//!     type Request = u64;
//!     type Response = u64;
//!     type State = u64;
//!
//!     fn machine(&self) -> Register {
//!         Register::default()
//!     }
//!     fn initial_state(&self) -> u64 {
//!         0
//!     }
//!     fn step(&self, state: &u64, request: &u64) -> (u64, u64) {
//!         (*request, *state)
//!     }
//!     fn request(&self, client: u32, sequence: u64, _random: u64) -> u64 {
//!         // Unique values: a write applied twice would be seen.
//!         u64::from(client) << 32 | sequence
//!     }
//!     fn encode(&self, request: &u64) -> Bytes {
//!         Bytes::copy_from_slice(&request.to_le_bytes())
//!     }
//!     fn query(&self, machine: &Register, _: &u64) -> u64 {
//!         machine.value
//!     }
//! }
//!
//! // A register does not deduplicate retried writes: leave them unknown.
//! let options = ServiceOptions { retry_unknown: false, safety_ticks: 150, heal_ticks: 150, ..ServiceOptions::default() };
//! check_service(&RegisterService, 0..2, &options);
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use keel::{Command, Error, LogIndex, ReadConsistency, StateMachine, StateMachineError};
use keel_linearizability::{Model, ModelOp, ModelVerdict, check_model};
use keel_raft::NodeId;

use crate::history::OpCounts;
use crate::kv::Tag;
use crate::rng::{Fnv, Rng};
use crate::stack::{
    App, CallKind, Member, Operation, PinnedReaders, StackOptions, StackReport, run_app,
};
use crate::time::Micros;
use crate::verdict::{CHECK_STEPS_MAX, Refutation, Verdict};

/// The environment variable that narrows [`check_service`] to one seed.
pub const SEED_VARIABLE: &str = "KEEL_SIM_SEED";

/// An embedder's state machine, its sequential model, and its clients.
pub trait Service {
    /// The replicated state machine under test; one per life of a member.
    /// Its responses are what the model's are compared with.
    type Machine: StateMachine<Response = Self::Response>;
    /// One client request, as the model sees it.
    type Request: Clone + Debug;
    /// What a request answers: the machine's response to a write, the
    /// query's answer to a read, the model's to either.
    type Response: Clone + Debug + PartialEq + Send + 'static;
    /// The model's state. Hashed to memoise the linearizability search:
    /// keep it small.
    type State: Clone + Debug + Eq + Hash;

    /// A fresh, empty state machine.
    fn machine(&self) -> Self::Machine;

    /// The model's state before any request.
    fn initial_state(&self) -> Self::State;

    /// The model: what `request` does to `state`, and what it answers.
    fn step(&self, state: &Self::State, request: &Self::Request) -> (Self::State, Self::Response);

    /// The `sequence`-th request (from 1) of client `client` (from 1);
    /// `random` is a number drawn from the seed, to vary requests with.
    fn request(&self, client: u32, sequence: u64, random: u64) -> Self::Request;

    /// The command a write request proposes.
    fn encode(&self, request: &Self::Request) -> Bytes;

    /// `Some` for a request served as a read — by [`Service::query`] on the
    /// member's machine, after a read barrier of this consistency — rather
    /// than proposed. None by default: every request is a write.
    fn read_consistency(&self, request: &Self::Request) -> Option<ReadConsistency> {
        let _ = request;
        None
    }

    /// Answers a read from a member's machine; called only for requests
    /// that [`Service::read_consistency`] names reads.
    fn query(&self, machine: &Self::Machine, request: &Self::Request) -> Self::Response;
}

/// What a run of [`check_service`] or [`run_service_seed`] is asked to do.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Ticks (10 ms of virtual time each) of faults.
    pub safety_ticks: u64,
    /// Ticks of a healed cluster afterwards, which must acknowledge a write.
    pub heal_ticks: u64,
    /// Whether to inject faults at all.
    pub faults: bool,
    /// Whether a write whose outcome is unknown is proposed again (see the
    /// module's documentation).
    pub retry_unknown: bool,
}

impl Default for ServiceOptions {
    fn default() -> ServiceOptions {
        ServiceOptions {
            safety_ticks: 400,
            heal_ticks: 200,
            faults: true,
            retry_unknown: true,
        }
    }
}

/// How a run of one seed ended: the first violation (`failure`), the
/// linearizability verdict, and counts of what happened.
pub type ServiceReport = StackReport;

/// Runs one seed with `service` on every member.
pub fn run_service_seed<S: Service>(
    service: &S,
    seed: u64,
    options: &ServiceOptions,
) -> ServiceReport {
    let stack = StackOptions {
        safety_ticks: options.safety_ticks,
        heal_ticks: options.heal_ticks,
        faults: options.faults,
        ..StackOptions::default()
    };
    run_app(
        seed,
        &stack,
        ServiceApp::new(service, options.retry_unknown),
    )
}

/// Runs every seed of `seeds` (only the one in `KEEL_SIM_SEED` if that is
/// set) and panics at the first that fails, with the violation and how to
/// rerun that seed alone. Call it from a `#[test]`.
pub fn check_service<S: Service>(service: &S, seeds: Range<u64>, options: &ServiceOptions) {
    let seeds = match std::env::var(SEED_VARIABLE) {
        Ok(seed) => match seed.parse::<u64>() {
            Ok(seed) => seed..seed + 1,
            Err(_) => panic!("{SEED_VARIABLE}={seed:?} is not a seed number"),
        },
        Err(_) => seeds,
    };
    for seed in seeds {
        let report = run_service_seed(service, seed, options);
        if let Some(failure) = report.failure {
            panic!(
                "seed {seed} failed: {failure}\n\
                 notes: {:?}\n\
                 rerun this seed alone: {SEED_VARIABLE}={seed} cargo test <this test>, \
                 or keel_sim::service::run_service_seed(&service, {seed}, &options)",
                report.notes
            );
        }
    }
}

/// The model half of a [`Service`], as the checker wants it.
struct ServiceModel<'a, S>(&'a S);

impl<S: Service> Model for ServiceModel<'_, S> {
    type State = S::State;
    type Request = S::Request;
    type Response = S::Response;

    fn init(&self) -> S::State {
        self.0.initial_state()
    }

    fn step(&self, state: &S::State, request: &S::Request) -> (S::State, S::Response) {
        self.0.step(state, request)
    }
}

/// A [`Service`] as the world's application.
struct ServiceApp<'a, S: Service> {
    service: &'a S,
    retry_unknown: bool,
    /// Each client's random numbers and requests sent so far.
    clients: Vec<(Rng, u64)>,
    history: Vec<ModelOp<S::Request, S::Response>>,
    /// Operations that certainly did not take effect.
    failed: Vec<bool>,
    /// The history's index of each open operation.
    open: BTreeMap<Tag, usize>,
    /// Violations of exactly-once apply, shared with every member's machine.
    apply_violations: Arc<Mutex<Vec<String>>>,
}

impl<'a, S: Service> ServiceApp<'a, S> {
    fn new(service: &'a S, retry_unknown: bool) -> ServiceApp<'a, S> {
        ServiceApp {
            service,
            retry_unknown,
            clients: Vec::new(),
            history: Vec::new(),
            failed: Vec::new(),
            open: BTreeMap::new(),
            apply_violations: Arc::default(),
        }
    }
}

impl<S: Service> App for ServiceApp<'_, S> {
    type Machine = OnceOnly<S::Machine>;
    type Op = S::Request;
    type Output = S::Response;

    fn add_clients(&mut self, count: usize, _: PinnedReaders, rng: &mut Rng) {
        self.clients = (0..count).map(|c| (rng.fork(c as u64), 0)).collect();
    }

    fn machine(&mut self, id: NodeId) -> Result<Self::Machine, String> {
        Ok(OnceOnly {
            machine: self.service.machine(),
            member: id,
            applied: LogIndex(0),
            violations: self.apply_violations.clone(),
        })
    }

    fn next_operation(
        &mut self,
        client: usize,
        up: &[NodeId],
        _: Option<NodeId>,
    ) -> (NodeId, Operation<S::Request>) {
        let (rng, sent) = &mut self.clients[client];
        *sent += 1;
        let tag = Tag {
            client: client as u32 + 1,
            request: *sent as u32,
        };
        let request = self.service.request(tag.client, *sent, rng.next_u64());
        let member = *rng.pick(up);
        let kind = match self.service.read_consistency(&request) {
            Some(consistency) => CallKind::Read(consistency),
            None => CallKind::Write(self.service.encode(&request)),
        };
        let operation = Operation {
            tag,
            op: request,
            kind,
        };
        (member, operation)
    }

    fn write_output(&self, _: &S::Request, response: S::Response) -> Result<S::Response, String> {
        Ok(response)
    }

    fn read_output(
        &self,
        _: NodeId,
        machine: &Self::Machine,
        request: &S::Request,
    ) -> Result<S::Response, String> {
        Ok(self.service.query(&machine.machine, request))
    }

    fn retryable(&self, error: &Error) -> bool {
        match error {
            Error::NotLeader { leader: None }
            | Error::LeaderNotReady
            | Error::ProposalDropped { .. }
            | Error::LeadershipLost
            | Error::TransferInProgress { .. }
            | Error::ChangePending { .. } => true,
            Error::OutcomeUnknown { .. } | Error::Timeout => self.retry_unknown,
            _ => false,
        }
    }

    fn resends_unknown(&self) -> bool {
        self.retry_unknown
    }

    fn invoked(&mut self, tag: Tag, request: &S::Request, now: Micros) {
        self.open.insert(tag, self.history.len());
        self.history.push(ModelOp {
            client: u64::from(tag.client),
            request: request.clone(),
            invoke: now.as_nanos(),
            returned: None,
        });
        self.failed.push(false);
    }

    fn answered(&mut self, _: usize, tag: Tag, output: Option<S::Response>, now: Micros) {
        let Some(at) = self.open.remove(&tag) else {
            return;
        };
        match output {
            Some(response) => self.history[at].returned = Some((now.as_nanos(), response)),
            None => self.failed[at] = true,
        }
    }

    fn verdict(&mut self, _: Micros) -> (Verdict, OpCounts) {
        let failed = std::mem::take(&mut self.failed);
        let ops: Vec<_> = std::mem::take(&mut self.history)
            .into_iter()
            .zip(&failed)
            .filter(|(_, failed)| !**failed)
            .map(|(op, _)| op)
            .collect();
        let ok = ops.iter().filter(|op| op.returned.is_some()).count() as u64;
        let counts = OpCounts {
            invoked: failed.len() as u64,
            ok,
            failed: failed.iter().filter(|f| **f).count() as u64,
            unknown: ops.len() as u64 - ok,
        };
        let key = "the state machine".to_owned();
        let verdict = match check_model(&ServiceModel(self.service), &ops, CHECK_STEPS_MAX) {
            ModelVerdict::Linearizable => Verdict::Linearizable,
            ModelVerdict::Inconclusive => Verdict::Inconclusive { key },
            ModelVerdict::NotLinearizable { explanation } => {
                Verdict::Violated(Refutation { key, explanation })
            }
        };
        (verdict, counts)
    }

    /// Each entry applied once, and members at one index agree.
    fn at_end(&mut self, members: &mut [&mut Member<Self::Machine>]) -> Result<(), String> {
        let violations = self
            .apply_violations
            .lock()
            .expect("the machines never panic while holding the lock");
        if let Some(first) = violations.first() {
            return Err(first.clone());
        }
        drop(violations);
        let mut by_index: BTreeMap<LogIndex, (NodeId, Vec<u8>)> = BTreeMap::new();
        for member in members.iter_mut() {
            let (index, state) = member
                .state_bytes()
                .map_err(|e| format!("member {}'s snapshot failed: {e}", member.id))?;
            match by_index.get(&index) {
                Some((other, other_state)) if *other_state != state => {
                    return Err(format!(
                        "members {other} and {} applied through {index} but hold different states",
                        member.id
                    ));
                }
                _ => {
                    by_index.insert(index, (member.id, state));
                }
            }
        }
        Ok(())
    }

    fn fingerprint(&mut self, members: &mut [&mut Member<Self::Machine>]) -> u64 {
        let mut h = Fnv::default();
        for member in members.iter_mut() {
            member.id.hash(&mut h);
            if let Ok(state) = member.state_bytes() {
                state.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// The embedder's machine, watched for entries applied twice or out of
/// order (exactly-once apply at the log's level; a request retried into a
/// second entry is the model's to catch).
struct OnceOnly<M> {
    machine: M,
    member: NodeId,
    /// The last index this life's machine applied through.
    applied: LogIndex,
    violations: Arc<Mutex<Vec<String>>>,
}

impl<M: StateMachine> StateMachine for OnceOnly<M> {
    type Response = M::Response;

    fn apply(
        &mut self,
        commands: &[Command],
        applied_through: LogIndex,
    ) -> Result<Vec<M::Response>, StateMachineError> {
        let mut last = self.applied;
        for command in commands {
            if command.index <= last {
                self.violations
                    .lock()
                    .expect("the machines never panic while holding the lock")
                    .push(format!(
                        "member {} applied entry {} after entry {last}: an entry applied twice or out of order",
                        self.member, command.index
                    ));
            }
            last = command.index;
        }
        self.applied = applied_through;
        self.machine.apply(commands, applied_through)
    }

    fn applied_index(&self) -> LogIndex {
        self.machine.applied_index()
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        self.machine.snapshot()
    }

    fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError> {
        self.applied = index;
        self.machine.restore(index, data)
    }
}
