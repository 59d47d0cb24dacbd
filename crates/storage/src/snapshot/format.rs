//! The snapshot file: a checksummed header, then the state machine's bytes.
//!
//! ```text
//!  0  magic "KEELSNAP"
//!  8  format version u32
//! 12  header length u32 (the data starts here)
//! 16  last included index u64
//! 24  its term u64
//! 32  data length u64
//! 40  crc32c of the data, u32
//! 44  membership: voters, outgoing, learners (codec.rs id lists), then
//!     (version 2) its members' addresses (codec.rs address list)
//!  …  crc32c of every header byte before it, u32
//! ```
//!
//! Version 2 added the addresses; version 1 files, written before
//! configurations carried addresses, still read (without addresses).
//!
//! Files are named `<index, 20 digits>-<term, 20 digits>.snap`; one being
//! written carries the extra suffix `.partial` until it is published.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use keel_raft::{LogIndex, SnapshotMeta, Term};

use crate::codec;
use crate::error::{Corruption, StorageError};

const MAGIC: [u8; 8] = *b"KEELSNAP";
const VERSION: u32 = 2;
/// The version before configurations carried addresses.
const VERSION_WITHOUT_ADDRESSES: u32 = 1;
const FIXED_BYTES: usize = 44;
/// Bounds the header length read from disk, so a damaged length cannot make
/// us allocate gigabytes: 16 MiB holds two million member ids.
const HEADER_BYTES_MAX: u32 = 16 << 20;

pub(crate) const SUFFIX: &str = ".snap";
pub(crate) const PARTIAL_SUFFIX: &str = ".snap.partial";

/// A published snapshot: what it covers, and its data's size and checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The index, term and membership the snapshot covers.
    pub meta: SnapshotMeta,
    /// The length of the snapshot data in bytes (the header not counted).
    pub data_bytes: u64,
    /// crc32c of the data: send it along so the receiver can verify.
    pub checksum: u32,
}

pub(crate) fn file_name(meta: &SnapshotMeta, suffix: &str) -> String {
    format!("{:020}-{:020}{suffix}", meta.index.0, meta.term.0)
}

/// Parses `<index>-<term>.snap` into `(index, term)`.
pub(crate) fn parse_name(name: &str) -> Option<(LogIndex, Term)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (index, term) = stem.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(term) {
        return None;
    }
    Some((LogIndex(index.parse().ok()?), Term(term.parse().ok()?)))
}

/// Encodes the header for `info`.
pub(crate) fn encode_header(info: &SnapshotInfo) -> Vec<u8> {
    let len = FIXED_BYTES + codec::membership_len(&info.meta.membership) + 4;
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(&MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(
        &u32::try_from(len)
            .expect("header below 4 GiB")
            .to_le_bytes(),
    );
    h.extend_from_slice(&info.meta.index.0.to_le_bytes());
    h.extend_from_slice(&info.meta.term.0.to_le_bytes());
    h.extend_from_slice(&info.data_bytes.to_le_bytes());
    h.extend_from_slice(&info.checksum.to_le_bytes());
    codec::encode_membership(&info.meta.membership, &mut h);
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(h.len(), len);
    h
}

/// Reads and verifies the header of the snapshot file at `path`, returning
/// what it describes and where the data starts. Also checks that the file
/// holds all the data the header promises.
pub(crate) fn read_header(file: &File, path: &Path) -> Result<(SnapshotInfo, u64), StorageError> {
    let corrupt = |kind| StorageError::corrupt(path, 0, kind);
    let file_len = file
        .metadata()
        .map_err(StorageError::io("stat", path))?
        .len();
    let mut fixed = [0u8; FIXED_BYTES];
    if file_len < FIXED_BYTES as u64 {
        return Err(corrupt(Corruption::BadFileHeader));
    }
    file.read_exact_at(&mut fixed, 0)
        .map_err(StorageError::io("read", path))?;
    if fixed[0..8] != MAGIC {
        return Err(corrupt(Corruption::BadFileHeader));
    }
    let word = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
    let version = word(8);
    if version != VERSION && version != VERSION_WITHOUT_ADDRESSES {
        return Err(StorageError::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let header_len = word(12);
    if header_len > HEADER_BYTES_MAX
        || (header_len as usize) < FIXED_BYTES + 12 + 4
        || u64::from(header_len) > file_len
    {
        return Err(corrupt(Corruption::BadFileHeader));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(StorageError::io("read", path))?;
    let (body, crc) = header.split_at(header.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt(Corruption::BadFileHeader));
    }
    let with_addresses = version != VERSION_WITHOUT_ADDRESSES;
    let membership = codec::decode_membership(&body[FIXED_BYTES..], with_addresses)
        .map_err(|e| corrupt(Corruption::Undecodable(e)))?;
    let info = SnapshotInfo {
        meta: SnapshotMeta {
            index: LogIndex(long(16)),
            term: Term(long(24)),
            membership,
        },
        data_bytes: long(32),
        checksum: word(40),
    };
    let expected = u64::from(header_len).saturating_add(info.data_bytes);
    if file_len < expected {
        return Err(corrupt(Corruption::Truncated {
            len: file_len,
            expected,
        }));
    }
    Ok((info, u64::from(header_len)))
}

/// A published snapshot file and the `(index, term)` its name carries.
pub(crate) type Listed = ((LogIndex, Term), PathBuf);

/// The published snapshot files in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<Listed>, StorageError> {
    let mut found: Vec<_> = crate::fsutil::list_dir(dir)?
        .into_iter()
        .filter_map(|(name, path)| Some((parse_name(&name)?, path)))
        .collect();
    found.sort_unstable_by_key(|(key, _)| *key);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use super::*;
    use keel_raft::{Membership, NodeId};

    fn written(header: &[u8], data: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(header).unwrap();
        file.write_all(data).unwrap();
        file
    }

    #[test]
    fn a_header_with_addresses_reads_back() {
        let membership = Membership::new([NodeId(1), NodeId(2)], [NodeId(3)])
            .unwrap()
            .with_addresses(BTreeMap::from([
                (NodeId(1), "10.0.0.1:2380".to_owned()),
                (NodeId(3), "host-3:2380".to_owned()),
            ]))
            .unwrap();
        let info = SnapshotInfo {
            meta: SnapshotMeta {
                index: LogIndex(40),
                term: Term(5),
                membership,
            },
            data_bytes: 3,
            checksum: crc32c::crc32c(b"abc"),
        };
        let header = encode_header(&info);
        let file = written(&header, b"abc");
        let read = read_header(file.as_file(), file.path()).unwrap();
        assert_eq!(read, (info, header.len() as u64));
    }

    /// A snapshot file written before configurations carried addresses
    /// (version 1, laid out by hand) still reads, without addresses.
    #[test]
    fn a_version_1_header_still_reads() {
        let data = b"state";
        let mut h = Vec::new();
        h.extend_from_slice(b"KEELSNAP");
        h.extend_from_slice(&1u32.to_le_bytes());
        let len = 44 + 3 * 4 + 2 * 8 + 4;
        h.extend_from_slice(&(len as u32).to_le_bytes());
        h.extend_from_slice(&9u64.to_le_bytes());
        h.extend_from_slice(&2u64.to_le_bytes());
        h.extend_from_slice(&(data.len() as u64).to_le_bytes());
        h.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
        for list in [&[1u64, 2][..], &[][..], &[][..]] {
            h.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for id in list {
                h.extend_from_slice(&id.to_le_bytes());
            }
        }
        let crc = crc32c::crc32c(&h);
        h.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(h.len(), len);
        let file = written(&h, data);
        let (info, data_at) = read_header(file.as_file(), file.path()).unwrap();
        assert_eq!(data_at, len as u64);
        assert_eq!(
            info.meta,
            SnapshotMeta {
                index: LogIndex(9),
                term: Term(2),
                membership: Membership::new([NodeId(1), NodeId(2)], []).unwrap(),
            }
        );
        assert_eq!(info.data_bytes, data.len() as u64);
    }

    #[test]
    fn names_roundtrip_and_reject_strangers() {
        let meta = SnapshotMeta {
            index: LogIndex(12),
            term: Term(3),
            membership: Membership::new([NodeId(1)], []).unwrap(),
        };
        assert_eq!(
            parse_name(&file_name(&meta, SUFFIX)),
            Some((LogIndex(12), Term(3)))
        );
        assert_eq!(parse_name(&file_name(&meta, PARTIAL_SUFFIX)), None);
        assert_eq!(parse_name("12-3.snap"), None);
    }
}
