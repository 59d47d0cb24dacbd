//! Streaming the whole store out for a Raft snapshot, and back in.
//!
//! The stream is a sequence of frames `tag: u8, len: u32 LE, body`, read
//! from one redb read transaction (a consistent point in time) and written
//! as it is read, so no copy of the whole state is ever held in memory.

use std::io::{Read, Write};

use redb::{ReadableDatabase, ReadableTable};

use super::apply::write_meta;
use super::tables::{ALARMS, AUTH_ROLES, AUTH_USERS, KV, LEASES, MEMBERS, META, meta_keys};
use super::{NEVER_COMPACTED, Revision, State, Store, StorePosition, load_state};
use crate::error::{Corruption, KvError};

const TAG_META: u8 = 1;
const TAG_KV: u8 = 2;
const TAG_LEASE: u8 = 3;
const TAG_MEMBER: u8 = 4;
/// Auth enabled flag and revision: two LE u64 words. Absent from
/// snapshots older than auth, which restore with auth off.
const TAG_AUTH_META: u8 = 5;
/// `name_len: u32 LE, name, User`.
const TAG_AUTH_USER: u8 = 6;
/// `name_len: u32 LE, name, Role`.
const TAG_AUTH_ROLE: u8 = 7;
/// An active alarm: member ID (u64) and type (i32 as u64).
const TAG_ALARM: u8 = 8;
/// The compaction cursor (main, sub), present while steps remain.
const TAG_COMPACTION_CURSOR: u8 = 9;
const TAG_END: u8 = 0xff;
/// Bounds a frame so that a corrupt length cannot make us allocate wildly.
const FRAME_BYTES_MAX: usize = 64 << 20;

fn frame(w: &mut impl Write, tag: u8, parts: &[&[u8]]) -> Result<(), KvError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).map_err(|_| KvError::Corrupt {
        what: "snapshot frame",
        kind: Corruption::TooLong {
            bytes: len,
            max_bytes: u32::MAX as usize,
        },
    })?;
    w.write_all(&[tag])?;
    w.write_all(&len.to_le_bytes())?;
    for p in parts {
        w.write_all(p)?;
    }
    Ok(())
}

/// The store frozen at one point in time (a redb read transaction), to be
/// streamed out while later entries are applied.
pub struct SnapshotSource {
    txn: redb::ReadTransaction,
}

impl Store {
    /// Freezes the store as it is now; see [`SnapshotSource::write`].
    pub fn begin_snapshot(&self) -> Result<SnapshotSource, KvError> {
        let txn = self.db().begin_read().map_err(KvError::storage)?;
        Ok(SnapshotSource { txn })
    }

    /// Writes the store's state as of now to `w` and returns the position
    /// it reflects (the snapshot's applied index and term).
    pub fn write_snapshot(&self, w: &mut impl Write) -> Result<StorePosition, KvError> {
        self.begin_snapshot()?.write(w)
    }
}

impl SnapshotSource {
    /// Writes the frozen state to `w` and returns the position it reflects.
    pub fn write(self, w: &mut impl Write) -> Result<StorePosition, KvError> {
        let txn = self.txn;
        let meta = txn.open_table(META).map_err(KvError::storage)?;
        let get_opt = |k: &str| -> Result<Option<u64>, KvError> {
            Ok(meta.get(k).map_err(KvError::storage)?.map(|v| v.value()))
        };
        let get = |k: &str| -> Result<u64, KvError> { Ok(get_opt(k)?.unwrap_or(0)) };
        let position = StorePosition {
            applied_index: get(meta_keys::APPLIED_INDEX)?,
            applied_term: get(meta_keys::APPLIED_TERM)?,
            revision: get(meta_keys::CURRENT_REVISION)? as i64,
            compacted_revision: get(meta_keys::COMPACTED_REVISION)? as i64,
        };
        let mut body = Vec::with_capacity(32);
        for v in [
            position.applied_index,
            position.applied_term,
            position.revision as u64,
            position.compacted_revision as u64,
        ] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        frame(w, TAG_META, &[&body])?;
        let kv = txn.open_table(KV).map_err(KvError::storage)?;
        for row in kv.iter().map_err(KvError::storage)? {
            let (rev, value) = row.map_err(KvError::storage)?;
            let (main, sub) = rev.value();
            frame(
                w,
                TAG_KV,
                &[&main.to_le_bytes(), &sub.to_le_bytes(), value.value()],
            )?;
        }
        let leases = txn.open_table(LEASES).map_err(KvError::storage)?;
        for row in leases.iter().map_err(KvError::storage)? {
            let (id, value) = row.map_err(KvError::storage)?;
            frame(w, TAG_LEASE, &[&id.value().to_le_bytes(), value.value()])?;
        }
        let members = txn.open_table(MEMBERS).map_err(KvError::storage)?;
        for row in members.iter().map_err(KvError::storage)? {
            let (id, value) = row.map_err(KvError::storage)?;
            frame(w, TAG_MEMBER, &[&id.value().to_le_bytes(), value.value()])?;
        }
        let alarms = txn.open_table(ALARMS).map_err(KvError::storage)?;
        for row in alarms.iter().map_err(KvError::storage)? {
            let (key, _) = row.map_err(KvError::storage)?;
            let (member_id, alarm) = key.value();
            frame(
                w,
                TAG_ALARM,
                &[&member_id.to_le_bytes(), &(alarm as u64).to_le_bytes()],
            )?;
        }
        if let (Some(main), Some(sub)) = (
            get_opt(meta_keys::COMPACTION_CURSOR_MAIN)?,
            get_opt(meta_keys::COMPACTION_CURSOR_SUB)?,
        ) {
            frame(
                w,
                TAG_COMPACTION_CURSOR,
                &[&main.to_le_bytes(), &sub.to_le_bytes()],
            )?;
        }
        let auth_meta = [
            get(meta_keys::AUTH_ENABLED)?,
            get(meta_keys::AUTH_REVISION)?,
        ];
        frame(
            w,
            TAG_AUTH_META,
            &[&auth_meta[0].to_le_bytes(), &auth_meta[1].to_le_bytes()],
        )?;
        for (tag, table) in [(TAG_AUTH_USER, AUTH_USERS), (TAG_AUTH_ROLE, AUTH_ROLES)] {
            let rows = txn.open_table(table).map_err(KvError::storage)?;
            for row in rows.iter().map_err(KvError::storage)? {
                let (name, value) = row.map_err(KvError::storage)?;
                let name = name.value().as_bytes();
                let name_len = u32::try_from(name.len()).map_err(|_| KvError::Corrupt {
                    what: "auth name",
                    kind: Corruption::TooLong {
                        bytes: name.len(),
                        max_bytes: u32::MAX as usize,
                    },
                })?;
                frame(w, tag, &[&name_len.to_le_bytes(), name, value.value()])?;
            }
        }
        frame(w, TAG_END, &[])?;
        Ok(position)
    }
}

/// What a restored store stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreAs {
    /// A replica catching up from its leader's snapshot, which stands for
    /// the Raft index `covers_index`. That index can be past the applied
    /// index recorded inside the snapshot (entries that carry no command,
    /// such as leader no-ops, do not reach the store); the store records
    /// the larger of the two so that a restart does not restore the same
    /// snapshot again.
    Replica { covers_index: u64 },
    /// The first state of a new cluster (`keel snapshot restore`),
    /// standing for the new log's entry `index` of `term`: the keys,
    /// leases and revisions are kept, but the old cluster's log position
    /// and member registry are not (its members publish themselves).
    NewCluster { index: u64, term: u64 },
}

impl Store {
    /// Replaces the whole store with the snapshot read from `r`, as a
    /// replica catching up; see [`RestoreAs::Replica`].
    pub fn restore_snapshot(
        &self,
        r: &mut impl Read,
        covers_index: u64,
    ) -> Result<StorePosition, KvError> {
        self.restore_snapshot_as(r, RestoreAs::Replica { covers_index })
    }

    /// Replaces the whole store with the snapshot read from `r`. The
    /// replacement is one durable transaction: the log it replaces is gone.
    pub fn restore_snapshot_as(
        &self,
        r: &mut impl Read,
        restore_as: RestoreAs,
    ) -> Result<StorePosition, KvError> {
        let mut state = self.state.write().expect("store lock poisoned by a panic");
        let txn = self.db().begin_write().map_err(KvError::storage)?;
        {
            let mut kv = txn.open_table(KV).map_err(KvError::storage)?;
            let mut leases = txn.open_table(LEASES).map_err(KvError::storage)?;
            let mut members = txn.open_table(MEMBERS).map_err(KvError::storage)?;
            let mut meta = txn.open_table(META).map_err(KvError::storage)?;
            let mut alarms = txn.open_table(ALARMS).map_err(KvError::storage)?;
            alarms.retain(|_, _| false).map_err(KvError::storage)?;
            let mut users = txn.open_table(AUTH_USERS).map_err(KvError::storage)?;
            let mut roles = txn.open_table(AUTH_ROLES).map_err(KvError::storage)?;
            users.retain(|_, _| false).map_err(KvError::storage)?;
            roles.retain(|_, _| false).map_err(KvError::storage)?;
            kv.retain(|_, _| false).map_err(KvError::storage)?;
            leases.retain(|_, _| false).map_err(KvError::storage)?;
            members.retain(|_, _| false).map_err(KvError::storage)?;
            let mut restored = State::default();
            let mut body = Vec::new();
            loop {
                match read_frame(r, &mut body)? {
                    TAG_META => {
                        let meta = read_meta(&body)?;
                        restored.applied_index = meta.applied_index;
                        restored.applied_term = meta.applied_term;
                        restored.current_revision = meta.revision;
                        restored.compacted_revision = meta.compacted_revision;
                    }
                    TAG_KV => {
                        let rev = Revision::from_db((u64_at(&body, 0)?, u64_at(&body, 8)?));
                        kv.insert(rev.to_db(), &body[16..])
                            .map_err(KvError::storage)?;
                    }
                    TAG_LEASE => {
                        let id = u64_at(&body, 0)? as i64;
                        leases.insert(id, &body[8..]).map_err(KvError::storage)?;
                    }
                    TAG_MEMBER => {
                        let id = u64_at(&body, 0)?;
                        if let RestoreAs::Replica { .. } = restore_as {
                            members.insert(id, &body[8..]).map_err(KvError::storage)?;
                        }
                    }
                    TAG_ALARM => {
                        let member_id = u64_at(&body, 0)?;
                        let alarm = u64_at(&body, 8)? as i32;
                        alarms
                            .insert((member_id, alarm), ())
                            .map_err(KvError::storage)?;
                    }
                    TAG_COMPACTION_CURSOR => {
                        let cursor = (u64_at(&body, 0)?, u64_at(&body, 8)?);
                        restored.compaction_cursor = Some(Revision::from_db(cursor));
                    }
                    TAG_AUTH_META => {
                        restored.auth.enabled = u64_at(&body, 0)? == 1;
                        restored.auth.revision = u64_at(&body, 8)?.max(1);
                    }
                    TAG_AUTH_USER => {
                        let (name, row) = named_row(&body)?;
                        users.insert(name, row).map_err(KvError::storage)?;
                    }
                    TAG_AUTH_ROLE => {
                        let (name, row) = named_row(&body)?;
                        roles.insert(name, row).map_err(KvError::storage)?;
                    }
                    TAG_END => break,
                    other => return Err(unknown_tag(other)),
                }
            }
            match restore_as {
                RestoreAs::Replica { covers_index } => {
                    restored.applied_index = restored.applied_index.max(covers_index);
                }
                RestoreAs::NewCluster { index, term } => {
                    restored.applied_index = index;
                    restored.applied_term = term;
                }
            }
            write_meta(&mut meta, &restored)?;
        }
        self.commit(txn)?;
        self.replace_state(&mut state, load_state(&self.db())?);
        Ok(StorePosition {
            applied_index: state.applied_index,
            applied_term: state.applied_term,
            revision: state.current_revision,
            compacted_revision: state.compacted_revision,
        })
    }
}

/// What `keel snapshot status` reports about a snapshot stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The store's position when the snapshot was taken.
    pub position: StorePosition,
    /// The CRC-32C of every stored revision, computed as
    /// `Maintenance/HashKV` computes it at `position.revision`, so that it
    /// can be compared with `endpoint hashkv` on a member at that revision
    /// (unless compaction steps were still pending when it was taken: the
    /// rows they had yet to delete are hashed here, not by HashKV).
    pub hash: u32,
    /// Stored revisions of keys (every version kept, tombstones included).
    pub revisions: u64,
    pub leases: u64,
}

/// Reads a snapshot stream through to its end frame without storing it.
pub fn summarize(r: &mut impl Read) -> Result<SnapshotSummary, KvError> {
    let mut summary = SnapshotSummary {
        position: StorePosition::default(),
        hash: 0,
        revisions: 0,
        leases: 0,
    };
    let mut body = Vec::new();
    loop {
        match read_frame(r, &mut body)? {
            TAG_META => summary.position = read_meta(&body)?,
            TAG_KV => {
                let (main, sub) = (u64_at(&body, 0)?, u64_at(&body, 8)?);
                summary.hash = super::hash::hash_row(summary.hash, (main, sub), &body[16..]);
                summary.revisions += 1;
            }
            TAG_LEASE => summary.leases += 1,
            TAG_MEMBER
            | TAG_ALARM
            | TAG_COMPACTION_CURSOR
            | TAG_AUTH_META
            | TAG_AUTH_USER
            | TAG_AUTH_ROLE => {}
            TAG_END => return Ok(summary),
            other => return Err(unknown_tag(other)),
        }
    }
}

fn unknown_tag(tag: u8) -> KvError {
    KvError::Corrupt {
        what: "snapshot",
        kind: Corruption::UnknownTag { tag },
    }
}

/// The meta frame, checked: the compacted revision is never past the
/// current one, and only "never compacted" is negative.
fn read_meta(body: &[u8]) -> Result<StorePosition, KvError> {
    let word = |i: usize| u64_at(body, i * 8);
    let position = StorePosition {
        applied_index: word(0)?,
        applied_term: word(1)?,
        revision: word(2)? as i64,
        compacted_revision: word(3)? as i64,
    };
    if position.compacted_revision < NEVER_COMPACTED
        || position.revision < position.compacted_revision
    {
        return Err(KvError::Corrupt {
            what: "snapshot",
            kind: Corruption::ImpossibleRevisions {
                revision: position.revision,
                compacted_revision: position.compacted_revision,
            },
        });
    }
    Ok(position)
}

fn read_frame(r: &mut impl Read, body: &mut Vec<u8>) -> Result<u8, KvError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(KvError::Corrupt {
            what: "snapshot",
            kind: Corruption::TooLong {
                bytes: len,
                max_bytes: FRAME_BYTES_MAX,
            },
        });
    }
    body.resize(len, 0);
    r.read_exact(body)?;
    Ok(head[0])
}

/// Splits a `name_len, name, row` frame body.
fn named_row(body: &[u8]) -> Result<(&str, &[u8]), KvError> {
    let short = || KvError::Corrupt {
        what: "snapshot",
        kind: Corruption::Short {
            frame: "auth frame",
        },
    };
    let len = body
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("slice of 4")) as usize)
        .ok_or_else(short)?;
    let name = body.get(4..4 + len).ok_or_else(short)?;
    let name = std::str::from_utf8(name).map_err(|e| KvError::Corrupt {
        what: "snapshot auth name",
        kind: Corruption::NotUtf8(e),
    })?;
    Ok((name, &body[4 + len..]))
}

fn u64_at(body: &[u8], at: usize) -> Result<u64, KvError> {
    body.get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("slice of 8")))
        .ok_or_else(|| KvError::Corrupt {
            what: "snapshot",
            kind: Corruption::Short { frame: "frame" },
        })
}
