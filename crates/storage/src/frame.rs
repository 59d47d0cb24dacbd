//! Framing of records inside a segment file, and the segment file header.
//!
//! ```text
//! segment header (32 bytes)
//!   0  magic "KEELWAL\0"
//!   8  format version u32
//!  12  reserved u32 (0)
//!  16  segment sequence number u64
//!  24  crc32c of bytes 0..24, u32
//!  28  reserved u32 (0)
//!
//! record frame (24-byte header, then the payload)
//!   0  payload length u32; a header of 24 zero bytes marks the end of records
//!   4  flags u32; bit 0 = last record of its write batch
//!   8  write batch number u64
//!  16  crc32c of the payload, u32
//!  20  crc32c of header bytes 0..20, u32
//!  24  payload (see codec.rs)
//! ```
//!
//! The header has its own checksum so that recovery can test any byte offset
//! for "is a valid frame here?" in constant time; that is what lets it tell a
//! torn final write from damage followed by later writes (see recovery.rs).

use crate::error::FrameProblem;

pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
pub(crate) const FRAME_HEADER_BYTES: usize = 24;
pub(crate) const FORMAT_VERSION: u32 = 1;

const SEGMENT_MAGIC: [u8; 8] = *b"KEELWAL\0";
const FLAG_LAST_IN_BATCH: u32 = 1;

/// A decoded, checksum-verified frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub payload_len: u32,
    pub batch: u64,
    pub last_in_batch: bool,
    payload_crc: u32,
}

impl FrameHeader {
    /// Offset just past this frame, given where it starts.
    pub fn end(&self, start: usize) -> usize {
        start + FRAME_HEADER_BYTES + self.payload_len as usize
    }
}

/// Appends one frame to `out`; `write_payload` must append exactly the
/// payload. Returns the payload length.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    batch: u64,
    last_in_batch: bool,
    write_payload: impl FnOnce(&mut Vec<u8>),
) -> u32 {
    let start = out.len();
    out.resize(start + FRAME_HEADER_BYTES, 0);
    write_payload(out);
    let payload = &out[start + FRAME_HEADER_BYTES..];
    let payload_len = u32::try_from(payload.len()).expect("a record payload is below 4 GiB");
    assert!(
        payload_len > 0,
        "every payload has a tag byte, so a length of 0 can mark the end"
    );
    let payload_crc = crc32c::crc32c(payload);
    let flags = if last_in_batch { FLAG_LAST_IN_BATCH } else { 0 };
    let header = &mut out[start..start + FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&payload_len.to_le_bytes());
    header[4..8].copy_from_slice(&flags.to_le_bytes());
    header[8..16].copy_from_slice(&batch.to_le_bytes());
    header[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&header_crc.to_le_bytes());
    payload_len
}

/// Sets the last-in-batch flag of the frame whose header is `header` (a
/// frame [`encode_frame`] wrote with the flag clear) and reseals its header
/// checksum. Lets a batch be framed record by record before its end is known.
pub(crate) fn mark_last_in_batch(header: &mut [u8]) {
    let header = &mut header[..FRAME_HEADER_BYTES];
    let flags = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    assert_eq!(flags, 0, "only an unflagged frame is marked");
    header[4..8].copy_from_slice(&FLAG_LAST_IN_BATCH.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[0..20]);
    header[20..24].copy_from_slice(&header_crc.to_le_bytes());
}

/// What the bytes at an offset hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameRead {
    /// A whole frame whose header and payload checksums hold.
    Valid(FrameHeader),
    /// The file ends exactly here.
    Eof,
    /// Not a valid frame.
    Invalid(FrameProblem),
}

/// Reads the frame starting at `at` in `buf` (a whole segment file).
pub(crate) fn read_frame(buf: &[u8], at: usize) -> FrameRead {
    let rest = &buf[at.min(buf.len())..];
    if rest.is_empty() {
        return FrameRead::Eof;
    }
    // Zeros mean never-written (preallocated) space, even when fewer than a
    // header's worth remain before the end of the file.
    if rest[..rest.len().min(FRAME_HEADER_BYTES)]
        .iter()
        .all(|&b| b == 0)
    {
        return FrameRead::Invalid(FrameProblem::ZeroHeader);
    }
    let Some(header) = rest.get(..FRAME_HEADER_BYTES) else {
        return FrameRead::Invalid(FrameProblem::ShortHeader);
    };
    let header = match parse_header(header) {
        Ok(h) => h,
        Err(problem) => return FrameRead::Invalid(problem),
    };
    let Some(payload) = rest[FRAME_HEADER_BYTES..].get(..header.payload_len as usize) else {
        return FrameRead::Invalid(FrameProblem::PayloadPastEnd);
    };
    if crc32c::crc32c(payload) != header.payload_crc {
        return FrameRead::Invalid(FrameProblem::PayloadChecksum);
    }
    FrameRead::Valid(header)
}

/// Checks the frame header and payload read back for a single record.
pub(crate) fn verify_frame(frame: &[u8]) -> Result<FrameHeader, FrameProblem> {
    let header = frame
        .get(..FRAME_HEADER_BYTES)
        .ok_or(FrameProblem::ShortHeader)?;
    let header = parse_header(header)?;
    let payload = frame[FRAME_HEADER_BYTES..]
        .get(..header.payload_len as usize)
        .ok_or(FrameProblem::PayloadPastEnd)?;
    if crc32c::crc32c(payload) != header.payload_crc {
        return Err(FrameProblem::PayloadChecksum);
    }
    Ok(header)
}

fn parse_header(header: &[u8]) -> Result<FrameHeader, FrameProblem> {
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&header[0..20]) != word(20) {
        return Err(FrameProblem::HeaderChecksum);
    }
    let flags = word(4);
    if flags & !FLAG_LAST_IN_BATCH != 0 {
        return Err(FrameProblem::UnknownFlags);
    }
    Ok(FrameHeader {
        payload_len: word(0),
        batch: u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
        last_in_batch: flags & FLAG_LAST_IN_BATCH != 0,
        payload_crc: word(16),
    })
}

/// Finds the first valid frame starting at or after `from` that satisfies
/// `wanted`, trying every byte offset. Bytes after `end` are known to be zero,
/// so no frame can start there.
pub(crate) fn find_frame(
    buf: &[u8],
    from: usize,
    end: usize,
    wanted: impl Fn(&FrameHeader) -> bool,
) -> Option<(usize, FrameHeader)> {
    (from..end).find_map(|at| {
        // Cheap filters first: a valid frame has a non-zero length that fits.
        let len = u32::from_le_bytes(buf.get(at..at + 4)?.try_into().expect("4 bytes"));
        if len == 0 || len as usize > buf.len() - at - 4 {
            return None;
        }
        match read_frame(buf, at) {
            FrameRead::Valid(h) if wanted(&h) => Some((at, h)),
            _ => None,
        }
    })
}

/// Offset just past the last non-zero byte of `buf` (0 if all zero).
pub(crate) fn nonzero_end(buf: &[u8]) -> usize {
    // Compare 16 bytes at a time: preallocated segments end in megabytes of zeros.
    let tail_start = buf.len() - buf.len() % 16;
    if let Some(i) = buf[tail_start..].iter().rposition(|&b| b != 0) {
        return tail_start + i + 1;
    }
    let chunks = buf[..tail_start].chunks_exact(16);
    match chunks
        .rev()
        .position(|c| u128::from_ne_bytes(c.try_into().expect("16 bytes")) != 0)
    {
        None => 0,
        Some(from_back) => {
            let chunk_start = tail_start - 16 * (from_back + 1);
            let chunk = &buf[chunk_start..chunk_start + 16];
            chunk_start
                + chunk
                    .iter()
                    .rposition(|&b| b != 0)
                    .expect("chunk is non-zero")
                + 1
        }
    }
}

/// The header every segment file starts with.
pub(crate) fn encode_segment_header(seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment header is unusable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    Damaged,
    Version(u32),
}

/// Checks the segment header at the start of `buf` and returns its sequence number.
pub(crate) fn check_segment_header(buf: &[u8]) -> Result<u64, HeaderProblem> {
    let h = buf
        .get(..SEGMENT_HEADER_BYTES)
        .ok_or(HeaderProblem::Damaged)?;
    let crc = u32::from_le_bytes(h[24..28].try_into().expect("4 bytes"));
    if h[0..8] != SEGMENT_MAGIC || crc32c::crc32c(&h[0..24]) != crc {
        return Err(HeaderProblem::Damaged);
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(HeaderProblem::Version(version));
    }
    Ok(u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(batch: u64, last: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, batch, last, |o| o.extend_from_slice(payload));
        out
    }

    #[test]
    fn frame_roundtrips_and_reports_its_end() {
        let buf = frame(7, true, b"hello");
        let FrameRead::Valid(h) = read_frame(&buf, 0) else {
            panic!("frame should be valid");
        };
        assert_eq!((h.payload_len, h.batch, h.last_in_batch), (5, 7, true));
        assert_eq!(h.end(0), buf.len());
        assert_eq!(read_frame(&buf, buf.len()), FrameRead::Eof);
        assert_eq!(verify_frame(&buf), Ok(h));
    }

    #[test]
    fn marking_a_frame_last_equals_framing_it_last() {
        let mut marked = frame(9, false, b"entry");
        mark_last_in_batch(&mut marked);
        assert_eq!(marked, frame(9, true, b"entry"));
    }

    #[test]
    fn every_damage_is_classified() {
        let buf = frame(1, false, b"payload");
        let mut zero = buf.clone();
        zero[..FRAME_HEADER_BYTES].fill(0);
        assert_eq!(
            read_frame(&zero, 0),
            FrameRead::Invalid(FrameProblem::ZeroHeader)
        );
        assert_eq!(
            read_frame(&buf[..10], 0),
            FrameRead::Invalid(FrameProblem::ShortHeader)
        );
        assert_eq!(
            read_frame(&buf[..buf.len() - 1], 0),
            FrameRead::Invalid(FrameProblem::PayloadPastEnd)
        );
        let mut flipped = buf.clone();
        flipped[9] ^= 0x10;
        assert_eq!(
            read_frame(&flipped, 0),
            FrameRead::Invalid(FrameProblem::HeaderChecksum)
        );
        let mut flipped = buf.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            read_frame(&flipped, 0),
            FrameRead::Invalid(FrameProblem::PayloadChecksum)
        );
    }

    #[test]
    fn find_frame_skips_garbage_and_filters() {
        let mut buf = vec![0xAB; 13];
        buf.extend(frame(3, false, b"a"));
        let second = buf.len();
        buf.extend(frame(4, true, b"b"));
        let end = nonzero_end(&buf);
        assert_eq!(
            find_frame(&buf, 0, end, |_| true).map(|(at, _)| at),
            Some(13)
        );
        assert_eq!(
            find_frame(&buf, 0, end, |h| h.batch > 3).map(|(at, _)| at),
            Some(second)
        );
        assert_eq!(find_frame(&buf, 0, end, |h| h.batch > 4), None);
    }

    #[test]
    fn nonzero_end_finds_the_last_written_byte() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            for last in 0..len {
                let mut buf = vec![0u8; len];
                buf[last] = 1;
                assert_eq!(nonzero_end(&buf), last + 1, "len {len} last {last}");
            }
            assert_eq!(nonzero_end(&vec![0u8; len]), 0);
        }
    }

    #[test]
    fn segment_header_roundtrips_and_rejects_damage() {
        let h = encode_segment_header(42);
        assert_eq!(check_segment_header(&h), Ok(42));
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(check_segment_header(&bad), Err(HeaderProblem::Damaged));
        assert_eq!(check_segment_header(&h[..10]), Err(HeaderProblem::Damaged));
    }
}
