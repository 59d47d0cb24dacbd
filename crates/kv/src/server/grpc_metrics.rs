//! Counting the etcd API's calls on the client port, as etcd's
//! `grpc_server_started_total` and `grpc_server_handled_total` (the
//! go-grpc-prometheus series) count them: per service and method, and for
//! finished calls per status code.
//!
//! A call is counted as handled when its status is known: at once for a
//! refusal sent without a body (gRPC's "trailers-only" reply, which every
//! error returned by a handler is), otherwise when the trailers that end
//! the response stream pass through. A stream the client abandons has no
//! trailers and is counted as started only.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

/// One method's calls since the member started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MethodCalls {
    pub started: u64,
    /// Finished calls by gRPC code name (`OK`, `NotFound`, …).
    pub handled: BTreeMap<&'static str, u64>,
}

/// A method as the series label it: `etcdserverpb.KV`, `Range`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GrpcMethod {
    pub service: String,
    pub method: String,
}

impl GrpcMethod {
    /// go-grpc-prometheus's `grpc_type`: the etcd API's streaming calls
    /// are known by name, every other call is unary.
    pub fn kind(&self) -> &'static str {
        match (self.service.as_str(), self.method.as_str()) {
            ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => {
                "bidi_stream"
            }
            ("etcdserverpb.Maintenance", "Snapshot") | ("v3electionpb.Election", "Observe") => {
                "server_stream"
            }
            _ => "unary",
        }
    }
}

/// The client port's call counts, shared by the server and exporters.
///
/// Keyed by the call's path (`/etcdserverpb.KV/Put`), so that counting a
/// call allocates nothing once its method has been seen: the lookup
/// borrows the request's path, and the response's counter holds the
/// table's own key.
#[derive(Clone, Debug, Default)]
pub struct GrpcCounters {
    calls: Arc<Mutex<BTreeMap<Arc<str>, MethodCalls>>>,
}

/// Methods are counted only for paths the etcd API could have, so that
/// hostile paths cannot grow the table without bound.
const METHOD_NAME_BYTES_MAX: usize = 64;
const METHODS_MAX: usize = 256;

impl GrpcCounters {
    /// Every method called so far, with its counts.
    pub fn calls(&self) -> BTreeMap<GrpcMethod, MethodCalls> {
        let calls = self.calls.lock().expect("no panic while counting");
        calls
            .iter()
            .filter_map(|(path, counts)| Some((method_of(path)?, counts.clone())))
            .collect()
    }

    /// Counts a call to `path` (a method's path: [`split_method_path`])
    /// as started and returns the table's key for it; `None` once the
    /// table is full.
    fn started(&self, path: &str) -> Option<Arc<str>> {
        let mut calls = self.calls.lock().expect("no panic while counting");
        let key = match calls.get_key_value(path) {
            Some((key, _)) => key.clone(),
            None if calls.len() < METHODS_MAX => Arc::from(path),
            None => return None,
        };
        calls.entry(key.clone()).or_default().started += 1;
        Some(key)
    }

    fn handled(&self, path: &str, code: &'static str) {
        let mut calls = self.calls.lock().expect("no panic while counting");
        if let Some(counts) = calls.get_mut(path) {
            *counts.handled.entry(code).or_default() += 1;
        }
    }
}

/// `/package.Service/Method`, split, if the path has that shape.
fn split_method_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let fits = |s: &str| {
        !s.is_empty()
            && s.len() <= METHOD_NAME_BYTES_MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
    };
    (fits(service) && fits(method)).then_some((service, method))
}

/// The method a `/package.Service/Method` path names, if it has that shape.
fn method_of(path: &str) -> Option<GrpcMethod> {
    let (service, method) = split_method_path(path)?;
    Some(GrpcMethod {
        service: service.to_owned(),
        method: method.to_owned(),
    })
}

/// The name of the code in `grpc-status`, if the headers carry one.
fn status_of(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(code_name(tonic::Code::from_i32(value)))
}

/// gRPC's names for its codes, as go-grpc-prometheus labels them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "Canceled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// The middleware around the etcd services (`axum::middleware::from_fn_with_state`).
pub(crate) async fn count_calls(
    State(counters): State<GrpcCounters>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let Some(key) = split_method_path(path).and_then(|_| counters.started(path)) else {
        return next.run(request).await;
    };
    let response = next.run(request).await;
    if let Some(code) = status_of(response.headers()) {
        counters.handled(&key, code);
        return response;
    }
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            if let Some(code) = frame.trailers_ref().and_then(status_of) {
                counters.handled(&key, code);
            }
            frame
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_shaped_paths_name_a_method() {
        let m = method_of("/etcdserverpb.KV/Range").unwrap();
        assert_eq!(
            (m.service.as_str(), m.method.as_str()),
            ("etcdserverpb.KV", "Range")
        );
        assert_eq!(m.kind(), "unary");
        for bad in ["", "/", "/a", "/a/", "//b", "/a/b c", "/a/b/c", "/metrics"] {
            assert_eq!(method_of(bad), None, "{bad:?}");
        }
        let long = format!("/s/{}", "m".repeat(METHOD_NAME_BYTES_MAX + 1));
        assert_eq!(method_of(&long), None);
    }

    #[test]
    fn the_method_table_is_bounded() {
        let counters = GrpcCounters::default();
        for i in 0..METHODS_MAX + 10 {
            let path = format!("/s/m{i}");
            let counted = counters.started(&path);
            assert_eq!(counted.is_some(), i < METHODS_MAX, "{path}");
            counters.handled(&path, "OK");
        }
        let calls = counters.calls();
        assert_eq!(calls.len(), METHODS_MAX);
        assert!(
            calls
                .values()
                .all(|c| c.started == 1 && c.handled["OK"] == 1)
        );
        assert_eq!(counters.started("/s/m0").as_deref(), Some("/s/m0"));
        assert_eq!(counters.calls()[&method_of("/s/m0").unwrap()].started, 2);
    }

    #[test]
    fn watch_and_keepalive_are_bidi_streams() {
        let kind = |p: &str| method_of(p).unwrap().kind();
        assert_eq!(kind("/etcdserverpb.Watch/Watch"), "bidi_stream");
        assert_eq!(kind("/etcdserverpb.Lease/LeaseKeepAlive"), "bidi_stream");
        assert_eq!(kind("/etcdserverpb.Maintenance/Snapshot"), "server_stream");
    }
}
