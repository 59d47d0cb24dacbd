//! The leader's side of followers' forwarded writes.
//!
//! Served on the peer listener, behind the transport's cluster-identity
//! check (`keel::PeerServices`), never on the client port. A follower
//! sends the commands it received while its previous batch was in flight
//! as one `ProposeBatch` call (`batcher.rs`). Each command is checked as a
//! client's request would be before anything is proposed: one that does
//! not decode, carries no operation, or that the etcd services would
//! refuse fails alone with `InvalidArgument`, so no member can put into
//! the log what a client could not, and a bad command costs its
//! batch-mates nothing. The others are proposed together, each as its own
//! entry, so that they reach the runtime at once and share its next append.
//!
//! Earlier builds served one command per unary `Propose` call; it is gone
//! (see `forward.proto`): every member of a cluster runs one build.

use bytes::Bytes;
use futures_util::future::join_all;
use prost::Message as _;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::errors::{is_retryable, to_kv};
use super::machine::RaftMachine;
use crate::error::KvError;
use crate::proto::command::forward_server::Forward;
use crate::proto::command::propose_outcome::Outcome;
use crate::proto::command::{
    Command, Failed, ProposeBatchReply, ProposeBatchRequest, ProposeOutcome, Refused,
};
use crate::service::validate;

/// The most commands one batch may carry. A follower never sends more; a
/// larger batch is refused whole, before anything is proposed.
pub const FORWARD_BATCH_COMMANDS_MAX: usize = 256;

/// The most command bytes a follower puts in one batch, unless one command
/// alone is larger: that one travels alone, so that a command too large for
/// the leader's message limit fails without its batch-mates. The leader
/// accepts messages of this size (or of its own request limit, if larger)
/// plus gRPC's framing.
pub const FORWARD_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Why a forwarded command was refused before it was proposed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardRejected {
    #[error("keel-kv: the forwarded command does not decode: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("keel-kv: the forwarded command carries no operation")]
    Empty,
    /// What a client sending the same request would have been told.
    #[error("{0}")]
    Invalid(#[from] KvError),
}

impl From<ForwardRejected> for Status {
    fn from(e: ForwardRejected) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// Decodes a forwarded command and runs the checks the etcd services run
/// on a client's request (`service/validate.rs`), size limit included.
pub fn check_forwarded(command: &[u8], max_request_bytes: usize) -> Result<(), ForwardRejected> {
    let decoded = Command::decode(command)?;
    let op = decoded.op.as_ref().ok_or(ForwardRejected::Empty)?;
    validate::op(op)?;
    validate::size(op, command.len(), max_request_bytes)?;
    Ok(())
}

/// Proposes commands that followers forward.
pub struct ForwardService {
    node: keel::Node<RaftMachine>,
    max_request_bytes: usize,
}

impl ForwardService {
    pub fn new(node: keel::Node<RaftMachine>, max_request_bytes: usize) -> ForwardService {
        ForwardService {
            node,
            max_request_bytes,
        }
    }

    /// The largest `ProposeBatch` message this service accepts, before
    /// gRPC's framing: a follower's fullest batch, or one command of the
    /// largest size a client may send.
    pub fn batch_bytes_max(max_request_bytes: usize) -> usize {
        max_request_bytes.max(FORWARD_BATCH_BYTES_MAX)
    }

    /// Checks and proposes one command of a batch; its outcome.
    async fn propose_one(&self, command: Bytes, from: Option<u64>) -> ProposeOutcome {
        if let Err(e) = check_forwarded(&command, self.max_request_bytes) {
            warn!(from = ?from, error = %e, "refused a forwarded command");
            return failed(e.into());
        }
        let outcome = match self.node.propose(command).await {
            Ok(result) => Outcome::Result(result),
            // Not appended here: the follower retries with the leader it
            // learns of next.
            Err(e) if matches!(e, keel::Error::NotLeader { .. }) || is_retryable(&e) => {
                let leader_hint = match e {
                    keel::Error::NotLeader { leader } => leader.map_or(0, |l| l.0),
                    _ => 0,
                };
                Outcome::Refused(Refused { leader_hint })
            }
            Err(e) => return failed(to_kv(e).into()),
        };
        ProposeOutcome {
            outcome: Some(outcome),
        }
    }
}

fn failed(status: Status) -> ProposeOutcome {
    ProposeOutcome {
        outcome: Some(Outcome::Failed(Failed {
            code: status.code() as i32,
            message: status.message().to_owned(),
        })),
    }
}

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn propose_batch(
        &self,
        request: Request<ProposeBatchRequest>,
    ) -> Result<Response<ProposeBatchReply>, Status> {
        let from = request
            .extensions()
            .get::<keel::PeerCaller>()
            .map(|c| c.0.0);
        let commands = request.into_inner().commands;
        if commands.len() > FORWARD_BATCH_COMMANDS_MAX {
            warn!(from = ?from, commands = commands.len(), "refused an oversized forwarded batch");
            return Err(Status::invalid_argument(format!(
                "keel-kv: a forwarded batch carries at most {FORWARD_BATCH_COMMANDS_MAX} commands, not {}",
                commands.len()
            )));
        }
        // Each command is checked and handed to the runtime on the first
        // poll of its future, one after the other: the whole batch is
        // queued for the node before any of them is awaited.
        let outcomes = join_all(
            commands
                .into_iter()
                .map(|command| self.propose_one(command, from)),
        )
        .await;
        Ok(Response::new(ProposeBatchReply { outcomes }))
    }
}
