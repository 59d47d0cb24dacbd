//! The replicated command format: an etcd request in Keel's envelope.

use bytes::Bytes;
use prost::Message;

use crate::error::{KvError, decode};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{Command, CommandResult};
use crate::rejection::Rejection;

/// Encodes one command for `Consensus::propose`.
pub fn encode(op: Op) -> Bytes {
    Bytes::from(Command { op: Some(op) }.encode_to_vec())
}

/// Decodes an apply result; a deterministic refusal becomes its `KvError`.
pub fn decode_result(bytes: &[u8]) -> Result<(i64, Outcome), KvError> {
    let result: CommandResult = decode("command result", bytes)?;
    match result.result {
        Some(Outcome::Rejected(e)) => Err(Rejection::from_code(e.code).map_or_else(
            || KvError::Corrupt {
                what: "command result",
                detail: format!("unknown rejection code {}", e.code),
            },
            KvError::from,
        )),
        Some(outcome) => Ok((result.revision, outcome)),
        None => Err(KvError::Corrupt {
            what: "command result",
            detail: "empty".into(),
        }),
    }
}
