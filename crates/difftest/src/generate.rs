//! A seeded generator of etcd v3 requests, valid and invalid.
//!
//! Keys come from a tiny alphabet so that operations collide: puts
//! overwrite, deletes hit, txn branches name the same key twice, ranges
//! overlap. Everything drawn from the seed is drawn here, so a seed names
//! one request sequence — given the [`View`] the reference system reported
//! along the way, which is itself a function of the sequence.

use bytes::Bytes;
use keel_kv::proto::etcdserverpb::AlarmType;
use keel_kv::proto::etcdserverpb::alarm_request::AlarmAction;
use keel_kv::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_kv::proto::etcdserverpb::request_op::Request;
use keel_kv::proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use crate::op::Op;

/// The revisions the reference system has shown so far: the generator
/// aims revisions at the past, present, compacted and future with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The newest revision seen in a response header.
    pub revision: i64,
    /// The revision of the last successful compaction.
    pub compacted: i64,
}

/// The lease IDs requests use. Explicit and few, so that both systems
/// agree on them and grants, revokes and attached puts meet.
const LEASE_IDS: [i64; 6] = [1, 2, 3, 7, 1 << 40, -1];
/// TTLs long enough that no lease expires during a run (expiry is timed
/// by each system's clock, so it cannot be compared request by request).
const LONG_TTLS: [i64; 4] = [60, 3600, 1_000_000, 9_000_000_000];
/// TTLs etcd raises to its minimum (or refuses): such a lease is revoked
/// by the very next request, long before it could expire.
const SHORT_TTLS: [i64; 5] = [-5, 0, 1, 2, 9_000_000_001];
/// etcd's `--max-txn-ops` default.
const TXN_OPS_MAX: usize = 128;
/// etcd's `--max-request-bytes` default.
const REQUEST_BYTES_MAX: usize = 3 * 512 * 1024;
/// How often a txn that would make etcd panic is drawn again.
const TXN_REDRAWS_MAX: usize = 16;
/// How deep txns nest.
const TXN_DEPTH_MAX: u32 = 2;

/// Generates one request at a time from a seed.
pub struct Generator {
    rng: StdRng,
    /// A lease granted with a short TTL, to revoke next.
    revoke_next: Option<i64>,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            revoke_next: None,
        }
    }

    /// The next request, aimed at the revisions in `view`.
    pub fn next(&mut self, view: &View) -> Op {
        if let Some(id) = self.revoke_next.take() {
            return Op::LeaseRevoke(LeaseRevokeRequest { id });
        }
        let roll = self.rng.random_range(0..1000);
        match roll {
            0..250 => Op::Put(self.put()),
            250..450 => Op::Range(self.range(view, true)),
            450..620 => Op::Txn(self.txn_etcd_survives(view)),
            620..700 => Op::DeleteRange(self.delete_range()),
            700..720 => Op::Compact(CompactionRequest {
                revision: self.revision(view),
                physical: self.rng.random_bool(0.5),
            }),
            720..790 => Op::LeaseGrant(self.lease_grant()),
            790..830 => Op::LeaseRevoke(LeaseRevokeRequest {
                id: self.lease_id(),
            }),
            830..880 => Op::LeaseTimeToLive(LeaseTimeToLiveRequest {
                id: self.lease_id(),
                keys: self.rng.random_bool(0.5),
            }),
            880..910 => Op::LeaseLeases,
            910..930 => Op::Status,
            930..960 => Op::HashKv(HashKvRequest {
                revision: self.revision(view),
            }),
            960..985 => Op::Alarm(self.alarm()),
            _ => Op::Defragment,
        }
    }

    /// One of ten keys (three letters, four pairs, three unusual ones),
    /// sometimes the empty key, rarely one past the request size limit. At most 12 keys exist, so that etcd's
    /// sort keeps ties in key order (see docs/etcd-compatibility.md).
    fn key(&mut self) -> Bytes {
        let roll = self.rng.random_range(0..1000);
        match roll {
            0 => Bytes::from(vec![b'k'; REQUEST_BYTES_MAX + 100 * 1024]),
            1..20 => Bytes::new(),
            20..40 => Bytes::from_static(b"\0"),
            40..60 => Bytes::from_static(b"\xff"),
            60..80 => Bytes::from_static(b"a\0"),
            80..600 => vec![*b"abc".choose(&mut self.rng).unwrap_or(&b'a')].into(),
            _ => (0..2)
                .map(|_| *b"ab".choose(&mut self.rng).unwrap_or(&b'a'))
                .collect::<Vec<u8>>()
                .into(),
        }
    }

    /// A range end for `key`: none, from-key, the prefix end, another key
    /// (possibly before `key`), or `key` itself (an empty range).
    fn range_end(&mut self, key: &Bytes) -> Bytes {
        match self.rng.random_range(0..10) {
            0..4 => Bytes::new(),
            4 => Bytes::from_static(b"\0"),
            5 | 6 => prefix_end(key),
            7 | 8 => self.key(),
            _ => key.clone(),
        }
    }

    fn value(&mut self) -> Bytes {
        match self.rng.random_range(0..1000) {
            0..100 => Bytes::new(),
            100..990 => {
                let len = self.rng.random_range(1..8);
                (0..len)
                    .map(|_| self.rng.random_range(b'0'..=b'z'))
                    .collect::<Vec<u8>>()
                    .into()
            }
            990..996 => Bytes::from(vec![b'm'; 64 * 1024]),
            // Clearly past etcd's request limit, below gRPC's receive limit.
            _ => Bytes::from(vec![b'o'; REQUEST_BYTES_MAX + 100 * 1024]),
        }
    }

    /// A revision in the past, present, compacted past or future.
    fn revision(&mut self, view: &View) -> i64 {
        let current = view.revision.max(1);
        match self.rng.random_range(0..20) {
            0..6 => 0,
            6..11 => self.rng.random_range(view.compacted.max(1)..=current),
            11..13 => current,
            13..15 if view.compacted > 1 => self.rng.random_range(1..view.compacted),
            13..15 => view.compacted,
            15..18 => current + self.rng.random_range(1..4),
            18 => -self.rng.random_range(1..3),
            _ => i64::MAX,
        }
    }

    fn lease_id(&mut self) -> i64 {
        if self.rng.random_bool(0.05) {
            0
        } else {
            *LEASE_IDS.choose(&mut self.rng).unwrap_or(&1)
        }
    }

    fn lease_grant(&mut self) -> LeaseGrantRequest {
        let id = *LEASE_IDS.choose(&mut self.rng).unwrap_or(&1);
        let ttl = if self.rng.random_bool(0.8) {
            *LONG_TTLS.choose(&mut self.rng).unwrap_or(&3600)
        } else {
            self.revoke_next = Some(id);
            *SHORT_TTLS.choose(&mut self.rng).unwrap_or(&0)
        };
        LeaseGrantRequest { ttl, id }
    }

    fn alarm(&mut self) -> AlarmRequest {
        // Activating an alarm would freeze writes on one side only for as
        // long as it lasts, and the member IDs it names differ: get and
        // deactivate only.
        if self.rng.random_bool(0.7) {
            AlarmRequest {
                action: AlarmAction::Get.into(),
                ..Default::default()
            }
        } else {
            AlarmRequest {
                action: AlarmAction::Deactivate.into(),
                member_id: 0,
                alarm: *[AlarmType::None, AlarmType::Nospace, AlarmType::Corrupt]
                    .choose(&mut self.rng)
                    .unwrap_or(&AlarmType::None) as i32,
            }
        }
    }

    fn put(&mut self) -> PutRequest {
        let lease = if self.rng.random_bool(0.2) {
            self.lease_id()
        } else {
            0
        };
        PutRequest {
            key: self.key(),
            value: self.value(),
            lease,
            prev_kv: self.rng.random_bool(0.3),
            ignore_value: self.rng.random_bool(0.08),
            ignore_lease: self.rng.random_bool(0.08),
        }
    }

    /// A range; only a `top_level` one may carry out-of-range sort values
    /// (etcd 3.4 crashes on them, so they are never sent to it, and the
    /// reply Keel owes is simple to state only for a lone range).
    fn range(&mut self, view: &View, top_level: bool) -> RangeRequest {
        let (sort_order, sort_target) = if top_level {
            (self.enum_value(3), self.enum_value(5))
        } else {
            (self.rng.random_range(0..3), self.rng.random_range(0..5))
        };
        let key = self.key();
        let range_end = self.range_end(&key);
        let filter = |g: &mut Generator| {
            if g.rng.random_bool(0.15) {
                g.revision(view)
            } else {
                0
            }
        };
        RangeRequest {
            range_end,
            key,
            limit: match self.rng.random_range(0..10) {
                0..6 => 0,
                6 => -1,
                _ => self.rng.random_range(1..4),
            },
            revision: self.revision(view),
            sort_order,
            sort_target,
            serializable: self.rng.random_bool(0.2),
            keys_only: self.rng.random_bool(0.15),
            count_only: self.rng.random_bool(0.1),
            min_mod_revision: filter(self),
            max_mod_revision: filter(self),
            min_create_revision: filter(self),
            max_create_revision: filter(self),
        }
    }

    /// An enum field with `variants` values: mostly valid, sometimes just
    /// past the end, negative or far out.
    fn enum_value(&mut self, variants: i32) -> i32 {
        match self.rng.random_range(0..20) {
            0..8 => 0,
            8..17 => self.rng.random_range(0..variants),
            17 => variants,
            18 => -1,
            _ => 9,
        }
    }

    fn delete_range(&mut self) -> DeleteRangeRequest {
        let key = self.key();
        DeleteRangeRequest {
            range_end: self.range_end(&key),
            key,
            prev_kv: self.rng.random_bool(0.4),
        }
    }

    /// A txn that etcd 3.4 can apply without panicking (see
    /// [`panics_etcd`]); such a txn is drawn again, a bounded number of times.
    fn txn_etcd_survives(&mut self, view: &View) -> TxnRequest {
        let mut txn = self.txn(view, 0);
        for _ in 0..TXN_REDRAWS_MAX {
            if !panics_etcd(&txn) {
                break;
            }
            txn = self.txn(view, 0);
        }
        if panics_etcd(&txn) {
            txn = TxnRequest::default();
        }
        txn
    }

    fn txn(&mut self, view: &View, depth: u32) -> TxnRequest {
        if depth == 0 && self.rng.random_bool(0.005) {
            let put = RequestOp {
                request: Some(Request::RequestPut(self.put())),
            };
            return TxnRequest {
                success: vec![put; TXN_OPS_MAX + 1],
                ..Default::default()
            };
        }
        let compares = self.rng.random_range(0..4);
        let compare = (0..compares).map(|_| self.compare(view)).collect();
        TxnRequest {
            compare,
            success: self.branch(view, depth),
            failure: self.branch(view, depth),
        }
    }

    fn branch(&mut self, view: &View, depth: u32) -> Vec<RequestOp> {
        let ops = self.rng.random_range(0..4);
        (0..ops)
            .map(|_| {
                let request = match self.rng.random_range(0..100) {
                    // An operation with nothing in it.
                    0 => None,
                    1..30 => Some(Request::RequestRange(self.range(view, false))),
                    30..70 => Some(Request::RequestPut(self.put())),
                    70..90 => Some(Request::RequestDeleteRange(self.delete_range())),
                    _ if depth < TXN_DEPTH_MAX => {
                        Some(Request::RequestTxn(self.txn(view, depth + 1)))
                    }
                    _ => Some(Request::RequestRange(self.range(view, false))),
                };
                RequestOp { request }
            })
            .collect()
    }

    fn compare(&mut self, view: &View) -> Compare {
        let target = self.enum_value(5);
        // Usually the union member that matches the target; sometimes
        // another one, or none.
        let union_kind = if self.rng.random_bool(0.85) {
            target
        } else {
            self.rng.random_range(-1..5)
        };
        let target_union = match CompareTarget::try_from(union_kind) {
            Ok(CompareTarget::Version) => Some(TargetUnion::Version(self.rng.random_range(0..4))),
            Ok(CompareTarget::Create) => Some(TargetUnion::CreateRevision(self.revision(view))),
            Ok(CompareTarget::Mod) => Some(TargetUnion::ModRevision(self.revision(view))),
            Ok(CompareTarget::Value) => Some(TargetUnion::Value(self.value())),
            Ok(CompareTarget::Lease) => Some(TargetUnion::Lease(self.lease_id())),
            Err(_) => None,
        };
        let key = self.key();
        let range_end = if self.rng.random_bool(0.2) {
            self.range_end(&key)
        } else {
            Bytes::new()
        };
        Compare {
            result: match self.rng.random_range(0..20) {
                0..18 => self.rng.random_range(0..4),
                18 => CompareResult::NotEqual as i32 + 1,
                _ => 7,
            },
            target,
            key,
            range_end,
            target_union,
        }
    }
}

/// Whether `txn` may make etcd 3.4 panic in apply: a put that keeps the
/// key's value or lease, after a from-key delete (end `\0`, which etcd's
/// duplicate check does not see as an interval) that may have removed the
/// key within the same txn. Conservative: any such pair anywhere counts.
pub fn panics_etcd(txn: &TxnRequest) -> bool {
    let mut from_key_deletes = Vec::new();
    let mut keeping_puts = Vec::new();
    collect(txn, &mut from_key_deletes, &mut keeping_puts);
    keeping_puts
        .iter()
        .any(|put| from_key_deletes.iter().any(|start| put >= start))
}

fn collect(txn: &TxnRequest, deletes: &mut Vec<Bytes>, puts: &mut Vec<Bytes>) {
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(Request::RequestDeleteRange(d)) if d.range_end.as_ref() == b"\0" => {
                deletes.push(d.key.clone());
            }
            Some(Request::RequestPut(p)) if p.ignore_value || p.ignore_lease => {
                puts.push(p.key.clone());
            }
            Some(Request::RequestTxn(nested)) => collect(nested, deletes, puts),
            _ => {}
        }
    }
}

/// The smallest key after every key that starts with `key`; `\0` (all
/// keys) when there is none.
pub fn prefix_end(key: &[u8]) -> Bytes {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    Bytes::from_static(b"\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_sequence() {
        let view = View {
            revision: 10,
            compacted: 3,
        };
        let a: Vec<Op> = {
            let mut g = Generator::new(7);
            (0..200).map(|_| g.next(&view)).collect()
        };
        let mut g = Generator::new(7);
        let b: Vec<Op> = (0..200).map(|_| g.next(&view)).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn a_short_lived_lease_is_revoked_by_the_next_request() {
        let mut g = Generator::new(1);
        let view = View::default();
        let mut seen = 0;
        let mut previous = Op::Status;
        for _ in 0..5000 {
            let op = g.next(&view);
            if let Op::LeaseGrant(grant) = &previous {
                if !LONG_TTLS.contains(&grant.ttl) {
                    assert_eq!(op, Op::LeaseRevoke(LeaseRevokeRequest { id: grant.id }));
                    seen += 1;
                }
            }
            previous = op;
        }
        assert!(seen > 0);
    }

    #[test]
    fn no_txn_that_panics_etcd_is_generated() {
        let mut g = Generator::new(3);
        let view = View::default();
        for _ in 0..5000 {
            if let Op::Txn(txn) = g.next(&view) {
                assert!(!panics_etcd(&txn));
            }
        }
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(b"a"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff"), Bytes::from_static(b"\0"));
    }
}
