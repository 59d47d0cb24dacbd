//! A real three-member Keel KV cluster under faults, driven by generated
//! tonic clients: SIGKILL of the leader under a write load, a restart of
//! every member, a linearizability check of concurrent clients across a
//! leader kill, and bad input. The three fault tests run twice: on plain
//! text, and with TLS on every client and peer URL, certificates required
//! and auth enabled (the clients act as root through their certificate's
//! common name, as etcd's `--client-cert-auth` allows).

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_kv::proto::etcdserverpb::auth_client::AuthClient;
use keel_kv::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::request_op::Request as Op;
use keel_kv::proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthUserAddRequest, AuthUserGrantRoleRequest, Compare,
    RangeRequest, RequestOp, TxnRequest,
};
use keel_linearizability::{
    CheckConfig, CheckResult, HistoryRecorder, OpKind, Outcome, Output, check_with,
};
use support::certs::Certs;
use support::{Cluster, prefix, put, range};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

/// The cluster must take writes again this soon after its leader died.
const FAILOVER_BOUND: Duration = Duration::from_secs(10);

/// How the cluster of a fault test is secured.
#[derive(Clone, Copy, Debug)]
enum Security {
    Plain,
    /// TLS on client and peer URLs, certificates required on both, and
    /// auth enabled; the test's clients present a certificate whose common
    /// name is `root`.
    TlsAndAuth,
}

/// Starts three members with `flags`, secured as `security` says. The
/// certificates, if any, live as long as the returned `Certs`.
async fn start(security: Security, flags: &[&str]) -> (Cluster, Option<Certs>) {
    match security {
        Security::Plain => (Cluster::start(3, flags).await, None),
        Security::TlsAndAuth => {
            let certs = Certs::new();
            let mut all = certs.member_flags(&certs.member);
            all.extend(["--bcrypt-cost", "4"].map(String::from));
            all.extend(flags.iter().map(|f| f.to_string()));
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let root = certs.client_named("root");
            let cluster = Cluster::start_with_tls(3, &all, Some(certs.client_tls(&root))).await;
            enable_auth_with_root(&cluster).await;
            (cluster, Some(certs))
        }
    }
}

/// Adds the root user with the root role and enables auth.
async fn enable_auth_with_root(cluster: &Cluster) {
    let mut auth = AuthClient::new(cluster.channel(0).await);
    auth.user_add(AuthUserAddRequest {
        name: "root".into(),
        password: "rootpw".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    auth.role_add(AuthRoleAddRequest {
        name: "root".into(),
    })
    .await
    .unwrap();
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .unwrap();
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
    // A linearizable read on every member: each has applied the grants, so
    // a write's auth stamp taken there is current (a stale one is refused
    // at apply, as etcd refuses it).
    for i in 0..cluster.members.len() {
        keys_on(cluster, i, "auth-applied/").await;
    }
}

/// Every key under `prefix` that member `i` holds, read linearizably.
async fn keys_on(cluster: &Cluster, i: usize, key_prefix: &str) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut kv = KvClient::new(cluster.channel(i).await);
        let req = RangeRequest {
            keys_only: true,
            ..prefix(key_prefix)
        };
        match kv.range(req).await {
            Ok(resp) => {
                return resp
                    .into_inner()
                    .kvs
                    .into_iter()
                    .map(|kv| String::from_utf8(kv.key.to_vec()).unwrap())
                    .collect();
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "member {i} cannot read: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_leader_sigkill_and_service_resumes() {
    acknowledged_writes_survive_leader_sigkill(Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_leader_sigkill_with_tls_and_auth() {
    acknowledged_writes_survive_leader_sigkill(Security::TlsAndAuth).await;
}

async fn acknowledged_writes_survive_leader_sigkill(security: Security) {
    let (mut cluster, _certs) = start(security, &[]).await;
    let leader = cluster.wait_leader().await;
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(KvClient::new(cluster.channel(i).await));
    }

    // A writer that cycles through every member, so writes land on the
    // leader and on followers (which forward them).
    let mut acked = BTreeSet::new();
    let mut n = 0;
    let mut write = async |clients: &mut Vec<KvClient<Channel>>, targets: &[usize]| {
        n += 1;
        let key = format!("w/{n:05}");
        let target = targets[n % targets.len()];
        let ok = clients[target].put(put(&key, "v")).await.is_ok();
        (key, ok)
    };
    while acked.len() < 150 {
        let (key, ok) = write(&mut clients, &[0, 1, 2]).await;
        assert!(ok, "writes succeed while every member is up");
        acked.insert(key);
    }

    cluster.kill(leader).await;
    let killed_at = Instant::now();
    let mut recovered = None;
    while acked.len() < 300 {
        let (key, ok) = write(&mut clients, &survivors).await;
        if ok {
            recovered.get_or_insert_with(|| killed_at.elapsed());
            acked.insert(key);
        } else {
            assert!(
                killed_at.elapsed() < FAILOVER_BOUND,
                "no write succeeded within {FAILOVER_BOUND:?}"
            );
        }
    }
    let recovered = recovered.unwrap();
    eprintln!("first acknowledged write {recovered:?} after the leader's SIGKILL");
    assert!(recovered < FAILOVER_BOUND);

    cluster.spawn(leader, "new");
    cluster.wait_serving(leader).await;
    for i in 0..3 {
        let held = keys_on(&cluster, i, "w/").await;
        let missing: Vec<&String> = acked.difference(&held).collect();
        assert!(
            missing.is_empty(),
            "member {i} lost acknowledged writes: {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_revisions_survive_a_sigkill_of_every_member() {
    data_and_revisions_survive_a_sigkill_of_all(Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_revisions_survive_a_sigkill_of_every_member_with_tls_and_auth() {
    data_and_revisions_survive_a_sigkill_of_all(Security::TlsAndAuth).await;
}

async fn data_and_revisions_survive_a_sigkill_of_all(security: Security) {
    // Frequent snapshots, so the restart also goes through a compacted log.
    let (mut cluster, _certs) = start(security, &["--snapshot-count", "40"]).await;
    let mut kv = KvClient::new(cluster.channel(0).await);
    let mut revision = 0;
    for i in 0..120 {
        let resp = kv
            .put(put(&format!("r/{i:03}"), &i.to_string()))
            .await
            .unwrap();
        revision = resp.into_inner().header.unwrap().revision;
    }
    kv.delete_range(keel_kv::proto::etcdserverpb::DeleteRangeRequest {
        key: "r/000".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    revision += 1;

    for i in 0..3 {
        cluster.kill(i).await;
    }
    for i in 0..3 {
        cluster.spawn(i, "new");
    }
    cluster.wait_leader().await;
    for i in 0..3 {
        cluster.wait_serving(i).await;
        let mut kv = KvClient::new(cluster.channel(i).await);
        let resp = kv.range(prefix("r/")).await.unwrap().into_inner();
        assert_eq!(resp.header.unwrap().revision, revision, "member {i}");
        assert_eq!(resp.count, 119, "member {i}");
        let old = RangeRequest {
            revision: 5,
            ..range("r/003")
        };
        let at_5 = kv.range(old).await.unwrap().into_inner();
        assert_eq!(at_5.kvs[0].value.as_ref(), b"3", "history survives too");
    }
    let next = kv.put(put("after", "restart")).await.unwrap().into_inner();
    assert_eq!(next.header.unwrap().revision, revision + 1);
}

/// One client's view of the store, recorded for the checker.
struct Recorder {
    history: Mutex<HistoryRecorder>,
    start: Instant,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

async fn run_client(client_id: u64, mut kv: KvClient<Channel>, rec: Arc<Recorder>, until: Instant) {
    let mut step = client_id * 7;
    // The last value this client read per key: its compare-and-swaps
    // expect it, so that some of them succeed.
    let mut seen: std::collections::HashMap<String, String> = Default::default();
    while Instant::now() < until {
        step += 1;
        let key = format!("lin/{}", step % 3);
        let value = format!("{client_id}-{step}");
        let op = match (step % 4, seen.get(&key)) {
            (0 | 1, _) => OpKind::get(&key),
            (3, Some(expected)) => OpKind::cas(&key, Some(expected), Some(&value)),
            _ => OpKind::put(&key, &value),
        };
        let id = {
            let mut h = rec.history.lock().unwrap();
            let now = rec.now();
            h.invoke(client_id, op.clone(), now)
        };
        let outcome = match &op {
            OpKind::Get { key } => match kv.range(range(key)).await {
                Ok(resp) => {
                    let value = resp
                        .into_inner()
                        .kvs
                        .first()
                        .map(|kv| String::from_utf8(kv.value.to_vec()).unwrap());
                    if let Some(v) = &value {
                        seen.insert(key.clone(), v.clone());
                    }
                    Outcome::Ok(Output::Read(value))
                }
                Err(_) => Outcome::Failed,
            },
            OpKind::Put { key, value } => match kv.put(put(key, value)).await {
                Ok(_) => Outcome::Ok(Output::Unit),
                Err(_) => Outcome::Unknown,
            },
            OpKind::Cas { key, expected, new } => {
                let txn = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: key.clone().into(),
                        target_union: Some(TargetUnion::Value(expected.clone().unwrap().into())),
                        ..Default::default()
                    }],
                    success: vec![RequestOp {
                        request: Some(Op::RequestPut(put(key, new.as_ref().unwrap()))),
                    }],
                    failure: vec![],
                };
                match kv.txn(txn).await {
                    Ok(resp) => Outcome::Ok(Output::Cas(resp.into_inner().succeeded)),
                    Err(_) => Outcome::Unknown,
                }
            }
            OpKind::Delete { .. } => unreachable!("not generated"),
        };
        let failed = !matches!(outcome, Outcome::Ok(_));
        {
            let mut h = rec.history.lock().unwrap();
            let now = rec.now();
            h.complete(id, outcome, now).unwrap();
        }
        if failed {
            // A dead member refuses at once; do not flood the history.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_stay_linearizable_across_a_leader_kill() {
    linearizable_across_a_leader_kill(Security::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_stay_linearizable_across_a_leader_kill_with_tls_and_auth() {
    linearizable_across_a_leader_kill(Security::TlsAndAuth).await;
}

async fn linearizable_across_a_leader_kill(security: Security) {
    let (mut cluster, _certs) = start(security, &[]).await;
    let leader = cluster.wait_leader().await;
    let rec = Arc::new(Recorder {
        history: Mutex::new(HistoryRecorder::new()),
        start: Instant::now(),
    });
    let until = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for client in 0..4u64 {
        // Clients talk to every member, leader and followers alike.
        let member = client as usize % 3;
        let kv = KvClient::new(cluster.channel(member).await);
        tasks.push(tokio::spawn(run_client(client, kv, rec.clone(), until)));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(leader).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.spawn(leader, "new");
    for task in tasks {
        task.await.unwrap();
    }
    let rec = Arc::into_inner(rec).unwrap();
    let history = rec.history.into_inner().unwrap().finish();
    let ok = history
        .ops()
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(_)))
        .count();
    let cas_ok = history
        .ops()
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok(Output::Cas(true))))
        .count();
    eprintln!(
        "{} operations recorded, {ok} completed, {cas_ok} successful cas",
        history.len()
    );
    assert!(ok > 100, "the clients made progress");
    match check_with(&history, &CheckConfig::default()) {
        CheckResult::Linearizable => {}
        other => panic!("not linearizable: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_etcd_errors_and_crashes_nothing() {
    let mut cluster = Cluster::start(3, &["--max-request-bytes", "65536"]).await;
    let leader = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let ch = cluster.channel(follower).await;
    let mut kv = KvClient::new(ch.clone());
    let mut lease = keel_kv::proto::etcdserverpb::lease_client::LeaseClient::new(ch.clone());
    let mut members = keel_kv::proto::etcdserverpb::cluster_client::ClusterClient::new(ch.clone());
    let mut maintenance =
        keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient::new(ch);
    use keel_kv::proto::etcdserverpb as pb;

    let expect = |result: Result<_, tonic::Status>, code: Code, text: &str| {
        let status = result.expect_err("the request must fail");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(text), "{status:?}");
    };
    expect(
        kv.range(range("")).await.map(|_| ()),
        Code::InvalidArgument,
        "key is not provided",
    );
    let future = RangeRequest {
        revision: 1_000,
        ..range("a")
    };
    expect(
        kv.range(future).await.map(|_| ()),
        Code::OutOfRange,
        "future revision",
    );
    // An inverted range is empty, as in etcd.
    let inverted = RangeRequest {
        range_end: "a".into(),
        ..range("z")
    };
    assert_eq!(kv.range(inverted).await.unwrap().into_inner().count, 0);

    let big = "x".repeat(100 * 1024);
    expect(
        kv.put(put("big", &big)).await.map(|_| ()),
        Code::InvalidArgument,
        "request is too large",
    );
    let huge = "x".repeat(2 * 1024 * 1024);
    assert!(
        kv.put(put("huge", &huge)).await.is_err(),
        "over the gRPC limit"
    );

    let with_lease = pb::PutRequest {
        lease: 12345,
        ..put("k", "v")
    };
    expect(
        kv.put(with_lease).await.map(|_| ()),
        Code::NotFound,
        "requested lease not found",
    );
    let revoke = pb::LeaseRevokeRequest { id: 12345 };
    expect(
        lease.lease_revoke(revoke).await.map(|_| ()),
        Code::NotFound,
        "requested lease not found",
    );
    let ttl = lease
        .lease_time_to_live(pb::LeaseTimeToLiveRequest {
            id: 12345,
            keys: false,
        })
        .await;
    assert_eq!(ttl.unwrap().into_inner().ttl, -1);

    let too_many = TxnRequest {
        success: (0..200)
            .map(|i| RequestOp {
                request: Some(Op::RequestPut(put(&format!("t{i}"), "v"))),
            })
            .collect(),
        ..Default::default()
    };
    expect(
        kv.txn(too_many).await.map(|_| ()),
        Code::InvalidArgument,
        "too many operations",
    );
    let compact_future = pb::CompactionRequest {
        revision: 1_000,
        physical: false,
    };
    expect(
        kv.compact(compact_future).await.map(|_| ()),
        Code::OutOfRange,
        "future revision",
    );

    let remove = pb::MemberRemoveRequest { id: 42 };
    expect(
        members.member_remove(remove).await.map(|_| ()),
        Code::NotFound,
        "member not found",
    );
    let promote = pb::MemberPromoteRequest { id: 42 };
    expect(
        members.member_promote(promote).await.map(|_| ()),
        Code::NotFound,
        "member not found",
    );
    let voter = cluster.status(leader).await.unwrap().0;
    let promote_voter = pb::MemberPromoteRequest { id: voter };
    expect(
        members.member_promote(promote_voter).await.map(|_| ()),
        Code::FailedPrecondition,
        "only promote a learner",
    );
    let add_bad = pb::MemberAddRequest {
        peer_ur_ls: vec!["not a url".into()],
        is_learner: true,
    };
    expect(
        members.member_add(add_bad).await.map(|_| ()),
        Code::InvalidArgument,
        "peer URL",
    );
    let existing = pb::MemberAddRequest {
        peer_ur_ls: vec![cluster.members[leader].peer_url()],
        is_learner: false,
    };
    expect(
        members.member_add(existing).await.map(|_| ()),
        Code::FailedPrecondition,
        "Peer URLs already exists",
    );
    let to_nowhere = pb::MoveLeaderRequest { target_id: 42 };
    let mut on_leader = keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient::new(
        cluster.channel(leader).await,
    );
    expect(
        on_leader.move_leader(to_nowhere).await.map(|_| ()),
        Code::NotFound,
        "member not found",
    );
    let from_follower = pb::MoveLeaderRequest { target_id: voter };
    expect(
        maintenance.move_leader(from_follower).await.map(|_| ()),
        Code::Unavailable,
        "not leader",
    );

    // Nothing crashed, and the cluster still serves.
    for (i, m) in cluster.members.iter_mut().enumerate() {
        assert!(m.is_running(), "member {i} died");
    }
    kv.put(put("still", "here")).await.unwrap();
    assert_eq!(
        kv.range(range("still")).await.unwrap().into_inner().count,
        1
    );
}
