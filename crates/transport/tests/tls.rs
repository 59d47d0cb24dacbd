//! Two transports over loopback with mutual TLS: messages flow between
//! members whose certificates the peer CA signed; a member with a
//! certificate from another CA, one with a certificate of another common
//! name when one is required, one whose certificate a revocation list
//! names, and a member speaking plain TCP deliver nothing. Certificates,
//! CA bundles and revocation lists rewritten on disk are used for new
//! connections on both ends.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use keel_raft::{LogIndex, Message, MessageBody, NodeId, Term};
use keel_transport::tls::test_certs::TestCa;
use keel_transport::tls::{ClientAuth, ClientTls, PeerTls, ServerTls};
use keel_transport::{Handler, Overloaded, SnapshotRejected, Transport, TransportConfig};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const CLUSTER: u64 = 7;

struct Inbox(mpsc::UnboundedSender<Message>);

impl Handler for Inbox {
    fn deliver(&self, messages: Vec<Message>) -> Result<(), Overloaded> {
        for m in messages {
            self.0.send(m).map_err(|_| Overloaded)?;
        }
        Ok(())
    }

    fn disconnected(&self, _: NodeId) {}

    async fn snapshot_offset(&self, _: &Message) -> Result<u64, SnapshotRejected> {
        Ok(0)
    }

    async fn snapshot_chunk(
        &self,
        _: &Message,
        _: u64,
        _: Bytes,
        _: Option<u32>,
    ) -> Result<(), SnapshotRejected> {
        Ok(())
    }
}

/// Member `id`'s TLS: a certificate from `ca` with common name `cn`,
/// trusting (and requiring clients from) `trusted`.
fn peer_tls(
    dir: &Path,
    id: u64,
    ca: &TestCa,
    cn: &str,
    trusted: &TestCa,
    allowed_cn: Option<&str>,
) -> PeerTls {
    let (cert, key) = ca.issue_local(cn).write(dir, &format!("m{id}"));
    let trusted = trusted.write(dir, &format!("m{id}-trusted"));
    PeerTls {
        server: ServerTls::from_files(
            &cert,
            &key,
            &ClientAuth::Required {
                trusted_ca_file: trusted.clone(),
                crl_file: None,
                allowed_cn: allowed_cn.map(str::to_owned),
            },
        )
        .unwrap(),
        client: ClientTls::from_files(Some(&trusted), Some((&cert, &key))).unwrap(),
    }
}

async fn node(
    id: u64,
    tls: Option<PeerTls>,
) -> (Transport, String, mpsc::UnboundedReceiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = TransportConfig::new(CLUSTER, NodeId(id), addr.clone());
    config.tls = tls;
    config.tuning.reconnect_backoff_max = Duration::from_millis(100);
    let transport = Transport::new(config);
    let (tx, rx) = mpsc::unbounded_channel();
    let server = transport.clone();
    tokio::spawn(async move {
        server
            .serve(listener, Inbox(tx), std::future::pending())
            .await
    });
    (transport, addr, rx)
}

fn heartbeat(from: u64, to: u64, round: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(0),
            round,
        },
    }
}

/// Sends heartbeats from `from` to node 1 for a while; whether any arrived.
async fn delivers(
    from: &Transport,
    from_id: u64,
    inbox: &mut mpsc::UnboundedReceiver<Message>,
) -> bool {
    for round in 1..=30 {
        let _ = from.send(heartbeat(from_id, 1, round));
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), inbox.recv()).await {
            assert_eq!(m.from, NodeId(from_id));
            return true;
        }
    }
    false
}

#[tokio::test]
async fn members_with_certificates_from_the_peer_ca_exchange_messages() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("peer CA");
    let (a, a_addr, mut a_inbox) =
        node(1, Some(peer_tls(dir.path(), 1, &ca, "m1", &ca, None))).await;
    let (b, b_addr, mut b_inbox) =
        node(2, Some(peer_tls(dir.path(), 2, &ca, "m2", &ca, None))).await;
    a.set_peer(NodeId(2), b_addr);
    b.set_peer(NodeId(1), a_addr);
    assert!(delivers(&b, 2, &mut a_inbox).await, "b reaches a over TLS");
    a.send(heartbeat(1, 2, 9)).unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), b_inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, heartbeat(1, 2, 9));
    // The connection that reached a also went through its identity check.
    assert_eq!(a.metrics().rejected_wrong_cluster, 0);
}

#[tokio::test]
async fn member_with_a_certificate_from_another_ca_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("peer CA");
    let rogue_ca = TestCa::new("rogue CA");
    let (_a, a_addr, mut a_inbox) =
        node(1, Some(peer_tls(dir.path(), 1, &ca, "m1", &ca, None))).await;
    // The intruder trusts the member's CA (so it could verify the server),
    // but its own certificate comes from another CA.
    let (rogue, _, _) = node(3, Some(peer_tls(dir.path(), 3, &rogue_ca, "m3", &ca, None))).await;
    rogue.set_peer(NodeId(1), a_addr.clone());
    assert!(
        !delivers(&rogue, 3, &mut a_inbox).await,
        "a refuses a certificate from another CA"
    );
    // Under TLS 1.3 the client finishes its handshake before the server
    // judges its certificate, so a channel may open; no call gets through.
    if let Ok(channel) = rogue.connect(NodeId(1)).await {
        let batch = keel_transport::pb::MessageBatch {
            header: Some(keel_transport::pb::Header {
                cluster_id: CLUSTER,
                protocol_version: keel_transport::PROTOCOL_VERSION,
                from: 3,
                from_addr: String::new(),
            }),
            messages: Vec::new(),
        };
        let call = keel_transport::pb::raft_client::RaftClient::new(channel)
            .vote(batch)
            .await;
        assert!(call.is_err(), "a call from another CA's certificate fails");
    }

    // Plain TCP reaches nothing either.
    let (plain, _, _) = node(4, None).await;
    plain.set_peer(NodeId(1), a_addr);
    assert!(
        !delivers(&plain, 4, &mut a_inbox).await,
        "a refuses plain TCP"
    );
}

#[tokio::test]
async fn allowed_common_name_admits_only_that_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("peer CA");
    let (_a, a_addr, mut a_inbox) = node(
        1,
        Some(peer_tls(dir.path(), 1, &ca, "member", &ca, Some("member"))),
    )
    .await;
    let (good, _, _) = node(2, Some(peer_tls(dir.path(), 2, &ca, "member", &ca, None))).await;
    let (other, _, _) = node(
        3,
        Some(peer_tls(dir.path(), 3, &ca, "someone-else", &ca, None)),
    )
    .await;
    good.set_peer(NodeId(1), a_addr.clone());
    other.set_peer(NodeId(1), a_addr);
    assert!(
        !delivers(&other, 3, &mut a_inbox).await,
        "another common name is refused"
    );
    assert!(
        delivers(&good, 2, &mut a_inbox).await,
        "the allowed common name passes"
    );
}

/// The common name of the certificate `addr` presents, seen by a client
/// trusting `ca`.
async fn served_common_name(addr: &str, ca: &TestCa) -> String {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    // The DER holds the common name as plain bytes: callers look for it
    // by containment rather than parse the certificate.
    String::from_utf8_lossy(cert.as_ref()).into_owned()
}

#[tokio::test]
async fn a_rewritten_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("peer CA");
    let (cert, key) = ca.issue_local("first-cert").write(dir.path(), "server");
    let tls = ServerTls::from_files(&cert, &key, &ClientAuth::None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut incoming = keel_transport::tls::incoming(listener, Some(tls));
    tokio::spawn(async move {
        use tokio_stream::StreamExt;
        let mut held = Vec::new();
        while let Some(conn) = incoming.next().await {
            held.push(conn);
        }
    });
    assert!(served_common_name(&addr, &ca).await.contains("first-cert"));

    // A half-written pair (the key not yet matching) keeps the old one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&cert, ca.issue_local("second-cert").cert_pem).unwrap();
    let seen = served_common_name(&addr, &ca).await;
    assert!(
        seen.contains("first-cert"),
        "a mismatched pair is not served"
    );

    let second = ca.issue_local("second-cert");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    second.write(dir.path(), "server");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if served_common_name(&addr, &ca).await.contains("second-cert") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate is served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a call from `from` to node 1, on a connection made now, is
/// answered: both ends' certificates passed the other's checks.
async fn fresh_call_succeeds(from: &Transport, from_id: u64) -> bool {
    let Ok(channel) = from.connect(NodeId(1)).await else {
        return false;
    };
    let batch = keel_transport::pb::MessageBatch {
        header: Some(keel_transport::pb::Header {
            cluster_id: CLUSTER,
            protocol_version: keel_transport::PROTOCOL_VERSION,
            from: from_id,
            from_addr: String::new(),
        }),
        messages: Vec::new(),
    };
    keel_transport::pb::raft_client::RaftClient::new(channel)
        .vote(batch)
        .await
        .is_ok()
}

/// Long enough for a rewritten file to be looked at again.
const RELOAD_WAIT: Duration = Duration::from_millis(1100);

#[tokio::test]
async fn rotated_ca_bundles_and_certificates_are_used_for_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let both = format!("{}{}", old_ca.pem(), new_ca.pem());
    // Member 1 serves; member 2 connects to it. Each has its own files.
    let (a_cert, a_key) = old_ca.issue_local("m1").write(d, "m1");
    let a_trusted = old_ca.write(d, "m1-trusted");
    let (b_cert, b_key) = old_ca.issue_local("m2").write(d, "m2");
    let b_trusted = old_ca.write(d, "m2-trusted");
    let tls = |cert: &Path, key: &Path, trusted: &Path| PeerTls {
        server: ServerTls::from_files(
            cert,
            key,
            &ClientAuth::Required {
                trusted_ca_file: trusted.to_owned(),
                crl_file: None,
                allowed_cn: None,
            },
        )
        .unwrap(),
        client: ClientTls::from_files(Some(trusted), Some((cert, key))).unwrap(),
    };
    let (_a, a_addr, _a_inbox) = node(1, Some(tls(&a_cert, &a_key, &a_trusted))).await;
    let (b, _, _) = node(2, Some(tls(&b_cert, &b_key, &b_trusted))).await;
    b.set_peer(NodeId(1), a_addr.clone());
    assert!(
        fresh_call_succeeds(&b, 2).await,
        "the old CA works at first"
    );

    // Rotation: both trust both CAs, then both take certificates from the
    // new CA, then both drop the old CA.
    std::fs::write(&a_trusted, &both).unwrap();
    std::fs::write(&b_trusted, &both).unwrap();
    tokio::time::sleep(RELOAD_WAIT).await;
    new_ca.issue_local("m1").write(d, "m1");
    new_ca.issue_local("m2").write(d, "m2");
    tokio::time::sleep(RELOAD_WAIT).await;
    assert!(fresh_call_succeeds(&b, 2).await, "mid-rotation");
    new_ca.write(d, "m1-trusted");
    new_ca.write(d, "m2-trusted");
    tokio::time::sleep(RELOAD_WAIT).await;
    assert!(
        fresh_call_succeeds(&b, 2).await,
        "member 2 presents its new certificate and trusts member 1's"
    );

    // A member still holding an old-CA certificate is refused now.
    let (stale, _, _) = node(3, Some(peer_tls(d, 3, &old_ca, "m3", &new_ca, None))).await;
    stale.set_peer(NodeId(1), a_addr);
    assert!(
        !fresh_call_succeeds(&stale, 3).await,
        "a certificate from the CA dropped from the bundle is refused"
    );
}

#[tokio::test]
async fn a_client_certificate_named_in_the_revocation_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("peer CA");
    let (cert, key) = ca.issue_local("m1").write(d, "m1");
    let trusted = ca.write(d, "trusted");
    let crl = d.join("crl.pem");
    std::fs::write(&crl, ca.crl(&[])).unwrap();
    let server = ServerTls::from_files(
        &cert,
        &key,
        &ClientAuth::Required {
            trusted_ca_file: trusted.clone(),
            crl_file: Some(crl.clone()),
            allowed_cn: None,
        },
    )
    .unwrap();
    let client = ClientTls::from_files(Some(&trusted), Some((&cert, &key))).unwrap();
    let (_a, a_addr, _a_inbox) = node(1, Some(PeerTls { server, client })).await;
    let client_of = |id: u64, cert: &keel_transport::tls::test_certs::TestCert| {
        let (c, k) = cert.write(d, &format!("m{id}"));
        PeerTls {
            server: ServerTls::from_files(&c, &k, &ClientAuth::None).unwrap(),
            client: ClientTls::from_files(Some(&trusted), Some((&c, &k))).unwrap(),
        }
    };
    let revoked = ca.issue_local("m2");
    let kept = ca.issue_local("m3");
    let (b, _, _) = node(2, Some(client_of(2, &revoked))).await;
    b.set_peer(NodeId(1), a_addr.clone());
    assert!(fresh_call_succeeds(&b, 2).await, "not revoked yet");

    std::fs::write(&crl, ca.crl(&[&revoked])).unwrap();
    tokio::time::sleep(RELOAD_WAIT).await;
    assert!(
        !fresh_call_succeeds(&b, 2).await,
        "the revoked certificate is refused once the list names it"
    );
    let (c, _, _) = node(3, Some(client_of(3, &kept))).await;
    c.set_peer(NodeId(1), a_addr);
    assert!(fresh_call_succeeds(&c, 3).await, "the others still pass");
}
