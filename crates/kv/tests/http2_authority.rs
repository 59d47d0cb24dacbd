//! Requests whose HTTP/2 `:authority` the `h2` crate would refuse — a
//! whole URL, as etcdctl's per-endpoint calls send with URL endpoints, and
//! etcd 3.5.0's `#initially=[…]` — sent frame by frame over a real
//! connection to the client port: every one is answered, as etcd answers
//! it.

mod support;

use std::time::Duration;

use keel_kv::service::ServiceConfig;
use loona_hpack::{Decoder, Encoder};
use support::single_node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Two `Maintenance/Status` calls on one connection with `authority` (the
/// second one's header fields sent as indexes into the dynamic table the
/// first filled), as a Go client sends them; the `grpc-status` each stream
/// ended with, in stream order. Panics on a reset stream or connection.
async fn two_status_calls(addr: std::net::SocketAddr, authority: &str) -> Vec<String> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut encoder = Encoder::new();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let fields: [(&[u8], &[u8]); 7] = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/etcdserverpb.Maintenance/Status"),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"user-agent", b"grpc-go/1.26.0"),
        (b"te", b"trailers"),
    ];
    for stream_id in [1, 3] {
        let block = encoder.encode(fields);
        out.extend(frame(HEADERS, END_HEADERS, stream_id, &block));
        // An empty StatusRequest: not compressed, zero bytes long.
        out.extend(frame(DATA, END_STREAM, stream_id, &[0, 0, 0, 0, 0]));
    }
    conn.write_all(&out).await.unwrap();

    let mut decoder = Decoder::new();
    let mut statuses = [None, None];
    while statuses.iter().any(Option::is_none) {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        conn.read_exact(&mut payload).await.unwrap();
        match kind {
            RST_STREAM | GOAWAY => panic!("{authority}: frame type {kind} on stream {stream_id}"),
            SETTINGS if flags & ACK == 0 => {
                conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            }
            HEADERS => {
                assert_ne!(flags & END_HEADERS, 0, "the server's blocks fit one frame");
                for (name, value) in decoder.decode(&payload).unwrap() {
                    if name == b"grpc-status" {
                        statuses[(stream_id / 2) as usize] =
                            Some(String::from_utf8(value).unwrap());
                    }
                }
            }
            _ => {}
        }
    }
    statuses.map(Option::unwrap).to_vec()
}

#[tokio::test]
async fn requests_with_an_authority_h2_would_refuse_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let addr = single_node::start(dir.path(), ServiceConfig::new(dir.path())).await;
    for authority in [
        format!("127.0.0.1:{}", addr.port()),
        format!("http://127.0.0.1:{}", addr.port()),
        format!("#initially=[http://127.0.0.1:{}]", addr.port()),
    ] {
        let statuses = tokio::time::timeout(TEST_TIMEOUT, two_status_calls(addr, &authority))
            .await
            .unwrap_or_else(|_| panic!("{authority}: no answer in time"));
        assert_eq!(statuses, ["0", "0"], "{authority}");
    }
}
