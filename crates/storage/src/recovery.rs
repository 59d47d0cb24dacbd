//! Opening a log: read every segment, verify every checksum, rebuild the
//! index, and repair a torn final write.
//!
//! # The rules
//!
//! Records are written in *batches*, one per sync, and a batch is
//! acknowledged only after its `fdatasync` returns. Every frame carries its
//! batch number, batch numbers are consecutive, the last frame of a batch is
//! flagged, and a batch never spans two segments. Recovery keeps exactly the
//! complete batches. Where it meets the first thing that is not a valid frame
//! (a damaged record, zeroed space, or the end of the file):
//!
//! * In the last segment, the incomplete batch there may be a write that was
//!   torn by a crash and never acknowledged. It is a torn write if no valid
//!   frame of a *later* batch follows anywhere in the file — a later batch is
//!   written only after this one was synced, so its presence proves the damage
//!   hit acknowledged data. A torn write is cut off and the space behind it
//!   zeroed (durably, before anything new is written there, so stale frames
//!   can never be mistaken for new ones); otherwise open fails as corrupt.
//! * In any other segment nothing can be torn, because a segment is synced
//!   before the next one is created: only zeroed space may follow the last
//!   batch, and anything else is corruption.
//!
//! A checksum-valid record that breaks the log's structure (a gap in
//! indexes, batches out of order, a missing segment file) is corruption too.
//! Corruption is never repaired: open fails with the file, the offset and
//! what the operator can do.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use crate::codec::{self, RecordMeta};
use crate::error::{Corruption, FrameProblem, StorageError};
use crate::frame::{self, FRAME_HEADER_BYTES, FrameRead, HeaderProblem, SEGMENT_HEADER_BYTES};
use crate::fsutil;
use crate::index::DurableIndex;
use crate::segment::{self, Segment};

/// What a store found, and repaired, when it opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files read.
    pub segments: usize,
    /// Bytes read from them, preallocated space included.
    pub bytes_read: u64,
    /// The torn final write that was discarded, if there was one.
    pub torn_write: Option<TornWrite>,
}

/// An unacknowledged write that a crash left incomplete, and that recovery
/// removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornWrite {
    /// The segment file that held the torn write.
    pub file: PathBuf,
    /// Where the discarded bytes started.
    pub offset: u64,
    /// Non-zero bytes discarded (an incomplete batch and anything after it).
    pub discarded_bytes: u64,
    /// Whether the whole segment was removed because it held no complete batch.
    pub segment_removed: bool,
}

/// The state recovered from disk.
pub(crate) struct Recovered {
    /// The segments kept, in order; the last one is where writing resumes.
    pub segments: Vec<Segment>,
    /// Where the next batch goes in the last segment.
    pub write_offset: u64,
    pub index: DurableIndex,
    pub next_batch: u64,
    pub report: RecoveryReport,
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered, StorageError> {
    let listed = segment::list_segments(dir)?;
    for pair in listed.windows(2) {
        let ((prev, _), (seq, path)) = (&pair[0], &pair[1]);
        if *seq != prev + 1 {
            let kind = Corruption::MissingSegment { missing: prev + 1 };
            return Err(StorageError::corrupt(path, 0, kind));
        }
    }
    let mut replay = Replay {
        index: DurableIndex::new(),
        last_complete: None,
        batch: Vec::new(),
        batch_id: None,
    };
    let mut report = RecoveryReport::default();
    let mut segments = Vec::new();
    let mut write_offset = SEGMENT_HEADER_BYTES as u64;
    let count = listed.len();
    // A reader thread reads segment k+1 while this one checks segment k, so
    // recovery takes about as long as reading the files, not read + check.
    thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(0);
        // Two buffers circulate, so segments are read into memory that is
        // already mapped rather than into a fresh 64 MiB allocation each.
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..2 {
            free_tx.send(Vec::new()).expect("the receiver is alive");
        }
        scope.spawn(move || {
            for (seq, path) in listed {
                let Ok(buf) = free_rx.recv() else { break };
                let read = read_segment(&path, buf).map(|(file, buf)| (seq, path, file, buf));
                let failed = read.is_err();
                // A send fails once the checker stopped on an error; stop too.
                if tx.send(read).is_err() || failed {
                    break;
                }
            }
        });
        for k in 0..count {
            let (seq, path, file, buf) = rx
                .recv()
                .expect("the reader sends every segment or an error")?;
            report.segments += 1;
            report.bytes_read += buf.len() as u64;
            let end = replay.segment(seq, &path, &buf, k + 1 == count)?;
            if let Some(torn) = &end.torn {
                if !torn.segment_removed {
                    zero_durably(&file, &path, torn.offset, torn.discarded_bytes)?;
                }
            }
            match end.keep {
                Some(records_end) => {
                    write_offset = records_end as u64;
                    segments.push(Segment { seq, path, file });
                }
                None => {
                    drop(file);
                    fsutil::remove_durably(&path)?;
                }
            }
            report.torn_write = end.torn;
            // Fails only once the reader has finished; then no buffer is needed.
            let _ = free_tx.send(buf);
        }
        Ok::<(), StorageError>(())
    })?;
    replay.index.check_complete().map_err(|(kind, loc)| {
        let segment = segments.iter().find(|s| s.seq == loc.seq);
        let file = segment.map_or_else(|| dir.to_path_buf(), |s| s.path.clone());
        StorageError::corrupt(file, loc.offset, kind)
    })?;
    Ok(Recovered {
        segments,
        write_offset,
        index: replay.index,
        next_batch: replay.last_complete.map_or(1, |b| b + 1),
        report,
    })
}

/// Opens a segment and reads all of it into `buf`.
fn read_segment(path: &Path, mut buf: Vec<u8>) -> Result<(File, Vec<u8>), StorageError> {
    let file = fsutil::open_rw(path, false)?;
    buf.clear();
    (&file)
        .read_to_end(&mut buf)
        .map_err(StorageError::io("read", path))?;
    Ok((file, buf))
}

/// Overwrites `len` bytes at `offset` with zeros and syncs them.
fn zero_durably(
    file: &std::fs::File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<(), StorageError> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; len.min(CHUNK) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK) as usize;
        file.write_all_at(&zeros[..n], offset + done)
            .map_err(StorageError::io("zero the torn tail of", path))?;
        done += n as u64;
    }
    file.sync_data()
        .map_err(StorageError::io("fdatasync", path))
}

/// How one segment ends.
struct SegmentEnd {
    /// `Some(end of its complete batches)` if the segment is kept.
    keep: Option<usize>,
    torn: Option<TornWrite>,
}

/// Where and why the walk through a segment's frames stopped.
struct Walked {
    /// The first offset that does not hold a valid frame.
    stop: usize,
    /// Why not (`None`: the file ends there).
    problem: Option<FrameProblem>,
    /// The end of the segment's last complete batch, if it has one.
    complete_end: Option<usize>,
}

/// Replay state carried from segment to segment.
struct Replay {
    index: DurableIndex,
    /// The last batch whose every frame was read.
    last_complete: Option<u64>,
    /// Frames of the batch being read (record, frame offset, payload
    /// length), applied only once the batch is complete.
    batch: Vec<(RecordMeta, u64, u32)>,
    batch_id: Option<u64>,
}

impl Replay {
    /// Replays one segment and decides how it ends.
    fn segment(
        &mut self,
        seq: u64,
        path: &Path,
        buf: &[u8],
        is_last: bool,
    ) -> Result<SegmentEnd, StorageError> {
        let corrupt = |offset: usize, kind| StorageError::corrupt(path, offset as u64, kind);
        match frame::check_segment_header(buf) {
            Ok(found) if found == seq => {}
            Ok(found) => {
                let kind = Corruption::SegmentSeqMismatch { named: seq, found };
                return Err(corrupt(0, kind));
            }
            Err(HeaderProblem::Version(found)) => {
                return Err(StorageError::UnsupportedVersion {
                    file: path.to_path_buf(),
                    found,
                    supported: frame::FORMAT_VERSION,
                });
            }
            Err(HeaderProblem::Damaged) => {
                // A crash while creating the segment leaves a damaged header
                // and no complete batch: the same rule as a torn record.
                let end = frame::nonzero_end(buf);
                if !is_last || self.later_batch_frame(buf, 0, end).is_some() {
                    return Err(corrupt(0, Corruption::BadFileHeader));
                }
                return Ok(SegmentEnd {
                    keep: None,
                    torn: Some(torn(path, 0, end, true)),
                });
            }
        }
        let walked = self.walk(seq, path, buf)?;
        let end = frame::nonzero_end(buf);
        if is_last {
            self.end_last_segment(path, buf, walked, end)
        } else {
            self.end_earlier_segment(path, buf, walked, end)
        }
    }

    /// Replays the valid frames from the segment header on, stopping at the
    /// first offset that does not hold one.
    fn walk(&mut self, seq: u64, path: &Path, buf: &[u8]) -> Result<Walked, StorageError> {
        let corrupt = |offset: usize, kind| StorageError::corrupt(path, offset as u64, kind);
        let mut at = SEGMENT_HEADER_BYTES;
        let mut complete_end = None;
        let problem = loop {
            let header = match frame::read_frame(buf, at) {
                FrameRead::Valid(header) => header,
                FrameRead::Eof => break None,
                FrameRead::Invalid(problem) => break Some(problem),
            };
            self.check_batch_order(header.batch)
                .map_err(|kind| corrupt(at, kind))?;
            let payload = &buf[at + FRAME_HEADER_BYTES..header.end(at)];
            let meta =
                codec::decode_meta(payload).map_err(|e| corrupt(at, Corruption::Undecodable(e)))?;
            self.batch.push((meta, at as u64, header.payload_len));
            self.batch_id = Some(header.batch);
            at = header.end(at);
            if header.last_in_batch {
                self.apply_batch(seq, path)?;
                self.last_complete = Some(header.batch);
                complete_end = Some(at);
            }
        };
        Ok(Walked {
            stop: at,
            problem,
            complete_end,
        })
    }

    /// A segment before the last was synced before its successor existed:
    /// after its last batch only zeros may follow.
    fn end_earlier_segment(
        &self,
        path: &Path,
        buf: &[u8],
        walked: Walked,
        end: usize,
    ) -> Result<SegmentEnd, StorageError> {
        let at = walked.stop;
        let corrupt = |kind| StorageError::corrupt(path, at as u64, kind);
        if let Some(problem) = walked.problem.filter(|&p| p != FrameProblem::ZeroHeader) {
            return Err(corrupt(Corruption::DamagedRecord { problem }));
        }
        if let Some(batch) = self.batch_id {
            return Err(corrupt(Corruption::BatchCutAtSegmentEnd { batch }));
        }
        if let Some((later_offset, _)) = frame::find_frame(buf, at, end, |_| true) {
            return Err(corrupt(Corruption::DamagedBeforeLaterWrite {
                problem: FrameProblem::ZeroHeader,
                later_offset: later_offset as u64,
            }));
        }
        Ok(SegmentEnd {
            keep: Some(at),
            torn: None,
        })
    }

    /// The last segment may end in a torn write: see the module docs.
    fn end_last_segment(
        &mut self,
        path: &Path,
        buf: &[u8],
        walked: Walked,
        end: usize,
    ) -> Result<SegmentEnd, StorageError> {
        let at = walked.stop;
        if let Some((later_offset, _)) = self.later_batch_frame(buf, at, end) {
            let kind = Corruption::DamagedBeforeLaterWrite {
                problem: walked.problem.unwrap_or(FrameProblem::ShortHeader),
                later_offset: later_offset as u64,
            };
            return Err(StorageError::corrupt(path, at as u64, kind));
        }
        // A torn (or cleanly ended) final write: keep the complete batches.
        self.batch.clear();
        self.batch_id = None;
        Ok(match walked.complete_end {
            Some(keep) => SegmentEnd {
                keep: Some(keep),
                torn: (end > keep).then(|| torn(path, keep, end, false)),
            },
            None => SegmentEnd {
                keep: None,
                torn: Some(torn(path, 0, end, true)),
            },
        })
    }

    /// The first valid frame in `from..end` that belongs to a batch later
    /// than the one that was being written when the log ends.
    fn later_batch_frame(
        &self,
        buf: &[u8],
        from: usize,
        end: usize,
    ) -> Option<(usize, frame::FrameHeader)> {
        let torn_batch = self
            .batch_id
            .unwrap_or_else(|| self.last_complete.map_or(1, |b| b + 1));
        frame::find_frame(buf, from, end, |h| h.batch > torn_batch)
    }

    fn check_batch_order(&self, batch: u64) -> Result<(), Corruption> {
        let (previous, expected) = match (self.batch_id, self.last_complete) {
            (Some(current), _) => (current, current),
            (None, Some(done)) => (done, done + 1),
            (None, None) => return Ok(()),
        };
        if batch == expected {
            Ok(())
        } else {
            Err(Corruption::BatchOutOfOrder {
                previous,
                found: batch,
            })
        }
    }

    fn apply_batch(&mut self, seq: u64, path: &Path) -> Result<(), StorageError> {
        for (meta, offset, payload_len) in self.batch.drain(..) {
            self.index
                .apply(seq, meta, offset, payload_len)
                .map_err(|kind| StorageError::corrupt(path, offset, kind))?;
        }
        self.batch_id = None;
        Ok(())
    }
}

fn torn(path: &Path, offset: usize, end: usize, segment_removed: bool) -> TornWrite {
    TornWrite {
        file: path.to_path_buf(),
        offset: offset as u64,
        discarded_bytes: end.saturating_sub(offset) as u64,
        segment_removed,
    }
}
