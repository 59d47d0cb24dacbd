//! Reading a published snapshot file in chunks, e.g. to stream it to a
//! follower.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::format::{self, SnapshotInfo};
use super::store::SnapshotReader;
use crate::error::{Corruption, StorageError};

/// An open snapshot file. The open file stays readable even if a newer
/// snapshot prunes it meanwhile, so a transfer in progress is never cut
/// short.
#[derive(Debug)]
pub(super) struct FileSnapshotReader {
    path: PathBuf,
    file: File,
    info: SnapshotInfo,
    header_bytes: u64,
}

impl FileSnapshotReader {
    pub(super) fn open(path: &Path) -> Result<FileSnapshotReader, StorageError> {
        let file = File::open(path).map_err(StorageError::io("open", path))?;
        let (info, header_bytes) = format::read_header(&file, path)?;
        Ok(FileSnapshotReader {
            path: path.to_path_buf(),
            file,
            info,
            header_bytes,
        })
    }
}

impl SnapshotReader for FileSnapshotReader {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn read_chunk(&self, offset: u64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let remaining = self.info.data_bytes.saturating_sub(offset);
        let len = remaining.min(max_bytes as u64) as usize;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.header_bytes + offset)
            .map_err(StorageError::io("read", &self.path))?;
        Ok(Bytes::from(buf))
    }

    /// Reports damage as [`StorageError::Corrupt`], naming the file.
    fn verify(&self) -> Result<(), StorageError> {
        const CHUNK: usize = 1 << 20;
        let mut crc = 0;
        let mut offset = 0;
        while offset < self.info.data_bytes {
            let chunk = self.read_chunk(offset, CHUNK)?;
            crc = crc32c::crc32c_append(crc, &chunk);
            offset += chunk.len() as u64;
        }
        if crc != self.info.checksum {
            let kind = Corruption::DataChecksum {
                expected: self.info.checksum,
                actual: crc,
            };
            return Err(StorageError::corrupt(&self.path, self.header_bytes, kind));
        }
        Ok(())
    }
}
