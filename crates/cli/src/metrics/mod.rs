//! The member's HTTP routes: `/metrics` for Prometheus, `/health`,
//! `/livez` and `/readyz` for load balancers and orchestrators, and etcd's
//! `/version`. They are
//! served on the client port, as etcd serves them, and on the side-car's
//! own `--listen-metrics-urls`, which is separate from the client port so
//! that scraping and probing never compete with gRPC clients. The side-car
//! also serves the live web view of the cluster at `/` (`web/`).

mod exposition;
mod sample;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

pub use sample::{
    GrpcCalls, Histogram, LogSpan, Probe, ReplicationCounters, Role, Sample, Sampling,
};

/// A member is not ready while it is this many entries behind on applying
/// what it knows is committed: its reads would be stale.
pub const READY_APPLY_LAG_MAX: u64 = 1000;

type Shared = State<Arc<dyn Probe>>;

/// Why a member that does not answer its own probe is not healthy.
const NOT_ANSWERING: &str = "member not answering";

async fn metrics(State(probe): Shared) -> Response {
    let Some(sample) = probe.sample().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, NOT_ANSWERING).into_response();
    };
    match exposition::render(sample) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// etcd's body shape, so that tools written for etcd's `/health` work.
fn verdict(reason: Option<&str>) -> Response {
    let (status, body) = match reason {
        None => (
            StatusCode::OK,
            r#"{"health":"true","reason":""}"#.to_string(),
        ),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(r#"{{"health":"false","reason":"{why}"}}"#),
        ),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Healthy: the member is part of a cluster that has a leader, so writes
/// can make progress.
async fn health(State(probe): Shared) -> Response {
    match probe.sample().await {
        None => verdict(Some(NOT_ANSWERING)),
        Some(sample) => verdict(sample.leader_id.is_none().then_some("no leader")),
    }
}

/// Live: the member's Raft node runs (whatever its cluster's state), so
/// restarting the process would not help.
async fn livez(State(probe): Shared) -> Response {
    match probe.sample().await {
        None => (StatusCode::SERVICE_UNAVAILABLE, NOT_ANSWERING).into_response(),
        Some(_) => (StatusCode::OK, "ok").into_response(),
    }
}

/// etcd's `/version`: the server and cluster versions Keel reports.
async fn version() -> Response {
    let body = format!(
        r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#,
        keel_kv::service::API_VERSION,
        keel_kv::service::CLUSTER_VERSION
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Ready: healthy, and caught up enough to serve reads.
async fn readyz(State(probe): Shared) -> Response {
    let Some(sample) = probe.sample().await else {
        return verdict(Some(NOT_ANSWERING));
    };
    let lag = sample.commit_index.saturating_sub(sample.applied_index);
    if sample.leader_id.is_none() {
        verdict(Some("no leader"))
    } else if lag > READY_APPLY_LAG_MAX {
        verdict(Some("applying committed entries"))
    } else {
        verdict(None)
    }
}

/// The side-car's routes over `probe`.
pub fn router(probe: Arc<dyn Probe>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .with_state(probe)
}

/// Serves the side-car's routes over `probe` and the web view over `feed`
/// on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    probe: Arc<dyn Probe>,
    feed: web::Feed,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(probe).merge(web::router(feed)))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
