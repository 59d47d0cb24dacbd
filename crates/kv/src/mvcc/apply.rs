//! Applying committed Raft entries: one redb write transaction per batch,
//! which also records the applied index and term.

use std::collections::BTreeMap;
use std::sync::TryLockError;

use bytes::Bytes;
use prost::Message;

use super::apply_error::ApplyError;
use super::op;
use super::tables::{META, meta_keys};
use super::write::{Events, Tables, Writer};
use super::{State, Store, load_state};
use crate::auth::TokenChange;
use crate::error::KvError;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{Command, CommandResult, Rejected};
use crate::proto::mvccpb::Event;
use crate::rejection::Rejection;

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
    /// What the entry does to the member's tokens (auth commands only).
    pub token_change: Option<TokenChange>,
}

/// How one attempt at a batch ended.
enum Attempt {
    Committed(Vec<Applied>),
    /// The command at `index` was refused half way through its writes: the
    /// batch's transaction was dropped, and the batch must be redone with
    /// that command refused up front.
    Aborted {
        index: u64,
        rejection: Rejection,
    },
}

impl Store {
    /// Applies committed entries `(index, term, payload)` in order, in one
    /// redb transaction that also records the last index and term.
    ///
    /// Entries at or below the recorded applied index are skipped: they are
    /// already in the store (the runtime may replay a little after a crash).
    ///
    /// Follows the rule of apply (`crate::rejection`): a command whose
    /// content is refused gets a rejection as its result, on every replica
    /// alike, and changes nothing. Refusals are found before the first
    /// write (`op::check`); should one surface during a command's writes
    /// anyway, the batch's transaction is dropped (so none of its writes
    /// and no watch event survive), the in-memory state is reloaded from
    /// the store, and the batch is redone with that command refused. Each
    /// redo refuses one more entry, so there are at most `entries.len()`.
    ///
    /// An `Err` is this replica's own failure and is fatal: the store's
    /// memory may be ahead of redb's, and the node must stop.
    pub fn apply(&self, entries: &[(u64, u64, EntryPayload<'_>)]) -> Result<Vec<Applied>, KvError> {
        self.apply_with(entries, Events::Record)
    }

    /// [`Store::apply`], building each entry's watch events only if
    /// `events` says so (with [`Events::Skip`], every `Applied::events` is
    /// empty).
    pub fn apply_with(
        &self,
        entries: &[(u64, u64, EntryPayload<'_>)],
        events: Events,
    ) -> Result<Vec<Applied>, KvError> {
        let mut state = self.state.write().expect("store lock poisoned by a panic");
        self.apply_locked(&mut state, entries, events)
    }

    /// [`Store::apply_with`] if it need not wait: `None`, having done
    /// nothing, while another thread holds the state lock (a read view, a
    /// defragmentation, a count of the pages in use). Every other writer
    /// of the database holds that lock while its write transaction is
    /// open, so with it this batch's transaction begins at once.
    pub fn try_apply_with(
        &self,
        entries: &[(u64, u64, EntryPayload<'_>)],
        events: Events,
    ) -> Option<Result<Vec<Applied>, KvError>> {
        let mut state = match self.state.try_write() {
            Ok(state) => state,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(_)) => panic!("store lock poisoned by a panic"),
        };
        Some(self.apply_locked(&mut state, entries, events))
    }

    fn apply_locked(
        &self,
        state: &mut State,
        entries: &[(u64, u64, EntryPayload<'_>)],
        events: Events,
    ) -> Result<Vec<Applied>, KvError> {
        let mut refused = BTreeMap::new();
        loop {
            match self.attempt(state, entries, &refused, events)? {
                Attempt::Committed(applied) => return Ok(applied),
                Attempt::Aborted { index, rejection } => {
                    tracing::error!(
                        index,
                        %rejection,
                        "a command was refused after it began writing (its check missed \
                         this); redoing the batch with the command refused"
                    );
                    self.replace_state(state, load_state(&self.db())?);
                    let first = refused.insert(index, rejection).is_none();
                    assert!(first, "a command refused up front cannot abort a batch");
                }
            }
        }
    }

    fn attempt(
        &self,
        state: &mut State,
        entries: &[(u64, u64, EntryPayload<'_>)],
        refused: &BTreeMap<u64, Rejection>,
        events: Events,
    ) -> Result<Attempt, KvError> {
        let mut txn = self.db().begin_write().map_err(KvError::storage)?;
        if !self.durable_apply {
            txn.set_durability(redb::Durability::None)
                .map_err(KvError::storage)?;
        }
        let mut applied = Vec::with_capacity(entries.len());
        let meta_stored = state.meta_stored.then(|| meta_rows(state));
        {
            let mut tables = Tables::open(&txn)?;
            for &(index, term, payload) in entries {
                if index <= state.applied_index {
                    continue;
                }
                let (result, events, token_change) = match payload {
                    EntryPayload::Command(bytes) => {
                        let applied_command = match refused.get(&index) {
                            Some(&rejection) => refusal(state, rejection),
                            None => {
                                match apply_command(state, &mut tables, index, bytes, events)? {
                                    Ok(done) => done,
                                    Err(rejection) => {
                                        return Ok(Attempt::Aborted { index, rejection });
                                    }
                                }
                            }
                        };
                        let (mut result, events, token_change) = applied_command;
                        result.index = index;
                        (
                            Some(Bytes::from(result.encode_to_vec())),
                            events,
                            token_change,
                        )
                    }
                    EntryPayload::Other => (None, Vec::new(), None),
                };
                state.applied_index = index;
                state.applied_term = term;
                applied.push(Applied {
                    index,
                    result,
                    events,
                    revision: state.current_revision,
                    token_change,
                });
            }
            if applied.is_empty() {
                return Ok(Attempt::Committed(applied));
            }
            let mut meta = txn.open_table(META).map_err(KvError::storage)?;
            write_meta_rows(&mut meta, meta_rows(state), meta_stored)?;
        }
        self.commit(txn)?;
        state.meta_stored = true;
        Ok(Attempt::Committed(applied))
    }
}

/// The store's positions as the rows of its META table: a value to hold
/// under each key, `None` for a key to be absent.
type MetaRows = [(&'static str, Option<u64>); 8];

fn meta_rows(state: &State) -> MetaRows {
    let cursor = state.compaction_cursor.map(|c| c.to_db());
    [
        (meta_keys::APPLIED_INDEX, Some(state.applied_index)),
        (meta_keys::APPLIED_TERM, Some(state.applied_term)),
        (
            meta_keys::CURRENT_REVISION,
            Some(state.current_revision as u64),
        ),
        (
            meta_keys::COMPACTED_REVISION,
            Some(state.compacted_revision as u64),
        ),
        (meta_keys::AUTH_ENABLED, Some(u64::from(state.auth.enabled))),
        (meta_keys::AUTH_REVISION, Some(state.auth.revision)),
        (
            meta_keys::COMPACTION_CURSOR_MAIN,
            cursor.map(|(main, _)| main),
        ),
        (meta_keys::COMPACTION_CURSOR_SUB, cursor.map(|(_, sub)| sub)),
    ]
}

/// Writes every row of `state`'s positions to `meta`.
pub(crate) fn write_meta(
    meta: &mut redb::Table<'_, &'static str, u64>,
    state: &State,
) -> Result<(), KvError> {
    write_meta_rows(meta, meta_rows(state), None)
}

/// Writes `rows` to `meta`, skipping those equal in `stored` — what the
/// table already holds, if known. An apply batch passes the rows of the
/// state it started from once [`State::meta_stored`] says they are what
/// META holds (memory and META then change in the same commits), so a
/// batch of puts rewrites two or three rows, not eight.
fn write_meta_rows(
    meta: &mut redb::Table<'_, &'static str, u64>,
    rows: MetaRows,
    stored: Option<MetaRows>,
) -> Result<(), KvError> {
    for (at, (key, value)) in rows.into_iter().enumerate() {
        if stored.is_some_and(|stored| stored[at].1 == value) {
            continue;
        }
        match value {
            Some(value) => meta.insert(key, value).map(drop),
            None => meta.remove(key).map(drop),
        }
        .map_err(KvError::storage)?;
    }
    Ok(())
}

/// What one applied command produced: its result, its watch events and
/// its change to the member's tokens.
type AppliedCommand = (CommandResult, Vec<Event>, Option<TokenChange>);

/// Applies one command's bytes, the entry at `index`. The outer `Err` is
/// this replica's failure; the inner one a refusal found after the command
/// began writing, which the caller answers by dropping the batch.
fn apply_command(
    state: &mut State,
    tables: &mut Tables<'_>,
    index: u64,
    bytes: &[u8],
    events: Events,
) -> Result<Result<AppliedCommand, Rejection>, KvError> {
    let Ok(command) = Command::decode(bytes) else {
        return Ok(Ok(refusal(state, Rejection::Undecodable)));
    };
    // An op this build does not know decodes as none: a newer format.
    let Some(op) = command.op else {
        return Ok(Ok(refusal(state, Rejection::UnsupportedCommand)));
    };
    // An entry older than auth carries no caller: it is checked as an
    // unauthenticated client's, which matters only once auth is enabled.
    let caller = command.caller.unwrap_or_default();
    let mut writer = Writer::new(state, tables, index, events);
    let checked = match op::check(&writer, &caller, op) {
        Ok(checked) => checked,
        Err(ApplyError::Rejected(rejection)) => return Ok(Ok(refusal(state, rejection))),
        Err(ApplyError::Failed(e)) => return Err(e),
    };
    match op::execute(&mut writer, checked) {
        Ok(outcome) => {
            let (events, token_change) = writer.finish();
            Ok(Ok((result_of(state, outcome), events, token_change)))
        }
        Err(ApplyError::Rejected(rejection)) => Ok(Err(rejection)),
        Err(ApplyError::Failed(e)) => Err(e),
    }
}

/// The result of a command refused before it wrote anything.
fn refusal(state: &State, rejection: Rejection) -> AppliedCommand {
    let outcome = Outcome::Rejected(Rejected {
        code: rejection.code(),
    });
    (result_of(state, outcome), Vec::new(), None)
}

fn result_of(state: &State, outcome: Outcome) -> CommandResult {
    CommandResult {
        revision: state.current_revision,
        result: Some(outcome),
        index: 0,
    }
}
