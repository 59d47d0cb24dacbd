//! The backend quota (etcd's `--quota-backend-bytes`): a write that would
//! take the store's file past it is refused with etcd's "database space
//! exceeded", and the member that saw it raises a NOSPACE alarm through
//! the log, after which every member refuses writes that grow the store
//! until the alarm is disarmed (`mvcc/alarm.rs`).
//!
//! The check reads this member's own file size, so it happens here, before
//! proposing, never at apply: apply must not depend on a member's disk.

use crate::consensus::Consensus;
use crate::error::KvError;
use crate::mvcc::cost_bytes;
use crate::proto::command::command::Op;

use super::Shared;

/// etcd's default quota, also what `--quota-backend-bytes 0` means: 2 GiB.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 << 30;
/// The largest quota etcd recommends (it warns above it): 8 GiB.
pub const QUOTA_BACKEND_BYTES_MAX: u64 = 8 << 30;

/// The quota a member enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// No limit (etcd's negative `--quota-backend-bytes`).
    Unlimited,
    Bytes(u64),
}

impl Quota {
    /// etcd's meaning of `--quota-backend-bytes`: negative disables the
    /// quota, 0 is the default (2 GiB), anything else is the limit (etcd
    /// warns above 8 GiB, and so does this).
    pub fn from_flag(bytes: i64) -> Quota {
        match bytes {
            ..0 => Quota::Unlimited,
            0 => Quota::Bytes(QUOTA_BACKEND_BYTES_DEFAULT),
            n => {
                if n as u64 > QUOTA_BACKEND_BYTES_MAX {
                    tracing::warn!(
                        quota_bytes = n,
                        max_bytes = QUOTA_BACKEND_BYTES_MAX,
                        "--quota-backend-bytes exceeds the maximum recommended quota"
                    );
                }
                Quota::Bytes(n as u64)
            }
        }
    }

    /// Whether a store of `size_bytes` has room for `cost_bytes` more
    /// (etcd: `size + cost < quota`; a write that costs nothing always fits).
    pub fn admits(self, size_bytes: u64, cost_bytes: u64) -> bool {
        match self {
            Quota::Unlimited => true,
            Quota::Bytes(_) if cost_bytes == 0 => true,
            Quota::Bytes(limit) => size_bytes.saturating_add(cost_bytes) < limit,
        }
    }
}

impl<C: Consensus> Shared<C> {
    /// Refuses `op` if it would take this member's store past the quota,
    /// after proposing a NOSPACE alarm in this member's name (once: not
    /// while that alarm is already active), as etcd's quota checker does.
    pub(super) async fn check_quota(&self, op: &Op) -> Result<(), KvError> {
        let cost = cost_bytes(op);
        let size = self.sm.known_db_size_bytes().max(0) as u64;
        if self.config.quota.admits(size, cost) {
            return Ok(());
        }
        if !self.nospace_raised() {
            tracing::warn!(
                size_bytes = size,
                cost_bytes = cost,
                quota = ?self.config.quota,
                "backend quota exhausted: raising the NOSPACE alarm"
            );
            if let Err(e) = self.raise_nospace().await {
                tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
            }
        }
        Err(KvError::NoSpace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values_mean_what_they_mean_to_etcd() {
        assert_eq!(Quota::from_flag(-1), Quota::Unlimited);
        assert_eq!(Quota::from_flag(0), Quota::Bytes(2 * 1024 * 1024 * 1024));
        assert_eq!(Quota::from_flag(4096), Quota::Bytes(4096));
    }

    #[test]
    fn a_write_fits_only_strictly_below_the_quota() {
        let quota = Quota::Bytes(1000);
        assert!(quota.admits(700, 299));
        assert!(!quota.admits(700, 300));
        assert!(quota.admits(5000, 0), "deletes always fit");
        assert!(Quota::Unlimited.admits(u64::MAX, u64::MAX));
    }
}
