//! Reaching a cluster through a list of endpoints.
//!
//! A call goes to the endpoints in order and moves on when one is down or
//! answers `Unavailable` (no leader yet, not the leader, timed out), until
//! `--command-timeout` runs out; any other answer is final. That is enough
//! to ride out a leader election without the caller noticing.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use keel::tls::ClientTls;
use keel_kv::proto::etcdserverpb::AuthenticateRequest;
use keel_kv::proto::etcdserverpb::auth_client::AuthClient;
use tokio::time::Instant;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::duration;

/// Pause between two passes over every endpoint, so that an election can
/// finish.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Where and how patiently to reach the cluster.
#[derive(Args, Clone, Debug)]
pub struct ConnArgs {
    /// Comma-separated client URLs (or HOST:PORT) of the cluster's
    /// members, tried in order.
    #[arg(
        long,
        env = "KEEL_ENDPOINTS",
        default_value = "127.0.0.1:2379",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub endpoints: Vec<String>,

    /// How long to wait for a connection to one endpoint (e.g. 500ms, 2s).
    #[arg(long, default_value = "2s", value_parser = duration::parse, value_name = "DURATION")]
    pub dial_timeout: Duration,

    /// How long a command may take in all, retries on other endpoints
    /// included (e.g. 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = duration::parse, value_name = "DURATION")]
    pub command_timeout: Duration,

    /// Verify https endpoints with the CA certificates in this PEM file
    /// [default: the system's roots].
    #[arg(long, env = "KEEL_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Present this client certificate (PEM) to https endpoints.
    //
    // (Its id is not `cert`: commands have positional arguments named
    // `key`, and clap ids share one namespace.)
    #[arg(
        long = "cert",
        id = "tls_cert",
        env = "KEEL_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(
        long = "key",
        id = "tls_key",
        env = "KEEL_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,

    /// Authenticate as this user, as `name` or `name:password` (etcdctl's
    /// flag); the token is sent with every call.
    #[arg(long, env = "KEEL_USER", value_name = "NAME[:PASSWORD]")]
    pub user: Option<String>,

    /// The password of --user, when it does not carry one.
    #[arg(
        long,
        env = "KEEL_PASSWORD",
        value_name = "PASSWORD",
        requires = "user"
    )]
    pub password: Option<String>,
}

impl ConnArgs {
    /// The user and password to authenticate with, if any.
    fn credentials(&self) -> anyhow::Result<Option<(String, String)>> {
        let Some(user) = &self.user else {
            return Ok(None);
        };
        let (name, password) = match (user.split_once(':'), &self.password) {
            (Some((name, password)), None) => (name, password),
            (None, Some(password)) => (user.as_str(), password.as_str()),
            (Some(_), Some(_)) => bail!("give the password in --user or in --password, not both"),
            (None, None) => {
                bail!("--user {user}: give a password as --user {user}:PASSWORD or --password")
            }
        };
        if name.is_empty() {
            bail!("--user: the user name is empty");
        }
        Ok(Some((name.to_owned(), password.to_owned())))
    }

    /// Whether a TLS flag was given: bare `HOST:PORT` endpoints then mean
    /// `https://`.
    fn wants_tls(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// TLS settings from --cacert, --cert and --key, every file read now.
    fn client_tls(&self) -> anyhow::Result<ClientTls> {
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => bail!("--cert and --key go together; give both or neither"),
        };
        Ok(ClientTls::from_files(self.cacert.as_deref(), identity)?)
    }
}

/// Adds the auth token, once there is one, to every call (etcd's `token`
/// metadata).
#[derive(Clone, Debug, Default)]
pub struct TokenInterceptor {
    token: Arc<Mutex<Option<AsciiMetadataValue>>>,
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let token = self
            .token
            .lock()
            .expect("token lock poisoned by a panic")
            .clone();
        if let Some(token) = token {
            request.metadata_mut().insert("token", token);
        }
        Ok(request)
    }
}

/// A connection to one member that carries the auth token.
pub type Conn = InterceptedService<Channel, TokenInterceptor>;

/// A cluster reached through its endpoints, with one lazily opened
/// connection per endpoint.
pub struct Cluster {
    endpoints: Vec<String>,
    dial_timeout: Duration,
    command_timeout: Duration,
    channels: HashMap<String, Channel>,
    /// For `https://` endpoints.
    tls: ClientTls,
    /// `--user`'s name and password, until they were exchanged for a token.
    credentials: Option<(String, String)>,
    /// Shared by every connection: set once, by the first one opened.
    token: TokenInterceptor,
}

/// `HOST:PORT` → `http://HOST:PORT`, or `https://HOST:PORT` when `tls`
/// (a TLS flag was given); URLs with a scheme stay as they are.
pub fn endpoint_url(text: &str, tls: bool) -> anyhow::Result<String> {
    let text = text.trim().trim_end_matches('/');
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.to_string())
    } else if text.contains("://") {
        bail!("--endpoints {text}: only http:// and https:// endpoints are served")
    } else if tls {
        Ok(format!("https://{text}"))
    } else {
        Ok(format!("http://{text}"))
    }
}

/// Whether another endpoint, or a later try, may answer differently.
fn retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
}

impl Cluster {
    pub fn new(args: &ConnArgs) -> anyhow::Result<Cluster> {
        let endpoints = args
            .endpoints
            .iter()
            .filter(|e| !e.trim().is_empty())
            .map(|e| endpoint_url(e, args.wants_tls()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if endpoints.is_empty() {
            bail!("--endpoints is empty; give at least one HOST:PORT");
        }
        Ok(Cluster {
            endpoints,
            dial_timeout: args.dial_timeout,
            command_timeout: args.command_timeout,
            channels: HashMap::new(),
            tls: args.client_tls()?,
            credentials: args.credentials()?,
            token: TokenInterceptor::default(),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A connection to `url`, opened on first use. The first one opened
    /// with --user authenticates: a token from one member serves on all.
    pub async fn channel(&mut self, url: &str) -> anyhow::Result<Conn> {
        let channel = self.raw_channel(url).await?;
        if let Some((name, password)) = self.credentials.clone() {
            self.authenticate(channel.clone(), name, password).await?;
            self.credentials = None;
        }
        Ok(InterceptedService::new(channel, self.token.clone()))
    }

    /// Exchanges the user's password for a token. A cluster with auth off
    /// answers that it is not enabled: then calls go without one, as
    /// etcdctl's do.
    async fn authenticate(
        &mut self,
        channel: Channel,
        name: String,
        password: String,
    ) -> anyhow::Result<()> {
        let answer = AuthClient::new(channel)
            .authenticate(AuthenticateRequest { name, password })
            .await;
        match answer {
            Ok(reply) => {
                let token = AsciiMetadataValue::try_from(reply.into_inner().token)
                    .context("the server's token is not ASCII")?;
                *self
                    .token
                    .token
                    .lock()
                    .expect("token lock poisoned by a panic") = Some(token);
                Ok(())
            }
            Err(status)
                if status.code() == Code::FailedPrecondition
                    && status.message() == "etcdserver: authentication is not enabled" =>
            {
                Ok(())
            }
            Err(status) if retryable(&status) => {
                Err(anyhow!("authenticating: {}", status.message()))
            }
            Err(status) => Err(anyhow::Error::new(Refused(status))),
        }
    }

    async fn raw_channel(&mut self, url: &str) -> anyhow::Result<Channel> {
        if let Some(channel) = self.channels.get(url) {
            return Ok(channel.clone());
        }
        let endpoint = ClientTls::endpoint(url)
            .with_context(|| format!("--endpoints: `{url}` is not a URL"))?
            .connect_timeout(self.dial_timeout)
            .timeout(self.command_timeout);
        let channel = if url.starts_with("https://") {
            self.tls.connect(endpoint).await
        } else {
            endpoint.connect().await
        }
        .with_context(|| format!("cannot connect to {url}"))?;
        self.channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    /// Runs `call` on the first endpoint that gives a final answer.
    pub async fn call<T, F, Fut>(&mut self, what: &str, mut call: F) -> anyhow::Result<T>
    where
        F: FnMut(Conn) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.command_timeout;
        let mut last_error = anyhow!("no endpoint was tried");
        loop {
            for url in self.endpoints.clone() {
                let channel = match self.channel(&url).await {
                    Ok(channel) => channel,
                    Err(e) if e.is::<Refused>() => bail!("{what} failed: {e}"),
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                };
                match tokio::time::timeout_at(deadline, call(channel)).await {
                    Ok(Ok(answer)) => return Ok(answer),
                    Ok(Err(status)) if retryable(&status) => {
                        last_error = anyhow!("{url}: {}", status.message());
                    }
                    Ok(Err(status)) => bail!("{what} failed: {}", status.message()),
                    Err(_) => break,
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(last_error.context(format!(
                    "{what}: no endpoint answered within --command-timeout {:?}",
                    self.command_timeout
                )));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// The first endpoint that accepts a connection, for streams that stay
    /// on one member (watch, snapshot).
    pub async fn any_channel(&mut self) -> anyhow::Result<(String, Conn)> {
        let mut last_error = anyhow!("no endpoint was tried");
        for url in self.endpoints.clone() {
            match self.channel(&url).await {
                Ok(channel) => return Ok((url, channel)),
                Err(e) if e.is::<Refused>() => return Err(e),
                Err(e) => last_error = e,
            }
        }
        Err(last_error.context("no endpoint accepted a connection"))
    }
}

/// A final answer to authenticating (a wrong password, say): no other
/// endpoint would answer differently.
#[derive(Debug, thiserror::Error)]
#[error("authentication refused: {}", .0.message())]
struct Refused(Status);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_becomes_an_http_url() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(endpoint_url("http://a:1/", false).unwrap(), "http://a:1");
        assert_eq!(endpoint_url("https://a:1", false).unwrap(), "https://a:1");
        assert_eq!(endpoint_url("a:1", true).unwrap(), "https://a:1");
        assert_eq!(endpoint_url("http://a:1", true).unwrap(), "http://a:1");
        assert!(endpoint_url("ftp://a:1", false).is_err());
    }
}
