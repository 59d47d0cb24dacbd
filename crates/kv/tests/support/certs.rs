//! The certificates of one test, made with rcgen in a temporary directory:
//! the cluster's CA, one certificate every member uses for clients and
//! peers, clients' certificates by common name, and another CA's.

use std::path::{Path, PathBuf};

use keel_transport::tls::ClientTls;
use keel_transport::tls::test_certs::TestCa;

/// A certificate file and its key file.
pub type CertFiles = (PathBuf, PathBuf);

pub struct Certs {
    dir: tempfile::TempDir,
    authority: TestCa,
    pub ca: PathBuf,
    pub member: CertFiles,
    /// A client certificate with common name `client` (no such user).
    pub client: CertFiles,
    pub rogue_ca: PathBuf,
    /// A certificate another CA signed.
    pub rogue: CertFiles,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let authority = TestCa::new("keel test CA");
        let rogue_ca = TestCa::new("rogue CA");
        Certs {
            ca: authority.write(dir.path(), "ca"),
            member: authority.issue_local("member").write(dir.path(), "member"),
            client: authority.issue_local("client").write(dir.path(), "client"),
            rogue_ca: rogue_ca.write(dir.path(), "rogue-ca"),
            rogue: rogue_ca.issue_local("member").write(dir.path(), "rogue"),
            authority,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client certificate, signed by the cluster's CA, whose subject's
    /// common name is `common_name`.
    pub fn client_named(&self, common_name: &str) -> CertFiles {
        self.authority
            .issue_local(common_name)
            .write(self.dir.path(), &format!("client-{common_name}"))
    }

    /// Every member's flags: TLS on both sides, certificates required,
    /// with `peer` as the peer certificate.
    pub fn member_flags(&self, peer: &CertFiles) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        vec![
            "--cert-file".into(),
            s(&self.member.0),
            "--key-file".into(),
            s(&self.member.1),
            "--trusted-ca-file".into(),
            s(&self.ca),
            "--client-cert-auth".into(),
            "--peer-cert-file".into(),
            s(&peer.0),
            "--peer-key-file".into(),
            s(&peer.1),
            "--peer-trusted-ca-file".into(),
            s(&self.ca),
            "--peer-client-cert-auth".into(),
        ]
    }

    /// etcdctl's TLS flags for a client holding `cert`.
    pub fn etcdctl_flags(&self, cert: &CertFiles) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", cert.0.display()),
            format!("--key={}", cert.1.display()),
        ]
    }

    /// How the test's own gRPC clients present `cert`.
    pub fn client_tls(&self, cert: &CertFiles) -> ClientTls {
        ClientTls::from_files(Some(&self.ca), Some((&cert.0, &cert.1))).unwrap()
    }
}
