//! Alarms (etcd's `Maintenance/Alarm`) and the cap a NOSPACE alarm puts on
//! the store.
//!
//! An alarm is replicated state: it is raised and cleared by commands in
//! the log, kept in the `alarms` table and in snapshots, so every member
//! refuses the same writes while one is active. The quota check that
//! raises NOSPACE looks at one member's file and is not deterministic;
//! it therefore only ever *proposes* the alarm (`service::quota`), and
//! the refusals follow from the alarm applied at one log position.

use super::write::Writer;
use crate::error::KvError;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, PutRequest, RequestOp, TxnRequest,
};
use crate::rejection::Rejection;

/// One active alarm: which member raised it, and its etcd `AlarmType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlarmKey {
    pub member_id: u64,
    pub alarm: i32,
}

impl AlarmKey {
    pub fn member(self) -> AlarmMember {
        AlarmMember {
            member_id: self.member_id,
            alarm: self.alarm,
        }
    }
}

/// etcd's fixed cost of a key beyond its bytes (`kvOverhead`).
const KV_OVERHEAD_BYTES: u64 = 256;
/// etcd's cost of a lease grant (`leaseOverhead`).
const LEASE_OVERHEAD_BYTES: u64 = 64;

/// How many bytes `op` may add to the store, as etcd's quota counts them:
/// a put its key, value and a fixed overhead, a txn the costlier of its
/// branches, a lease grant a fixed overhead; 0 for everything that does
/// not grow the store (deletes, compaction, revokes, alarms). Unlike etcd
/// 3.4, which counts only a txn's top-level puts, puts in nested txns
/// count too: they grow the store just the same.
pub fn cost_bytes(op: &Op) -> u64 {
    match op {
        Op::Put(req) => put_cost(req),
        Op::Txn(req) => txn_cost(req),
        Op::LeaseGrant(_) => LEASE_OVERHEAD_BYTES,
        _ => 0,
    }
}

fn put_cost(req: &PutRequest) -> u64 {
    KV_OVERHEAD_BYTES + req.key.len() as u64 + req.value.len() as u64
}

fn txn_cost(req: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Request::RequestPut(put)) => put_cost(put),
                Some(Request::RequestTxn(txn)) => txn_cost(txn),
                _ => 0,
            })
            .sum()
    };
    branch(&req.success).max(branch(&req.failure))
}

/// What an alarm request asks, once its action and type are known.
pub(crate) enum AlarmChange {
    /// List the alarms of a type (`NONE`: all of them).
    Get(i32),
    Activate(AlarmKey),
    Deactivate(AlarmKey),
}

/// Reads an alarm request as etcd's apply does, except that only NOSPACE
/// can be raised: Keel has no corruption checker, and an alarm that
/// refuses nothing would mislead. Listing or clearing an alarm type etcd
/// does not know finds nothing, as in etcd.
pub(crate) fn change_of(req: &AlarmRequest) -> Result<AlarmChange, Rejection> {
    let key = AlarmKey {
        member_id: req.member_id,
        alarm: req.alarm,
    };
    match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Get) => Ok(AlarmChange::Get(req.alarm)),
        Ok(AlarmAction::Activate) if req.alarm == AlarmType::Nospace as i32 => {
            Ok(AlarmChange::Activate(key))
        }
        Ok(AlarmAction::Deactivate) => Ok(AlarmChange::Deactivate(key)),
        _ => Err(Rejection::UnsupportedAlarm),
    }
}

/// The alarms of type `alarm` (`NONE`: every alarm), in member order.
pub(crate) fn list<'a>(
    alarms: impl IntoIterator<Item = &'a AlarmKey>,
    alarm: i32,
) -> Vec<AlarmMember> {
    alarms
        .into_iter()
        .filter(|a| alarm == AlarmType::None as i32 || a.alarm == alarm)
        .map(|a| a.member())
        .collect()
}

impl Writer<'_, '_> {
    /// Whether a NOSPACE alarm caps the store: then every command that
    /// would grow it is refused, on every member alike (etcd's
    /// `applierV3Capped`).
    pub fn check_capacity(&self, op: &Op) -> Result<(), Rejection> {
        let capped = self
            .state
            .alarms
            .iter()
            .any(|a| a.alarm == AlarmType::Nospace as i32);
        if capped && cost_bytes(op) > 0 {
            Err(Rejection::NoSpace)
        } else {
            Ok(())
        }
    }

    /// Applies an alarm request as etcd does: activating answers with the
    /// alarm (even one already active), deactivating with the alarm it
    /// cleared (nothing if none was active), listing with the alarms.
    pub fn alarm(&mut self, change: AlarmChange) -> Result<AlarmResponse, KvError> {
        let alarms = match change {
            AlarmChange::Get(alarm) => list(&self.state.alarms, alarm),
            AlarmChange::Activate(key) => {
                if self.state.alarms.insert(key) {
                    tracing::warn!(member = %format_args!("{:x}", key.member_id), "alarm raised: NOSPACE");
                }
                self.tables
                    .alarms()?
                    .insert((key.member_id, key.alarm), ())
                    .map_err(KvError::storage)?;
                vec![key.member()]
            }
            AlarmChange::Deactivate(key) => {
                if self.state.alarms.remove(&key) {
                    tracing::warn!(member = %format_args!("{:x}", key.member_id), alarm = key.alarm, "alarm disarmed");
                    self.tables
                        .alarms()?
                        .remove((key.member_id, key.alarm))
                        .map_err(KvError::storage)?;
                    vec![key.member()]
                } else {
                    Vec::new()
                }
            }
        };
        Ok(AlarmResponse {
            header: self.header(),
            alarms,
        })
    }
}
