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
    by_lease: HashMap<i64, Instant>,
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
        d.by_lease.retain(|id, _| leases.contains_key(id));
        for (id, lease) in leases {
            d.by_lease
                .entry(*id)
                .or_insert_with(|| now + ttl(lease.ttl_seconds));
        }
        let mut expired = Vec::new();
        for (id, deadline) in d.by_lease.iter_mut() {
            if *deadline <= now {
                expired.push(*id);
                *deadline = now + REVOKE_RETRY;
            }
        }
        expired.sort_unstable();
        expired
    }

    /// Renews a lease for its full TTL. Only meaningful on the leader.
    pub fn renew(&self, id: i64, ttl_seconds: i64, now: Instant) {
        let mut d = self.deadlines.lock().expect("lessor lock poisoned");
        d.by_lease.insert(id, now + ttl(ttl_seconds));
    }

    /// Seconds left on a lease, rounded up, if this leader tracks it.
    pub fn remaining_seconds(&self, id: i64, now: Instant) -> Option<i64> {
        let d = self.deadlines.lock().expect("lessor lock poisoned");
        let left = d.by_lease.get(&id)?.saturating_duration_since(now);
        Some(left.as_millis().div_ceil(1000) as i64)
    }
}

fn ttl(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(ids: &[(i64, i64)]) -> BTreeMap<i64, LeaseState> {
        ids.iter()
            .map(|&(id, ttl)| {
                (
                    id,
                    LeaseState {
                        ttl_seconds: ttl,
                        keys: Default::default(),
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
        lessor.renew(2, 5, t0 + Duration::from_secs(4));
        assert_eq!(
            lessor.tick(Some(3), &all, t0 + Duration::from_secs(5)),
            vec![1]
        );
        assert_eq!(
            lessor.remaining_seconds(2, t0 + Duration::from_secs(5)),
            Some(4)
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
