//! etcd's Lock and Election services through a stock client library (the
//! `etcd-client` crate, whose `lock()` and `campaign()` call them), with
//! the holder a separate process killed by SIGKILL: its lease is the only
//! thing that lets go of the lock or the leadership, once it expires.
//!
//! Each scenario runs on three Keel members and then on three etcd 3.4
//! members, and the two runs must tell the same story: who holds when,
//! the keys' shape, the values an observer sees. The waiters speak to
//! another member than the holder's.
//!
//! Skips (passing, with a message) when `etcdctl` or `etcd` is missing.

mod support;

use std::process::Stdio;
use std::time::Duration;

use etcd_client::{
    Client, GetOptions, LeaseTimeToLiveOptions, LockOptions, ResignOptions, SortOrder, SortTarget,
};
use support::Cluster;
use support::etcd::EtcdCluster;
use support::etcdctl::{etcdctl_available, have};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// The holder's lease: etcd's minimum TTL with default timing, so that
/// the hand-over after a kill is quick.
const HOLDER_TTL_SECONDS: i64 = 2;
/// The waiters' leases outlive the test; nobody needs to keep them alive.
const WAITER_TTL_SECONDS: i64 = 60;
/// How long a waiter must stay blocked to count as blocked.
const STILL_WAITING: Duration = Duration::from_secs(1);
/// A kill hands over once the holder's lease expires: at most its TTL
/// after the last keep-alive, plus the leader's expiry check and the
/// revoke's round through the log; the margin absorbs a busy machine.
const HANDOVER_MAX: Duration = Duration::from_secs(HOLDER_TTL_SECONDS as u64 + 8);
/// Not before the lease can have expired: the holder renewed it at most a
/// third of its TTL before the kill.
const HANDOVER_MIN: Duration = Duration::from_secs(1);
/// How long a holder process may take to hold.
const HOLDER_START_TIMEOUT: Duration = Duration::from_secs(20);

const LOCK_NAME: &str = "job";
const ELECTION_NAME: &str = "svc";
/// The environment variables that make this test binary a candidate
/// process (see [`election_candidate_process`]).
const CANDIDATE_ENDPOINT_ENV: &str = "KEEL_TEST_CANDIDATE_ENDPOINT";
const CANDIDATE_VALUE_ENV: &str = "KEEL_TEST_CANDIDATE_VALUE";
/// What the candidate process prints before its leader key.
const LEADER_KEY_LINE: &str = "leader-key: ";
/// A candidate process exits by itself after this long (it is killed
/// long before).
const CANDIDATE_LIFETIME: Duration = Duration::from_secs(120);
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(500);

/// Whether the reference tools are here; says why not when they are not.
fn reference_available() -> bool {
    let available = etcdctl_available() && have("etcd");
    if !available {
        eprintln!("skipping: etcd and etcdctl are not installed");
    }
    available
}

/// Three running Keel members' client URLs.
fn keel_endpoints(cluster: &Cluster) -> Vec<String> {
    cluster.members.iter().map(|m| m.client_url()).collect()
}

async fn etcd_cluster() -> EtcdCluster {
    EtcdCluster::start(3, "http", "http", &[], &[]).await
}

/// Three members of either system, one of which a scenario kills.
enum Members {
    Keel(Cluster),
    Etcd(EtcdCluster),
}

impl Members {
    fn endpoints(&self) -> Vec<String> {
        match self {
            Members::Keel(cluster) => keel_endpoints(cluster),
            Members::Etcd(etcd) => etcd.endpoints.clone(),
        }
    }

    /// Kills member `i`'s process with SIGKILL.
    async fn kill(&mut self, i: usize) {
        match self {
            Members::Keel(cluster) => cluster.kill(i).await,
            Members::Etcd(etcd) => etcd.kill(i).await,
        }
    }
}

/// A stock client that speaks to one member only.
async fn client(endpoint: &str) -> Client {
    Client::connect([endpoint], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// A lease of `ttl_seconds` granted through `endpoint`.
async fn grant(endpoint: &str, ttl_seconds: i64) -> i64 {
    client(endpoint)
        .await
        .lease_grant(ttl_seconds, None)
        .await
        .unwrap()
        .id()
}

/// A key `name/<lease hex>`, as both recipes write it, with the lease
/// named by `who` in place of its id: lease ids differ between runs.
fn shape(key: &str, name: &str, lease: i64, who: &str) -> String {
    let expected = format!("{name}/{lease:x}");
    assert_eq!(
        key, expected,
        "a key is its name, a slash, its lease in hex"
    );
    format!("{name}/<{who}'s lease>")
}

/// The lease id in a key `name/<lease hex>`.
fn lease_of(key: &str, name: &str) -> i64 {
    let hex = key
        .strip_prefix(&format!("{name}/"))
        .unwrap_or_else(|| panic!("{key} is not under {name}/"));
    i64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// The first line `child` prints that starts with `prefix` (without it),
/// bounded in time. The rest of its output is read and dropped until it
/// exits: a closed pipe would kill it before its time.
async fn first_line(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("the holder's stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("the holder exited before printing {prefix:?}");
    };
    let line = tokio::time::timeout(HOLDER_START_TIMEOUT, read)
        .await
        .expect("the holder holds in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

/// A refusal as etcd's clients see it: its gRPC code and message.
fn refusal(error: etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => panic!("not a refusal from the server: {other}"),
    }
}

/// Kills `child` with SIGKILL and reaps it.
async fn kill_9(child: &mut Child) {
    child.kill().await.expect("the holder can be killed");
}

/// Runs `waiter` to its end, which must come between [`HANDOVER_MIN`] and
/// [`HANDOVER_MAX`] after `killed`; returns its result and the delay.
async fn handed_over<T>(waiter: tokio::task::JoinHandle<T>, killed: Instant) -> (T, Duration) {
    let result = tokio::time::timeout(HANDOVER_MAX, waiter)
        .await
        .expect("the waiter gets its turn once the killed holder's lease expires")
        .unwrap();
    let delay = killed.elapsed();
    assert!(
        delay >= HANDOVER_MIN,
        "handed over {delay:?} after the kill: before the holder's lease could expire"
    );
    (result, delay)
}

/// `etcdctl lock` of [`LOCK_NAME`] through `endpoint` with a session of
/// [`HOLDER_TTL_SECONDS`], once it holds the lock: the process and the
/// key it holds the lock with.
async fn etcdctl_lock_holder(endpoint: &str) -> (Child, String) {
    let mut holder = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["lock", "--ttl", &HOLDER_TTL_SECONDS.to_string(), LOCK_NAME])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("etcdctl runs");
    // It prints the key it holds the lock with, then its value (empty).
    let key = first_line(&mut holder, "").await;
    (holder, key)
}

/// A lock held by `etcdctl lock` (etcd's client-side recipe, the same
/// key layout as the Lock service) through member 0; a stock client's
/// `lock()` waits through member 1; the holder is killed by SIGKILL. What
/// happened, in words that do not depend on ids or revisions.
async fn lock_holder_killed(endpoints: &[String]) -> Vec<String> {
    let mut story = Vec::new();
    let (mut holder, held) = etcdctl_lock_holder(&endpoints[0]).await;
    let holder_lease = lease_of(&held, LOCK_NAME);
    story.push(format!(
        "holder holds {}",
        shape(&held, LOCK_NAME, holder_lease, "holder")
    ));

    let mut observer = client(&endpoints[2]).await;
    let ttl = observer
        .lease_time_to_live(
            holder_lease,
            Some(LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), HOLDER_TTL_SECONDS);
    assert_eq!(ttl.keys(), [held.as_bytes().to_vec()]);

    let waiter_lease = grant(&endpoints[1], WAITER_TTL_SECONDS).await;
    let mut waiter_client = client(&endpoints[1]).await;
    let waiter = tokio::spawn(async move {
        waiter_client
            .lock(LOCK_NAME, Some(LockOptions::new().with_lease(waiter_lease)))
            .await
    });
    tokio::time::sleep(STILL_WAITING).await;
    assert!(!waiter.is_finished(), "the waiter must wait for the holder");
    // The waiter's key appears once its Lock call has put it: on a loaded
    // machine, possibly after the pause above.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let contenders = loop {
        let contenders = observer
            .get(
                format!("{LOCK_NAME}/"),
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Create, SortOrder::Ascend),
                ),
            )
            .await
            .unwrap();
        if contenders.kvs().len() >= 2 || tokio::time::Instant::now() > deadline {
            break contenders;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let keys: Vec<String> = contenders
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    story.push(format!(
        "while blocked, by creation: {}, {}",
        shape(&keys[0], LOCK_NAME, holder_lease, "holder"),
        shape(&keys[1], LOCK_NAME, waiter_lease, "waiter")
    ));
    let holder_created = contenders.kvs()[0].create_revision();
    let waiter_created = contenders.kvs()[1].create_revision();

    kill_9(&mut holder).await;
    let killed = Instant::now();
    story.push("holder killed by SIGKILL".into());
    let (acquired, delay) = handed_over(waiter, killed).await;
    let acquired = acquired.expect("the waiter's lock() succeeds");
    let key = std::str::from_utf8(acquired.key()).unwrap();
    story.push(format!(
        "waiter holds {}",
        shape(key, LOCK_NAME, waiter_lease, "waiter")
    ));
    eprintln!("lock handed over {delay:?} after the holder was killed");

    let now = observer
        .get(
            format!("{LOCK_NAME}/"),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert_eq!(now.kvs().len(), 1, "the holder's key went with its lease");
    let kv = &now.kvs()[0];
    assert_eq!(kv.key(), acquired.key());
    assert_eq!(kv.create_revision(), waiter_created);
    assert!(waiter_created > holder_created);
    story.push("only the waiter's key is left, created after the holder's".into());
    let gone = observer
        .lease_time_to_live(holder_lease, None)
        .await
        .unwrap();
    assert_eq!(gone.ttl(), -1, "the killed holder's lease expired");
    story
}

/// Keeps `lease` alive through `endpoint` until the task is aborted (or,
/// bounded, for [`CANDIDATE_LIFETIME`]). A keep-alive stream ends when the
/// member loses its leader (in etcd as in Keel); like etcd's own client,
/// this opens another one.
async fn keep_alive(endpoint: String, lease: i64) -> tokio::task::JoinHandle<()> {
    let mut client = client(&endpoint).await;
    tokio::spawn(async move {
        let deadline = Instant::now() + CANDIDATE_LIFETIME;
        while Instant::now() < deadline {
            if let Ok((mut keeper, mut acks)) = client.lease_keep_alive(lease).await {
                while Instant::now() < deadline
                    && keeper.keep_alive().await.is_ok()
                    && matches!(acks.message().await, Ok(Some(_)))
                {
                    tokio::time::sleep(KEEP_ALIVE_EVERY).await;
                }
            }
            tokio::time::sleep(KEEP_ALIVE_EVERY).await;
        }
    })
}

/// The keys under [`LOCK_NAME`]`/`, oldest first, read through `client`
/// as soon as its member serves linearizable reads: after a member is
/// killed, reads fail until a new Raft leader is elected if it led.
async fn lock_queue(client: &mut Client) -> Vec<String> {
    let deadline = Instant::now() + HANDOVER_MAX;
    loop {
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend);
        match client.get(format!("{LOCK_NAME}/"), Some(options)).await {
            Ok(response) => {
                return response
                    .kvs()
                    .iter()
                    .map(|kv| kv.key_str().unwrap().to_owned())
                    .collect();
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "no read after the kill: {e}");
                eprintln!("read after the kill: {e}; again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A waiter blocks in `lock()` through member 1, whose process is then
/// killed by SIGKILL (the holder, `etcdctl lock` through member 0, lives
/// on). The waiter's call fails instead of hanging; its key stays queued
/// on the surviving members while its lease lives (kept alive through
/// member 2), so a second waiter gets the lock only once the holder is
/// gone *and* the first waiter's lease expires.
async fn waiters_member_killed(members: &mut Members) -> Vec<String> {
    let endpoints = members.endpoints();
    let mut story = Vec::new();
    let (mut holder, held) = etcdctl_lock_holder(&endpoints[0]).await;
    let holder_lease = lease_of(&held, LOCK_NAME);
    story.push(format!(
        "holder holds {}",
        shape(&held, LOCK_NAME, holder_lease, "holder")
    ));

    let first_lease = grant(&endpoints[2], HOLDER_TTL_SECONDS).await;
    let first_alive = keep_alive(endpoints[2].clone(), first_lease).await;
    let mut first_client = client(&endpoints[1]).await;
    let first = tokio::spawn(async move {
        first_client
            .lock(LOCK_NAME, Some(LockOptions::new().with_lease(first_lease)))
            .await
    });
    tokio::time::sleep(STILL_WAITING).await;
    assert!(
        !first.is_finished(),
        "the first waiter waits for the holder"
    );
    members.kill(1).await;
    let outcome = tokio::time::timeout(HANDOVER_MAX, first)
        .await
        .expect("a waiter whose member died does not hang")
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
    story.push("member 1 killed by SIGKILL: the first waiter's lock() fails".into());

    let mut survivor = client(&endpoints[2]).await;
    let keys = lock_queue(&mut survivor).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    story.push(format!(
        "the survivors still queue {}, {}",
        shape(&keys[0], LOCK_NAME, holder_lease, "holder"),
        shape(&keys[1], LOCK_NAME, first_lease, "first waiter")
    ));

    let second_lease = grant(&endpoints[2], WAITER_TTL_SECONDS).await;
    let mut second_client = client(&endpoints[2]).await;
    let second = tokio::spawn(async move {
        second_client
            .lock(LOCK_NAME, Some(LockOptions::new().with_lease(second_lease)))
            .await
    });
    kill_9(&mut holder).await;
    story.push("holder killed by SIGKILL".into());
    let deadline = Instant::now() + HANDOVER_MAX;
    while lock_queue(&mut survivor).await.contains(&held) {
        assert!(
            Instant::now() < deadline,
            "the holder's lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(STILL_WAITING).await;
    assert!(
        !second.is_finished(),
        "the first waiter's key, alive, holds the lock once the holder's expired"
    );
    let keys = lock_queue(&mut survivor).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    story.push(format!(
        "the holder's key expires; the second waiter still waits: {}, {}",
        shape(&keys[0], LOCK_NAME, first_lease, "first waiter"),
        shape(&keys[1], LOCK_NAME, second_lease, "second waiter")
    ));
    first_alive.abort();
    let stopped = Instant::now();
    let (acquired, delay) = handed_over(second, stopped).await;
    let acquired = acquired.expect("the second waiter's lock() succeeds");
    story.push(format!(
        "first waiter's lease left to expire: the second waiter holds {}",
        shape(
            std::str::from_utf8(acquired.key()).unwrap(),
            LOCK_NAME,
            second_lease,
            "second waiter"
        )
    ));
    eprintln!("lock handed over {delay:?} after the dead waiter's keep-alives stopped");
    story
}

/// This test binary as a candidate of election [`ELECTION_NAME`]: with a
/// lease of [`HOLDER_TTL_SECONDS`] kept alive, it campaigns through the
/// member in `KEEL_TEST_CANDIDATE_ENDPOINT` with the value in
/// `KEEL_TEST_CANDIDATE_VALUE`, prints its leader key once it leads, and
/// keeps its lease alive until it is killed (or, bounded, a while later).
/// Without those variables it does nothing: it is not a test of its own.
#[tokio::test]
#[ignore = "a child process of election_leader_killed, started by it"]
async fn election_candidate_process() {
    let (Ok(endpoint), Ok(value)) = (
        std::env::var(CANDIDATE_ENDPOINT_ENV),
        std::env::var(CANDIDATE_VALUE_ENV),
    ) else {
        return;
    };
    let mut client = client(&endpoint).await;
    let lease = client
        .lease_grant(HOLDER_TTL_SECONDS, None)
        .await
        .unwrap()
        .id();
    let alive = keep_alive(endpoint, lease).await;
    let won = client.campaign(ELECTION_NAME, value, lease).await.unwrap();
    let key = won
        .leader()
        .expect("a campaign won names its key")
        .key_str();
    println!("{LEADER_KEY_LINE}{}", key.unwrap());
    alive.await.unwrap();
}

/// Starts [`election_candidate_process`] against `endpoint`.
fn spawn_candidate(endpoint: &str, value: &str) -> Child {
    Command::new(std::env::current_exe().expect("the test binary knows its path"))
        .args([
            "--exact",
            "election_candidate_process",
            "--ignored",
            "--nocapture",
        ])
        .env(CANDIDATE_ENDPOINT_ENV, endpoint)
        .env(CANDIDATE_VALUE_ENV, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the test binary runs again")
}

/// Candidate A (a process with a stock client, through member 0) leads;
/// B campaigns through member 1 and waits; an observer watches through
/// member 2; A is killed by SIGKILL, B leads once A's lease expires, then
/// resigns.
async fn election_leader_killed(endpoints: &[String]) -> Vec<String> {
    let mut story = Vec::new();
    let mut a = spawn_candidate(&endpoints[0], "alpha");
    let a_key = first_line(&mut a, LEADER_KEY_LINE).await;
    let a_lease = lease_of(&a_key, ELECTION_NAME);
    story.push(format!(
        "A leads with {}",
        shape(&a_key, ELECTION_NAME, a_lease, "A")
    ));

    let mut watcher = client(&endpoints[2]).await;
    let mut observed = watcher.observe(ELECTION_NAME).await.unwrap();
    let mut next_observed = async || {
        let response = tokio::time::timeout(HANDOVER_MAX, observed.message())
            .await
            .expect("the observer hears of the leader")
            .unwrap()
            .expect("the observation goes on");
        let kv = response.kv().expect("an observation names the leader");
        (
            kv.key_str().unwrap().to_owned(),
            kv.value_str().unwrap().to_owned(),
        )
    };
    let (key, value) = next_observed().await;
    story.push(format!(
        "observer sees {} = {value}",
        shape(&key, ELECTION_NAME, a_lease, "A")
    ));

    let b_lease = grant(&endpoints[1], WAITER_TTL_SECONDS).await;
    let mut b_client = client(&endpoints[1]).await;
    let b = tokio::spawn(async move { b_client.campaign(ELECTION_NAME, "beta", b_lease).await });
    tokio::time::sleep(STILL_WAITING).await;
    assert!(!b.is_finished(), "B must wait while A leads");
    let mut asker = client(&endpoints[0]).await;
    let leader = asker.leader(ELECTION_NAME).await.unwrap();
    let kv = leader.kv().expect("A leads");
    story.push(format!(
        "while B waits, leader() answers {} = {}",
        shape(kv.key_str().unwrap(), ELECTION_NAME, a_lease, "A"),
        kv.value_str().unwrap()
    ));

    kill_9(&mut a).await;
    let killed = Instant::now();
    story.push("A killed by SIGKILL".into());
    let (won, delay) = handed_over(b, killed).await;
    let mut won = won.expect("B's campaign succeeds");
    let b_leader = won.take_leader().expect("a campaign won names its key");
    story.push(format!(
        "B leads with {}",
        shape(b_leader.key_str().unwrap(), ELECTION_NAME, b_lease, "B")
    ));
    eprintln!("leadership handed over {delay:?} after the leader was killed");

    let (key, value) = next_observed().await;
    story.push(format!(
        "observer sees {} = {value}",
        shape(&key, ELECTION_NAME, b_lease, "B")
    ));
    for endpoint in endpoints {
        let leader = client(endpoint).await.leader(ELECTION_NAME).await.unwrap();
        let kv = leader.kv().expect("B leads");
        assert_eq!(kv.key(), b_leader.key(), "{endpoint}");
        assert_eq!(kv.value_str().unwrap(), "beta", "{endpoint}");
    }
    story.push("leader() answers B's value on every member".into());

    asker
        .resign(Some(ResignOptions::new().with_leader(b_leader)))
        .await
        .unwrap();
    let nobody = asker
        .leader(ELECTION_NAME)
        .await
        .expect_err("nobody leads after B resigns");
    story.push(format!(
        "after B resigns, leader() fails: {}",
        refusal(nobody)
    ));
    story
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_lock_holder_hands_over_as_in_etcd() {
    if !reference_available() {
        return;
    }
    let keel = {
        let cluster = Cluster::start(3, &[]).await;
        lock_holder_killed(&keel_endpoints(&cluster)).await
    };
    let etcd = lock_holder_killed(&etcd_cluster().await.endpoints).await;
    assert_eq!(keel, etcd, "Keel's story, then etcd's");
    eprintln!("Keel and etcd alike: {keel:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_election_leader_hands_over_as_in_etcd() {
    if !reference_available() {
        return;
    }
    let keel = {
        let cluster = Cluster::start(3, &[]).await;
        election_leader_killed(&keel_endpoints(&cluster)).await
    };
    let etcd = election_leader_killed(&etcd_cluster().await.endpoints).await;
    assert_eq!(keel, etcd, "Keel's story, then etcd's");
    eprintln!("Keel and etcd alike: {keel:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_member_is_killed_stays_queued_while_its_lease_lives_as_in_etcd() {
    if !reference_available() {
        return;
    }
    let keel = {
        let mut members = Members::Keel(Cluster::start(3, &[]).await);
        waiters_member_killed(&mut members).await
    };
    let mut members = Members::Etcd(etcd_cluster().await);
    let etcd = waiters_member_killed(&mut members).await;
    assert_eq!(keel, etcd, "Keel's story, then etcd's");
    eprintln!("Keel and etcd alike: {keel:#?}");
}
