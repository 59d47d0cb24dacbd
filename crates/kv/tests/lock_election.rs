//! etcd's Lock and Election services on a real three-member cluster, the
//! way etcd's client libraries call them (Rust's and Java's `lock()` and
//! `campaign()` use these services rather than client-side recipes).
//! `lock_election_stock.rs` drives them through such a stock client, with
//! holders killed by SIGKILL, next to etcd.

mod support;

use std::time::Duration;

use keel_kv::proto::etcdserverpb::lease_client::LeaseClient;
use keel_kv::proto::etcdserverpb::{LeaseGrantRequest, LeaseTimeToLiveRequest};
use keel_kv::proto::v3electionpb::election_client::ElectionClient;
use keel_kv::proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use keel_kv::proto::v3lockpb::lock_client::LockClient;
use keel_kv::proto::v3lockpb::{LockRequest, UnlockRequest};
use support::Cluster;
use tonic::Code;

/// How long a waiter must stay blocked to count as blocked.
const STILL_WAITING: Duration = Duration::from_millis(700);
const HANDOVER: Duration = Duration::from_secs(15);

async fn grant(cluster: &Cluster, id: i64, ttl: i64) {
    let mut lease = LeaseClient::new(cluster.channel(0).await);
    lease
        .lease_grant(LeaseGrantRequest { ttl, id })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_exclusive_and_passes_on_unlock_or_lease_expiry() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.wait_leader().await;
    grant(&cluster, 0xa, 60).await;
    grant(&cluster, 0xb, 60).await;
    grant(&cluster, 0xc, 2).await;

    let mut first = LockClient::new(cluster.channel(0).await);
    let held = first
        .lock(LockRequest {
            name: "job".into(),
            lease: 0xa,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(held.key, "job/a");

    let mut second = LockClient::new(cluster.channel(1).await);
    let waiter = tokio::spawn(async move {
        second
            .lock(LockRequest {
                name: "job".into(),
                lease: 0xb,
            })
            .await
    });
    tokio::time::sleep(STILL_WAITING).await;
    assert!(
        !waiter.is_finished(),
        "the second lock must wait for the first"
    );
    let unlocked = first
        .unlock(UnlockRequest { key: held.key })
        .await
        .unwrap()
        .into_inner();
    let acquired = tokio::time::timeout(HANDOVER, waiter)
        .await
        .expect("the waiter gets the lock once it is unlocked")
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(acquired.key, "job/b");
    assert!(acquired.header.unwrap().revision >= unlocked.header.unwrap().revision);

    // A holder that stops keeping its lease alive (a killed process) loses
    // the lock when the lease expires.
    let mut third = LockClient::new(cluster.channel(2).await);
    let mut first = LockClient::new(cluster.channel(0).await);
    first
        .unlock(UnlockRequest { key: acquired.key })
        .await
        .unwrap();
    let short = third
        .lock(LockRequest {
            name: "job".into(),
            lease: 0xc,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(short.key, "job/c");
    let after_expiry = tokio::time::timeout(
        HANDOVER,
        first.lock(LockRequest {
            name: "job".into(),
            lease: 0xa,
        }),
    )
    .await
    .expect("the lock passes on once the holder's lease expires")
    .unwrap()
    .into_inner();
    assert_eq!(after_expiry.key, "job/a");

    let missing_lease = first
        .lock(LockRequest {
            name: "other".into(),
            lease: 0x77,
        })
        .await
        .expect_err("a lock needs a live lease");
    assert_eq!(missing_lease.code(), Code::NotFound, "{missing_lease:?}");

    // Without a lease, the member grants one (etcd's session TTL, 60 s).
    let anonymous = first
        .lock(LockRequest {
            name: "anon".into(),
            lease: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let key = String::from_utf8(anonymous.key.to_vec()).unwrap();
    let lease = i64::from_str_radix(key.strip_prefix("anon/").unwrap(), 16).unwrap();
    let mut leases = LeaseClient::new(cluster.channel(1).await);
    let ttl = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: lease,
            keys: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ttl.granted_ttl, 60);
    assert_eq!(ttl.keys, vec![anonymous.key]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_has_one_leader_whose_value_observers_follow() {
    let cluster = Cluster::start(3, &[]).await;
    cluster.wait_leader().await;
    grant(&cluster, 0xa, 60).await;
    grant(&cluster, 0xb, 60).await;

    let mut a = ElectionClient::new(cluster.channel(0).await);
    let won = a
        .campaign(CampaignRequest {
            name: "svc".into(),
            lease: 0xa,
            value: "alpha".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let leader_a: LeaderKey = won.leader.unwrap();
    assert_eq!(leader_a.key, "svc/a");

    let mut observer = ElectionClient::new(cluster.channel(2).await);
    let mut seen = observer
        .observe(LeaderRequest { name: "svc".into() })
        .await
        .unwrap()
        .into_inner();
    let mut next_value = async || {
        let response = tokio::time::timeout(HANDOVER, seen.message())
            .await
            .expect("the observer hears of the change")
            .unwrap()
            .unwrap();
        response.kv.unwrap().value
    };
    assert_eq!(next_value().await, "alpha");

    let mut b = ElectionClient::new(cluster.channel(1).await);
    let challenger = tokio::spawn(async move {
        b.campaign(CampaignRequest {
            name: "svc".into(),
            lease: 0xb,
            value: "beta".into(),
        })
        .await
    });
    tokio::time::sleep(STILL_WAITING).await;
    assert!(!challenger.is_finished(), "one leader at a time");

    a.proclaim(ProclaimRequest {
        leader: Some(leader_a.clone()),
        value: "alpha-2".into(),
    })
    .await
    .unwrap();
    assert_eq!(next_value().await, "alpha-2");
    let leader = a
        .leader(LeaderRequest { name: "svc".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(leader.kv.unwrap().value, "alpha-2");

    a.resign(ResignRequest {
        leader: Some(leader_a.clone()),
    })
    .await
    .unwrap();
    let won_b = tokio::time::timeout(HANDOVER, challenger)
        .await
        .expect("the challenger leads once the leader resigns")
        .unwrap()
        .unwrap()
        .into_inner();
    assert_eq!(won_b.leader.unwrap().key, "svc/b");
    assert_eq!(next_value().await, "beta");

    let stale = a
        .proclaim(ProclaimRequest {
            leader: Some(leader_a),
            value: "too late".into(),
        })
        .await
        .expect_err("a resigned leader cannot proclaim");
    assert_eq!(stale.code(), Code::Unknown);
    assert_eq!(stale.message(), "election: not leader");
    let nobody = a
        .leader(LeaderRequest {
            name: "nobody".into(),
        })
        .await
        .expect_err("no candidate, no leader");
    assert_eq!(nobody.message(), "election: no leader");
}
