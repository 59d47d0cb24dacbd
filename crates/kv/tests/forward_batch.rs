//! A follower forwards concurrent writes to the leader in batches: three
//! members in this process (so that the test can read a follower's
//! forwarding counters), many puts at once through one follower.

mod support;

use std::time::Duration;

use keel_kv::proto::etcdserverpb::RangeRequest;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::server::{self, HttpUrl, MemberConfig, RunningMember};
use support::{channel, free_port, put, range};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

/// Puts sent at once through one follower.
const PUTS: usize = 200;
/// The whole test, cluster start included.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

struct InProcessCluster {
    _dir: tempfile::TempDir,
    members: Vec<RunningMember>,
}

impl InProcessCluster {
    /// Starts three members on free loopback ports; `None` if a port was
    /// taken meanwhile.
    async fn try_start() -> Option<InProcessCluster> {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let url = |port: &u16| HttpUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let initial_cluster: Vec<(String, HttpUrl)> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| (format!("m{i}"), url(peer)))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let config = MemberConfig {
                listen_client_urls: vec![url(client)],
                listen_peer_urls: vec![url(peer)],
                initial_advertise_peer_urls: vec![url(peer)],
                initial_cluster: initial_cluster.clone(),
                initial_cluster_token: "forward-batch".into(),
                election_timeout: Duration::from_millis(500),
                ..MemberConfig::new(format!("m{i}"), dir.path().join(format!("m{i}")))
            };
            match server::start(config).await {
                Ok(member) => members.push(member),
                Err(e) => {
                    eprintln!("member {i} did not start: {e}");
                    for m in members {
                        let _ = m.shutdown().await;
                    }
                    return None;
                }
            }
        }
        Some(InProcessCluster { _dir: dir, members })
    }

    async fn start() -> InProcessCluster {
        for _attempt in 0..3 {
            if let Some(cluster) = InProcessCluster::try_start().await {
                return cluster;
            }
        }
        panic!("the cluster did not start in three attempts");
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}", self.members[i].client_addrs()[0])
    }

    /// The index of the member every member calls leader, once they agree
    /// and it serves a linearizable read through every member.
    async fn wait_leader(&self) -> usize {
        loop {
            let leaders: Vec<Option<u64>> = self
                .members
                .iter()
                .map(|m| m.metrics().raft_metrics().borrow().leader.map(|l| l.0))
                .collect();
            let agreed = match leaders.first() {
                Some(Some(id)) if leaders.iter().all(|l| *l == Some(*id)) => Some(*id),
                _ => None,
            };
            if let Some(id) = agreed {
                let mut all_read = true;
                for i in 0..self.members.len() {
                    let mut kv = KvClient::new(channel(&self.url(i)).await);
                    all_read &= kv.range(range("health")).await.is_ok();
                }
                if all_read {
                    return self
                        .members
                        .iter()
                        .position(|m| m.member_id() == id)
                        .expect("the leader is a member");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn shutdown(self) {
        for member in self.members {
            let _ = member.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_a_follower_travel_in_fewer_batches_with_distinct_revisions() {
    let cluster = timeout(TEST_TIMEOUT, InProcessCluster::start())
        .await
        .expect("the cluster starts in time");
    let started = Instant::now();
    let leader = timeout(TEST_TIMEOUT, cluster.wait_leader())
        .await
        .expect("a leader in time");
    let follower = (leader + 1) % 3;
    let before = cluster.members[follower].metrics().forwarding();
    let term = || {
        cluster.members[follower]
            .metrics()
            .raft_metrics()
            .borrow()
            .term
            .0
    };
    let term_before = term();

    let follower_channel = channel(&cluster.url(follower)).await;
    let mut puts = JoinSet::new();
    for n in 0..PUTS {
        let mut kv = KvClient::new(follower_channel.clone());
        puts.spawn(async move {
            let key = format!("batch/{n:03}");
            let reply = kv.put(put(&key, &format!("v{n}"))).await?.into_inner();
            let header = reply.header.expect("a put has a header");
            // The follower answers only once it applied the write itself:
            // its own serializable read already sees it.
            let local = kv
                .range(RangeRequest {
                    serializable: true,
                    ..range(&key)
                })
                .await?
                .into_inner();
            Ok::<_, tonic::Status>((key, header, local.kvs))
        });
    }
    let remaining = TEST_TIMEOUT.saturating_sub(started.elapsed());
    let mut revisions = Vec::new();
    let mut acknowledged = Vec::new();
    timeout(remaining, async {
        while let Some(joined) = puts.join_next().await {
            let (key, header, local) = joined
                .expect("a put task does not panic")
                .unwrap_or_else(|e| panic!("a put through the follower fails: {e}"));
            // The header is the answering member's, as etcd's is.
            assert_eq!(header.member_id, cluster.members[follower].member_id());
            assert_eq!(header.cluster_id, cluster.members[follower].cluster_id());
            assert!(
                (term_before..=term()).contains(&header.raft_term),
                "{key}: term {} outside {term_before}..={}",
                header.raft_term,
                term()
            );
            let revision = header.revision;
            assert_eq!(local.len(), 1, "{key} is applied on the follower");
            assert_eq!(local[0].mod_revision, revision, "{key} on the follower");
            revisions.push(revision);
            acknowledged.push((key, revision));
        }
    })
    .await
    .expect("every put is answered in time");

    let after = cluster.members[follower].metrics().forwarding();
    let batches = after.batches_sent - before.batches_sent;
    let commands = after.commands_sent - before.commands_sent;
    eprintln!("{commands} forwarded commands in {batches} batches");
    assert!(
        commands >= PUTS as u64,
        "every put was forwarded: {commands} commands"
    );
    assert!(
        batches < commands,
        "{commands} forwarded commands travelled in {batches} batches"
    );
    let leader_stats = cluster.members[leader].metrics().forwarding();
    assert_eq!(leader_stats.commands_sent, 0, "the leader forwards nothing");

    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), PUTS, "every put has its own revision");
    // The leader holds every key at the revision its put reported.
    let mut kv = KvClient::new(channel(&cluster.url(leader)).await);
    for (key, revision) in &acknowledged {
        let got = kv.range(range(key)).await.unwrap().into_inner();
        assert_eq!(got.kvs.len(), 1, "{key} on the leader");
        assert_eq!(got.kvs[0].mod_revision, *revision, "{key} on the leader");
    }
    timeout(TEST_TIMEOUT, cluster.shutdown())
        .await
        .expect("the members stop in time");
}
