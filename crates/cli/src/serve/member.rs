//! Running a member from a checked [`ServeConfig`]: keel-kv's server (the
//! Raft node and the etcd API) and the metrics side-car next to it.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use keel_kv::server;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::ServeConfig;
use super::probe::MemberProbe;
use crate::metrics::{self, Probe, web};

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
    let member = server::start_with_http(config.member.clone(), |member| {
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
