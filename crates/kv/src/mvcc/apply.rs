//! Applying committed Raft entries: one redb write transaction per batch,
//! which also records the applied index and term.

use bytes::Bytes;
use prost::Message;

use super::tables::{KV, LEASES, MEMBERS, META, meta_keys};
use super::write::{Tables, Writer};
use super::{State, Store};
use crate::error::{KvError, decode};
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{ApplyError, Command, CommandResult, Empty};
use crate::proto::etcdserverpb::{
    CompactionResponse, LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader,
};
use crate::proto::mvccpb::Event;

/// What a committed entry carries, as far as the store is concerned.
#[derive(Clone, Copy, Debug)]
pub enum EntryPayload<'a> {
    /// An encoded [`Command`].
    Command(&'a [u8]),
    /// A blank or membership entry: it only moves the applied index.
    Other,
}

/// The outcome of one applied entry.
#[derive(Debug)]
pub struct Applied {
    pub index: u64,
    /// The encoded [`CommandResult`], for the proposer; `None` for entries
    /// that carried no command.
    pub result: Option<Bytes>,
    /// The watch events of the entry's revision, in sub-revision order.
    pub events: Vec<Event>,
    /// The store revision after the entry.
    pub revision: i64,
}

impl Store {
    /// Applies committed entries `(index, term, payload)` in order, in one
    /// redb transaction that also records the last index and term.
    ///
    /// Entries at or below the recorded applied index are skipped: they are
    /// already in the store (the runtime may replay a little after a crash).
    /// An `Err` is fatal: the store's memory may be ahead of redb's, and
    /// the node must stop.
    pub fn apply(&self, entries: &[(u64, u64, EntryPayload<'_>)]) -> Result<Vec<Applied>, KvError> {
        let mut state = self.state.write().expect("store lock poisoned by a panic");
        let mut txn = self.db.begin_write().map_err(KvError::storage)?;
        if !self.durable_apply {
            txn.set_durability(redb::Durability::None)
                .map_err(KvError::storage)?;
        }
        let mut applied = Vec::with_capacity(entries.len());
        {
            let mut tables = Tables {
                kv: txn.open_table(KV).map_err(KvError::storage)?,
                leases: txn.open_table(LEASES).map_err(KvError::storage)?,
                members: txn.open_table(MEMBERS).map_err(KvError::storage)?,
            };
            let mut last = None;
            for &(index, term, payload) in entries {
                if index <= state.applied_index {
                    continue;
                }
                let (result, events) = match payload {
                    EntryPayload::Command(bytes) => {
                        let command: Command = decode("command", bytes)?;
                        let (mut result, events) = apply_one(&mut state, &mut tables, command)?;
                        result.index = index;
                        (Some(Bytes::from(result.encode_to_vec())), events)
                    }
                    EntryPayload::Other => (None, Vec::new()),
                };
                state.applied_index = index;
                state.applied_term = term;
                last = Some(index);
                applied.push(Applied {
                    index,
                    result,
                    events,
                    revision: state.current_revision,
                });
            }
            if last.is_none() {
                return Ok(applied);
            }
            let mut meta = txn.open_table(META).map_err(KvError::storage)?;
            write_meta(&mut meta, &state)?;
        }
        txn.commit().map_err(KvError::storage)?;
        Ok(applied)
    }
}

pub(crate) fn write_meta(
    meta: &mut redb::Table<'_, &'static str, u64>,
    state: &State,
) -> Result<(), KvError> {
    for (key, value) in [
        (meta_keys::APPLIED_INDEX, state.applied_index),
        (meta_keys::APPLIED_TERM, state.applied_term),
        (meta_keys::CURRENT_REVISION, state.current_revision as u64),
        (
            meta_keys::COMPACTED_REVISION,
            state.compacted_revision as u64,
        ),
    ] {
        meta.insert(key, value).map_err(KvError::storage)?;
    }
    Ok(())
}

/// Applies one command. A refusal every replica reaches identically becomes
/// an `ApplyError` result; only storage failures are `Err`.
fn apply_one(
    state: &mut State,
    tables: &mut Tables<'_>,
    command: Command,
) -> Result<(CommandResult, Vec<Event>), KvError> {
    let Some(op) = command.op else {
        return Ok((result_of(state, Outcome::Done(Empty {})), Vec::new()));
    };
    let mut writer = Writer::new(state, tables);
    let outcome = match run(&mut writer, op) {
        Ok(outcome) => outcome,
        Err(e) => match e.apply_code() {
            Some(code) => Outcome::Error(ApplyError { code }),
            None => return Err(e),
        },
    };
    let events = writer.finish();
    Ok((result_of(state, outcome), events))
}

fn result_of(state: &State, outcome: Outcome) -> CommandResult {
    CommandResult {
        revision: state.current_revision,
        result: Some(outcome),
        index: 0,
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn run(w: &mut Writer<'_, '_>, op: Op) -> Result<Outcome, KvError> {
    Ok(match op {
        Op::Put(req) => {
            w.check_put(&req)?;
            Outcome::Put(w.put(&req)?)
        }
        Op::DeleteRange(req) => {
            if req.key.is_empty() {
                return Err(KvError::EmptyKey);
            }
            Outcome::DeleteRange(w.delete_range(&req)?)
        }
        Op::Txn(req) => Outcome::Txn(w.txn(&req)?),
        Op::Compaction(req) => {
            compact(w, req.revision)?;
            Outcome::Compaction(CompactionResponse {
                header: header(w.state.current_revision),
            })
        }
        Op::LeaseGrant(req) => {
            w.lease_grant(req.id, req.ttl)?;
            Outcome::LeaseGrant(LeaseGrantResponse {
                header: header(w.state.current_revision),
                id: req.id,
                ttl: req.ttl,
                error: String::new(),
            })
        }
        Op::LeaseRevoke(req) => {
            w.lease_revoke(req.id)?;
            // The revoke's deletions end at the pending revision.
            Outcome::LeaseRevoke(LeaseRevokeResponse { header: None })
        }
        Op::MemberSet(member) => {
            let bytes = member.encode_to_vec();
            w.tables
                .members
                .insert(member.id, bytes.as_slice())
                .map_err(KvError::storage)?;
            w.state.members.insert(member.id, member);
            Outcome::Done(Empty {})
        }
        Op::MemberRemove(req) => {
            if w.state.members.remove(&req.id).is_none() {
                return Err(KvError::MemberNotFound);
            }
            w.tables.members.remove(req.id).map_err(KvError::storage)?;
            Outcome::Done(Empty {})
        }
    })
}

/// Compacts history up to `revision`: rows that no read at or after it can
/// see are deleted in the same transaction.
fn compact(w: &mut Writer<'_, '_>, revision: i64) -> Result<(), KvError> {
    if revision <= w.state.compacted_revision {
        return Err(KvError::Compacted);
    }
    if revision > w.state.current_revision {
        return Err(KvError::FutureRevision);
    }
    for rev in w.state.index.compact(revision) {
        w.tables.kv.remove(rev.to_db()).map_err(KvError::storage)?;
    }
    w.state.compacted_revision = revision;
    Ok(())
}
