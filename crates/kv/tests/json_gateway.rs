//! etcd's JSON gateway (`POST /v3/...`), side by side: one session of
//! JSON calls against a three-member Keel cluster (each call to the next
//! member in turn) and, when the `etcd` binary is installed, against real
//! etcd 3.4; HTTP statuses and bodies must be identical but for the IDs
//! and terms of the two clusters and the auth token.

mod support;

use std::time::Duration;

use support::Cluster;
use support::etcd::Etcd;
use support::etcdctl::have;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 `POST` to `url` (`http://host:port`) + `path`; the status
/// and the body.
async fn post(url: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let host = url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(host).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(CALL_TIMEOUT, conn.read_to_string(&mut reply))
        .await
        .unwrap_or_else(|_| panic!("{path}: no reply in time"))
        .unwrap();
    let status = reply[9..12].parse().unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, dechunked(body));
    }
    (status, body.to_owned())
}

/// The data of the complete chunks of a chunked body (etcd sends its
/// errors so, with trailers; a watch streams so).
fn dechunked(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 || rest.len() < size + 2 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}

/// `POST path` with `body` to a call that streams: the first `n` lines
/// it streams back.
async fn streamed_lines(url: &str, path: &str, body: &str, n: usize) -> Vec<String> {
    let host = url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&raw);
        if let Some((_, chunks)) = text.split_once("\r\n\r\n") {
            let lines: Vec<String> = dechunked(chunks).lines().map(str::to_owned).collect();
            if lines.len() >= n {
                return lines[..n].to_vec();
            }
        }
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(CALL_TIMEOUT, conn.read(&mut buf))
            .await
            .expect("the call streamed nothing in time")
            .unwrap();
        assert_ne!(read, 0, "the stream ended: {text}");
        raw.extend_from_slice(&buf[..read]);
    }
}

/// The body with what differs between two clusters by design — IDs,
/// terms, the token — replaced by `N`.
fn normalized(body: &str) -> String {
    let mut out = body.to_owned();
    for field in ["cluster_id", "member_id", "raft_term", "token"] {
        let key = format!("\"{field}\":\"");
        let mut from = 0;
        while let Some(at) = out[from..].find(&key) {
            let start = from + at + key.len();
            let end = start + out[start..].find('"').unwrap();
            out.replace_range(start..end, "N");
            from = start;
        }
    }
    out
}

fn token_of(body: &str) -> String {
    let start = body.find("\"token\":\"").unwrap() + "\"token\":\"".len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

/// The session: `(path, body)`; the auth steps after `auth/enable` send
/// the token `auth/authenticate` returned.
const STEPS: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","countOnly":true,"unknown":1}"#,
    ),
    ("/v3/kv/range", "{}"),
    ("/v3/kv/range", ""),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],"success":[{"request_put":{"key":"Zm9v","value":"YmF6","prev_kv":true}}]}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":"KEY"}"#,
    ),
    ("/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#),
    ("/v3/kv/compaction", r#"{"revision":"100"}"#),
    ("/v3/kv/put", r#"{"key":"YQ==","lease":"12345"}"#),
    ("/v3/lease/revoke", r#"{"ID":"999"}"#),
    ("/v3/kv/lease/timetolive", r#"{"ID":"999"}"#),
    ("/v3/cluster/member/remove", r#"{"ID":"1"}"#),
    ("/v3/lease/grant", r#"{"TTL":60,"ID":"4242"}"#),
    ("/v3/lease/keepalive", r#"{"ID":"4242"}{"ID":"4242"}"#),
    ("/v3/lease/keepalive", r#"{"ID":"5"}"#),
    ("/v3/lease/revoke", r#"{"ID":"4242"}"#),
    ("/v3/auth/enable", "{}"),
    (
        "/v3/auth/user/add",
        r#"{"name":"root","password":"rootpw"}"#,
    ),
    ("/v3/auth/role/add", r#"{"name":"root"}"#),
    ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
    ("/v3/auth/enable", "{}"),
    (
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"wrong"}"#,
    ),
    (
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"rootpw"}"#,
    ),
    ("/v3/kv/put", r#"{"key":"YQ==","value":"Yg=="}"#),
    ("/v3/kv/range", r#"{"key":"YQ=="}"#),
    ("/v3/auth/disable", "{}"),
];

/// Runs the session against `urls` (in turn): each step's label, status
/// and normalized body.
async fn session(urls: &[String]) -> Vec<(String, u16, String)> {
    let mut token = None;
    let mut out = Vec::new();
    for (i, (path, body)) in STEPS.iter().enumerate() {
        let url = &urls[i % urls.len()];
        let (status, reply) = post(url, path, body, token.as_deref()).await;
        if *path == "/v3/auth/authenticate" && status == 200 {
            token = Some(token_of(&reply));
        }
        out.push((format!("{path} {body}"), status, normalized(&reply)));
    }
    out
}

fn step<'a>(outputs: &'a [(String, u16, String)], label: &str) -> (u16, &'a str) {
    let (_, status, body) = outputs
        .iter()
        .find(|(l, _, _)| l == label)
        .unwrap_or_else(|| panic!("no step {label}"));
    (*status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gateway_answers_as_etcds_does() {
    let cluster = Cluster::start(3, &["--bcrypt-cost", "4"]).await;
    cluster.wait_leader().await;
    let urls: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    // etcd's start below writes and deletes one key: the same here keeps
    // the revisions equal.
    post(
        &urls[0],
        "/v3/kv/put",
        r#"{"key":"aGVhbHRo","value":"eA=="}"#,
        None,
    )
    .await;
    post(
        &urls[1],
        "/v3/kv/deleterange",
        r#"{"key":"aGVhbHRo"}"#,
        None,
    )
    .await;
    let keel = session(&urls).await;

    // What Keel must answer, whatever etcd says.
    let (status, body) = step(&keel, r#"/v3/kv/range {"key":"Zm9v"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""kvs":[{"key":"Zm9v","create_revision":"4","mod_revision":"4","version":"1","value":"YmFy"}],"count":"1""#),
        "{body}"
    );
    assert_eq!(
        step(&keel, "/v3/kv/range {}"),
        (
            400,
            r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
        )
    );
    let (status, body) = step(&keel, r#"/v3/kv/put {"key":"YQ==","value":"Yg=="}"#);
    assert_eq!(status, 200, "the token in Authorization is taken: {body}");
    // A linearizable read on every member: each has applied the disable
    // (maintenance calls below check the caller against the member's own
    // auth state without a read barrier, as etcd's do).
    for url in &urls {
        let (status, body) = post(url, "/v3/kv/range", r#"{"key":"YQ=="}"#, None).await;
        assert_eq!(
            (status, body.contains("\"kvs\"")),
            (200, true),
            "auth is off again at {url}: {body}"
        );
    }
    // Server streams: a line per reply.
    let (status, body) = post(&urls[1], "/v3/maintenance/snapshot", "{}", None).await;
    assert_eq!(status, 200);
    let last = body.lines().last().unwrap_or_default();
    assert!(
        body.starts_with(r#"{"result":{"#) && last.contains(r#""blob":""#),
        "{}",
        &body[..body.len().min(300)]
    );
    let (status, body) = post(
        &urls[2],
        "/v3/election/campaign",
        r#"{"name":"ZWxlY3Rpb24=","value":"bWU="}"#,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let observed = streamed_lines(
        &urls[0],
        "/v3/election/observe",
        r#"{"name":"ZWxlY3Rpb24="}"#,
        1,
    )
    .await
    .remove(0);
    assert!(observed.contains(r#""value":"bWU=""#), "{observed}");
    let watch = tokio::spawn({
        let url = urls[1].clone();
        async move {
            streamed_lines(
                &url,
                "/v3/watch",
                r#"{"create_request":{"key":"d2F0Y2hlZA=="}}"#,
                2,
            )
            .await
        }
    });
    // Puts until the watch reports one: it may open after the first.
    let mut lines = None;
    for _ in 0..50 {
        post(
            &urls[2],
            "/v3/kv/put",
            r#"{"key":"d2F0Y2hlZA==","value":"eQ=="}"#,
            None,
        )
        .await;
        if watch.is_finished() {
            lines = Some(watch.await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = lines.expect("the watch reported no put");
    // A watch from a compacted revision is canceled in etcd 3.4's shape.
    let (status, body) = post(&urls[1], "/v3/kv/compaction", r#"{"revision":"3"}"#, None).await;
    assert_eq!(status, 200, "{body}");
    // A linearizable read first: the member watched has applied the
    // compaction (a watch reads the member's own store).
    let (status, _) = post(&urls[0], "/v3/kv/range", r#"{"key":"Zm9v"}"#, None).await;
    assert_eq!(status, 200);
    let compacted = streamed_lines(
        &urls[0],
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}"#,
        2,
    )
    .await;
    assert_eq!(
        normalized(&compacted[1]),
        r#"{"result":{"header":{"cluster_id":"N","member_id":"N","raft_term":"N"},"canceled":true,"compact_revision":"3"}}"#
    );
    // An empty key is etcd's smallest key, `\0`: watched, not refused.
    let empty = streamed_lines(&urls[0], "/v3/watch", r#"{"create_request":{}}"#, 1).await;
    assert!(empty[0].ends_with(r#""created":true}}"#), "{empty:?}");
    assert!(
        lines[0].starts_with(r#"{"result":{"header":{"#),
        "{lines:?}"
    );
    assert!(lines[0].ends_with(r#""created":true}}"#), "{lines:?}");
    assert!(
        lines[1].contains(r#""events":[{"kv":{"key":"d2F0Y2hlZA==","#),
        "{lines:?}"
    );
    let (status, _) = post(&urls[2], "/v3/kv/range", "not json", None).await;
    assert_eq!(status, 400);

    if !have("etcd") {
        eprintln!("etcd is not installed: compared nothing, checked Keel alone");
        return;
    }
    let server = Etcd::start("http", &["--bcrypt-cost".into(), "4".into()], &[]).await;
    let etcd = session(std::slice::from_ref(&server.endpoint)).await;
    for ((label, status, body), (_, etcd_status, etcd_body)) in keel.iter().zip(&etcd) {
        assert_eq!(
            (status, body),
            (etcd_status, etcd_body),
            "`POST {label}` differs from etcd"
        );
    }
}
