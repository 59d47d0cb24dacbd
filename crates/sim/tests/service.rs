//! An embedder's view of `keel_sim::service`: a replicated counter with
//! client sessions, its model, and the simulator's verdict — passing for
//! the correct machine, failing with a reproducible seed for two broken
//! ones (a retried increment applied twice; reads answered from a
//! member's possibly stale state).

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use keel::{Command, LogIndex, ReadConsistency, StateMachine, StateMachineError};
use keel_sim::service::{Service, ServiceOptions, check_service, run_service_seed};

/// A counter that remembers each client's last increment, so that a retry
/// of it (same client, same sequence number) is answered, not applied.
#[derive(Default)]
struct Counter {
    value: i64,
    /// Per client: the last sequence number applied and its answer.
    sessions: BTreeMap<u32, (u64, i64)>,
    applied: LogIndex,
    /// The defect under test: forget sessions, so retries apply again.
    applies_retries: bool,
}

/// What clients ask.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Request {
    Add {
        client: u32,
        sequence: u64,
        amount: i64,
    },
    Get,
}

impl Counter {
    fn add(&mut self, client: u32, sequence: u64, amount: i64) -> i64 {
        if !self.applies_retries
            && let Some(&(last, answer)) = self.sessions.get(&client)
            && last == sequence
        {
            return answer;
        }
        self.value += amount;
        self.sessions.insert(client, (sequence, self.value));
        self.value
    }
}

impl StateMachine for Counter {
    /// The counter's value after the increment.
    type Response = i64;

    fn apply(
        &mut self,
        commands: &[Command],
        through: LogIndex,
    ) -> Result<Vec<i64>, StateMachineError> {
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            let mut data = command.data.clone();
            if data.len() != 20 {
                return Err(format!("a command of {} bytes, not 20", data.len()).into());
            }
            let (client, sequence, amount) = (data.get_u32(), data.get_u64(), data.get_i64());
            responses.push(self.add(client, sequence, amount));
        }
        self.applied = through;
        Ok(responses)
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        let mut out = BytesMut::new();
        out.put_i64(self.value);
        for (&client, &(sequence, answer)) in &self.sessions {
            out.put_u32(client);
            out.put_u64(sequence);
            out.put_i64(answer);
        }
        Ok(Box::new(Cursor::new(out.freeze())))
    }

    fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        let mut data = Bytes::from(bytes);
        if data.len() < 8 || (data.len() - 8) % 20 != 0 {
            return Err("a counter snapshot of the wrong length".into());
        }
        self.value = data.get_i64();
        self.sessions.clear();
        while data.has_remaining() {
            let (client, sequence, answer) = (data.get_u32(), data.get_u64(), data.get_i64());
            self.sessions.insert(client, (sequence, answer));
        }
        self.applied = index;
        Ok(())
    }
}

/// The counter, its model, and its clients' requests.
#[derive(Default)]
struct CounterService {
    applies_retries: bool,
    reads: Option<ReadConsistency>,
}

impl Service for CounterService {
    type Machine = Counter;
    type Request = Request;
    type Response = i64;
    type State = i64;

    fn machine(&self) -> Counter {
        Counter {
            applies_retries: self.applies_retries,
            ..Counter::default()
        }
    }

    fn initial_state(&self) -> i64 {
        0
    }

    fn step(&self, state: &i64, request: &Request) -> (i64, i64) {
        match request {
            Request::Add { amount, .. } => (state + amount, state + amount),
            Request::Get => (*state, *state),
        }
    }

    fn request(&self, client: u32, sequence: u64, random: u64) -> Request {
        if random % 10 < 3 {
            Request::Get
        } else {
            let amount = (random / 10 % 5) as i64 + 1;
            Request::Add {
                client,
                sequence,
                amount,
            }
        }
    }

    fn encode(&self, request: &Request) -> Bytes {
        let mut out = BytesMut::new();
        if let Request::Add {
            client,
            sequence,
            amount,
        } = request
        {
            out.put_u32(*client);
            out.put_u64(*sequence);
            out.put_i64(*amount);
        }
        out.freeze()
    }

    fn read_consistency(&self, request: &Request) -> Option<ReadConsistency> {
        match request {
            Request::Get => Some(self.reads.unwrap_or(ReadConsistency::Linearizable)),
            Request::Add { .. } => None,
        }
    }

    fn query(&self, machine: &Counter, _: &Request) -> i64 {
        machine.value
    }
}

fn options() -> ServiceOptions {
    ServiceOptions {
        safety_ticks: 300,
        heal_ticks: 150,
        ..ServiceOptions::default()
    }
}

/// The first seed below 200 on which `service` fails, with its message;
/// and the same seed run again must fail the same way.
fn first_failure(service: &CounterService) -> (u64, String) {
    let (seed, report) = (0..200)
        .map(|seed| (seed, run_service_seed(service, seed, &options())))
        .find(|(_, report)| report.failure.is_some())
        .expect("the defect is found within 200 seeds");
    let again = run_service_seed(service, seed, &options());
    assert_eq!(report.failure, again.failure, "seed {seed} reproduces");
    assert_eq!(
        report.fingerprint, again.fingerprint,
        "seed {seed} reproduces"
    );
    (seed, report.failure.expect("found failing"))
}

#[test]
fn counter_with_sessions_is_linearizable_under_faults() {
    check_service(&CounterService::default(), 0..40, &options());
}

#[test]
fn counter_with_lease_reads_is_linearizable_under_faults() {
    let service = CounterService {
        reads: Some(ReadConsistency::Lease),
        ..CounterService::default()
    };
    check_service(&service, 100..120, &options());
}

#[test]
fn counter_that_applies_a_retried_increment_twice_is_caught() {
    let service = CounterService {
        applies_retries: true,
        ..CounterService::default()
    };
    let (seed, failure) = first_failure(&service);
    assert!(
        failure.contains("not linearizable"),
        "seed {seed}: {failure}"
    );
}

#[test]
fn counter_that_reads_stale_state_is_caught() {
    let service = CounterService {
        reads: Some(ReadConsistency::Stale),
        ..CounterService::default()
    };
    let (seed, failure) = first_failure(&service);
    assert!(
        failure.contains("not linearizable"),
        "seed {seed}: {failure}"
    );
}

#[test]
fn a_failing_seed_panics_with_how_to_rerun_it() {
    let service = CounterService {
        reads: Some(ReadConsistency::Stale),
        ..CounterService::default()
    };
    let (seed, _) = first_failure(&service);
    let panic = std::panic::catch_unwind(|| check_service(&service, seed..seed + 1, &options()))
        .expect_err("a failing seed panics");
    let message = panic
        .downcast_ref::<String>()
        .expect("the panic carries a formatted message");
    assert!(
        message.contains(&format!("KEEL_SIM_SEED={seed}")),
        "{message}"
    );
}
