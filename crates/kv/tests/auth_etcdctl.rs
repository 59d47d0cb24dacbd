//! etcd's Auth API, side by side: the same `etcdctl user/role/auth`
//! session against a three-member Keel cluster (each step sent to the
//! next member in turn) and, when the `etcd` binary is installed, against
//! real etcd 3.4; the outputs must be identical. Then a token obtained
//! from one member is used on every member, before and after a revoked
//! permission.
//!
//! Skips (passing, with a message) when `etcdctl` is not installed.

mod support;

use keel_kv::proto::etcdserverpb::auth_client::AuthClient;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::{AuthRoleRevokePermissionRequest, AuthenticateRequest};
use support::Cluster;
use support::etcd::Etcd;
use support::etcdctl::{Etcdctl, have};
use tonic::Request;

/// A session step's output: stdout and etcdctl's error lines, trimmed.
/// The command timeout is short: a watch step lasts until it runs out.
async fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    Etcdctl::new(endpoint)
        .command_timeout_seconds(3)
        .run_with_input(args, stdin)
        .await
        .text()
        .trim()
        .to_owned()
}

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

/// The scripted session: `(args, stdin)`.
fn steps() -> Vec<(Vec<&'static str>, Option<&'static str>)> {
    vec![
        (vec!["user", "add", "alice:alicepw"], None),
        (vec!["role", "add", "app"], None),
        (
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
        (
            vec!["role", "grant-permission", "app", "read", "shared"],
            None,
        ),
        (vec!["user", "grant-role", "alice", "app"], None),
        (vec!["auth", "enable"], None),
        (vec!["user", "add", "root:rootpw"], None),
        // etcdctl answers "root user does not have root role" by adding
        // the role and granting it, then enables again.
        (vec!["auth", "enable"], None),
        (vec!["user", "grant-role", "root", "root"], None),
        (vec!["auth", "enable", ROOT], None),
        (vec!["user", "get", "alice", ROOT], None),
        (vec!["user", "get", "root", ROOT], None),
        (vec!["user", "list", ROOT], None),
        (vec!["role", "get", "app", ROOT], None),
        (vec!["role", "list", ROOT], None),
        (vec!["user", "list", ALICE], None),
        (vec!["put", "app/1", "one", ALICE], None),
        (vec!["get", "app/1", ALICE], None),
        (vec!["get", "app/", "--prefix", ALICE], None),
        (vec!["put", "other", "x", ALICE], None),
        (vec!["get", "other", ALICE], None),
        (vec!["get", "shared", ALICE], None),
        (vec!["put", "shared", "x", ALICE], None),
        (vec!["get", "", "--from-key", ALICE], None),
        (vec!["get", "app/1"], None),
        // etcd 3.4 answers the admin-only maintenance calls with its auth
        // store's own errors.
        (vec!["endpoint", "hashkv"], None),
        (vec!["endpoint", "hashkv", ALICE], None),
        (
            vec!["txn", ALICE],
            Some("value(\"app/1\") = \"one\"\n\nput app/2 two\n\nput app/2 none\n\n"),
        ),
        (
            vec!["txn", ALICE],
            Some("value(\"app/1\") = \"one\"\n\nput app/3 three\n\nput other y\n\n"),
        ),
        (vec!["watch", "other", ALICE], None),
        (vec!["put", "other", "x", ROOT], None),
        (vec!["get", "other", ROOT], None),
        (vec!["get", "app/1", "--user=alice:wrong"], None),
        (vec!["user", "delete", "root", ROOT], None),
        (vec!["role", "revoke", "root", "root", ROOT], None),
        (
            vec![
                "role",
                "revoke-permission",
                "app",
                "--prefix=true",
                "app/",
                ROOT,
            ],
            None,
        ),
        (vec!["get", "app/1", ALICE], None),
        (vec!["get", "app/1", ALICE], None),
        (vec!["get", "app/1", ALICE], None),
        (vec!["auth", "disable", ROOT], None),
        (vec!["get", "app/", "--prefix"], None),
    ]
}

async fn session(endpoints: &[String]) -> Vec<(String, String)> {
    let mut outputs = Vec::new();
    for (i, (args, stdin)) in steps().into_iter().enumerate() {
        let endpoint = &endpoints[i % endpoints.len()];
        let out = etcdctl(endpoint, &args, stdin).await;
        outputs.push((args.join(" "), out));
    }
    outputs
}

fn step<'a>(outputs: &'a [(String, String)], label: &str, nth: usize) -> &'a str {
    &outputs
        .iter()
        .filter(|(l, _)| l == label)
        .nth(nth)
        .unwrap_or_else(|| panic!("no step {label}"))
        .1
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_session_matches_etcd_and_a_revoked_permission_is_refused_everywhere() {
    if !have("etcdctl") {
        eprintln!("SKIPPED: etcdctl is not installed");
        return;
    }
    let cluster = Cluster::start(3, &["--bcrypt-cost", "4"]).await;
    let endpoints: Vec<String> = cluster.members.iter().map(|m| m.endpoint()).collect();
    let keel = session(&endpoints).await;

    // What Keel must say, whatever etcd says.
    let denied = "Error: etcdserver: permission denied";
    assert_eq!(
        step(&keel, "auth enable", 0),
        "Error: etcdserver: root user does not exist"
    );
    assert_eq!(step(&keel, "auth enable", 1), "Authentication Enabled");
    assert_eq!(
        step(&keel, "user grant-role root root", 0),
        "Error: etcdserver: user name is empty"
    );
    assert_eq!(
        step(&keel, &format!("user get root {ROOT}"), 0),
        "User: root\nRoles: root"
    );
    assert_eq!(step(&keel, &format!("put app/1 one {ALICE}"), 0), "OK");
    assert_eq!(step(&keel, &format!("get app/1 {ALICE}"), 0), "app/1\none");
    assert_eq!(step(&keel, &format!("put other x {ALICE}"), 0), denied);
    assert_eq!(step(&keel, &format!("get other {ALICE}"), 0), denied);
    assert_eq!(step(&keel, &format!("put shared x {ALICE}"), 0), denied);
    assert_eq!(step(&keel, &format!("user list {ALICE}"), 0), denied);
    assert_eq!(
        step(&keel, "get app/1", 0),
        "Error: etcdserver: user name is empty"
    );
    assert_eq!(
        step(&keel, "endpoint hashkv", 0),
        "Error: rpc error: code = Unknown desc = auth: user name is empty"
    );
    assert_eq!(
        step(&keel, &format!("endpoint hashkv {ALICE}"), 0),
        "Error: rpc error: code = Unknown desc = auth: permission denied"
    );
    assert_eq!(step(&keel, &format!("txn {ALICE}"), 1), denied);
    assert!(step(&keel, &format!("watch other {ALICE}"), 0).contains("permission denied"));
    assert_eq!(
        step(&keel, "get app/1 --user=alice:wrong", 0),
        "Error: etcdserver: authentication failed, invalid user ID or password"
    );
    assert_eq!(
        step(&keel, &format!("user delete root {ROOT}"), 0),
        "Error: etcdserver: invalid auth management"
    );
    // Revoked, then refused by each of the three members in turn.
    for nth in 1..=3 {
        assert_eq!(step(&keel, &format!("get app/1 {ALICE}"), nth), denied);
    }
    assert_eq!(
        step(&keel, "get app/ --prefix", 0),
        "app/1\none\napp/2\ntwo"
    );

    if !have("etcd") {
        eprintln!("etcd is not installed: compared nothing, checked Keel alone");
        return;
    }
    let server = Etcd::start("http", &["--bcrypt-cost".into(), "4".into()], &[]).await;
    let etcd = session(std::slice::from_ref(&server.endpoint)).await;
    for ((label, ours), (_, theirs)) in keel.iter().zip(&etcd) {
        assert_eq!(ours, theirs, "`etcdctl {label}` differs from etcd");
    }
}

/// A request carrying `token` as etcd's clients send it.
fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_one_member_serves_on_all_until_its_permission_is_revoked() {
    if !have("etcdctl") {
        eprintln!("SKIPPED: etcdctl is not installed");
        return;
    }
    let cluster = Cluster::start(3, &["--bcrypt-cost", "4"]).await;
    let endpoint = cluster.members[0].endpoint();
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "--prefix=true",
            "readwrite",
            "app/",
        ],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
        &["put", "app/1", "one", ROOT],
    ] {
        let out = etcdctl(&endpoint, args, None).await;
        assert!(!out.starts_with("Error"), "etcdctl {args:?}: {out}");
    }
    let token = |name: &str, password: &str, i: usize| {
        let (name, password) = (name.to_owned(), password.to_owned());
        let cluster = &cluster;
        async move {
            AuthClient::new(cluster.channel(i).await)
                .authenticate(AuthenticateRequest { name, password })
                .await
                .unwrap()
                .into_inner()
                .token
        }
    };
    let alice = token("alice", "alicepw", 0).await;
    let root = token("root", "rootpw", 2).await;
    let get = |i: usize| {
        let cluster = &cluster;
        let alice = alice.clone();
        async move {
            KvClient::new(cluster.channel(i).await)
                .range(with_token(support::range("app/1"), &alice))
                .await
        }
    };
    for i in 0..3 {
        let reply = get(i).await.unwrap().into_inner();
        assert_eq!(reply.kvs[0].value, "one", "member {i}");
    }
    AuthClient::new(cluster.channel(2).await)
        .role_revoke_permission(with_token(
            AuthRoleRevokePermissionRequest {
                role: "app".into(),
                key: "app/".into(),
                range_end: "app0".into(),
            },
            &root,
        ))
        .await
        .unwrap();
    // The same token, on every member: the revoke applied everywhere.
    for i in 0..3 {
        let refused = get(i).await.unwrap_err();
        assert_eq!(
            refused.message(),
            "etcdserver: permission denied",
            "member {i}"
        );
    }
}

/// Membership calls that reach a follower are relayed to the leader with
/// the caller's token, so the leader admits root and refuses others, as
/// the follower did.
#[tokio::test(flavor = "multi_thread")]
async fn membership_calls_through_a_follower_are_checked_as_their_caller() {
    if !have("etcdctl") {
        eprintln!("SKIPPED: etcdctl is not installed");
        return;
    }
    let cluster = Cluster::start(3, &["--bcrypt-cost", "4"]).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.members[(leader + 1) % 3].endpoint();
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "alice:alicepw"],
        &["auth", "enable"],
    ] {
        let out = etcdctl(&follower, args, None).await;
        assert!(!out.starts_with("Error"), "etcdctl {args:?}: {out}");
    }
    let peer_url = format!("--peer-urls=http://127.0.0.1:{}", support::free_port());
    let add = ["member", "add", "extra", &peer_url, "--learner"];
    let refused = etcdctl(&follower, &[&add[..], &[ALICE]].concat(), None).await;
    assert_eq!(refused, "Error: etcdserver: permission denied");
    let added = etcdctl(&follower, &[&add[..], &[ROOT]].concat(), None).await;
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE"), "{added}");
    let id = added
        .split_whitespace()
        .nth(1)
        .expect("etcdctl names the new member's ID");
    let removed = etcdctl(&follower, &["member", "remove", id, ROOT], None).await;
    assert!(removed.contains("removed from cluster"), "{removed}");
}
