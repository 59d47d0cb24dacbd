//! Write forwarding between members of a real three-member cluster: it is
//! served on the peer listener only, behind the cluster-identity check,
//! and what it is sent is checked before anything is proposed.

mod support;

use std::time::Duration;

use bytes::Bytes;
use keel::{IdentityStamp, NodeId};
use keel_kv::proto::command::ProposeRequest;
use keel_kv::proto::command::forward_client::ForwardClient;
use keel_kv::proto::etcdserverpb::StatusRequest;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::maintenance_client::MaintenanceClient;
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
    };
    command.encode_to_vec().into()
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
        let request = ProposeRequest {
            command: put_command("client-port"),
        };
        let status = client
            .propose(request)
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
        let request = ProposeRequest {
            command: put_command("foreign"),
        };
        let status = client.propose(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{status}");
    }
    let mut bare = ForwardClient::new(peer_channel(&cluster, leader).await);
    let request = ProposeRequest {
        command: put_command("foreign"),
    };
    let status = bare.propose(request).await.expect_err("refused");
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
    let empty_key = keel_kv::proto::command::Command {
        op: Some(keel_kv::proto::command::command::Op::Put(put("", "v"))),
    };
    let bad_commands: [Bytes; 4] = [
        // Seven bytes that are no protobuf at all.
        Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        // A command with no operation (an empty message decodes to it).
        Bytes::new(),
        // A well-formed put that a client could not send.
        empty_key.encode_to_vec().into(),
        // Larger than --max-request-bytes.
        put_command(&"k".repeat(1_700_000)),
    ];
    for i in 0..3 {
        for command in &bad_commands {
            let mut client = forward_on(
                peer_channel(&cluster, i).await,
                IdentityStamp::new(id, STRANGER, ""),
            );
            let request = ProposeRequest {
                command: command.clone(),
            };
            let status = client.propose(request).await.expect_err("refused");
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "member {i}, {} bytes: {status}",
                command.len()
            );
        }
    }
    // Give a wrongly accepted command time to commit and stop a member.
    tokio::time::sleep(Duration::from_millis(500)).await;
    every_member_serves(&cluster, "after-garbage").await;
}
