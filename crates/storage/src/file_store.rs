//! [`FileLogStore`]: the durable log on segment files.
//!
//! Writes only change memory; [`LogStore::sync`] frames everything written
//! since the last sync as one batch, writes it with one `pwrite` and makes it
//! durable with one `fdatasync` (a small batch reaching space the segment
//! has not had written takes zeros ahead of it, [`ZERO_AHEAD_BYTES`], in the
//! same sync). Architecture invariant: `sync` (and `open`) are the only
//! methods that write to disk, so nothing is on disk that a later sync did
//! not cover, and a crash before a sync loses exactly the writes since the
//! previous one.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keel_raft::{Entry, HardState, LogIndex, Term};

use crate::batch::FramedBatch;
use crate::cache::RecentEntries;
use crate::codec::CompactPoint;
use crate::config::LogConfig;
use crate::error::StorageError;
use crate::frame::{self, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::fsutil;
use crate::index::DurableIndex;
use crate::lock::DirLock;
use crate::mem::{assert_contiguous, check_range};
use crate::recovery::{self, RecoveryReport};
use crate::segment::Segment;
use crate::store::{Durable, LogStore};

/// How far past a batch's end `sync` writes zeros into the last segment,
/// once the batch reaches space not yet written.
///
/// A segment is reserved with `fallocate`, whose blocks stay *unwritten*
/// until data lands in them: ext4 (and XFS) then convert the extent to
/// written, and the `fdatasync` that follows must make that conversion
/// durable too — more IO, more work, and more sleeps per sync. Writing
/// zeros ahead in large pieces pays that conversion once per piece instead
/// of once per batch, and the zeros change nothing a reader can see:
/// preallocated space reads as zeros already, which recovery takes for the
/// end of the log. On this project's machine (ext4 on a virtual disk),
/// 6,000-byte writes + `fdatasync`, 3,000 in a row: 196 µs mean, 76 µs of
/// CPU and 3.4 context switches per sync into fallocated space; 130 µs,
/// 52 µs and 2.0 with zeros written 1 MiB ahead, the sync that writes them
/// taking up to 2 ms (`BENCHMARKS.md`).
pub const ZERO_AHEAD_BYTES: u64 = 1 << 20;

/// From this size on a batch goes into unwritten space without zeros
/// ahead of it: its own write pays the extent conversion once for many
/// blocks, while zeros would double the bytes it writes, and large writes
/// are bound by the disk's bandwidth. The WAL benchmark with zeros ahead
/// of every batch: 105–151% of the bare loop's batches per second at
/// 170 B–43 KiB per batch, but 73% at 267 KiB.
const ZERO_AHEAD_BATCH_BYTES_MAX: u64 = 128 << 10;

/// The durable Raft log and hard state in a directory of segment files.
/// See `ARCHITECTURE.md` for the format and the crash-safety argument.
#[derive(Debug)]
pub struct FileLogStore {
    dir: PathBuf,
    config: LogConfig,
    _lock: DirLock,
    /// Live segments by sequence number; the last one is written to.
    segments: BTreeMap<u64, Segment>,
    /// Where the next batch goes in the last segment.
    write_offset: u64,
    /// How far the last segment's space has been written, with records or
    /// with zeros ([`ZERO_AHEAD_BYTES`]). Invariant: `write_offset <=
    /// initialized_to`, and only `write_offset..initialized_to` may hold
    /// zeros written ahead. After a restart nothing past `write_offset`
    /// counts as written, whatever a previous run wrote there.
    initialized_to: u64,
    next_batch: u64,
    /// What is on disk.
    durable: DurableIndex,
    /// The log as callers see it: `durable` plus the unsynced writes.
    /// Invariant: entries `base.0 + 1 .. unsynced_from` are current in
    /// `durable`, and entries `unsynced_from ..= last_index` are in `recent`.
    base: (LogIndex, Term),
    last_index: LogIndex,
    unsynced_from: LogIndex,
    hard_state: HardState,
    recent: RecentEntries,
    /// Writes since the last sync, in order, already framed as batch
    /// `next_batch`.
    pending: FramedBatch,
    /// Set when a write or sync failed; see [`LogStore::sync`].
    poisoned: Option<(&'static str, PathBuf, io::ErrorKind)>,
    report: RecoveryReport,
}

impl FileLogStore {
    /// Opens (or creates) the log in `dir`, recovering it as
    /// `recovery.rs` describes.
    ///
    /// # Errors
    /// `Locked` if another store has `dir` open, `Corrupt` or
    /// `UnsupportedVersion` if the log cannot be trusted, `Io` otherwise.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<FileLogStore, StorageError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fsutil::ensure_dir(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        let recovered = recovery::recover(&dir)?;
        let durable = recovered.index;
        let last_index = durable.last_index();
        Ok(FileLogStore {
            base: durable.base(),
            last_index,
            unsynced_from: last_index.next(),
            hard_state: durable.hard_state().clone(),
            recent: RecentEntries::new(config.cache_bytes_max),
            segments: recovered.segments.into_iter().map(|s| (s.seq, s)).collect(),
            write_offset: recovered.write_offset,
            initialized_to: recovered.write_offset,
            next_batch: recovered.next_batch,
            durable,
            pending: FramedBatch::new(recovered.next_batch),
            poisoned: None,
            report: recovered.report,
            dir,
            config,
            _lock: lock,
        })
    }

    /// What opening found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The directory the store was opened on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment file and offset where durable data ends and the next
    /// batch will be written (`None` before the first sync).
    pub fn durable_end(&self) -> Option<(&Path, u64)> {
        let (_, segment) = self.segments.last_key_value()?;
        Some((&segment.path, self.write_offset))
    }

    /// How many segment files the log occupies.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn proof(&self) -> Durable {
        let last = self.durable.last_index();
        let term = self
            .durable
            .term(last)
            .expect("the durable last index has a term");
        Durable::new(last, term, self.durable.hard_state().clone())
    }

    /// Remembers a failed write: see [`LogStore::sync`] for why it is final.
    fn poison(&mut self, error: &StorageError) {
        let (op, path, kind) = match error {
            StorageError::Io { op, path, source } => (*op, path.clone(), source.kind()),
            _ => ("write", self.dir.clone(), io::ErrorKind::Other),
        };
        self.poisoned = Some((op, path, kind));
    }

    /// The batch that starts segment `seq`: its header, then the durable
    /// hard state and compaction point, restated so that deleting older
    /// segments can never lose them, then the pending records.
    fn segment_start(&self, seq: u64) -> FramedBatch {
        let mut first =
            FramedBatch::with_prefix(self.next_batch, &frame::encode_segment_header(seq));
        let (index, term) = self.durable.base();
        first.push_hard_state(self.durable.hard_state().clone());
        first.push_compact(CompactPoint {
            index,
            term,
            discard_suffix: false,
        });
        first.extend(&self.pending);
        first
    }

    /// Deletes segments no live entry points into, oldest first, each
    /// removal durable before the next so that the survivors always form a
    /// contiguous run. The last segment is never deleted: it holds (or
    /// starts with) the newest hard state and compaction point.
    fn remove_compacted_segments(&mut self) -> Result<(), StorageError> {
        let Some(&active) = self.segments.keys().next_back() else {
            return Ok(());
        };
        let keep_from = self.durable.first_live_seq().unwrap_or(active).min(active);
        while let Some(entry) = self.segments.first_entry() {
            if *entry.key() >= keep_from {
                break;
            }
            let path = entry.get().path.clone();
            fsutil::remove_durably(&path)?;
            entry.remove();
        }
        Ok(())
    }
}

/// The zeros to write ahead of a batch of `batch_bytes` ending at `end`:
/// none while the batch stays within space already written
/// (`initialized_to`), nor for a batch of [`ZERO_AHEAD_BATCH_BYTES_MAX`] or
/// more; otherwise from `end` to [`ZERO_AHEAD_BYTES`] beyond (rounded up
/// to whole 4 KiB blocks), never past the segment's preallocated size.
fn zeros_ahead(initialized_to: u64, end: u64, batch_bytes: u64, segment_bytes: u64) -> Range<u64> {
    if end <= initialized_to || batch_bytes >= ZERO_AHEAD_BATCH_BYTES_MAX {
        return end..end;
    }
    let ahead = (end + ZERO_AHEAD_BYTES).next_multiple_of(4096);
    end..ahead.min(segment_bytes).max(end)
}

/// Writes `bytes` at `start` and makes them durable: one `pwrite`, one
/// `fdatasync`.
fn write_and_sync(segment: &Segment, bytes: &[u8], start: u64) -> Result<(), StorageError> {
    segment
        .file
        .write_all_at(bytes, start)
        .map_err(StorageError::io("write", &segment.path))?;
    segment
        .file
        .sync_data()
        .map_err(StorageError::io("fdatasync", &segment.path))
}

impl LogStore for FileLogStore {
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert_contiguous(entries);
        assert!(
            first.index > self.base.0 && first.index <= self.last_index.next(),
            "append at {} outside {}..={}",
            first.index,
            self.base.0.next(),
            self.last_index.next()
        );
        for entry in entries {
            self.pending.push_entry(entry);
            self.recent.push(entry.clone());
        }
        self.last_index = entries[entries.len() - 1].index;
        self.unsynced_from = self.unsynced_from.min(first.index);
    }

    fn set_hard_state(&mut self, hs: HardState) {
        assert_ne!(
            hs.vote,
            Some(keel_raft::NodeId(0)),
            "node id 0 cannot receive a vote"
        );
        if hs != self.hard_state {
            self.hard_state = hs.clone();
            self.pending.push_hard_state(hs);
        }
    }

    fn compact(&mut self, upto: LogIndex, term: Term) {
        if upto <= self.base.0 {
            return;
        }
        let keep_suffix = self.term(upto) == Some(term);
        if keep_suffix {
            self.recent.drop_through(upto);
            self.unsynced_from = self.unsynced_from.max(upto.next());
        } else {
            self.recent.clear();
            self.last_index = upto;
            self.unsynced_from = upto.next();
        }
        self.base = (upto, term);
        self.pending.push_compact(CompactPoint {
            index: upto,
            term,
            discard_suffix: !keep_suffix,
        });
    }

    fn sync(&mut self) -> Result<Durable, StorageError> {
        if let Some((op, path, kind)) = &self.poisoned {
            return Err(StorageError::Poisoned {
                op,
                path: path.clone(),
                kind: *kind,
            });
        }
        if self.pending.is_empty() {
            return Ok(self.proof());
        }
        let body = self.pending.len_bytes() as u64;
        let active = self.segments.keys().next_back().copied();
        let roll = active.is_none()
            || (self.write_offset > SEGMENT_HEADER_BYTES as u64
                && self.write_offset + body > self.config.segment_bytes);
        // A new segment's batch is rare (once per segment) and copies the
        // pending frames behind the segment head, so it is still one write.
        let mut first;
        let (batch, start) = if roll {
            let seq = active.map_or(1, |s| s + 1);
            let segment = Segment::create(&self.dir, seq, self.config.segment_bytes)
                .inspect_err(|e| self.poison(e))?;
            self.segments.insert(seq, segment);
            first = self.segment_start(seq);
            (&mut first, 0)
        } else {
            (&mut self.pending, self.write_offset)
        };
        let (bytes, records) = batch.finish();
        let (&seq, segment) = self
            .segments
            .last_key_value()
            .expect("a segment exists or was created");
        let end = start + bytes.len() as u64;
        let initialized_to = if roll { 0 } else { self.initialized_to };
        let zeros = zeros_ahead(
            initialized_to,
            end,
            bytes.len() as u64,
            self.config.segment_bytes,
        );
        let written = segment
            .write_zeros(zeros.start, zeros.end)
            .and_then(|()| write_and_sync(segment, bytes, start))
            .and_then(|()| {
                // A new file's name must be durable before its batch counts.
                if roll {
                    fsutil::sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            self.poison(&e);
            return Err(e);
        }
        for r in records {
            self.durable
                .apply(seq, r.meta.clone(), start + r.offset, r.payload_len)
                .expect("a batch the live store accepted replays cleanly");
        }
        self.write_offset = end;
        self.initialized_to = initialized_to.max(zeros.end);
        self.next_batch += 1;
        self.pending.reset(self.next_batch);
        self.unsynced_from = self.last_index.next();
        self.recent.evict(self.unsynced_from);
        debug_assert_eq!(self.durable.last_index(), self.last_index);
        debug_assert_eq!(self.durable.base(), self.base);
        self.remove_compacted_segments()?;
        Ok(self.proof())
    }

    fn entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        check_range(lo, hi, self.base.0.next(), self.last_index)?;
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0u64;
        let mut index = lo;
        while index < hi {
            if let Some(entry) = self.recent.get(index) {
                bytes += entry.size_bytes();
                if !out.is_empty() && bytes > max_bytes {
                    break;
                }
                out.push(entry.clone());
                index = index.next();
                continue;
            }
            // A run of entries adjacent in one segment, read with one pread.
            let disk_end = self.recent.first_index().map_or(hi, |f| f.min(hi));
            let first = *self
                .durable
                .loc(index)
                .expect("the view's synced entries are indexed");
            let mut run = vec![first];
            let mut estimate = bytes + u64::from(first.payload_len);
            let mut next = index.next();
            while next < disk_end {
                let loc = *self
                    .durable
                    .loc(next)
                    .expect("the view's synced entries are indexed");
                let prev = run[run.len() - 1];
                let adjacent = loc.seq == prev.seq
                    && loc.offset
                        == prev.offset + (FRAME_HEADER_BYTES as u64) + u64::from(prev.payload_len);
                estimate += u64::from(loc.payload_len);
                if !adjacent || estimate > max_bytes {
                    break;
                }
                run.push(loc);
                next = next.next();
            }
            let segment = &self.segments[&first.seq];
            let mut read = Vec::with_capacity(run.len());
            segment.read_entries(index, &run, &mut read)?;
            for entry in read {
                bytes += entry.size_bytes();
                if !out.is_empty() && bytes > max_bytes {
                    return Ok(out);
                }
                out.push(entry);
            }
            index = next;
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.base.0 {
            return Some(self.base.1);
        }
        if index < self.base.0 || index > self.last_index {
            return None;
        }
        match self.recent.get(index) {
            Some(entry) => Some(entry.term),
            None => self.durable.term(index),
        }
    }

    fn first_index(&self) -> LogIndex {
        self.base.0.next()
    }

    fn last_index(&self) -> LogIndex {
        self.last_index
    }

    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: u64 = 64 << 20;

    #[test]
    fn zeros_go_ahead_only_of_a_small_batch_reaching_unwritten_space() {
        // Within space already written: nothing.
        assert!(zeros_ahead(8192, 8000, 500, SEGMENT).is_empty());
        assert!(zeros_ahead(8192, 8192, 500, SEGMENT).is_empty());
        // Past it: a piece of zeros from the batch's end, in whole blocks.
        assert_eq!(
            zeros_ahead(8192, 8200, 500, SEGMENT),
            8200..(8200 + ZERO_AHEAD_BYTES).next_multiple_of(4096)
        );
        // Never past the segment's preallocated size, nor for a batch
        // beyond it.
        assert_eq!(
            zeros_ahead(0, SEGMENT - 100, 500, SEGMENT),
            SEGMENT - 100..SEGMENT
        );
        assert!(zeros_ahead(0, SEGMENT + 100, 500, SEGMENT).is_empty());
        // A large batch pays its own conversion: no zeros.
        let large = ZERO_AHEAD_BATCH_BYTES_MAX;
        assert!(zeros_ahead(0, large + 32, large, SEGMENT).is_empty());
        assert!(!zeros_ahead(0, large + 32, large - 1, SEGMENT).is_empty());
    }
}
