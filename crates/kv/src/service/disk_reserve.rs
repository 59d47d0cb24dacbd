//! The disk reserve (Keel only; etcd has no such setting): each member
//! watches the free space of the filesystem holding its data directory,
//! and when it falls below `--disk-reserve-bytes` the member raises the
//! NOSPACE alarm in its own name, exactly as the backend quota does
//! (`nospace.rs`). The whole cluster then refuses writes that grow the
//! store while this member still has room for what keeps going under the
//! alarm (reads' barriers, deletes, compactions, the alarm itself), well
//! before a write fails for lack of space: a failed write stops a member
//! (`server/disk_failure.rs`), which is right for a broken disk but a poor
//! answer to a full one.
//!
//! The check runs on its own clock, on a blocking thread (a `statvfs` on a
//! hung filesystem must stall nothing else), never on the apply path:
//! free space differs between members, so it only ever proposes the alarm.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::Shared;
use crate::consensus::Consensus;

/// The free space a member keeps by default: 256 MiB, room for several
/// Raft log segments (64 MiB each, preallocated) and the store's writes
/// between two of its flushes at a moderate write rate.
pub const DISK_RESERVE_BYTES_DEFAULT: u64 = 256 << 20;

/// How often a member looks at its free space.
pub const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the free-space watch keeps free, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskReserve {
    /// The data directory: its filesystem is the one watched.
    pub dir: PathBuf,
    /// Below this many free bytes, the member raises its NOSPACE alarm.
    pub reserve_bytes: u64,
}

/// The bytes an unprivileged writer may still use on the filesystem
/// holding `dir` (`statvfs`'s available blocks: ext4 keeps a share of
/// the free blocks for root, and a member should not count on it).
pub fn free_bytes(dir: &Path) -> nix::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir)?;
    Ok((stats.blocks_available() as u64).saturating_mul(stats.fragment_size() as u64))
}

/// The free-space watch of one member: every [`DISK_CHECK_EVERY`], if the
/// free space is below the reserve and this member's NOSPACE alarm is not
/// active, it raises it. After an operator disarms the alarm, the next
/// check raises it again while space is still short.
pub async fn run_disk_watch<C: Consensus>(shared: Arc<Shared<C>>, reserve: DiskReserve) {
    let mut tick = tokio::time::interval(DISK_CHECK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut readable = true;
    loop {
        tick.tick().await;
        let dir = reserve.dir.clone();
        let Ok(measured) = tokio::task::spawn_blocking(move || free_bytes(&dir)).await else {
            return; // the runtime is shutting down
        };
        let free = match measured {
            Ok(free) => free,
            Err(errno) => {
                if readable {
                    tracing::warn!(
                        dir = %reserve.dir.display(),
                        error = %errno,
                        "cannot read the free space of the data directory's filesystem"
                    );
                }
                readable = false;
                continue;
            }
        };
        readable = true;
        if free >= reserve.reserve_bytes || shared.nospace_raised() {
            continue;
        }
        tracing::warn!(
            dir = %reserve.dir.display(),
            free_bytes = free,
            reserve_bytes = reserve.reserve_bytes,
            "free disk space is below --disk-reserve-bytes: raising the NOSPACE alarm; \
             free space on this filesystem, then run `etcdctl alarm disarm`"
        );
        if let Err(e) = shared.raise_nospace().await {
            tracing::warn!(error = %e, "raising the NOSPACE alarm failed; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_has_a_measurable_free_space() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_zero_bytes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(&dir.path().join("gone")).is_err());
    }
}
