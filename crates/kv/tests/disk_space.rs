//! Disk space on a real three-member cluster (three `keel-kv` processes),
//! driven by the stock `etcdctl` 3.4 as an operator would drive it: a small
//! `--quota-backend-bytes` fills up, the NOSPACE alarm is raised on every
//! member, writes that grow the store are refused with etcd's error while
//! reads and deletes work, and `compact`, `defrag` and `alarm disarm` bring
//! writes back without losing anything acknowledged. And auto-compaction,
//! in revision mode and in periodic mode (the latter next to etcd 3.4's),
//! moves the compacted revision by itself on every member.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::Cluster;
use support::etcd::EtcdCluster;
use support::etcdctl::{etcdctl, etcdctl_available, etcdctl_until};
use tokio::time::Instant;

/// Bounds the wait for defragmentation to shrink every file.
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(20);
/// The quota the cluster runs with: 4 MiB, filled by a few dozen values.
const QUOTA_BYTES: u64 = 4 << 20;
const VALUE_BYTES: usize = 100_000;
/// Puts tried before the quota must have refused one.
const FILL_PUTS_MAX: usize = 200;
const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";

/// A field of `endpoint status -w json` for one endpoint.
async fn status_field(endpoint: &str, field: &str) -> i64 {
    let out = etcdctl(endpoint, &["endpoint", "status", "-w", "json"]).await;
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let status = &json[0]["Status"];
    let value = match field {
        "revision" => &status["header"]["revision"],
        other => &status[other],
    };
    value
        .as_i64()
        .unwrap_or_else(|| panic!("no {field} in {out}"))
}

fn value_of(i: usize) -> String {
    format!("{i:04}").repeat(VALUE_BYTES / 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_alarms_every_member_until_compact_defrag_and_disarm() {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return;
    }
    let quota = format!("--quota-backend-bytes={QUOTA_BYTES}");
    let cluster = Cluster::start(3, &[&quota]).await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.members[i].endpoint()).collect();

    // Fill the store through every member in turn until one refuses.
    let mut acknowledged = BTreeMap::new();
    let mut refusal = None;
    for i in 0..FILL_PUTS_MAX {
        let key = format!("k{i:03}");
        let out = etcdctl(&endpoints[i % 3], &["put", &key, &value_of(i)]).await;
        if out.trim() == "OK" {
            acknowledged.insert(key, value_of(i));
        } else {
            refusal = Some(out);
            break;
        }
    }
    let refusal = refusal.expect("the quota never refused a put");
    assert!(refusal.contains(NO_SPACE), "{refusal}");
    assert!(acknowledged.len() >= 5, "{} puts fit", acknowledged.len());

    // The alarm is replicated: every member lists it and refuses writes
    // that grow the store, with etcd's error, while reads and deletes work.
    for endpoint in &endpoints {
        etcdctl_until(endpoint, &["alarm", "list"], |out| {
            out.contains("alarm:NOSPACE")
        })
        .await;
        let put = etcdctl(endpoint, &["put", "small", "v"]).await;
        assert!(put.contains(NO_SPACE), "{endpoint}: {put}");
        let grant = etcdctl(endpoint, &["lease", "grant", "60"]).await;
        assert!(grant.contains(NO_SPACE), "{endpoint}: {grant}");
        let status = etcdctl(endpoint, &["endpoint", "status"]).await;
        assert!(status.contains("alarm:NOSPACE"), "{endpoint}: {status}");
        let (key, value) = acknowledged.iter().next_back().unwrap();
        let got = etcdctl(endpoint, &["get", key, "--print-value-only"]).await;
        assert_eq!(got.trim(), value, "{endpoint}: {key}");
    }
    let doomed: Vec<String> = acknowledged.keys().step_by(2).cloned().collect();
    for (n, key) in doomed.iter().enumerate() {
        let out = etcdctl(&endpoints[n % 3], &["del", key]).await;
        assert_eq!(out.trim(), "1", "del {key}");
        acknowledged.remove(key);
    }

    // Compaction and defragmentation shrink every member's file, but the
    // alarm still caps the store until it is disarmed.
    // A linearizable read first: member 0 has applied the deletes made
    // through the others, and its status names the latest revision.
    etcdctl(&endpoints[0], &["get", "barrier"]).await;
    let revision = status_field(&endpoints[0], "revision").await;
    let out = etcdctl(
        &endpoints[1],
        &["compact", &revision.to_string(), "--physical"],
    )
    .await;
    assert_eq!(out.trim(), format!("compacted revision {revision}"));
    let all = endpoints.join(",");
    let before = db_sizes(&endpoints).await;
    // `--physical` waited for the compacted rows to go on the member that
    // served it; another may still apply the last step, so defragment
    // until every file is well under the quota (bounded).
    let deadline = Instant::now() + DEFRAG_TIMEOUT;
    let after = loop {
        let out = etcdctl(&all, &["defrag"]).await;
        assert_eq!(
            out.matches("Finished defragmenting etcd member").count(),
            3,
            "{out}"
        );
        let after = db_sizes(&endpoints).await;
        if after.iter().all(|a| (*a as u64) < QUOTA_BYTES / 2) {
            break after;
        }
        assert!(Instant::now() < deadline, "{before:?} → {after:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (b, a) in before.iter().zip(&after) {
        assert!(a < b, "{before:?} → {after:?}");
    }
    for endpoint in &endpoints {
        let put = etcdctl(endpoint, &["put", "small", "v"]).await;
        assert!(put.contains(NO_SPACE), "still capped: {endpoint}: {put}");
    }
    let disarmed = etcdctl(&endpoints[2], &["alarm", "disarm"]).await;
    assert!(disarmed.contains("alarm:NOSPACE"), "{disarmed}");
    for endpoint in &endpoints {
        etcdctl_until(endpoint, &["alarm", "list"], |out| out.trim().is_empty()).await;
        let put = etcdctl(endpoint, &["put", "small", "v"]).await;
        assert_eq!(put.trim(), "OK", "{endpoint}");
    }

    // Nothing acknowledged was lost, on any member.
    for (n, (key, value)) in acknowledged.iter().enumerate() {
        let endpoint = &endpoints[n % 3];
        let got = etcdctl(endpoint, &["get", key, "--print-value-only"]).await;
        assert_eq!(got.trim(), value, "{endpoint}: {key}");
    }
    for key in &doomed {
        let got = etcdctl(&endpoints[0], &["get", key]).await;
        assert!(got.trim().is_empty(), "{key} was deleted: {got}");
    }
}

/// Every member's `dbSize`.
async fn db_sizes(endpoints: &[String]) -> Vec<i64> {
    let mut sizes = Vec::new();
    for endpoint in endpoints {
        sizes.push(status_field(endpoint, "dbSize").await);
    }
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_auto_compaction_keeps_the_last_revisions_on_every_member() {
    if !etcdctl_available() {
        eprintln!("skipping: etcdctl is not installed");
        return;
    }
    let cluster = Cluster::start(
        3,
        &[
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10",
            "--experimental-auto-compaction-revision-check-interval=200ms",
        ],
    )
    .await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.members[i].endpoint()).collect();
    for i in 0..40 {
        let out = etcdctl(&endpoints[i % 3], &["put", "key", &i.to_string()]).await;
        assert_eq!(out.trim(), "OK");
    }
    let current = status_field(&endpoints[0], "revision").await;
    let kept = (current - 10).to_string();
    let gone = (current - 11).to_string();
    for endpoint in &endpoints {
        etcdctl_until(endpoint, &["get", "key", "--rev", &gone], |out| {
            out.contains("required revision has been compacted")
        })
        .await;
        let out = etcdctl(
            endpoint,
            &["get", "key", "--rev", &kept, "--print-value-only"],
        )
        .await;
        assert_eq!(out.trim(), (current - 10 - 2).to_string(), "{endpoint}");
    }
    // The compacted rows are deleted alike on every member.
    let hashes: Vec<String> = {
        let mut hashes = Vec::new();
        for endpoint in &endpoints {
            let out = etcdctl(endpoint, &["endpoint", "hashkv", "-w", "json"]).await;
            let json: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                json[0]["HashKV"]["compact_revision"].as_i64(),
                Some(current - 10),
                "{out}"
            );
            hashes.push(json[0]["HashKV"]["hash"].to_string());
        }
        hashes
    };
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// The period periodic auto-compaction keeps in the test: short, so that
/// the test sees several compactions.
const PERIOD: Duration = Duration::from_secs(3);
const PERIODIC_FLAGS: [&str; 2] = [
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=3s",
];
/// A periodic compactor looks every tenth of its period.
const PERIODIC_CHECK: Duration = Duration::from_millis(300);
/// How long the test writes: the first compaction comes one period after
/// the start, then one every period.
const WRITE_FOR: Duration = Duration::from_secs(12);
const PUT_EVERY: Duration = Duration::from_millis(50);
/// Every this many puts, every member's compacted revision is sampled.
const SAMPLE_EVERY_PUTS: usize = 5;
/// How late a compaction may be on a busy machine, past its schedule.
const COMPACTION_LATENESS_MAX: Duration = Duration::from_millis(1500);
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// Bounds the wait for a watch's first answers.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One put: when it was sent, and the revision it made.
struct Put {
    sent: Instant,
    revision: i64,
}

/// A member's compacted revision, and when it was asked and answered.
struct Sample {
    member: usize,
    asked: Instant,
    answered: Instant,
    compacted: i64,
}

/// Writes through every member in turn for [`WRITE_FOR`] while sampling
/// every member's compacted revision (`HashKV`), on a cluster that runs
/// with [`PERIODIC_FLAGS`]; checks that the compacted revision advances by
/// itself on every member, never into the last period, and never much
/// more than two periods behind; then checks with etcdctl that the last
/// period is readable and older revisions are compacted, on every member.
async fn periodic_auto_compaction_keeps_the_last_period(endpoints: &[String]) {
    let mut clients = Vec::new();
    for endpoint in endpoints {
        clients.push(
            etcd_client::Client::connect([endpoint], None)
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let mut puts = Vec::new();
    let mut samples = Vec::new();
    for i in 0.. {
        if started.elapsed() >= WRITE_FOR {
            break;
        }
        let sent = Instant::now();
        let put = clients[i % 3]
            .put("key", i.to_string(), None)
            .await
            .unwrap();
        let revision = put.header().expect("a put has a header").revision();
        puts.push(Put { sent, revision });
        if i % SAMPLE_EVERY_PUTS == 0 {
            for (member, client) in clients.iter_mut().enumerate() {
                let asked = Instant::now();
                let hash = client.hash_kv(0).await.unwrap();
                samples.push(Sample {
                    member,
                    asked,
                    answered: Instant::now(),
                    compacted: hash.compact_version(),
                });
            }
        }
        tokio::time::sleep(PUT_EVERY).await;
    }

    // A put sent after `time` made a revision above every revision the
    // store had at `time`.
    let first_revision_sent_after = |time: Instant| {
        puts.iter()
            .find(|p| p.sent >= time)
            .map_or(i64::MAX, |p| p.revision)
    };
    let last_revision_sent_before = |time: Instant| {
        puts.iter()
            .take_while(|p| p.sent < time)
            .last()
            .map_or(0, |p| p.revision)
    };
    // The oldest a compaction may keep: the revision of two periods and
    // two checks ago (etcd compacts once a period, to the revision of a
    // period and a check before), and lateness.
    let behind_max = PERIOD * 2 + PERIODIC_CHECK * 2 + COMPACTION_LATENESS_MAX;
    for member in 0..endpoints.len() {
        let seen: Vec<&Sample> = samples.iter().filter(|s| s.member == member).collect();
        for s in &seen {
            assert!(
                s.compacted < first_revision_sent_after(s.answered - PERIOD),
                "member {member} compacted to {} within the last {PERIOD:?}",
                s.compacted
            );
            if s.asked >= started + behind_max {
                let due = last_revision_sent_before(s.asked - behind_max);
                assert!(
                    s.compacted >= due,
                    "member {member} compacted only to {} at {:?}; due: {due}",
                    s.compacted,
                    s.asked - started
                );
            }
        }
        assert!(
            seen.windows(2).all(|w| w[0].compacted <= w[1].compacted),
            "member {member}'s compacted revision never goes back"
        );
        let mut distinct: Vec<i64> = seen
            .iter()
            .map(|s| s.compacted)
            .filter(|c| *c > 0)
            .collect();
        distinct.dedup();
        // When each compaction was first seen, and how old its revision
        // was then (the last put sent at or before it).
        let ages: Vec<String> = distinct
            .iter()
            .filter_map(|c| {
                let first = seen.iter().find(|s| s.compacted == *c)?;
                let made = puts.iter().take_while(|p| p.revision <= *c).last()?;
                Some(format!(
                    "{c} at {:.1?} ({:.1?} old)",
                    first.answered - started,
                    first.answered - made.sent
                ))
            })
            .collect();
        eprintln!("member {member} compacted to {}", ages.join(", "));
        assert!(
            distinct.len() >= 2,
            "member {member} compacted by itself at least twice while written to: {distinct:?}"
        );
    }

    // The last period is readable on every member (a margin of a second
    // keeps the revision inside the period until the member answers)...
    for client in &mut clients {
        let recent = puts
            .iter()
            .position(|p| p.sent >= Instant::now() - PERIOD + Duration::from_secs(1))
            .expect("the writes ended less than a period ago");
        let revision = puts[recent].revision;
        let got = client
            .get(
                "key",
                Some(etcd_client::GetOptions::new().with_revision(revision)),
            )
            .await
            .unwrap_or_else(|e| panic!("revision {revision}, of the last period: {e}"));
        assert_eq!(got.kvs()[0].value_str().unwrap(), recent.to_string());
    }
    // ...a watch from before what a member reported compacted is
    // cancelled there with the compacted revision...
    for (member, client) in clients.iter_mut().enumerate() {
        let compacted = samples
            .iter()
            .filter(|s| s.member == member)
            .map(|s| s.compacted)
            .max()
            .expect("every member was sampled");
        let from = etcd_client::WatchOptions::new().with_start_revision(compacted - 1);
        let mut watch = client.watch("key", Some(from)).await.unwrap();
        let cancelled = tokio::time::timeout(WATCH_TIMEOUT, async {
            loop {
                let response = watch.message().await.unwrap().expect("the watch answers");
                if response.canceled() {
                    return response;
                }
                assert!(response.created(), "no event before the cancellation");
            }
        })
        .await
        .expect("a watch from a compacted revision is cancelled at once");
        assert!(
            cancelled.compact_revision() >= compacted,
            "member {member}: {} < {compacted}",
            cancelled.compact_revision()
        );
    }
    // ...and, as an operator sees it, what a member reported compacted is
    // gone there.
    for (member, endpoint) in endpoints.iter().enumerate() {
        let compacted = samples
            .iter()
            .filter(|s| s.member == member)
            .map(|s| s.compacted)
            .max()
            .expect("every member was sampled");
        let gone = (compacted - 1).to_string();
        let out = etcdctl(endpoint, &["get", "key", "--rev", &gone]).await;
        assert!(out.contains(COMPACTED), "{endpoint} --rev {gone}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_keeps_the_last_period_on_every_member_as_etcd() {
    if !etcdctl_available() || !support::etcdctl::have("etcd") {
        eprintln!("skipping: etcd and etcdctl are not installed");
        return;
    }
    {
        let cluster = Cluster::start(3, &PERIODIC_FLAGS).await;
        let endpoints: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
        periodic_auto_compaction_keeps_the_last_period(&endpoints).await;
    }
    // The same expectations hold for etcd 3.4's periodic compactor.
    let flags = PERIODIC_FLAGS.map(String::from);
    let etcd = EtcdCluster::start(3, "http", "http", &flags, &[]).await;
    periodic_auto_compaction_keeps_the_last_period(&etcd.endpoints).await;
}
