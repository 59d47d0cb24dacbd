//! Reading TLS material from PEM files: certificate chains, private keys,
//! trusted CA bundles and certificate revocation lists. Every error names
//! the file and what was wrong with it.

use std::path::Path;

use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer,
};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::{TlsError, provider};

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn bad_pem<'a>(what: &'static str, path: &'a Path) -> impl Fn(pem::Error) -> TlsError + 'a {
    move |source| TlsError::BadPem {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Every certificate in a PEM file; at least one.
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(bad_pem(what, path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => bad_pem("key file", path)(e),
    })
}

/// The certificate chain in `cert` and the key in `key`, checked to
/// belong together.
pub(super) fn read_key_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs("certificate file", cert)?;
    let key_der = read_key(key)?;
    CertifiedKey::from_der(certs, key_der, &provider()).map_err(|e| TlsError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source: Box::new(e),
    })
}

/// The trust anchors in a CA bundle; every certificate must be usable.
pub(super) fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in read_certs("trusted CA file", path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            index: index + 1,
            source: Box::new(e),
        })?;
    }
    Ok(roots)
}

/// Every revocation list (PEM `X509 CRL` blocks) in a file; at least one.
pub(super) fn read_crls(
    path: &Path,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    const WHAT: &str = "CRL file";
    let pem = read(WHAT, path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(bad_pem(WHAT, path))?;
    if crls.is_empty() {
        return Err(TlsError::NoCrl {
            path: path.to_owned(),
        });
    }
    Ok(crls)
}
