//! The replicated command format: an etcd request in Keel's envelope.

use bytes::Bytes;
use prost::Message;

use crate::error::{Corruption, KvError, decode};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{Caller, Command, CommandResult};
use crate::rejection::Rejection;

/// Encodes one command for `Consensus::propose`, with no caller: as an
/// unauthenticated client's (tests, and entries from before auth).
pub fn encode(op: Op) -> Bytes {
    Bytes::from(
        Command {
            op: Some(op),
            caller: None,
        }
        .encode_to_vec(),
    )
}

/// Encodes one command proposed on behalf of `caller`.
pub fn encode_as(op: Op, caller: Caller) -> Bytes {
    Bytes::from(
        Command {
            op: Some(op),
            caller: Some(caller),
        }
        .encode_to_vec(),
    )
}

/// The caller of commands a member proposes on its own behalf.
pub fn member_caller() -> Caller {
    Caller {
        member: true,
        ..Caller::default()
    }
}

/// Decodes an apply result; a deterministic refusal becomes its `KvError`.
pub fn decode_result(bytes: &[u8]) -> Result<(i64, Outcome), KvError> {
    let result: CommandResult = decode("command result", bytes)?;
    match result.result {
        Some(Outcome::Rejected(e)) => Err(Rejection::from_code(e.code).map_or_else(
            || KvError::Corrupt {
                what: "command result",
                kind: Corruption::UnknownRejection { code: e.code },
            },
            KvError::from,
        )),
        Some(outcome) => Ok((result.revision, outcome)),
        None => Err(KvError::Corrupt {
            what: "command result",
            kind: Corruption::NoOutcome,
        }),
    }
}
