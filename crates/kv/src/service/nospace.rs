//! Raising this member's NOSPACE alarm: what both the backend quota
//! (`quota.rs`) and the disk reserve (`disk_reserve.rs`) do when this
//! member runs short of room. The alarm goes through the log like any
//! `Maintenance/Alarm` ACTIVATE, so every member refuses writes that grow
//! the store from the same log position on (`mvcc/alarm.rs`).

use super::Shared;
use crate::consensus::Consensus;
use crate::error::KvError;
use crate::mvcc::AlarmKey;
use crate::proto::command::command::Op;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};

impl<C: Consensus> Shared<C> {
    /// This member's NOSPACE alarm, as the `alarms` table keys it.
    fn own_nospace_alarm(&self) -> AlarmKey {
        AlarmKey {
            member_id: self.consensus.info().member_id,
            alarm: AlarmType::Nospace as i32,
        }
    }

    /// Whether this member's NOSPACE alarm is active (applied here).
    pub(super) fn nospace_raised(&self) -> bool {
        self.sm.store().alarms().contains(&self.own_nospace_alarm())
    }

    /// Proposes a NOSPACE alarm in this member's name and waits until it
    /// applies. The proposal skips the quota check: it must pass when the
    /// quota is what raised it.
    pub(super) async fn raise_nospace(&self) -> Result<(), KvError> {
        let alarm = Op::Alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.own_nospace_alarm().member_id,
            alarm: AlarmType::Nospace as i32,
        });
        self.propose_checked(&crate::command::member_caller(), alarm)
            .await
            .map(drop)
    }
}
