//! Applying writes: one [`Writer`] per Raft entry, over the batch's open
//! redb write transaction.
//!
//! Every command is first *checked* (`op::check`, which holds the writer
//! only by shared reference and so cannot change anything) and only then
//! *executed*. A refusal found by the check leaves no trace; one found
//! during execution means the check missed something, and the batch's whole
//! transaction is dropped and redone (`apply.rs`).

use bytes::Bytes;
use prost::Message;
use redb::{Key, Table, TableDefinition, Value, WriteTransaction};

use super::apply_error::ApplyError;
use super::read::kv_at;
use super::tables::{ALARMS, AUTH_ROLES, AUTH_USERS, KV, LEASES, MEMBERS};
use super::{Generation, KeyRange, LeaseState, Revision, State};
use crate::auth::TokenChange;
use crate::error::KvError;
use crate::proto::command::{LeaseRecord, Revisioned};
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, Member, PutRequest, PutResponse, ResponseHeader,
};
use crate::proto::mvccpb::{Event, KeyValue, event::EventType};
use crate::rejection::Rejection;

/// The tables an apply batch writes. `kv` is opened with the batch, since
/// nearly every command reads or writes it; the others only when a
/// command first needs them, because opening a redb table has a cost that
/// a batch of puts would otherwise pay five times for nothing.
pub(crate) struct Tables<'t> {
    txn: &'t WriteTransaction,
    pub kv: Table<'t, (u64, u64), &'static [u8]>,
    leases: Option<Table<'t, i64, &'static [u8]>>,
    members: Option<Table<'t, u64, &'static [u8]>>,
    alarms: Option<Table<'t, (u64, i32), ()>>,
    auth_users: Option<Table<'t, &'static str, &'static [u8]>>,
    auth_roles: Option<Table<'t, &'static str, &'static [u8]>>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, KvError> {
        Ok(Tables {
            txn,
            kv: txn.open_table(KV).map_err(KvError::storage)?,
            leases: None,
            members: None,
            alarms: None,
            auth_users: None,
            auth_roles: None,
        })
    }

    pub fn leases(&mut self) -> Result<&mut Table<'t, i64, &'static [u8]>, KvError> {
        opened(self.txn, &mut self.leases, LEASES)
    }

    pub fn members(&mut self) -> Result<&mut Table<'t, u64, &'static [u8]>, KvError> {
        opened(self.txn, &mut self.members, MEMBERS)
    }

    pub fn alarms(&mut self) -> Result<&mut Table<'t, (u64, i32), ()>, KvError> {
        opened(self.txn, &mut self.alarms, ALARMS)
    }

    pub fn auth_users(&mut self) -> Result<&mut Table<'t, &'static str, &'static [u8]>, KvError> {
        opened(self.txn, &mut self.auth_users, AUTH_USERS)
    }

    pub fn auth_roles(&mut self) -> Result<&mut Table<'t, &'static str, &'static [u8]>, KvError> {
        opened(self.txn, &mut self.auth_roles, AUTH_ROLES)
    }
}

/// The table in `slot`, opened from `txn` the first time it is asked for.
fn opened<'s, 't, K: Key + 'static, V: Value + 'static>(
    txn: &'t WriteTransaction,
    slot: &'s mut Option<Table<'t, K, V>>,
    definition: TableDefinition<'static, K, V>,
) -> Result<&'s mut Table<'t, K, V>, KvError> {
    if slot.is_none() {
        *slot = Some(txn.open_table(definition).map_err(KvError::storage)?);
    }
    Ok(slot.as_mut().expect("opened above"))
}

/// Whether an apply builds the watch events of what it writes. While no
/// one watches, nobody would read them, and a put's event costs a read of
/// the key's previous row (the event carries it as `prev_kv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Events {
    Record,
    Skip,
}

/// Applies the writes of one store revision.
pub(crate) struct Writer<'s, 't> {
    pub state: &'s mut State,
    pub tables: &'s mut Tables<'t>,
    /// The Raft index of the entry being applied.
    index: u64,
    /// The revision this entry's writes get, if it writes anything.
    main: i64,
    /// The next sub-revision; `0` means nothing written yet.
    sub: i64,
    recording: Events,
    events: Vec<Event>,
    /// What the entry does to the member's token table (auth commands).
    pub token_change: Option<TokenChange>,
}

impl<'s, 't> Writer<'s, 't> {
    pub fn new(
        state: &'s mut State,
        tables: &'s mut Tables<'t>,
        index: u64,
        recording: Events,
    ) -> Writer<'s, 't> {
        let main = state.current_revision + 1;
        Writer {
            state,
            tables,
            index,
            main,
            sub: 0,
            recording,
            events: Vec::new(),
            token_change: None,
        }
    }

    /// Ends the entry: if anything was written, the store revision moves on.
    pub fn finish(self) -> (Vec<Event>, Option<TokenChange>) {
        if self.sub > 0 {
            self.state.current_revision = self.main;
        }
        (self.events, self.token_change)
    }

    /// The Raft index of the entry being applied.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The newest revision a read inside this entry sees.
    pub fn visible(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.state.current_revision
        }
    }

    pub fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.visible(),
            ..Default::default()
        })
    }

    fn next_rev(&mut self) -> Revision {
        let rev = Revision {
            main: self.main,
            sub: self.sub,
        };
        self.sub += 1;
        rev
    }

    /// Whether `key` is alive as this entry sees it (the latest change is
    /// the one visible: nothing is written after the entry being applied).
    fn is_live(&self, key: &[u8]) -> bool {
        self.state.index.latest(key).is_some()
    }

    /// Whether this entry's watch events are wanted.
    fn recording(&self) -> bool {
        self.recording == Events::Record
    }

    fn write_row(&mut self, rev: Revision, row: &Revisioned) -> Result<(), KvError> {
        self.tables
            .kv
            .insert(rev.to_db(), row.encode_to_vec().as_slice())
            .map_err(KvError::storage)?;
        Ok(())
    }

    /// Refusals a put can meet, checked against the state before the entry
    /// (etcd checks a txn's puts against the state before the txn, too).
    pub fn check_put(&self, req: &PutRequest) -> Result<(), ApplyError> {
        if req.key.is_empty() {
            return Err(Rejection::EmptyKey.into());
        }
        if (req.ignore_value || req.ignore_lease) && !self.is_live(&req.key) {
            return Err(Rejection::KeyNotFound.into());
        }
        if !req.ignore_lease && req.lease != 0 && !self.state.leases.contains_key(&req.lease) {
            return Err(Rejection::LeaseNotFound.into());
        }
        Ok(())
    }

    /// A put outside a txn: etcd looks up its lease before its key (inside
    /// a txn, the other way round), so a put with both faults gets the
    /// lease's error.
    pub fn check_lone_put(&self, req: &PutRequest) -> Result<(), ApplyError> {
        if req.key.is_empty() {
            return Err(Rejection::EmptyKey.into());
        }
        if !req.ignore_lease && req.lease != 0 && !self.state.leases.contains_key(&req.lease) {
            return Err(Rejection::LeaseNotFound.into());
        }
        self.check_put(req)
    }

    /// A put that [`Writer::check_put`] accepted. A txn may still have
    /// deleted the key it keeps the value or lease of: that is refused.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, ApplyError> {
        let latest = self.state.index.latest(&req.key);
        if (req.ignore_value || req.ignore_lease) && latest.is_none() {
            return Err(Rejection::KeyNotFound.into());
        }
        // The previous row is read only when its value is wanted: the
        // index knows the rest.
        let wants_prev = req.prev_kv || req.ignore_value || self.recording();
        let prev = match latest {
            Some((at, _)) if wants_prev => Some(kv_at(&self.tables.kv, at)?),
            _ => None,
        };
        let rev = self.next_rev();
        let lease = match (req.ignore_lease, latest) {
            (true, Some((_, g))) => g.lease,
            _ => req.lease,
        };
        let generation = match latest {
            Some((_, g)) => Generation {
                create_revision: g.create_revision,
                version: g.version + 1,
                lease,
            },
            None => Generation {
                create_revision: rev.main,
                version: 1,
                lease,
            },
        };
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: generation.create_revision,
            mod_revision: rev.main,
            version: generation.version,
            value,
            lease,
        };
        self.write_row(
            rev,
            &Revisioned {
                tombstone: false,
                kv: Some(kv.clone()),
            },
        )?;
        self.state.index.put(kv.key.clone(), rev, generation);
        if let Some((_, g)) = latest {
            self.detach(g.lease, &kv.key);
        }
        if let Some(lease) = self.state.leases.get_mut(&kv.lease) {
            lease.keys.insert(kv.key.clone());
        }
        if self.recording() {
            self.events.push(Event {
                r#type: EventType::Put as i32,
                kv: Some(kv),
                prev_kv: prev.clone(),
            });
        }
        Ok(PutResponse {
            header: self.header(),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn detach(&mut self, lease: i64, key: &Bytes) {
        if let Some(l) = self.state.leases.get_mut(&lease) {
            l.keys.remove(key);
        }
    }

    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, KvError> {
        let range = KeyRange::new(req.key.clone(), req.range_end.clone());
        let at = self.visible();
        let doomed: Vec<(Bytes, Revision)> = self
            .state
            .index
            .range(&range, at)
            .map(|(k, rev)| (k.clone(), rev))
            .collect();
        let wants_prev = req.prev_kv || self.recording();
        let mut prev_kvs = Vec::with_capacity(if req.prev_kv { doomed.len() } else { 0 });
        for (key, old) in &doomed {
            let lease = self
                .state
                .index
                .latest(key)
                .map_or(0, |(_, generation)| generation.lease);
            let prev = if wants_prev {
                Some(kv_at(&self.tables.kv, *old)?)
            } else {
                None
            };
            let rev = self.next_rev();
            let gone = KeyValue {
                key: key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            self.write_row(
                rev,
                &Revisioned {
                    tombstone: true,
                    kv: Some(gone.clone()),
                },
            )?;
            self.state.index.tombstone(key.clone(), rev);
            self.detach(lease, key);
            if self.recording() {
                self.events.push(Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(gone),
                    prev_kv: prev.clone(),
                });
            }
            if req.prev_kv {
                prev_kvs.extend(prev);
            }
        }
        Ok(DeleteRangeResponse {
            header: self.header(),
            deleted: doomed.len() as i64,
            prev_kvs,
        })
    }

    /// Grants a lease whose ID `op::check` found free.
    pub fn lease_grant(&mut self, id: i64, ttl_seconds: i64) -> Result<(), KvError> {
        let record = LeaseRecord {
            id,
            ttl_seconds,
            granted_index: self.index,
        };
        self.tables
            .leases()?
            .insert(id, record.encode_to_vec().as_slice())
            .map_err(KvError::storage)?;
        self.state.leases.insert(
            id,
            LeaseState {
                ttl_seconds,
                keys: Default::default(),
                granted_index: self.index,
            },
        );
        Ok(())
    }

    /// Revokes a lease and deletes its keys, all at one revision.
    pub fn lease_revoke(&mut self, id: i64) -> Result<(), ApplyError> {
        let lease = self.state.leases.get(&id).ok_or(Rejection::LeaseNotFound)?;
        let keys: Vec<Bytes> = lease.keys.iter().cloned().collect();
        for key in keys {
            self.delete_range(&DeleteRangeRequest {
                key,
                ..Default::default()
            })?;
        }
        self.tables.leases()?.remove(id).map_err(KvError::storage)?;
        self.state.leases.remove(&id);
        Ok(())
    }

    /// Registers or replaces a member's attributes.
    pub fn member_set(&mut self, member: Member) -> Result<(), KvError> {
        let bytes = member.encode_to_vec();
        self.tables
            .members()?
            .insert(member.id, bytes.as_slice())
            .map_err(KvError::storage)?;
        self.state.members.insert(member.id, member);
        Ok(())
    }

    pub fn member_remove(&mut self, id: u64) -> Result<(), ApplyError> {
        if self.state.members.remove(&id).is_none() {
            return Err(Rejection::MemberNotFound.into());
        }
        self.tables
            .members()?
            .remove(id)
            .map_err(KvError::storage)?;
        Ok(())
    }
}
