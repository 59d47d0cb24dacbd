//! The leader's side of a follower's forwarded write.

use tonic::{Request, Response, Status};

use super::errors::{is_retryable, to_kv};
use super::machine::RaftMachine;
use crate::proto::command::forward_server::Forward;
use crate::proto::command::{ProposeReply, ProposeRequest};

/// Proposes commands that followers forward. Served on the client URL next
/// to the etcd API.
pub struct ForwardService {
    node: keel::Node<RaftMachine>,
}

impl ForwardService {
    pub fn new(node: keel::Node<RaftMachine>) -> ForwardService {
        ForwardService { node }
    }
}

#[tonic::async_trait]
impl Forward for ForwardService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        let command = request.into_inner().command;
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
