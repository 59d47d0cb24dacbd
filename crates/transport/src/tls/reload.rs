//! [`Reloading`]: a value built from files and built again when they
//! change, so certificates, keys, CA bundles and revocation lists rotate
//! without a restart. One mechanism for every kind of TLS material, on
//! both ends of a connection.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio_rustls::rustls::SignatureScheme;
use tokio_rustls::rustls::client::ResolvesClientCert;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tracing::{info, warn};

use super::files::read_key_pair;
use super::{RELOAD_CHECK_INTERVAL, TlsError};

type Loader<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// A value loaded from `files` by `load`, loaded again when any file's
/// modification time changes (looked at, at most once per
/// `RELOAD_CHECK_INTERVAL`, when the value is asked for: at a
/// handshake). A load that fails (a file half written, a key that does
/// not match its certificate yet) is logged and the previous value kept;
/// it is tried again when a file changes again.
pub(super) struct Reloading<T> {
    /// What the files hold, for the logs ("certificate", "trusted CAs").
    what: &'static str,
    files: Vec<PathBuf>,
    load: Loader<T>,
    state: Mutex<Loaded<T>>,
}

struct Loaded<T> {
    value: Arc<T>,
    /// The files' modification times when last looked at.
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl<T> Reloading<T> {
    /// Loads the value now: an error here is an error at startup.
    pub(super) fn new(
        what: &'static str,
        files: Vec<PathBuf>,
        load: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, TlsError> {
        let stamps = files.iter().map(|f| modified(f)).collect();
        let value = Arc::new(load()?);
        Ok(Reloading {
            what,
            files,
            load: Box::new(load),
            state: Mutex::new(Loaded {
                value,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The value, loaded again first if a file changed.
    pub(super) fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() < RELOAD_CHECK_INTERVAL {
            return state.value.clone();
        }
        state.checked = Instant::now();
        let stamps: Vec<_> = self.files.iter().map(|f| modified(f)).collect();
        if stamps != state.stamps {
            state.stamps = stamps;
            match (self.load)() {
                Ok(value) => {
                    info!(files = ?self.files, "reloaded the TLS {}", self.what);
                    state.value = Arc::new(value);
                }
                Err(e) => warn!(error = %e, "keeping the previous TLS {}", self.what),
            }
        }
        state.value.clone()
    }
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The certificate and key this end presents, on either end of a
/// connection: to clients as a server, to servers as a client (the same
/// files rotate both).
#[derive(Debug)]
pub(super) struct ReloadingCert(Reloading<CertifiedKey>);

impl ReloadingCert {
    pub(super) fn from_files(cert: &Path, key: &Path) -> Result<ReloadingCert, TlsError> {
        let (cert, key) = (cert.to_owned(), key.to_owned());
        Reloading::new("certificate", vec![cert.clone(), key.clone()], move || {
            read_key_pair(&cert, &key)
        })
        .map(ReloadingCert)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
