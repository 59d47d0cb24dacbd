//! Throwaway certificate authorities and certificates for tests, made
//! with rcgen in memory (feature `test-certs`). Never use them in
//! production: the keys are written unencrypted to wherever asked.

use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, date_time_ymd,
};

/// A self-signed CA that issues certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    /// The serial number of the next certificate it issues.
    next_serial: AtomicU64,
}

/// A certificate and its key, in PEM.
pub struct TestCert {
    /// The certificate, PEM-encoded.
    pub cert_pem: String,
    /// Its private key, PEM-encoded and unencrypted.
    pub key_pem: String,
    /// Its serial number, unique among its CA's certificates.
    pub serial: u64,
}

impl TestCa {
    /// A new CA whose subject's common name is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generating a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signing the CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
            next_serial: AtomicU64::new(1),
        }
    }

    /// The CA's certificate, in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `dir/<stem>.pem`.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, &self.pem).expect("writing a test CA");
        path
    }

    /// A certificate for common name `cn` and subject alternative names
    /// `names` (DNS names or IP addresses), good for both ends of a
    /// connection (server and client authentication), as etcd's peer
    /// certificates are.
    pub fn issue(&self, cn: &str, names: &[&str]) -> TestCert {
        let key = KeyPair::generate().expect("generating a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid SANs");
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a certificate");
        TestCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }

    /// A revocation list (PEM) this CA signed, naming `revoked`.
    pub fn crl(&self, revoked: &[&TestCert]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(1),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|cert| RevokedCertParams {
                    serial_number: SerialNumber::from(cert.serial),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .and_then(|crl| crl.pem())
            .expect("signing a revocation list")
    }

    /// [`TestCa::issue`] for `localhost` and `127.0.0.1`.
    pub fn issue_local(&self, cn: &str) -> TestCert {
        self.issue(cn, &["localhost", "127.0.0.1"])
    }
}

impl TestCert {
    /// Writes `dir/<stem>.pem` and `dir/<stem>.key`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("writing a test certificate");
        std::fs::write(&key, &self.key_pem).expect("writing a test key");
        (cert, key)
    }
}
