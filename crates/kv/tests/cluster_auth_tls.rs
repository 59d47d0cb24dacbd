//! Three members with TLS on client and peer URLs, certificates required,
//! and auth enabled: the leader is killed with SIGKILL and restarted, and
//! users, roles, permissions and the enabled flag survive on every member;
//! a token issued before the kill by a surviving member keeps working on
//! the survivors, and one from the restarted member works everywhere.

mod support;

use std::time::Duration;

use keel_kv::proto::authpb::Permission;
use keel_kv::proto::authpb::permission::Type as PermType;
use keel_kv::proto::etcdserverpb::auth_client::AuthClient;
use keel_kv::proto::etcdserverpb::kv_client::KvClient;
use keel_kv::proto::etcdserverpb::{
    AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
    AuthUserGrantRoleRequest, AuthenticateRequest,
};
use support::certs::Certs;
use support::{Cluster, START_TIMEOUT, put, range};
use tokio::time::Instant;
use tonic::{Code, Request};

/// A request carrying `token` as etcd's clients send it.
fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("token", token.parse().unwrap());
    request
}

async fn authenticate(
    cluster: &Cluster,
    i: usize,
    name: &str,
    password: &str,
) -> Result<String, tonic::Status> {
    AuthClient::new(cluster.channel(i).await)
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await
        .map(|reply| reply.into_inner().token)
}

/// Waits until member `i` authenticates root: it is up, and its auth state
/// has caught up (Authenticate reads after a barrier).
async fn wait_authenticates(cluster: &Cluster, i: usize) -> String {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match authenticate(cluster, i, "root", "rootpw").await {
            Ok(token) => return token,
            Err(status) => assert!(
                Instant::now() < deadline,
                "member {i} did not authenticate root within {START_TIMEOUT:?}: {status:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(
    cluster: &Cluster,
    i: usize,
    key: &str,
    token: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let reply = KvClient::new(cluster.channel(i).await)
        .range(with_token(range(key), token))
        .await?
        .into_inner();
    Ok(reply
        .kvs
        .first()
        .map(|kv| kv.value.to_vec())
        .unwrap_or_default())
}

async fn set_up_auth(cluster: &Cluster) {
    let mut auth = AuthClient::new(cluster.channel(0).await);
    for (name, password) in [("root", "rootpw"), ("alice", "alicepw")] {
        auth.user_add(AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for role in ["root", "app"] {
        auth.role_add(AuthRoleAddRequest { name: role.into() })
            .await
            .unwrap();
    }
    auth.role_grant_permission(AuthRoleGrantPermissionRequest {
        name: "app".into(),
        perm: Some(Permission {
            perm_type: PermType::Readwrite as i32,
            key: "app/".into(),
            range_end: "app0".into(),
        }),
    })
    .await
    .unwrap();
    for (user, role) in [("root", "root"), ("alice", "app")] {
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await
        .unwrap();
    }
    auth.auth_enable(AuthEnableRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_state_survives_a_leader_kill_and_restart_with_tls_everywhere() {
    let certs = Certs::new();
    let mut flags = certs.member_flags(&certs.member);
    flags.extend(
        [
            "--bcrypt-cost",
            "4",
            // Snapshots often, so that a restart also restores auth state
            // from a snapshot and not only from the log.
            "--snapshot-count",
            "5",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let tls = certs.client_tls(&certs.client);
    let mut cluster = Cluster::start_with_tls(3, &flags, Some(tls)).await;

    set_up_auth(&cluster).await;
    let leader = cluster.wait_leader().await;
    let survivor = (leader + 1) % 3;
    let root = wait_authenticates(&cluster, survivor).await;
    let alice = authenticate(&cluster, survivor, "alice", "alicepw")
        .await
        .unwrap();
    KvClient::new(cluster.channel(leader).await)
        .put(with_token(put("app/1", "one"), &alice))
        .await
        .unwrap();
    for i in 0..3 {
        assert_eq!(get(&cluster, i, "app/1", &alice).await.unwrap(), b"one");
    }

    cluster.kill(leader).await;
    cluster.wait_leader().await;
    // Tokens issued by a survivor before the kill still serve on it and
    // on the other survivor.
    for i in (0..3).filter(|&i| i != leader) {
        assert_eq!(get(&cluster, i, "app/1", &alice).await.unwrap(), b"one");
        let refused = KvClient::new(cluster.channel(i).await)
            .put(with_token(put("other", "x"), &alice))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);
        KvClient::new(cluster.channel(i).await)
            .put(with_token(put("other", "x"), &root))
            .await
            .unwrap();
    }

    cluster.spawn(leader, "new");
    let restarted_root = wait_authenticates(&cluster, leader).await;
    // Without a token, the client certificate's common name is the user
    // (`--client-cert-auth`): `client`, who does not exist.
    let by_certificate = KvClient::new(cluster.channel(leader).await)
        .range(range("app/1"))
        .await
        .unwrap_err();
    assert_eq!(by_certificate.message(), "etcdserver: permission denied");
    let alice_there = authenticate(&cluster, leader, "alice", "alicepw")
        .await
        .unwrap();
    let wrong = authenticate(&cluster, leader, "alice", "nope")
        .await
        .unwrap_err();
    assert_eq!(
        wrong.message(),
        "etcdserver: authentication failed, invalid user ID or password"
    );
    for i in 0..3 {
        assert_eq!(
            get(&cluster, i, "app/1", &alice_there).await.unwrap(),
            b"one"
        );
        assert_eq!(
            get(&cluster, i, "other", &restarted_root).await.unwrap(),
            b"x"
        );
        let refused = get(&cluster, i, "other", &alice_there).await.unwrap_err();
        assert_eq!(refused.message(), "etcdserver: permission denied");
    }
}
