//! Write forwarding between members of a real three-member cluster: it is
//! served on the peer listener only, behind the cluster-identity check,
//! and each command of a batch is checked before anything is proposed; a
//! bad one fails alone.

mod support;

use std::time::Duration;

use bytes::Bytes;
use keel::{IdentityStamp, NodeId};
use keel_kv::proto::command::forward_client::ForwardClient;
use keel_kv::proto::command::propose_outcome::Outcome;
use keel_kv::proto::command::{CommandResult, ProposeBatchRequest, ProposeOutcome};
use keel_kv::proto::etcdserverpb::StatusRequest;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_kv::replica::FORWARD_BATCH_COMMANDS_MAX;
use prost::Message as _;
use support::{Cluster, channel, put, range};
use tonic::Code;
use tonic::transport::Channel;

/// The id a test client claims on the peer port: no member has it.
const STRANGER: NodeId = NodeId(0x5eed);

/// The cluster id, as member 0 reports it.
async fn cluster_id(cluster: &Cluster) -> u64 {
    let status = MaintenanceClient::new(cluster.channel(0).await)
        .status(StatusRequest {})
        .await
        .expect("member 0 answers Status")
        .into_inner();
    status.header.expect("Status has a header").cluster_id
}

/// A valid command: a put of `key`.
fn put_command(key: &str) -> Bytes {
    let command = keel_kv::proto::command::Command {
        op: Some(keel_kv::proto::command::command::Op::Put(put(key, "v"))),
        caller: None,
    };
    command.encode_to_vec().into()
}

/// A batch of `commands`.
fn batch(commands: impl IntoIterator<Item = Bytes>) -> ProposeBatchRequest {
    ProposeBatchRequest {
        commands: commands.into_iter().collect(),
    }
}

/// The gRPC code of a command's failure, if it failed.
fn failure_code(outcome: &ProposeOutcome) -> Option<Code> {
    match &outcome.outcome {
        Some(Outcome::Failed(f)) => Some(Code::from(f.code)),
        _ => None,
    }
}

/// The revision a command's result reports, if it was applied.
fn applied_revision(outcome: &ProposeOutcome) -> Option<i64> {
    match &outcome.outcome {
        Some(Outcome::Result(bytes)) => Some(
            CommandResult::decode(bytes.as_ref())
                .expect("a result decodes")
                .revision,
        ),
        _ => None,
    }
}

fn forward_on(
    channel: Channel,
    stamp: IdentityStamp,
) -> ForwardClient<tonic::service::interceptor::InterceptedService<Channel, IdentityStamp>> {
    ForwardClient::with_interceptor(channel, stamp)
}

async fn peer_channel(cluster: &Cluster, i: usize) -> Channel {
    channel(&cluster.members[i].peer_url()).await
}

/// Puts and reads back a key through every member, each read
/// linearizable: every member still serves.
async fn every_member_serves(cluster: &Cluster, tag: &str) {
    for i in 0..cluster.members.len() {
        let mut kv = KvClient::new(cluster.channel(i).await);
        let key = format!("{tag}/{i}");
        kv.put(put(&key, "v"))
            .await
            .unwrap_or_else(|e| panic!("member {i} takes a write after {tag}: {e}"));
        for j in 0..cluster.members.len() {
            let mut reader = KvClient::new(cluster.channel(j).await);
            let got = reader
                .range(range(&key))
                .await
                .unwrap_or_else(|e| panic!("member {j} serves a read after {tag}: {e}"))
                .into_inner();
            assert_eq!(got.kvs.len(), 1, "member {j} sees {key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_is_not_served_on_the_client_port() {
    let cluster = Cluster::start(3, &[]).await;
    let id = cluster_id(&cluster).await;
    for i in 0..3 {
        let mut client = forward_on(
            cluster.channel(i).await,
            IdentityStamp::new(id, STRANGER, ""),
        );
        let status = client
            .propose_batch(batch([put_command("client-port")]))
            .await
            .expect_err("the client port does not serve Forward");
        assert_eq!(status.code(), Code::Unimplemented, "member {i}: {status}");
    }
    let mut kv = KvClient::new(cluster.channel(0).await);
    let got = kv.range(range("client-port")).await.unwrap().into_inner();
    assert!(
        got.kvs.is_empty(),
        "nothing sent to the client port was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_from_another_cluster_or_without_identity_is_refused() {
    let cluster = Cluster::start(3, &[]).await;
    let id = cluster_id(&cluster).await;
    let leader = cluster.wait_leader().await;
    let refusals = [
        (
            IdentityStamp::new(id ^ 1, STRANGER, ""),
            Code::FailedPrecondition,
        ),
        (IdentityStamp::new(id, NodeId(0), ""), Code::InvalidArgument),
    ];
    for (stamp, code) in refusals {
        let mut client = forward_on(peer_channel(&cluster, leader).await, stamp);
        let status = client
            .propose_batch(batch([put_command("foreign")]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code, "{status}");
    }
    let mut bare = ForwardClient::new(peer_channel(&cluster, leader).await);
    let status = bare
        .propose_batch(batch([put_command("foreign")]))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(status.message().contains("missing header"), "{status}");

    let mut kv = KvClient::new(cluster.channel(leader).await);
    let got = kv.range(range("foreign")).await.unwrap().into_inner();
    assert!(got.kvs.is_empty(), "no refused command was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_forwarded_with_the_right_identity_is_refused_and_breaks_nothing() {
    let cluster = Cluster::start(3, &[]).await;
    let id = cluster_id(&cluster).await;
    let bad_commands = hostile_commands();
    for i in 0..3 {
        for command in &bad_commands {
            let mut client = forward_on(
                peer_channel(&cluster, i).await,
                IdentityStamp::new(id, STRANGER, ""),
            );
            let reply = client
                .propose_batch(batch([command.clone()]))
                .await
                .expect("a batch of one bad command is answered")
                .into_inner();
            assert_eq!(reply.outcomes.len(), 1);
            assert_eq!(
                failure_code(&reply.outcomes[0]),
                Some(Code::InvalidArgument),
                "member {i}, {} bytes: {:?}",
                command.len(),
                reply.outcomes[0]
            );
        }
    }
    // Give a wrongly accepted command time to commit and stop a member.
    tokio::time::sleep(Duration::from_millis(500)).await;
    every_member_serves(&cluster, "after-garbage").await;
}

/// Commands no client could send: undecodable bytes, no operation, an
/// empty key, and one larger than --max-request-bytes.
fn hostile_commands() -> Vec<Bytes> {
    let empty_key = keel_kv::proto::command::Command {
        op: Some(keel_kv::proto::command::command::Op::Put(put("", "v"))),
        caller: None,
    };
    vec![
        // Seven bytes that are no protobuf at all.
        Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        // A command with no operation (an empty message decodes to it).
        Bytes::new(),
        // A well-formed put that a client could not send.
        empty_key.encode_to_vec().into(),
        // Larger than --max-request-bytes (but within the leader's limit
        // for a batch's message).
        put_command(&"k".repeat(1_700_000)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_or_oversized_command_in_a_batch_fails_alone() {
    let cluster = Cluster::start(3, &[]).await;
    let id = cluster_id(&cluster).await;
    let leader = cluster.wait_leader().await;
    // Good puts around and between the bad commands.
    let mut commands = vec![put_command("mates/0")];
    for (n, bad) in hostile_commands().into_iter().enumerate() {
        commands.push(bad);
        commands.push(put_command(&format!("mates/{}", n + 1)));
    }
    let mut client = forward_on(
        peer_channel(&cluster, leader).await,
        IdentityStamp::new(id, STRANGER, ""),
    );
    let reply = client
        .propose_batch(batch(commands.clone()))
        .await
        .expect("the batch is answered")
        .into_inner();
    assert_eq!(reply.outcomes.len(), commands.len(), "one outcome each");
    let mut revisions = Vec::new();
    for (n, outcome) in reply.outcomes.iter().enumerate() {
        if n % 2 == 0 {
            let revision = applied_revision(outcome)
                .unwrap_or_else(|| panic!("good command {n} was applied: {outcome:?}"));
            revisions.push(revision);
        } else {
            assert_eq!(
                failure_code(outcome),
                Some(Code::InvalidArgument),
                "bad command {n}: {outcome:?}"
            );
        }
    }
    let mut distinct = revisions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        revisions.len(),
        "distinct revisions: {revisions:?}"
    );
    // Every good command is there, at the revision its outcome reported.
    let mut kv = KvClient::new(cluster.channel(leader).await);
    for (n, revision) in revisions.iter().enumerate() {
        let got = kv
            .range(range(&format!("mates/{n}")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.kvs.len(), 1, "mates/{n} was written");
        assert_eq!(got.kvs[0].mod_revision, *revision, "mates/{n}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    every_member_serves(&cluster, "after-hostile-batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_command_limit_is_refused_whole() {
    let cluster = Cluster::start(3, &[]).await;
    let id = cluster_id(&cluster).await;
    let leader = cluster.wait_leader().await;
    let commands = (0..=FORWARD_BATCH_COMMANDS_MAX).map(|n| put_command(&format!("over/{n}")));
    let mut client = forward_on(
        peer_channel(&cluster, leader).await,
        IdentityStamp::new(id, STRANGER, ""),
    );
    let status = client
        .propose_batch(batch(commands))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    let mut kv = KvClient::new(cluster.channel(leader).await);
    let got = kv.range(range("over/0")).await.unwrap().into_inner();
    assert!(got.kvs.is_empty(), "nothing of the batch was written");
}
