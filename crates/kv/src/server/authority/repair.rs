//! The byte-level work of [`super::AuthorityRepair`], without IO: what the
//! client sent goes in ([`Repair::push`]), what the HTTP/2 server should
//! read comes out ([`Repair::take_output`]).
//!
//! HTTP/2 compresses header fields with HPACK (RFC 7541), whose dynamic
//! table both ends keep in step: a field sent once is later sent as an
//! index into it, so one field cannot simply be edited where it lies.
//!
//! A client sends one authority for every request on a connection (gRPC
//! names it when it dials), so the connection's first header block
//! decides. If its `:authority` needs no repair ([`authority_repair`]),
//! that block and every later byte pass on untouched and nothing more is
//! looked at: an ordinary client costs one decoded block per connection.
//! If it does, every block of the connection is decoded here against a
//! copy of the client's table, kept exactly, and re-encoded as literal
//! fields that never touch the server's table (RFC 7541 §6.2.3's
//! never-indexed form), with the authority repaired wherever it appears.
//!
//! Whatever this layer does not understand — a malformed frame, a block
//! its decoder refuses, a block over [`HEADER_BLOCK_BYTES_MAX`] — switches
//! it to passing every later byte on unchanged, so that the HTTP/2 server
//! meets the problem and answers it as it would without this layer.

use std::ops::Range;

use bytes::{Buf, BytesMut};
use http::Uri;
use http::uri::Authority;
use loona_hpack::Decoder;
use loona_hpack::encoder::encode_integer_into;
use tokio::io::ReadBuf;

/// What an HTTP/2 client sends before its first frame (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A frame's fixed header: length (3 bytes), type, flags, stream.
const FRAME_HEADER_BYTES: usize = 9;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A HEADERS frame's priority fields: stream dependency and weight.
const PRIORITY_BYTES: usize = 5;

/// The largest frame payload written: the initial `SETTINGS_MAX_FRAME_SIZE`,
/// which every HTTP/2 endpoint accepts (RFC 9113 §4.2).
const FRAME_PAYLOAD_MAX: usize = 16 * 1024;

/// The HPACK dynamic table's size limit: the initial
/// `SETTINGS_HEADER_TABLE_SIZE`, which Keel's HTTP/2 server does not
/// change. A client's table update beyond it is an error the server
/// reports, so the decoder here refuses it too.
const HPACK_TABLE_BYTES: usize = 4096;

/// The largest header block (frames or decoded fields) looked at; a larger
/// one is passed on as it is, and the server's own header-list limit
/// decides.
pub(super) const HEADER_BLOCK_BYTES_MAX: usize = 1024 * 1024;

/// The client's bytes in, the server's bytes out; see the module doc.
pub(super) struct Repair {
    stage: Stage,
    /// Received, not yet looked at.
    input: BytesMut,
    /// Ready for the server.
    output: BytesMut,
    /// Bytes of the current frame's payload still to be passed on as they
    /// are (a frame that is not part of a header block).
    payload_left: usize,
    /// The header block whose `END_HEADERS` has not arrived yet.
    block: Option<PendingBlock>,
    /// The pending block's frames as they arrived.
    block_frames: BytesMut,
    /// The pending block's HPACK fragments, padding and priority taken out.
    block_fragment: Vec<u8>,
    /// The client's HPACK table, as the client encoded against it.
    decoder: Decoder<'static>,
    /// The connection's first block needed a repair: every block is
    /// re-encoded.
    reencoding: bool,
    /// The fields of the block being decoded.
    fields: Fields,
}

#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for HTTP/2's client preface.
    Preface,
    /// Reading frames.
    Frames,
    /// Passing every byte on as it is, for the rest of the connection.
    PassThrough,
}

/// What the first frame of a header block said about it.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_BYTES]>,
}

impl Default for Repair {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_BYTES);
        Repair {
            stage: Stage::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            payload_left: 0,
            block: None,
            block_frames: BytesMut::new(),
            block_fragment: Vec::new(),
            decoder,
            reencoding: false,
            fields: Fields::default(),
        }
    }
}

impl Repair {
    /// Takes bytes the client sent.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if self.stage == Stage::PassThrough {
            self.output.extend_from_slice(bytes);
            return;
        }
        self.input.extend_from_slice(bytes);
        if self.stage == Stage::Preface {
            self.read_preface();
        }
        if self.stage == Stage::Frames {
            self.read_frames();
        }
    }

    /// The client closed its side: whatever is held back (an unfinished
    /// frame or block) goes on as it came.
    pub(super) fn finish(&mut self) {
        self.pass_through();
    }

    pub(super) fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Moves as much output as fits into `buf`.
    pub(super) fn take_output(&mut self, buf: &mut ReadBuf<'_>) {
        let n = self.output.len().min(buf.remaining());
        buf.put_slice(&self.output[..n]);
        self.output.advance(n);
    }

    /// Nothing is held, and nothing more will be looked at: the caller may
    /// read from the connection straight into its own buffer.
    pub(super) fn passes_through(&self) -> bool {
        self.stage == Stage::PassThrough && self.output.is_empty()
    }

    fn read_preface(&mut self) {
        let seen = self.input.len().min(PREFACE.len());
        if self.input[..seen] != PREFACE[..seen] {
            self.pass_through();
        } else if seen == PREFACE.len() {
            let preface = self.input.split_to(seen);
            self.output.extend_from_slice(&preface);
            self.stage = Stage::Frames;
        }
    }

    fn read_frames(&mut self) {
        while self.stage == Stage::Frames {
            if self.payload_left > 0 {
                if self.input.is_empty() {
                    return;
                }
                let n = self.payload_left.min(self.input.len());
                let payload = self.input.split_to(n);
                self.output.extend_from_slice(&payload);
                self.payload_left -= n;
                continue;
            }
            if self.input.len() < FRAME_HEADER_BYTES {
                return;
            }
            let head = FrameHeader::parse(&self.input[..FRAME_HEADER_BYTES]);
            if head.kind != HEADERS && head.kind != CONTINUATION {
                if self.block.is_some() {
                    // Only CONTINUATION may follow an unfinished block: a
                    // protocol error for the server to report.
                    self.pass_through();
                    return;
                }
                let header = self.input.split_to(FRAME_HEADER_BYTES);
                self.output.extend_from_slice(&header);
                self.payload_left = head.len;
                continue;
            }
            if head.len > HEADER_BLOCK_BYTES_MAX {
                self.pass_through();
                return;
            }
            if self.input.len() < FRAME_HEADER_BYTES + head.len {
                return;
            }
            if !self.take_header_frame(&head) {
                self.pass_through();
                return;
            }
        }
    }

    /// Moves the header-block frame at the front of the input into the
    /// pending block, and finishes the block at its `END_HEADERS`. `false`
    /// (with the frame left in the input) when the frame does not fit
    /// HTTP/2's rules for a header block.
    fn take_header_frame(&mut self, head: &FrameHeader) -> bool {
        let frame_end = FRAME_HEADER_BYTES + head.len;
        let payload = &self.input[FRAME_HEADER_BYTES..frame_end];
        match (head.kind, &self.block) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = headers_payload(head.flags, payload) else {
                    return false;
                };
                self.block = Some(PendingBlock {
                    stream_id: head.stream_id,
                    end_stream: head.flags & END_STREAM != 0,
                    priority,
                });
                self.block_fragment.extend_from_slice(&payload[fragment]);
            }
            (CONTINUATION, Some(block)) if block.stream_id == head.stream_id => {
                self.block_fragment.extend_from_slice(payload);
            }
            _ => return false,
        }
        let frame = self.input.split_to(frame_end);
        self.block_frames.extend_from_slice(&frame);
        if self.block_frames.len() > HEADER_BLOCK_BYTES_MAX {
            self.pass_through();
        } else if head.flags & END_HEADERS != 0 {
            self.finish_block();
        }
        true
    }

    /// Decodes the complete pending block, and passes it on as it came or
    /// re-encoded (see the module doc).
    fn finish_block(&mut self) {
        self.fields.clear();
        let fields = &mut self.fields;
        let decoded = self
            .decoder
            .decode_with_cb(&self.block_fragment, |name, value| {
                fields.push(&name, &value)
            });
        if decoded.is_err() || self.fields.overflowed {
            self.pass_through();
            return;
        }
        let repair = self.fields.authority_repair();
        if repair.is_none() && !self.reencoding {
            // The connection's first block needs nothing, so no later one
            // will (see the module doc): it and all that follows pass on
            // as they came.
            self.pass_through();
            return;
        }
        self.reencoding = true;
        let block = self
            .block
            .take()
            .expect("a block is pending at its END_HEADERS");
        let mut fragment = Vec::with_capacity(self.block_fragment.len() + 64);
        self.fields.encode_literal(repair.as_ref(), &mut fragment);
        self.write_header_frames(&block, &fragment);
        self.block_frames.clear();
        self.block_fragment.clear();
    }

    /// `fragment` as a HEADERS frame and as many CONTINUATION frames as its
    /// size needs, for `block`'s stream, flags and priority.
    fn write_header_frames(&mut self, block: &PendingBlock, fragment: &[u8]) {
        let priority_len = if block.priority.is_some() {
            PRIORITY_BYTES
        } else {
            0
        };
        let (first, mut rest) =
            fragment.split_at(fragment.len().min(FRAME_PAYLOAD_MAX - priority_len));
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.write_frame_header(priority_len + first.len(), HEADERS, flags, block.stream_id);
        if let Some(priority) = &block.priority {
            self.output.extend_from_slice(priority);
        }
        self.output.extend_from_slice(first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(FRAME_PAYLOAD_MAX));
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            self.write_frame_header(chunk.len(), CONTINUATION, flags, block.stream_id);
            self.output.extend_from_slice(chunk);
            rest = after;
        }
    }

    fn write_frame_header(&mut self, len: usize, kind: u8, flags: u8, stream_id: u32) {
        let len = u32::try_from(len).expect("a frame is at most FRAME_PAYLOAD_MAX long");
        self.output.extend_from_slice(&len.to_be_bytes()[1..]);
        self.output.extend_from_slice(&[kind, flags]);
        self.output.extend_from_slice(&stream_id.to_be_bytes());
    }

    /// From here on, everything goes on as it came, starting with what is
    /// held back.
    fn pass_through(&mut self) {
        self.stage = Stage::PassThrough;
        self.block = None;
        self.output.extend_from_slice(&self.block_frames);
        self.output.extend_from_slice(&self.input);
        self.block_frames = BytesMut::new();
        self.block_fragment = Vec::new();
        self.input = BytesMut::new();
    }
}

/// A frame's fixed header (RFC 9113 §4.1).
#[derive(Clone, Copy)]
struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8]) -> FrameHeader {
        let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        let stream_id = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        FrameHeader {
            len: len as usize,
            kind: bytes[3],
            flags: bytes[4],
            stream_id: stream_id & 0x7fff_ffff,
        }
    }
}

/// A HEADERS frame's priority fields, if flagged, and where its header
/// block fragment lies in `payload` (padding left out); `None` when the
/// flagged padding and priority do not fit (RFC 9113 §6.2).
fn headers_payload(
    flags: u8,
    payload: &[u8],
) -> Option<(Option<[u8; PRIORITY_BYTES]>, Range<usize>)> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let padding = usize::from(*payload.first()?);
        start = 1;
        end = end.checked_sub(padding)?;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields = payload.get(start..start + PRIORITY_BYTES)?;
        priority = Some(fields.try_into().expect("PRIORITY_BYTES long"));
        start += PRIORITY_BYTES;
    }
    (start <= end).then_some((priority, start..end))
}

/// What becomes of an `:authority` the HTTP/2 server would refuse.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AuthorityFix {
    /// A URL (`http://host:port`, etcdctl's per-endpoint calls): its own
    /// authority.
    Replace(Authority),
    /// Anything else (etcd's 3.5.0 client sends `#initially=[…]`): the
    /// field is left out, which HTTP/2 allows of a request. etcd's gRPC
    /// server reads no authority and Keel reads none either, so the call
    /// is answered as it would be there.
    Drop,
}

/// The repair an `:authority` needs; `None` when the HTTP/2 server accepts
/// it as it is.
pub(super) fn authority_repair(value: &[u8]) -> Option<AuthorityFix> {
    if Authority::try_from(value).is_ok() {
        return None;
    }
    let url = Uri::try_from(value)
        .ok()
        .and_then(|uri| uri.into_parts().authority);
    Some(url.map_or(AuthorityFix::Drop, AuthorityFix::Replace))
}

/// The decoded fields of one header block, in one buffer reused from
/// block to block.
#[derive(Default)]
struct Fields {
    bytes: Vec<u8>,
    /// Each field's name and value in `bytes`.
    spans: Vec<(Range<usize>, Range<usize>)>,
    /// The fields came to more than [`HEADER_BLOCK_BYTES_MAX`] (a small
    /// block can name large table entries many times): the rest were
    /// dropped, and the block is not to be re-encoded.
    overflowed: bool,
}

impl Fields {
    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
        self.overflowed = false;
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        if self.overflowed || self.bytes.len() + name.len() + value.len() > HEADER_BLOCK_BYTES_MAX {
            self.overflowed = true;
            return;
        }
        let name_at = self.bytes.len()..self.bytes.len() + name.len();
        self.bytes.extend_from_slice(name);
        let value_at = self.bytes.len()..self.bytes.len() + value.len();
        self.bytes.extend_from_slice(value);
        self.spans.push((name_at, value_at));
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|(name, value)| (&self.bytes[name.clone()], &self.bytes[value.clone()]))
    }

    /// Which field is an `:authority` to repair, and its repair.
    fn authority_repair(&self) -> Option<(usize, AuthorityFix)> {
        self.iter()
            .enumerate()
            .filter(|(_, (name, _))| *name == b":authority")
            .find_map(|(at, (_, value))| Some((at, authority_repair(value)?)))
    }

    /// The fields, with `repair` applied, as never-indexed literals with
    /// literal names (RFC 7541 §6.2.3): they neither use nor change the
    /// server's dynamic table, and a field the client marked never-indexed
    /// keeps that mark, as the RFC requires of anyone re-encoding it.
    fn encode_literal(&self, repair: Option<&(usize, AuthorityFix)>, out: &mut Vec<u8>) {
        for (at, (name, value)) in self.iter().enumerate() {
            let value = match repair {
                Some((repaired, AuthorityFix::Replace(authority))) if *repaired == at => {
                    authority.as_str().as_bytes()
                }
                Some((dropped, AuthorityFix::Drop)) if *dropped == at => continue,
                _ => value,
            };
            out.push(0x10);
            encode_string(name, out);
            encode_string(value, out);
        }
    }
}

/// An HPACK string literal, not Huffman-coded (RFC 7541 §5.2).
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    encode_integer_into(s.len(), 7, 0, out).expect("writing to a Vec cannot fail");
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests;
