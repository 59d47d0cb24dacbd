//! A replicated lock service with fencing tokens, on Keel.
//!
//! Each grant of a lock carries a *fencing token* larger than any granted
//! for that lock before. The resource the lock guards refuses a token lower
//! than one it has seen, so a client that lost the lock without knowing it
//! (it paused, its messages were late) cannot act after the next holder.
//!
//! A client whose request timed out sends it again; each request carries
//! the client's id and a sequence number, and a retry is answered from the
//! client's session instead of being applied twice.
//!
//! Left out to stay short: expiry (it needs a clock all members agree on,
//! such as a time the proposer stamps into each command) and the forgetting
//! of old sessions.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use keel::{Command, LogIndex, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// A client of the service, and the owner of the locks it acquires.
pub type ClientId = u64;

/// A request, as it is proposed through Raft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Who asks.
    pub client: ClientId,
    /// One more than the client's previous request's; a retry repeats it.
    pub sequence: u64,
    /// The lock's name.
    pub lock: String,
    /// What the client asks of the lock.
    pub op: Op,
}

/// What a client can ask of a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Take the lock if it is free.
    Acquire,
    /// Give the lock up: only its holder can, naming the `token` it holds.
    Release { token: u64 },
}

/// What a request answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The lock is the client's, under this token (also the answer to a
    /// holder that asks again).
    Granted { token: u64 },
    /// Another client holds the lock.
    Held { by: ClientId },
    /// The lock is free again.
    Released,
    /// The client does not hold the lock under this token: nothing changed.
    NotHolder,
    /// An old request of a client that has sent a newer one since: ignored.
    Outdated,
    /// The command is not a request; every member refuses it alike.
    Malformed,
}

/// One lock: its holder, and the latest token granted (kept when the lock
/// is released, so that the next grant's token is larger).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The client holding the lock, if any.
    pub holder: Option<ClientId>,
    /// The latest grant's token; 0 before the first.
    pub token: u64,
}

/// The lock service as Keel's state machine. Serialised as it is (JSON of
/// ordered maps: members that applied the same commands write the same
/// bytes), it is also the snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockMachine {
    /// Every lock ever acquired, by name.
    pub locks: BTreeMap<String, Lock>,
    /// Each client's latest sequence number and its answer.
    pub sessions: BTreeMap<ClientId, (u64, Outcome)>,
    /// Not in the snapshot: restored from the snapshot's index.
    #[serde(skip)]
    applied: LogIndex,
}

impl LockMachine {
    /// Applies a request once: a retry gets the first attempt's answer.
    pub fn apply_request(&mut self, request: &Request) -> Outcome {
        match self.sessions.get(&request.client) {
            Some((latest, answer)) if *latest == request.sequence => return answer.clone(),
            Some((latest, _)) if *latest > request.sequence => return Outcome::Outdated,
            _ => {}
        }
        let lock = self.locks.entry(request.lock.clone()).or_default();
        let outcome = lock.execute(request.client, &request.op);
        let session = (request.sequence, outcome.clone());
        self.sessions.insert(request.client, session);
        outcome
    }
}

impl Lock {
    fn execute(&mut self, client: ClientId, op: &Op) -> Outcome {
        match (op, self.holder) {
            (Op::Acquire, None) => {
                (self.holder, self.token) = (Some(client), self.token + 1);
                Outcome::Granted { token: self.token }
            }
            (Op::Acquire, Some(holder)) if holder == client => {
                Outcome::Granted { token: self.token }
            }
            (Op::Acquire, Some(holder)) => Outcome::Held { by: holder },
            (Op::Release { token }, Some(holder)) if holder == client && *token == self.token => {
                self.holder = None;
                Outcome::Released
            }
            (Op::Release { .. }, _) => Outcome::NotHolder,
        }
    }
}

impl Request {
    /// The command to propose.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request is plain data and always serialises")
    }
}

impl StateMachine for LockMachine {
    type Response = Outcome;

    fn apply(
        &mut self,
        commands: &[Command],
        through: LogIndex,
    ) -> Result<Vec<Outcome>, StateMachineError> {
        let mut outcomes = Vec::with_capacity(commands.len());
        for command in commands {
            outcomes.push(match serde_json::from_slice(&command.data) {
                Ok(request) => self.apply_request(&request),
                Err(_) => Outcome::Malformed,
            });
        }
        self.applied = through;
        Ok(outcomes)
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&mut self) -> Result<Box<dyn Read + Send>, StateMachineError> {
        Ok(Box::new(Cursor::new(serde_json::to_vec(self)?)))
    }

    fn restore(&mut self, index: LogIndex, data: &mut dyn Read) -> Result<(), StateMachineError> {
        *self = serde_json::from_reader(data)?;
        self.applied = index;
        Ok(())
    }
}
