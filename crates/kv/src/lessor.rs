//! Lease expiry, decided by the leader alone.
//!
//! The state machine records which leases exist and their granted TTLs; the
//! *deadlines* live only here, on the leader, read from the leader's clock.
//! When a deadline passes, the leader proposes a `LeaseRevoke`, so every
//! replica deletes the lease's keys at the same log position and no
//! follower's clock ever matters. A newly elected leader starts every lease
//! afresh with its full TTL (etcd does the same), which can only make
//! leases live longer, never shorter.
//!
//! Time enters as arguments, so the rules here are tested without a clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mvcc::LeaseState;

/// How long to wait before proposing a revoke again if the first one did
/// not take effect (say, the proposal was lost in a leader change).
const REVOKE_RETRY: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Deadlines {
    /// The term in which we became the leader whose deadlines these are.
    leading_term: Option<u64>,
    by_lease: HashMap<i64, Deadline>,
}

/// When one grant of a lease expires. A lease revoked and granted again
/// under its ID is another grant, with a deadline of its own.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    granted_index: u64,
    at: Instant,
}

impl Deadline {
    fn of(lease: &LeaseState, now: Instant) -> Deadline {
        Deadline {
            granted_index: lease.granted_index,
            at: now + ttl(lease.ttl_seconds),
        }
    }
}

/// The leader's lease deadlines.
#[derive(Default)]
pub struct Lessor {
    deadlines: Mutex<Deadlines>,
}

impl Lessor {
    /// Brings the deadlines up to date with `leases` and returns the leases
    /// to revoke now. `leading_term` is `Some(term)` while this member leads.
    pub fn tick(
        &self,
        leading_term: Option<u64>,
        leases: &BTreeMap<i64, LeaseState>,
        now: Instant,
    ) -> Vec<i64> {
        let mut d = self.deadlines.lock().expect("lessor lock poisoned");
        let Some(term) = leading_term else {
            // Followers keep no deadlines: a later leadership starts afresh.
            d.leading_term = None;
            d.by_lease.clear();
            return Vec::new();
        };
        if d.leading_term != Some(term) {
            d.leading_term = Some(term);
            d.by_lease.clear();
        }
        d.by_lease.retain(|id, deadline| {
            leases
                .get(id)
                .is_some_and(|lease| lease.granted_index == deadline.granted_index)
        });
        for (id, lease) in leases {
            d.by_lease
                .entry(*id)
                .or_insert_with(|| Deadline::of(lease, now));
        }
        let mut expired = Vec::new();
        for (id, deadline) in d.by_lease.iter_mut() {
            if deadline.at <= now {
                expired.push(*id);
                deadline.at = now + REVOKE_RETRY;
            }
        }
        expired.sort_unstable();
        expired
    }

    /// Renews lease `id` for its full TTL. Only meaningful on the leader.
    pub fn renew(&self, id: i64, lease: &LeaseState, now: Instant) {
        let mut d = self.deadlines.lock().expect("lessor lock poisoned");
        d.by_lease.insert(id, Deadline::of(lease, now));
    }

    /// Seconds left on lease `id`, rounded up, if this leader tracks this
    /// grant of it.
    pub fn remaining_seconds(&self, id: i64, lease: &LeaseState, now: Instant) -> Option<i64> {
        let d = self.deadlines.lock().expect("lessor lock poisoned");
        let deadline = d.by_lease.get(&id)?;
        if deadline.granted_index != lease.granted_index {
            return None;
        }
        let left = deadline.at.saturating_duration_since(now);
        Some(left.as_millis().div_ceil(1000) as i64)
    }
}

fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leases `(id, ttl)`, each granted at index `id`.
    fn leases(ids: &[(i64, i64)]) -> BTreeMap<i64, LeaseState> {
        ids.iter()
            .map(|&(id, ttl)| {
                (
                    id,
                    LeaseState {
                        ttl_seconds: ttl,
                        keys: Default::default(),
                        granted_index: id as u64,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn leader_revokes_after_ttl_and_renewal_postpones() {
        let lessor = Lessor::default();
        let t0 = Instant::now();
        let all = leases(&[(1, 5), (2, 5)]);
        assert!(lessor.tick(Some(3), &all, t0).is_empty());
        lessor.renew(2, &all[&2], t0 + Duration::from_secs(4));
        assert_eq!(
            lessor.tick(Some(3), &all, t0 + Duration::from_secs(5)),
            vec![1]
        );
        assert_eq!(
            lessor.remaining_seconds(2, &all[&2], t0 + Duration::from_secs(5)),
            Some(4)
        );
    }

    #[test]
    fn a_lease_granted_again_under_its_id_gets_a_deadline_of_its_own() {
        let lessor = Lessor::default();
        let t0 = Instant::now();
        let first = leases(&[(7, 1_000_000)]);
        lessor.tick(Some(1), &first, t0);
        // Revoked and granted again (a later entry) between two ticks.
        let mut again = first.clone();
        if let Some(lease) = again.get_mut(&7) {
            lease.ttl_seconds = 60;
            lease.granted_index = 99;
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(lessor.remaining_seconds(7, &again[&7], later), None);
        lessor.tick(Some(1), &again, later);
        assert_eq!(lessor.remaining_seconds(7, &again[&7], later), Some(60));
        assert_eq!(
            lessor.tick(Some(1), &again, later + Duration::from_secs(60)),
            vec![7]
        );
    }

    #[test]
    fn follower_never_revokes_and_new_leader_restarts_ttls() {
        let lessor = Lessor::default();
        let t0 = Instant::now();
        let all = leases(&[(1, 5)]);
        assert!(
            lessor
                .tick(None, &all, t0 + Duration::from_secs(60))
                .is_empty()
        );
        lessor.tick(Some(2), &all, t0);
        // Leadership lost and regained in a later term: a full TTL again.
        lessor.tick(None, &all, t0 + Duration::from_secs(3));
        assert!(
            lessor
                .tick(Some(4), &all, t0 + Duration::from_secs(4))
                .is_empty()
        );
        assert!(
            lessor
                .tick(Some(4), &all, t0 + Duration::from_secs(8))
                .is_empty()
        );
        assert_eq!(
            lessor.tick(Some(4), &all, t0 + Duration::from_secs(9)),
            vec![1]
        );
    }
}
