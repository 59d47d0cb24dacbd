//! Segment files: naming, listing, creating and reading records back.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use keel_raft::{Entry, LogIndex};

use crate::codec::{self, Record};
use crate::error::{Corruption, StorageError};
use crate::frame::{self, FRAME_HEADER_BYTES};
use crate::fsutil;
use crate::index::Loc;

const SUFFIX: &str = ".wal";

/// What [`Segment::write_zeros`] writes from, one piece at a time.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// One open segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub seq: u64,
    pub path: PathBuf,
    pub file: File,
}

/// `<dir>/<seq, 20 digits>.wal`: zero-padded so names sort like numbers.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

/// The segment files in `dir`, ordered by sequence number. Other files are
/// ignored, so operators may keep notes or backups beside the log.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments: Vec<(u64, PathBuf)> = fsutil::list_dir(dir)?
        .into_iter()
        .filter_map(|(name, path)| {
            let digits = name.strip_suffix(SUFFIX)?;
            let valid = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
            Some((digits.parse().ok().filter(|_| valid)?, path))
        })
        .collect();
    segments.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(segments)
}

impl Segment {
    /// Creates segment `seq` with `preallocate_bytes` reserved. Its header is
    /// written by the caller together with the first batch.
    pub fn create(dir: &Path, seq: u64, preallocate_bytes: u64) -> Result<Segment, StorageError> {
        let path = segment_path(dir, seq);
        let file = fsutil::open_rw(&path, true)?;
        fsutil::preallocate(&file, &path, preallocate_bytes)?;
        Ok(Segment { seq, path, file })
    }

    /// Writes zeros over `from..to`: space past every record, which reads
    /// as zeros already (preallocated, or never written), so that what
    /// the segment holds does not change — only how the filesystem keeps
    /// it (see `FileLogStore`'s `initialized_to`).
    pub fn write_zeros(&self, from: u64, to: u64) -> Result<(), StorageError> {
        let mut at = from;
        while at < to {
            let len = (to - at).min(ZEROS.len() as u64) as usize;
            self.file
                .write_all_at(&ZEROS[..len], at)
                .map_err(StorageError::io("write", &self.path))?;
            at += len as u64;
        }
        Ok(())
    }

    /// Reads the durable entries at `locs` (consecutive indexes from
    /// `first`, all in this segment and adjacent on disk) with one read,
    /// verifying every checksum again: the disk may have rotted since
    /// recovery checked it.
    pub fn read_entries(
        &self,
        first: LogIndex,
        locs: &[Loc],
        out: &mut Vec<Entry>,
    ) -> Result<(), StorageError> {
        let (Some(head), Some(tail)) = (locs.first(), locs.last()) else {
            return Ok(());
        };
        let end = tail.offset + FRAME_HEADER_BYTES as u64 + u64::from(tail.payload_len);
        let mut buf = vec![0u8; (end - head.offset) as usize];
        self.file
            .read_exact_at(&mut buf, head.offset)
            .map_err(StorageError::io("read", &self.path))?;
        let buf = Bytes::from(buf);
        for (k, loc) in locs.iter().enumerate() {
            let expected = first.plus(k as u64);
            let at = (loc.offset - head.offset) as usize;
            let corrupt = |kind| StorageError::corrupt(&self.path, loc.offset, kind);
            let header = frame::verify_frame(&buf[at..])
                .map_err(|problem| corrupt(Corruption::DamagedRecord { problem }))?;
            let payload = buf.slice(at + FRAME_HEADER_BYTES..header.end(at));
            match codec::decode(&payload).map_err(|e| corrupt(Corruption::Undecodable(e)))? {
                Record::Entry(entry) if entry.index == expected && entry.term == loc.term => {
                    out.push(entry)
                }
                Record::Entry(entry) => {
                    return Err(corrupt(Corruption::MisplacedEntry {
                        expected,
                        found: entry.index,
                    }));
                }
                _ => {
                    return Err(corrupt(Corruption::MisplacedEntry {
                        expected,
                        found: LogIndex(0),
                    }));
                }
            }
        }
        Ok(())
    }
}
