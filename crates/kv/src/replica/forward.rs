//! The leader's side of a follower's forwarded write.
//!
//! Served on the peer listener, behind the transport's cluster-identity
//! check (`keel::PeerServices`), never on the client port. What a peer
//! forwards is checked as a client's request would be before anything is
//! proposed: a command that does not decode, carries no operation, or that
//! the etcd services would refuse gets `InvalidArgument`, so no member can
//! put into the log what a client could not.

use prost::Message as _;
use tonic::{Request, Response, Status};
use tracing::warn;

use super::errors::{is_retryable, to_kv};
use super::machine::RaftMachine;
use crate::error::KvError;
use crate::proto::command::forward_server::Forward;
use crate::proto::command::{Command, ProposeReply, ProposeRequest};
use crate::service::validate;

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
}

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let from = request.extensions().get::<keel::PeerCaller>().copied();
        let command = request.into_inner().command;
        if let Err(e) = check_forwarded(&command, self.max_request_bytes) {
            warn!(from = ?from.map(|c| c.0), error = %e, "refused a forwarded command");
            return Err(e.into());
        }
        match self.node.propose(command).await {
            Ok(result) => Ok(Response::new(ProposeReply {
                result,
                refused: false,
                leader_hint: 0,
            })),
            // Not appended here: the follower retries with the leader it
            // learns of next.
            Err(e) if matches!(e, keel::Error::NotLeader { .. }) || is_retryable(&e) => {
                let leader_hint = match e {
                    keel::Error::NotLeader { leader } => leader.map_or(0, |l| l.0),
                    _ => 0,
                };
                Ok(Response::new(ProposeReply {
                    result: Default::default(),
                    refused: true,
                    leader_hint,
                }))
            }
            Err(e) => Err(to_kv(e).into()),
        }
    }
}
