//! etcd's JSON gateway on the client port: the unary calls of the v3 API
//! as `POST /v3/...` with a JSON body, as etcd 3.4 serves them next to gRPC
//! (`curl -X POST http://127.0.0.1:2379/v3/kv/range -d '{"key":"Zm9v"}'`).
//!
//! Each route decodes the body in proto3's JSON mapping (`build.rs`:
//! field names as the .proto spells them, either spelling accepted,
//! bytes in base64, 64-bit integers as strings, unknown fields ignored),
//! calls the same service the gRPC route does, and writes the reply the
//! same way, default values left out. A refusal is etcd's gateway's error
//! body, `{"error":…,"message":…,"code":…}`, with its HTTP status for the
//! gRPC code. A token goes in the `Authorization` header, as etcd's
//! gateway takes it; a request is never authenticated by the connection's
//! client certificate (etcd's gateway calls its server with its own).
//!
//! The streaming calls answer as etcd's gateway does, one line
//! `{"result":…}` per reply: `POST /v3/watch` (the body's watch requests,
//! one or more JSON objects, open watchers, which report for as long as
//! the client reads), `POST /v3/lease/keepalive` (one reply per request in
//! the body), `POST /v3/maintenance/snapshot` and `POST
//! /v3/election/observe` (the call's stream, until it ends or the client
//! goes away).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};

use crate::consensus::Consensus;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, WatchRequest};
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::service::{
    AuthService, ClusterService, Credentials, ElectionService, KvService, LeaseService,
    LockService, MaintenanceService, Shared, WatchService,
};

/// Routes one call: `POST $path` to `$service.$method`, its reply written
/// by `$answer` ([`json_reply`] for a unary call, [`streamed`] for one
/// that streams).
macro_rules! route {
    ($router:expr, $path:literal, $service:expr, $method:ident, $answer:expr) => {{
        let service = $service.clone();
        $router.route(
            $path,
            post(move |headers: HeaderMap, body: Bytes| {
                let service = service.clone();
                async move {
                    call(
                        &headers,
                        &body,
                        move |request| async move { service.$method(request).await },
                        $answer,
                    )
                    .await
                }
            }),
        )
    }};
}

/// Routes one unary call: `POST $path` to `$service.$method`.
macro_rules! unary_route {
    ($router:expr, $path:literal, $service:expr, $method:ident) => {
        route!($router, $path, $service, $method, json_reply)
    };
}

/// The gateway's routes over `shared`, for the client port's router.
pub(crate) fn routes<C: Consensus>(shared: Arc<Shared<C>>) -> Router {
    let kv = Arc::new(KvService::new(shared.clone()));
    let lease = Arc::new(LeaseService::new(shared.clone()));
    let cluster = Arc::new(ClusterService::new(shared.clone()));
    let maintenance = Arc::new(MaintenanceService::new(shared.clone()));
    let auth = Arc::new(AuthService::new(shared.clone()));
    let lock = Arc::new(LockService::new(shared.clone()));
    let election = Arc::new(ElectionService::new(shared.clone()));
    // Base64 makes a value a third longer than the request limit allows.
    let body_limit = shared.config.max_request_bytes * 2 + 64 * 1024;

    let mut router = Router::new();
    router = unary_route!(router, "/v3/kv/range", kv, range);
    router = unary_route!(router, "/v3/kv/put", kv, put);
    router = unary_route!(router, "/v3/kv/deleterange", kv, delete_range);
    router = unary_route!(router, "/v3/kv/txn", kv, txn);
    router = unary_route!(router, "/v3/kv/compaction", kv, compact);
    router = unary_route!(router, "/v3/lease/grant", lease, lease_grant);
    router = unary_route!(router, "/v3/lease/revoke", lease, lease_revoke);
    router = unary_route!(router, "/v3/kv/lease/revoke", lease, lease_revoke);
    router = unary_route!(router, "/v3/lease/timetolive", lease, lease_time_to_live);
    router = unary_route!(router, "/v3/kv/lease/timetolive", lease, lease_time_to_live);
    router = unary_route!(router, "/v3/lease/leases", lease, lease_leases);
    router = unary_route!(router, "/v3/kv/lease/leases", lease, lease_leases);
    router = unary_route!(router, "/v3/cluster/member/add", cluster, member_add);
    router = unary_route!(router, "/v3/cluster/member/remove", cluster, member_remove);
    router = unary_route!(router, "/v3/cluster/member/update", cluster, member_update);
    router = unary_route!(router, "/v3/cluster/member/list", cluster, member_list);
    router = unary_route!(
        router,
        "/v3/cluster/member/promote",
        cluster,
        member_promote
    );
    router = unary_route!(router, "/v3/maintenance/alarm", maintenance, alarm);
    router = unary_route!(router, "/v3/maintenance/status", maintenance, status);
    router = unary_route!(
        router,
        "/v3/maintenance/defragment",
        maintenance,
        defragment
    );
    router = unary_route!(router, "/v3/maintenance/hash", maintenance, hash);
    router = unary_route!(
        router,
        "/v3/maintenance/transfer-leadership",
        maintenance,
        move_leader
    );
    router = unary_route!(router, "/v3/auth/enable", auth, auth_enable);
    router = unary_route!(router, "/v3/auth/disable", auth, auth_disable);
    router = unary_route!(router, "/v3/auth/authenticate", auth, authenticate);
    router = unary_route!(router, "/v3/auth/user/add", auth, user_add);
    router = unary_route!(router, "/v3/auth/user/get", auth, user_get);
    router = unary_route!(router, "/v3/auth/user/list", auth, user_list);
    router = unary_route!(router, "/v3/auth/user/delete", auth, user_delete);
    router = unary_route!(router, "/v3/auth/user/changepw", auth, user_change_password);
    router = unary_route!(router, "/v3/auth/user/grant", auth, user_grant_role);
    router = unary_route!(router, "/v3/auth/user/revoke", auth, user_revoke_role);
    router = unary_route!(router, "/v3/auth/role/add", auth, role_add);
    router = unary_route!(router, "/v3/auth/role/get", auth, role_get);
    router = unary_route!(router, "/v3/auth/role/list", auth, role_list);
    router = unary_route!(router, "/v3/auth/role/delete", auth, role_delete);
    router = unary_route!(router, "/v3/auth/role/grant", auth, role_grant_permission);
    router = unary_route!(router, "/v3/auth/role/revoke", auth, role_revoke_permission);
    router = unary_route!(router, "/v3/lock/lock", lock, lock);
    router = unary_route!(router, "/v3/lock/unlock", lock, unlock);
    router = unary_route!(router, "/v3/election/campaign", election, campaign);
    router = unary_route!(router, "/v3/election/proclaim", election, proclaim);
    router = unary_route!(router, "/v3/election/leader", election, leader);
    router = unary_route!(router, "/v3/election/resign", election, resign);
    let watch = Arc::new(WatchService::new(shared.clone()));
    router = router.route(
        "/v3/watch",
        post(move |headers: HeaderMap, body: Bytes| async move {
            watch_stream(&watch, &headers, &body)
        }),
    );
    let keep_alive_shared = shared.clone();
    router = router.route(
        "/v3/lease/keepalive",
        post(move |body: Bytes| {
            let shared = keep_alive_shared.clone();
            async move { keep_alive(&shared, &body).await }
        }),
    );
    router = route!(
        router,
        "/v3/maintenance/snapshot",
        maintenance,
        snapshot,
        streamed
    );
    router = route!(router, "/v3/election/observe", election, observe, streamed);
    router.layer(DefaultBodyLimit::max(body_limit))
}

/// Decodes the body, calls the service with the caller's token, and
/// writes its reply with `answer`, or its refusal as etcd's gateway does.
/// An empty body is the empty message.
async fn call<Req, Resp, F, Fut>(
    headers: &HeaderMap,
    body: &[u8],
    service: F,
    answer: impl FnOnce(Resp) -> Response,
) -> Response
where
    Req: DeserializeOwned + Default,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let message = match decoded(body) {
        Ok(message) => message,
        Err(status) => return refusal(&status),
    };
    match service(with_token(headers, message)).await {
        Ok(reply) => answer(reply.into_inner()),
        Err(status) => refusal(&status),
    }
}

/// A unary call's reply as JSON.
fn json_reply<Resp: Serialize>(reply: Resp) -> Response {
    match serde_json::to_vec(&reply) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(e) => refusal(&Status::internal(e.to_string())),
    }
}

/// The request in `body`; an empty body is the empty message.
fn decoded<Req: DeserializeOwned + Default>(body: &[u8]) -> Result<Req, Status> {
    if body.is_empty() {
        return Ok(Req::default());
    }
    serde_json::from_slice(body).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A response whose body is `replies`, a line each, until the stream
/// ends or the client goes away (the body, and with it the stream, is
/// dropped).
fn streamed<T: Serialize>(
    replies: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Response {
    let lines = replies.map(|reply| Ok::<_, Infallible>(Bytes::from(stream_line(reply))));
    let mut response = Body::from_stream(lines).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `message` as a request carrying the caller's token from the
/// `Authorization` header, as etcd's gateway passes it on.
fn with_token<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = headers.get(header::AUTHORIZATION)
        && let Ok(token) = tonic::metadata::MetadataValue::try_from(token.as_bytes())
    {
        request.metadata_mut().insert("authorization", token);
    }
    request
}

/// `/v3/watch`: the body's requests open watchers; the replies stream
/// back one JSON line each until the client goes away (the request
/// stream stays open, as a gRPC client's does after its last request).
fn watch_stream<C: Consensus>(
    watch: &WatchService<C>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let requests: Vec<WatchRequest> = match json_values(body) {
        Ok(requests) => requests,
        Err(status) => return refusal(&status),
    };
    let credentials = Credentials::of(&with_token(headers, ()));
    let inbound = tokio_stream::iter(requests.into_iter().map(Ok)).chain(tokio_stream::pending());
    streamed(watch.open(credentials, false, inbound))
}

/// The requests of a streaming call's body: JSON objects one after the
/// other, as etcd's gateway reads them; a body that is not is refused.
fn json_values<T: DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, Status> {
    serde_json::Deserializer::from_slice(body)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| Status::unknown(e.to_string()))
}

/// `/v3/lease/keepalive`: one reply line per request in the body, ending
/// after the first refusal, as the gRPC stream does.
async fn keep_alive<C: Consensus>(shared: &Shared<C>, body: &[u8]) -> Response {
    let requests: Vec<LeaseKeepAliveRequest> = match json_values(body) {
        Ok(requests) => requests,
        Err(status) => return refusal(&status),
    };
    let mut lines = Vec::new();
    for request in requests {
        let reply = shared.keep_alive(request.id).await.map_err(Status::from);
        let failed = reply.is_err();
        lines.extend(stream_line(reply));
        if failed {
            break;
        }
    }
    json_response(StatusCode::OK, lines)
}

/// One streamed reply as etcd's gateway writes it: `{"result":…}`, or
/// for an error `{"error":{"grpc_code":…,"http_code":…,"message":…,
/// "http_status":…}}`; a line each.
fn stream_line<T: Serialize>(reply: Result<T, Status>) -> Vec<u8> {
    #[derive(Serialize)]
    struct StreamError<'a> {
        grpc_code: i32,
        http_code: u16,
        message: String,
        http_status: &'a str,
    }
    let (key, value) = match reply {
        Ok(result) => ("result", serde_json::to_vec(&result)),
        Err(status) => {
            let http = http_status(status.code());
            let error = StreamError {
                grpc_code: status.code() as i32,
                http_code: http.as_u16(),
                message: format!(
                    "rpc error: code = {:?} desc = {}",
                    status.code(),
                    status.message()
                ),
                http_status: http.canonical_reason().unwrap_or(""),
            };
            ("error", serde_json::to_vec(&error))
        }
    };
    let value = value.expect("generated messages and plain structs serialize");
    // Written by hand so that the message's fields keep their order.
    let mut line = format!("{{\"{key}\":").into_bytes();
    line.extend_from_slice(&value);
    line.extend_from_slice(b"}\n");
    line
}

/// etcd's gateway's error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

fn refusal(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    let json = serde_json::to_vec(&body).expect("a struct of strings and a number serializes");
    json_response(http_status(status.code()), json)
}

fn json_response(status: StatusCode, json: Vec<u8>) -> Response {
    let mut response = (status, json).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The HTTP status etcd's gateway (grpc-gateway) gives a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
