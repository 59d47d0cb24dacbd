//! The live web view of the cluster, served by every member on its
//! metrics port next to `/metrics`: `/` is the page, `/web/events` a
//! stream of server-sent events that carries the whole [`View`] after
//! every round, `/web/state` the latest one as JSON (for scripts).
//!
//! A round (`watch_cluster`) asks every member for its status through
//! keel-kv's [`ClusterObserver`] (the peer listener: see
//! `keel_kv::observe`), so one reachable member shows the whole cluster
//! and a member that does not answer is shown as down. [`History`]
//! (`view.rs`) turns the rounds into what the page shows.
//!
//! The page is plain HTML, CSS and JavaScript compiled into the binary
//! (`page/`): no build step, no framework, no requests to anywhere else.

mod view;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use keel_kv::observe::ClusterObserver;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

pub use view::History;

/// How often the cluster is asked: fast enough that a leader change shows
/// within a second, cheap enough (one small call per member) to run on
/// every member all the time.
pub const ROUND_EVERY: Duration = Duration::from_millis(250);
/// A member that does not answer within this is shown as down.
pub const ANSWER_TIMEOUT: Duration = Duration::from_millis(400);

const INDEX_HTML: &str = include_str!("page/index.html");
const STYLE_CSS: &str = include_str!("page/style.css");
const APP_JS: &str = include_str!("page/app.js");

/// The latest view, serialized once per round for every reader.
pub type Feed = watch::Receiver<Arc<str>>;

/// Asks the cluster every [`ROUND_EVERY`] until `stop` resolves, and
/// publishes each view on the returned feed.
pub fn watch_cluster(
    observer: ClusterObserver,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Feed {
    let (publish, feed) = watch::channel(Arc::from("{}"));
    tokio::spawn(async move {
        let mut history = History::default();
        let mut every = tokio::time::interval(ROUND_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = every.tick() => {}
            }
            let round = observer.gather(ANSWER_TIMEOUT).await;
            let view = history.record(now_ms(), round);
            let json = serde_json::to_string(&view).expect("a view serializes: plain data");
            if publish.send(Arc::from(json)).is_err() {
                return;
            }
        }
    });
    feed
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn page() -> Html<&'static str> {
    Html(INDEX_HTML)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn state(State(feed): State<Feed>) -> Response {
    let json = feed.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

/// Every view from now on, one `view` event each; comments keep idle
/// proxies from closing the stream.
async fn events(
    State(feed): State<Feed>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let views = WatchStream::new(feed).map(|json| Ok(Event::default().event("view").data(&*json)));
    Sse::new(views).keep_alive(KeepAlive::default())
}

/// The page's routes, fed by `feed`.
pub fn router(feed: Feed) -> Router {
    Router::new()
        .route("/", get(page))
        .route(
            "/web/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/web/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route("/web/state", get(state))
        .route("/web/events", get(events))
        .with_state(feed)
}
