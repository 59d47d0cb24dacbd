use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;
use tokio::io::ReadBuf;

use super::*;

const DATA: u8 = 0x0;
const SETTINGS: u8 = 0x4;

type Field = (String, String);

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A gRPC request's header fields, with `authority`.
fn request(authority: &str, path: &str) -> Vec<Field> {
    [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("user-agent", "grpc-go/1.26.0"),
        ("te", "trailers"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .to_vec()
}

/// A client: one HPACK encoder across the connection, as HTTP/2 requires.
struct Client {
    encoder: Encoder<'static>,
    bytes: Vec<u8>,
}

impl Client {
    fn new() -> Client {
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, &[]));
        Client {
            encoder: Encoder::new(),
            bytes,
        }
    }

    fn block(&mut self, fields: &[Field]) -> Vec<u8> {
        self.encoder
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// A request on `stream_id`: one HEADERS frame, then a DATA frame.
    fn send(&mut self, stream_id: u32, fields: &[Field]) {
        let block = self.block(fields);
        self.bytes
            .extend(frame(HEADERS, END_HEADERS, stream_id, &block));
        self.bytes
            .extend(frame(DATA, END_STREAM, stream_id, b"\0\0\0\0\x02hi"));
    }
}

/// One frame, or one whole header block, as the server reads it.
#[derive(Debug, PartialEq)]
enum Seen {
    Headers {
        stream_id: u32,
        end_stream: bool,
        priority: Option<[u8; PRIORITY_BYTES]>,
        fields: Vec<Field>,
    },
    Frame {
        kind: u8,
        stream_id: u32,
        payload: Vec<u8>,
    },
}

/// Reads `bytes` as an HTTP/2 server does, with its own HPACK decoder;
/// also checks that no frame is over the size every server accepts.
fn server_reads(bytes: &[u8]) -> Vec<Seen> {
    assert_eq!(&bytes[..PREFACE.len()], PREFACE);
    let mut rest = &bytes[PREFACE.len()..];
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    let mut block: Option<(FrameHeader, Option<[u8; 5]>, Vec<u8>)> = None;
    while !rest.is_empty() {
        let head = FrameHeader::parse(rest);
        assert!(
            head.len <= FRAME_PAYLOAD_MAX,
            "a frame of {} bytes",
            head.len
        );
        let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + head.len];
        rest = &rest[FRAME_HEADER_BYTES + head.len..];
        match head.kind {
            HEADERS => {
                let (priority, fragment) = headers_payload(head.flags, payload).unwrap();
                block = Some((head, priority, payload[fragment].to_vec()));
            }
            CONTINUATION => block.as_mut().unwrap().2.extend_from_slice(payload),
            kind => seen.push(Seen::Frame {
                kind,
                stream_id: head.stream_id,
                payload: payload.to_vec(),
            }),
        }
        let complete = matches!(head.kind, HEADERS | CONTINUATION) && head.flags & END_HEADERS != 0;
        if complete {
            let (first, priority, fragment) = block.take().unwrap();
            let fields = decoder
                .decode(&fragment)
                .unwrap()
                .into_iter()
                .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                .collect();
            seen.push(Seen::Headers {
                stream_id: first.stream_id,
                end_stream: first.flags & END_STREAM != 0,
                priority,
                fields,
            });
        }
    }
    seen
}

fn run(chunks: &[&[u8]]) -> Vec<u8> {
    run_repair(chunks).0
}

/// What comes out of `chunks`, and whether any block was re-encoded.
fn run_repair(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut repair = Repair::default();
    let mut out = Vec::new();
    for chunk in chunks {
        repair.push(chunk);
        drain(&mut repair, &mut out);
    }
    repair.finish();
    drain(&mut repair, &mut out);
    (out, repair.reencoding)
}

fn drain(repair: &mut Repair, out: &mut Vec<u8>) {
    while repair.has_output() {
        let mut space = [0u8; 1000];
        let mut buf = ReadBuf::new(&mut space);
        repair.take_output(&mut buf);
        out.extend_from_slice(buf.filled());
    }
}

fn headers(seen: &[Seen]) -> Vec<Vec<Field>> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Headers { fields, .. } => Some(fields.clone()),
            Seen::Frame { .. } => None,
        })
        .collect()
}

#[test]
fn a_url_authority_gives_its_host_and_port_a_good_one_is_left_and_the_rest_dropped() {
    let fix = |v: &str| authority_repair(v.as_bytes());
    let replace = |a: &str| Some(AuthorityFix::Replace(a.parse().unwrap()));
    assert_eq!(fix("http://127.0.0.1:2379"), replace("127.0.0.1:2379"));
    assert_eq!(
        fix("https://node-1.example:2379/"),
        replace("node-1.example:2379")
    );
    assert_eq!(fix("127.0.0.1:2379"), None);
    assert_eq!(fix("localhost"), None);
    assert_eq!(fix("[::1]:2379"), None);
    assert_eq!(
        fix("#initially=[http://127.0.0.1:2379]"),
        Some(AuthorityFix::Drop)
    );
    assert_eq!(fix("not an authority"), Some(AuthorityFix::Drop));
    assert_eq!(fix(""), Some(AuthorityFix::Drop));
}

#[test]
fn a_connection_with_good_authorities_passes_byte_for_byte() {
    let mut client = Client::new();
    for stream_id in [1, 3, 5] {
        client.send(
            stream_id,
            &request("127.0.0.1:2379", "/etcdserverpb.KV/Put"),
        );
    }
    assert_eq!(run(&[&client.bytes]), client.bytes);
}

#[test]
fn url_authorities_are_repaired_and_every_later_block_still_decodes() {
    let mut client = Client::new();
    let good = request("127.0.0.1:2379", "/etcdserverpb.KV/Range");
    let url = request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    // The URL first, learnt by the client's table and sent as an index
    // after; fields of other blocks are learnt along the way and sent as
    // indexes too.
    let sent = [&url, &good, &url, &good, &url];
    for (i, fields) in sent.iter().enumerate() {
        client.send(2 * i as u32 + 1, fields);
    }
    let seen = server_reads(&run(&[&client.bytes]));

    let mut repaired = url.clone();
    repaired[3].1 = "127.0.0.1:2379".into();
    let expected: Vec<_> = sent
        .iter()
        .map(|f| {
            if *f == &url {
                repaired.clone()
            } else {
                (*f).clone()
            }
        })
        .collect();
    assert_eq!(headers(&seen), expected);
    let data = seen
        .iter()
        .filter(|s| matches!(s, Seen::Frame { kind: DATA, .. }));
    assert_eq!(
        data.count(),
        sent.len(),
        "every DATA frame arrives: {seen:?}"
    );
}

#[test]
fn an_authority_that_is_not_even_a_url_is_left_out() {
    let mut client = Client::new();
    let initially = request(
        "#initially=[http://127.0.0.1:2379]",
        "/etcdserverpb.KV/Range",
    );
    client.send(1, &initially);
    client.send(3, &initially);
    let mut without: Vec<Field> = initially.clone();
    without.remove(3);
    assert_eq!(
        headers(&server_reads(&run(&[&client.bytes]))),
        [without.clone(), without]
    );
}

#[test]
fn a_connection_whose_first_authority_is_good_is_not_looked_at_again() {
    let mut client = Client::new();
    client.send(1, &request("127.0.0.1:2379", "/a"));
    client.send(3, &request("http://127.0.0.1:2379", "/b"));
    let (out, reencoded) = run_repair(&[&client.bytes]);
    assert_eq!(out, client.bytes);
    assert!(!reencoded);
}

#[test]
fn chunk_boundaries_change_nothing() {
    let mut client = Client::new();
    client.send(1, &request("http://127.0.0.1:2379", "/a"));
    client.send(3, &request("127.0.0.1:2379", "/b"));
    let whole = run(&[&client.bytes]);
    let bytes: Vec<&[u8]> = client.bytes.chunks(1).collect();
    assert_eq!(run(&bytes), whole);
}

#[test]
fn padding_priority_and_continuation_frames_are_read_and_a_large_block_is_split() {
    let mut client = Client::new();
    let mut fields = request("http://127.0.0.1:2379", "/etcdserverpb.Maintenance/Status");
    fields.push(("x-large".into(), "v".repeat(40_000)));
    let block = client.block(&fields);
    // HEADERS, padded and with priority, holding the first 100 bytes; the
    // rest in two CONTINUATION frames.
    let mut payload = vec![3];
    let priority = [0x80, 0, 0, 0, 16];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(&block[..100]);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut bytes = client.bytes.clone();
    bytes.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 7, &payload));
    bytes.extend(frame(CONTINUATION, 0, 7, &block[100..20_000]));
    bytes.extend(frame(CONTINUATION, END_HEADERS, 7, &block[20_000..]));

    let out = run(&[&bytes]);
    let seen = server_reads(&out);
    let mut repaired = fields.clone();
    repaired[3].1 = "127.0.0.1:2379".into();
    assert_eq!(
        seen.last(),
        Some(&Seen::Headers {
            stream_id: 7,
            end_stream: true,
            priority: Some(priority),
            fields: repaired,
        })
    );
}

#[test]
fn http1_and_protocol_errors_pass_through_unchanged() {
    let http1 = b"GET /metrics HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec();
    assert_eq!(run(&[&http1[..3], &http1[3..]]), http1);

    // DATA in the middle of a header block, then a block the decoder
    // refuses (an index past both tables): on as they came.
    let mut client = Client::new();
    let block = client.block(&request("http://127.0.0.1:2379", "/a"));
    let mut bytes = client.bytes.clone();
    bytes.extend(frame(HEADERS, 0, 1, &block));
    bytes.extend(frame(DATA, 0, 1, b"x"));
    assert_eq!(run(&[&bytes]), bytes);
    let mut bytes = Client::new().bytes;
    bytes.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0x7f]));
    bytes.extend(frame(HEADERS, END_HEADERS, 3, &block));
    assert_eq!(run(&[&bytes]), bytes);
}

#[test]
fn a_small_block_naming_large_entries_many_times_is_passed_on_not_expanded() {
    let mut client = Client::new();
    let large = ("x-large".to_string(), "v".repeat(4000));
    client.send(1, std::slice::from_ref(&large));
    // 300 references to a 4 kB entry: 1.2 MB decoded from 300 bytes.
    let index = client.block(&[large]);
    assert_eq!(index.len(), 1, "the entry is sent as one index byte");
    let mut bytes = client.bytes.clone();
    bytes.extend(frame(HEADERS, END_HEADERS, 3, &index.repeat(300)));
    assert_eq!(run(&[&bytes]), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Hostile bytes after the preface never panic, and nothing is lost:
    /// with no header block decoded and repaired, what comes out is what
    /// went in.
    #[test]
    fn any_bytes_pass_without_panic(frames in proptest::collection::vec(
        (0u8..12, any::<u8>(), 0u32..4, proptest::collection::vec(any::<u8>(), 0..64)),
        0..12,
    ), cut in 0usize..2000) {
        let mut bytes = Client::new().bytes;
        for (kind, flags, stream_id, payload) in frames {
            bytes.extend(frame(kind, flags, stream_id, &payload));
        }
        let cut = cut.min(bytes.len());
        let (out, reencoded) = run_repair(&[&bytes[..cut], &bytes[cut..]]);
        prop_assert!(!reencoded);
        prop_assert_eq!(out, bytes);
    }
}
