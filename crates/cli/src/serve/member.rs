//! Running a member from a checked [`ServeConfig`]: keel-kv's server (the
//! Raft node and the etcd API) and the metrics side-car next to it.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use keel_kv::server::{self, MemberConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::ServeConfig;
use super::probe::MemberProbe;
use super::settings::ClusterState;
use crate::metrics::{self, Probe, web};

/// keel-kv's configuration for this member.
fn member_config(config: &ServeConfig) -> MemberConfig {
    let strings = |urls: &[super::HttpUrl]| urls.iter().map(ToString::to_string).collect();
    let defaults = MemberConfig::new(config.name.clone(), config.data_dir.clone());
    MemberConfig {
        listen_client_urls: strings(&config.listen_client_urls),
        advertise_client_urls: strings(&config.advertise_client_urls),
        listen_peer_urls: strings(&config.listen_peer_urls),
        initial_advertise_peer_urls: strings(&config.initial_advertise_peer_urls),
        initial_cluster: config
            .initial_cluster
            .iter()
            .flat_map(|(name, urls)| urls.iter().map(move |u| (name.clone(), u.to_string())))
            .collect(),
        initial_cluster_state: match config.initial_cluster_state {
            ClusterState::New => server::ClusterState::New,
            ClusterState::Existing => server::ClusterState::Existing,
        },
        initial_cluster_token: config.initial_cluster_token.clone(),
        force_new_cluster: config.force_new_cluster,
        heartbeat_interval: config.heartbeat_interval,
        election_timeout: config.election_timeout,
        snapshot_count: config.snapshot_count,
        watch_progress_notify_interval: config
            .watch_progress_notify_interval
            .unwrap_or(defaults.watch_progress_notify_interval),
        client_tls: config.client_tls.clone(),
        peer_tls: config.peer_tls.clone(),
        quota_backend_bytes: config.quota_backend_bytes,
        auto_compaction: config.auto_compaction,
        auth_token: config
            .auth_token
            .clone()
            .unwrap_or_else(|| defaults.auth_token.clone()),
        auth_token_ttl: config.auth_token_ttl.unwrap_or(defaults.auth_token_ttl),
        bcrypt_cost: config.bcrypt_cost.unwrap_or(defaults.bcrypt_cost),
        ..defaults
    }
}

/// Starts the member and serves until `stop` resolves or the member stops
/// by itself (a fatal error, or its removal from the cluster).
pub async fn run(
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Bind the side-car first: a taken metrics port should fail the start,
    // not surface after the member joined the cluster.
    let mut side_car_listeners = Vec::new();
    for url in &config.listen_metrics_urls {
        let listener = TcpListener::bind(url.authority())
            .await
            .with_context(|| format!("--listen-metrics-urls: cannot listen on {url}"))?;
        side_car_listeners.push((url, listener));
    }
    // etcd serves its HTTP routes on the client port too.
    let member = server::start_with_http(member_config(&config), |member| {
        metrics::router(Arc::new(MemberProbe::new(member)))
    })
    .await
    .context("the member could not start")?;

    let (stopping, stopped) = watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let probe: Arc<dyn Probe> = Arc::new(MemberProbe::new(member.metrics()));
    let mut side_cars = Vec::new();
    // The web view's rounds run only where a side-car serves them.
    if !side_car_listeners.is_empty() {
        let feed = web::watch_cluster(member.metrics().observer(), until_stopped());
        for (url, listener) in side_car_listeners {
            tracing::info!(%url, "serving the web view at /, /metrics, /health and /readyz");
            side_cars.push(tokio::spawn(metrics::serve(
                listener,
                probe.clone(),
                feed.clone(),
                until_stopped(),
            )));
        }
    }
    let outcome = member.run_until(stop).await;
    let _ = stopping.send(true);
    for side_car in side_cars {
        side_car.await?.context("the metrics side-car failed")?;
    }
    outcome?;
    tracing::info!("stopped");
    Ok(())
}
