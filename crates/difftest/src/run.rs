//! The runner: one generated request at a time to etcd (the reference)
//! and to Keel, every reply compared, then both final key spaces.

use std::time::{Duration, Instant};

use keel_kv::proto::etcdserverpb::RangeRequest;

use crate::generate::{Generator, View};
use crate::intentional::{instead_of_reference, intentional};
use crate::op::{Op, shorten};
use crate::reply::Reply;
use crate::target::Target;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    pub seed: u64,
    pub requests: usize,
    /// Stop early once this much time has passed.
    pub time_max: Duration,
    /// Print every request and both replies to stderr.
    pub trace: bool,
}

/// Two replies to one request that differ after normalization.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub seed: u64,
    /// The request's position in the sequence; `None` for the final checks.
    pub index: Option<usize>,
    pub op: Op,
    /// The Keel member that received the request.
    pub member: usize,
    pub etcd: Reply,
    pub keel: Reply,
    /// Why the difference is intended, when it is (documented in
    /// docs/etcd-compatibility.md).
    pub intended: Option<&'static str>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self
            .index
            .map_or_else(|| "the final check".to_owned(), |i| format!("request {i}"));
        writeln!(f, "seed {} {at} (Keel member {}):", self.seed, self.member)?;
        writeln!(f, "  request: {}", self.op.summary())?;
        writeln!(
            f,
            "  etcd:    {}",
            shorten(&format!("{:?}", self.etcd), 2000)
        )?;
        writeln!(
            f,
            "  keel:    {}",
            shorten(&format!("{:?}", self.keel), 2000)
        )?;
        if let Some(reason) = self.intended {
            writeln!(f, "  intended: {reason}")?;
        }
        Ok(())
    }
}

/// The outcome of one seed's run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Requests sent to each system.
    pub requests: usize,
    pub elapsed: Duration,
    /// Every divergence, intended ones included, in order.
    pub divergences: Vec<Divergence>,
    /// The request at which a system stopped answering, if one did.
    pub lost_at: Option<usize>,
}

impl Summary {
    /// Divergences not listed as intended.
    pub fn unexpected(&self) -> impl Iterator<Item = &Divergence> {
        self.divergences.iter().filter(|d| d.intended.is_none())
    }
}

/// Sends the seed's sequence to both systems and compares every reply.
///
/// Keel's requests rotate over its members, so that followers forward
/// writes; a request a member answers from its own state without a read
/// barrier goes to the member that took the last successful write, the one
/// member known to have applied it.
pub async fn run(etcd: &Target, keel: &Target, config: RunConfig) -> Summary {
    let started = Instant::now();
    let mut generator = Generator::new(config.seed);
    let mut view = View::default();
    let mut summary = Summary::default();
    let mut last_writer = 0;
    for index in 0..config.requests {
        if started.elapsed() > config.time_max {
            break;
        }
        let op = generator.next(&view);
        let member = if op.reads_locally() {
            last_writer
        } else {
            index % keel.member_count()
        };
        summary.requests += 1;
        if let Some((expected, reason)) = instead_of_reference(&op) {
            let ours = keel.call(member, &op).await.normalized();
            let intended = (ours == expected).then_some(reason);
            summary.divergences.push(Divergence {
                seed: config.seed,
                index: Some(index),
                op,
                member,
                etcd: expected,
                keel: ours,
                intended,
            });
            continue;
        }
        let theirs = etcd.call(0, &op).await;
        let ours = keel.call(member, &op).await;
        // A write refused (before the log, or in apply) changed nothing;
        // one that succeeded was applied by its member before it answered.
        if op.is_write() && !matches!(ours, Reply::Error { .. }) {
            last_writer = member;
        }
        observe(&mut view, &op, &theirs);
        if config.trace {
            eprintln!(
                "#{index} -> member {member}: {}\n  etcd: {}\n  keel: {}",
                op.summary(),
                shorten(&format!("{theirs:?}"), 2000),
                shorten(&format!("{ours:?}"), 2000)
            );
        }
        let lost = theirs.is_transport_failure() || ours.is_transport_failure();
        if let Some(d) = compare(config.seed, Some(index), op, member, theirs, ours) {
            summary.divergences.push(d);
        }
        if lost {
            // A process died or stopped answering: every later reply
            // would differ for that reason alone.
            summary.lost_at = Some(index);
            break;
        }
    }
    final_checks(etcd, keel, config.seed, last_writer, &mut summary).await;
    summary.elapsed = started.elapsed();
    summary
}

/// Learns the revisions the next requests aim at from etcd's reply.
fn observe(view: &mut View, op: &Op, reply: &Reply) {
    if let Some(revision) = reply.revision() {
        view.revision = view.revision.max(revision);
    }
    if let (Op::Compact(req), Reply::Compact(_)) = (op, reply) {
        view.compacted = view.compacted.max(req.revision);
    }
}

fn compare(
    seed: u64,
    index: Option<usize>,
    op: Op,
    member: usize,
    etcd: Reply,
    keel: Reply,
) -> Option<Divergence> {
    let etcd = etcd.normalized();
    let mut keel = keel.normalized();
    keel.forgive_ttl(&etcd);
    if etcd == keel {
        return None;
    }
    let intended = intentional(&op, &etcd, &keel);
    Some(Divergence {
        seed,
        index,
        op,
        member,
        etcd,
        keel,
        intended,
    })
}

/// Compares the whole key space, every field of every key, and the
/// lease list.
async fn final_checks(
    etcd: &Target,
    keel: &Target,
    seed: u64,
    member: usize,
    summary: &mut Summary,
) {
    let everything = Op::Range(RangeRequest {
        key: "\0".into(),
        range_end: "\0".into(),
        ..Default::default()
    });
    for op in [everything, Op::LeaseLeases] {
        let theirs = etcd.call(0, &op).await;
        let ours = keel.call(member, &op).await;
        if let Some(d) = compare(seed, None, op, member, theirs, ours) {
            summary.divergences.push(d);
        }
    }
}
