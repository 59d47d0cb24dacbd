//! [`FramedBatch`]: the next write batch, framed record by record as the
//! records are written, so that `sync` has nothing left to encode.
//!
//! `append` frames each entry straight from the caller's slice into one
//! reused buffer (one copy of its bytes, one checksum pass over them) and
//! keeps beside it only what replay needs: the record without the entry's
//! data, and where its frame is. `sync` flags the last frame, writes the
//! buffer with one `pwrite` and applies those records to the durable index.

use keel_raft::{Entry, HardState};

use crate::codec::{self, CompactPoint, Record, RecordMeta};
use crate::frame::{self, FRAME_HEADER_BYTES};

/// A batch buffer larger than this is released after its sync rather than
/// kept for the next batch, so one huge batch does not pin its memory.
const KEEP_CAPACITY_BYTES_MAX: usize = 8 << 20;

/// One framed record: what replay applies, where its frame starts in the
/// batch's bytes, and its payload length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Framed {
    pub meta: RecordMeta,
    pub offset: u64,
    pub payload_len: u32,
}

/// The frames of write batch `batch`, in the order they were written.
///
/// Invariant: `bytes` holds a prefix that is not frames (a segment header,
/// or nothing) and then exactly the frames of `records`, each numbered
/// `batch`, with the last-in-batch flag clear until [`FramedBatch::finish`].
#[derive(Debug)]
pub(crate) struct FramedBatch {
    batch: u64,
    bytes: Vec<u8>,
    records: Vec<Framed>,
}

impl FramedBatch {
    pub fn new(batch: u64) -> FramedBatch {
        FramedBatch {
            batch,
            bytes: Vec::new(),
            records: Vec::new(),
        }
    }

    /// A batch that starts a segment: `prefix` (the segment header) first.
    pub fn with_prefix(batch: u64, prefix: &[u8]) -> FramedBatch {
        FramedBatch {
            batch,
            bytes: prefix.to_vec(),
            records: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes the batch will write.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn push_entry(&mut self, entry: &Entry) {
        let meta = RecordMeta::Entry {
            index: entry.index,
            term: entry.term,
        };
        self.push_with(meta, |out| codec::encode_entry(entry, out));
    }

    pub fn push_hard_state(&mut self, hs: HardState) {
        let record = Record::HardState(hs.clone());
        self.push_with(RecordMeta::HardState(hs), |out| record.encode(out));
    }

    pub fn push_compact(&mut self, c: CompactPoint) {
        let record = Record::Compact(c);
        self.push_with(RecordMeta::Compact(c), |out| record.encode(out));
    }

    fn push_with(&mut self, meta: RecordMeta, encode: impl FnOnce(&mut Vec<u8>)) {
        let offset = self.bytes.len() as u64;
        let payload_len = frame::encode_frame(&mut self.bytes, self.batch, false, encode);
        self.records.push(Framed {
            meta,
            offset,
            payload_len,
        });
    }

    /// Appends the frames of `other` (a batch with the same number and no
    /// prefix) after this batch's.
    pub fn extend(&mut self, other: &FramedBatch) {
        assert_eq!(self.batch, other.batch, "frames of one batch only");
        let shift = self.bytes.len() as u64;
        self.bytes.extend_from_slice(&other.bytes);
        self.records.extend(other.records.iter().map(|r| Framed {
            offset: r.offset + shift,
            ..r.clone()
        }));
    }

    /// Flags the last frame as the end of the batch and returns the bytes
    /// to write and the records they hold.
    pub fn finish(&mut self) -> (&[u8], &[Framed]) {
        let last = self.records.last().expect("a batch has a record");
        let at = last.offset as usize;
        frame::mark_last_in_batch(&mut self.bytes[at..at + FRAME_HEADER_BYTES]);
        (&self.bytes, &self.records)
    }

    /// Empties the batch for the next batch number, keeping its buffers
    /// unless they grew past [`KEEP_CAPACITY_BYTES_MAX`].
    pub fn reset(&mut self, batch: u64) {
        if self.bytes.capacity() > KEEP_CAPACITY_BYTES_MAX {
            *self = FramedBatch::new(batch);
            return;
        }
        self.batch = batch;
        self.bytes.clear();
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameRead, read_frame};
    use bytes::Bytes;
    use keel_raft::{LogIndex, NodeId, Payload, Term};

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(2),
            index: LogIndex(index),
            payload: Payload::Command(Bytes::from(vec![index as u8; 5])),
        }
    }

    /// The bytes the store wrote before batches were framed incrementally:
    /// every record encoded whole, the last frame flagged when framed.
    fn framed_whole(batch: u64, prefix: &[u8], records: &[Record]) -> Vec<u8> {
        let mut out = prefix.to_vec();
        for (k, r) in records.iter().enumerate() {
            frame::encode_frame(&mut out, batch, k + 1 == records.len(), |o| r.encode(o));
        }
        out
    }

    #[test]
    fn incremental_framing_writes_the_same_bytes_as_whole_records() {
        let hs = HardState {
            term: Term(2),
            vote: Some(NodeId(1)),
            commit: LogIndex(1),
        };
        let c = CompactPoint {
            index: LogIndex(1),
            term: Term(1),
            discard_suffix: false,
        };
        let mut head = FramedBatch::with_prefix(7, b"HEADER");
        head.push_hard_state(hs.clone());
        let mut body = FramedBatch::new(7);
        body.push_entry(&entry(2));
        body.push_compact(c);
        body.push_entry(&entry(3));
        head.extend(&body);
        let expected = framed_whole(
            7,
            b"HEADER",
            &[
                Record::HardState(hs),
                Record::Entry(entry(2)),
                Record::Compact(c),
                Record::Entry(entry(3)),
            ],
        );
        let (bytes, records) = head.finish();
        assert_eq!(bytes, &expected[..]);
        assert_eq!(records.len(), 4);
        for r in records {
            let FrameRead::Valid(h) = read_frame(bytes, r.offset as usize) else {
                panic!("a frame starts at {}", r.offset);
            };
            assert_eq!((h.payload_len, h.batch), (r.payload_len, 7));
        }
        assert_eq!(
            records[3].meta,
            RecordMeta::Entry {
                index: LogIndex(3),
                term: Term(2)
            }
        );
    }

    /// Pins the layout of ARCHITECTURE.md ("record frame", "Entry"), built
    /// here by hand, so that framing straight from a borrowed entry cannot
    /// drift from what recovery of existing logs expects.
    #[test]
    fn an_entry_frame_is_format_version_1_byte_for_byte() {
        let mut b = FramedBatch::new(0x0102_0304_0506_0708);
        b.push_entry(&entry(9));
        let (bytes, _) = b.finish();
        let mut payload = vec![1u8];
        payload.extend_from_slice(&2u64.to_le_bytes());
        payload.extend_from_slice(&9u64.to_le_bytes());
        payload.push(1);
        payload.extend_from_slice(&[9u8; 5]);
        let mut expected = Vec::new();
        expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        expected.extend_from_slice(&1u32.to_le_bytes());
        expected.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        expected.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        let header_crc = crc32c::crc32c(&expected);
        expected.extend_from_slice(&header_crc.to_le_bytes());
        expected.extend_from_slice(&payload);
        assert_eq!(bytes, &expected[..]);
    }

    #[test]
    fn reset_starts_the_next_batch_empty() {
        let mut b = FramedBatch::new(1);
        b.push_entry(&entry(1));
        b.finish();
        b.reset(2);
        assert!(b.is_empty());
        assert_eq!(b.len_bytes(), 0);
        b.push_entry(&entry(2));
        let (bytes, _) = b.finish();
        let FrameRead::Valid(h) = read_frame(bytes, 0) else {
            panic!("a frame starts at 0");
        };
        assert_eq!((h.batch, h.last_in_batch), (2, true));
    }
}
