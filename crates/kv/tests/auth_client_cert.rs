//! Auth with `--client-cert-auth`: a request without a token is the user
//! its client certificate's common name names (etcd 3.4's rule), side by
//! side with etcd. Three TLS members with auth on, driven by the stock
//! `etcdctl --cacert/--cert/--key` holding certificates for `alice` (read
//! and write on `app/`), `root` and `client` (no such user); the same
//! steps against a real etcd, when installed, must print the same. Then
//! Lock and Election act as their caller: `etcdctl lock`/`elect` (client
//! recipes over KV, leases and watches) and the Lock and Election gRPC
//! services, as alice, work under `app/` and are refused elsewhere.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed.

mod support;

use keel_kv::proto::etcdserverpb::LeaseGrantRequest;
use keel_kv::proto::etcdserverpb::lease_client::LeaseClient;
use keel_kv::proto::v3electionpb::election_client::ElectionClient;
use keel_kv::proto::v3electionpb::{
    CampaignRequest, LeaderRequest, ProclaimRequest, ResignRequest,
};
use keel_kv::proto::v3lockpb::lock_client::LockClient;
use keel_kv::proto::v3lockpb::{LockRequest, UnlockRequest};
use keel_transport::tls::ClientTls;
use support::Cluster;
use support::certs::{CertFiles, Certs};
use support::etcd::Etcd;
use support::etcdctl::{Etcdctl, etcdctl_available, have};
use tonic::Code;
use tonic::transport::Channel;

/// Whose certificate a step presents.
#[derive(Clone, Copy, Debug)]
enum Holder {
    Alice,
    Root,
    Stranger,
}

struct Clients {
    alice: CertFiles,
    root: CertFiles,
}

impl Clients {
    fn new(certs: &Certs) -> Clients {
        Clients {
            alice: certs.client_named("alice"),
            root: certs.client_named("root"),
        }
    }

    fn cert<'a>(&'a self, certs: &'a Certs, holder: Holder) -> &'a CertFiles {
        match holder {
            Holder::Alice => &self.alice,
            Holder::Root => &self.root,
            Holder::Stranger => &certs.client,
        }
    }
}

/// The scripted session: who presents a certificate, the arguments, and
/// stdin. No step passes `--user` unless it says so.
fn steps() -> Vec<(Holder, Vec<&'static str>, Option<&'static str>)> {
    use Holder::*;
    vec![
        (Root, vec!["user", "add", "root:rootpw"], None),
        (Root, vec!["user", "add", "alice:alicepw"], None),
        (Root, vec!["role", "add", "app"], None),
        (
            Root,
            vec![
                "role",
                "grant-permission",
                "app",
                "--prefix=true",
                "readwrite",
                "app/",
            ],
            None,
        ),
        (Root, vec!["user", "grant-role", "alice", "app"], None),
        // etcdctl grants root the root role, then enables.
        (Root, vec!["auth", "enable"], None),
        // A linearizable read on each of three members in turn: every one
        // has applied the grants before alice writes by certificate (her
        // write is stamped with the auth revision of the member it
        // reaches, and a stale stamp is refused at apply, as by etcd).
        (Root, vec!["get", "app/1"], None),
        (Root, vec!["get", "app/1"], None),
        (Root, vec!["get", "app/1"], None),
        (Alice, vec!["put", "app/1", "one"], None),
        (Alice, vec!["get", "app/1"], None),
        (Alice, vec!["put", "other", "x"], None),
        (Alice, vec!["get", "other"], None),
        (
            Alice,
            vec!["txn"],
            Some("value(\"app/1\") = \"one\"\n\nput other y\n\n\n"),
        ),
        (Alice, vec!["watch", "other"], None),
        (Alice, vec!["user", "list"], None),
        (Root, vec!["user", "list"], None),
        (Root, vec!["put", "other", "x"], None),
        (Stranger, vec!["get", "app/1"], None),
        // A token, when there is one, decides; the certificate is not
        // a fallback for a wrong password.
        (Alice, vec!["get", "other", "--user=root:rootpw"], None),
        (Alice, vec!["get", "app/1", "--user=alice:wrong"], None),
        (Alice, vec!["lock", "app/lock", "echo", "held"], None),
        (Alice, vec!["lock", "other/lock", "echo", "held"], None),
        (Root, vec!["lock", "other/lock", "echo", "held"], None),
    ]
}

/// Runs the session against `endpoints` in turn; each step's label and
/// output (stdout and error lines, trimmed).
async fn session(certs: &Certs, clients: &Clients, endpoints: &[String]) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    for (i, (holder, args, stdin)) in steps().into_iter().enumerate() {
        let endpoint = &endpoints[i % endpoints.len()];
        let out = Etcdctl::new(endpoint)
            .flags(&certs.etcdctl_flags(clients.cert(certs, holder)))
            .command_timeout_seconds(3)
            .run_with_input(&args, stdin)
            .await
            .text();
        outputs.push((
            format!("{holder:?}: {}", args.join(" ")),
            out.trim().to_owned(),
        ));
    }
    outputs
}

fn step<'a>(outputs: &'a [(String, String)], label: &str) -> &'a str {
    &outputs
        .iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no step {label}"))
        .1
}

/// `etcdctl elect NAME VALUE` as alice: it campaigns, prints the leader
/// key and value once elected and then holds on until killed (by the
/// command timeout); what it printed.
async fn elect(certs: &Certs, clients: &Clients, endpoint: &str, name: &str) -> String {
    Etcdctl::new(endpoint)
        .flags(&certs.etcdctl_flags(&clients.alice))
        .command_timeout_seconds(2)
        .run(&["elect", name, "alice-value"])
        .await
        .text()
}

/// The Lock and Election services called as alice (by certificate, no
/// token): each call's outcome, `ok` or the error's code and message.
async fn services_as_alice(channel: Channel) -> Vec<(Option<Code>, String)> {
    let outcome = |result: Result<(), tonic::Status>| match result {
        Ok(()) => (None, "ok".to_owned()),
        Err(status) => (Some(status.code()), status.message().to_owned()),
    };
    let lease = LeaseClient::new(channel.clone())
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .into_inner()
        .id;
    let mut lock = LockClient::new(channel.clone());
    let mut election = ElectionClient::new(channel);
    let mut outcomes = Vec::new();

    let held = lock
        .lock(LockRequest {
            name: "app/svc-lock".into(),
            lease,
        })
        .await;
    let key = held.as_ref().map(|r| r.get_ref().key.clone()).ok();
    outcomes.push(outcome(held.map(drop)));
    if let Some(key) = key {
        assert!(key.starts_with(b"app/svc-lock/"), "{key:?}");
        let unlocked = lock.unlock(UnlockRequest { key }).await;
        outcomes.push(outcome(unlocked.map(drop)));
    }
    let refused = lock
        .lock(LockRequest {
            name: "other/svc-lock".into(),
            lease,
        })
        .await;
    outcomes.push(outcome(refused.map(drop)));

    let campaign = election
        .campaign(CampaignRequest {
            name: "app/svc-election".into(),
            lease,
            value: "first".into(),
        })
        .await;
    let leader = campaign
        .as_ref()
        .ok()
        .and_then(|r| r.get_ref().leader.clone());
    outcomes.push(outcome(campaign.map(drop)));
    if let Some(leader) = leader {
        let proclaimed = election
            .proclaim(ProclaimRequest {
                leader: Some(leader.clone()),
                value: "second".into(),
            })
            .await;
        outcomes.push(outcome(proclaimed.map(drop)));
        let current = election
            .leader(LeaderRequest {
                name: "app/svc-election".into(),
            })
            .await;
        if let Ok(reply) = &current {
            let kv = reply.get_ref().kv.clone().unwrap_or_default();
            assert_eq!(kv.value, "second");
        }
        outcomes.push(outcome(current.map(drop)));
        let resigned = election
            .resign(ResignRequest {
                leader: Some(leader),
            })
            .await;
        outcomes.push(outcome(resigned.map(drop)));
    }
    for name in ["other/svc-election"] {
        let campaign = election
            .campaign(CampaignRequest {
                name: name.into(),
                lease,
                value: "x".into(),
            })
            .await;
        outcomes.push(outcome(campaign.map(drop)));
        let leader = election.leader(LeaderRequest { name: name.into() }).await;
        outcomes.push(outcome(leader.map(drop)));
    }
    outcomes
}

fn channel(url: &str, tls: &ClientTls) -> Channel {
    tls.connect_lazy(
        ClientTls::endpoint(url)
            .unwrap()
            .timeout(std::time::Duration::from_secs(10)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_names_the_user_and_lock_and_election_act_as_the_caller() {
    if !etcdctl_available() {
        eprintln!("SKIPPED: etcdctl is not installed");
        return;
    }
    let certs = Certs::new();
    let clients = Clients::new(&certs);
    let mut flags = certs.member_flags(&certs.member);
    flags.extend(["--bcrypt-cost", "4"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let alice_tls = certs.client_tls(&clients.alice);
    let cluster = Cluster::start_with_tls(3, &flags, Some(alice_tls.clone())).await;
    let urls: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    let keel = session(&certs, &clients, &urls).await;

    // What Keel must say, whatever etcd says.
    let denied = "Error: etcdserver: permission denied";
    assert_eq!(step(&keel, "Root: auth enable"), "Authentication Enabled");
    assert_eq!(step(&keel, "Alice: put app/1 one"), "OK");
    assert_eq!(step(&keel, "Alice: get app/1"), "app/1\none");
    assert_eq!(step(&keel, "Alice: put other x"), denied);
    assert_eq!(step(&keel, "Alice: get other"), denied);
    assert_eq!(step(&keel, "Alice: txn"), denied);
    assert!(step(&keel, "Alice: watch other").contains("permission denied"));
    assert_eq!(step(&keel, "Alice: user list"), denied);
    assert_eq!(step(&keel, "Root: user list"), "alice\nroot");
    assert_eq!(step(&keel, "Root: put other x"), "OK");
    assert_eq!(step(&keel, "Stranger: get app/1"), denied);
    assert_eq!(
        step(&keel, "Alice: get other --user=root:rootpw"),
        "other\nx"
    );
    assert_eq!(
        step(&keel, "Alice: get app/1 --user=alice:wrong"),
        "Error: etcdserver: authentication failed, invalid user ID or password"
    );
    assert_eq!(step(&keel, "Alice: lock app/lock echo held"), "held");
    assert!(
        step(&keel, "Alice: lock other/lock echo held").contains("permission denied"),
        "{keel:#?}"
    );
    assert_eq!(step(&keel, "Root: lock other/lock echo held"), "held");

    let elected = elect(&certs, &clients, &urls[1], "app/election").await;
    assert!(
        elected.starts_with("app/election/") && elected.contains("alice-value"),
        "{elected}"
    );
    let refused = elect(&certs, &clients, &urls[2], "other/election").await;
    assert!(refused.contains("permission denied"), "{refused}");

    let keel_services = services_as_alice(channel(&urls[0], &alice_tls)).await;
    let (codes, messages): (Vec<_>, Vec<_>) = keel_services.iter().cloned().unzip();
    let denied = Some(Code::PermissionDenied);
    assert_eq!(
        codes,
        [None, None, denied, None, None, None, None, denied, denied],
        "{messages:?}"
    );
    assert_eq!(messages[2], "etcdserver: permission denied");

    if !have("etcd") {
        eprintln!("etcd is not installed: compared nothing, checked Keel alone");
        return;
    }
    let s = |p: &std::path::Path| p.display().to_string();
    let etcd_flags = vec![
        "--bcrypt-cost".into(),
        "4".into(),
        "--cert-file".into(),
        s(&certs.member.0),
        "--key-file".into(),
        s(&certs.member.1),
        "--trusted-ca-file".into(),
        s(&certs.ca),
        "--client-cert-auth".into(),
    ];
    let server = Etcd::start("https", &etcd_flags, &certs.etcdctl_flags(&clients.root)).await;
    let etcd = session(&certs, &clients, std::slice::from_ref(&server.endpoint)).await;
    for ((label, ours), (_, theirs)) in keel.iter().zip(&etcd) {
        assert_eq!(ours, theirs, "`etcdctl {label}` differs from etcd");
    }
    let elected = elect(&certs, &clients, &server.endpoint, "app/election").await;
    assert!(elected.starts_with("app/election/"), "etcd: {elected}");
    let refused = elect(&certs, &clients, &server.endpoint, "other/election").await;
    assert!(refused.contains("permission denied"), "etcd: {refused}");
    // etcd returns its recipes' errors as plain errors (gRPC Unknown), with
    // the same messages (docs/etcd-compatibility.md).
    let etcd_services = services_as_alice(channel(&server.endpoint, &alice_tls)).await;
    let etcd_messages: Vec<String> = etcd_services.into_iter().map(|(_, m)| m).collect();
    assert_eq!(
        messages, etcd_messages,
        "Lock and Election differ from etcd"
    );
}
