//! Record payloads: a hand-rolled, fixed, little-endian layout.
//!
//! Every payload starts with a tag byte. The layouts (all integers LE):
//!
//! ```text
//! Entry      tag=1 | term u64 | index u64 | kind u8 | body
//!              kind 0 Blank       body = (nothing)
//!              kind 1 Command     body = the command bytes (to the end of the payload)
//!              kind 2 Membership  body = voters, outgoing, learners; each a list
//!              kind 3 Membership  body = as kind 2, then its members' addresses
//! HardState  tag=2 | term u64 | vote u64 (0 = none) | commit u64
//! Compact    tag=3 | index u64 | term u64 | discard_suffix u8 (0 or 1)
//! list       count u32 | count x node id u64, strictly increasing
//! addresses  count u32 | count x (node id u64 | len u16 | len bytes of UTF-8),
//!            ids strictly increasing, each a member, 1 <= len <= 1 KiB
//! ```
//!
//! A configuration without addresses is written as kind 2, byte for byte
//! what builds before addresses wrote, and kind 2 still decodes (as a
//! configuration without addresses), so data directories written before
//! configurations carried addresses open unchanged.
//!
//! Decoding never trusts its input: every read is bounds-checked and every
//! malformed payload yields a [`DecodeError`] instead of a panic, because a
//! payload that passed its CRC can still come from a newer or buggy writer.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use keel_raft::{
    ADDRESS_BYTES_MAX, Entry, HardState, LogIndex, Membership, MembershipError, NodeId, Payload,
    Term,
};

const TAG_ENTRY: u8 = 1;
const TAG_HARD_STATE: u8 = 2;
const TAG_COMPACT: u8 = 3;

const KIND_BLANK: u8 = 0;
const KIND_COMMAND: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
const KIND_MEMBERSHIP_WITH_ADDRESSES: u8 = 3;

/// Bytes of one address record before the address: id u64, len u16.
const ADDRESS_FIXED_BYTES: usize = 8 + 2;

/// Bytes of an entry payload before its body.
const ENTRY_FIXED_BYTES: usize = 1 + 8 + 8 + 1;

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ends before the record does.
    #[error("the payload ends early")]
    Truncated,
    /// The record's tag byte (given) names no known record type.
    #[error("unknown record tag {0}")]
    UnknownTag(u8),
    /// The entry's kind byte (given) names no known payload kind.
    #[error("unknown entry kind {0}")]
    UnknownEntryKind(u8),
    /// The payload has this many bytes left over after the record.
    #[error("{0} unexpected bytes after the record")]
    TrailingBytes(usize),
    /// A boolean flag byte (given) is neither 0 nor 1.
    #[error("flag byte {0} is neither 0 nor 1")]
    BadFlag(u8),
    /// The node ids of a membership list are not strictly increasing.
    #[error("node ids in a membership list are not strictly increasing")]
    UnsortedIds,
    /// An address is empty, longer than [`ADDRESS_BYTES_MAX`] (length
    /// given), or not UTF-8.
    #[error("a member's address is malformed ({0} bytes)")]
    BadAddress(usize),
    /// The decoded membership fails Raft's validity checks.
    #[error("invalid membership: {0}")]
    InvalidMembership(MembershipError),
}

/// The compaction point: entries up to `index` live only in a snapshot
/// whose last entry has `term`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CompactPoint {
    pub index: LogIndex,
    pub term: Term,
    /// Whether the entries after `index` were discarded too, because the
    /// log disagreed with the snapshot at `index` (Figure 13, step 7).
    pub discard_suffix: bool,
}

/// One logical record of the write-ahead log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Entry(Entry),
    HardState(HardState),
    Compact(CompactPoint),
}

/// What recovery needs from a record: everything except an entry's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordMeta {
    Entry { index: LogIndex, term: Term },
    HardState(HardState),
    Compact(CompactPoint),
}

impl Record {
    /// Exact number of bytes [`Record::encode`] appends.
    #[cfg(test)]
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::Entry(e) => {
                ENTRY_FIXED_BYTES
                    + match &e.payload {
                        Payload::Blank => 0,
                        Payload::Command(data) => data.len(),
                        Payload::Membership(m) if m.addresses().is_empty() => id_lists_len(m),
                        Payload::Membership(m) => membership_len(m),
                    }
            }
            Record::HardState(_) => 1 + 8 + 8 + 8,
            Record::Compact(_) => 1 + 8 + 8 + 1,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Entry(e) => encode_entry(e, out),
            Record::HardState(hs) => {
                // Node id 0 means "nobody", so it doubles as the encoding of no vote.
                assert_ne!(hs.vote, Some(NodeId(0)), "node id 0 cannot receive a vote");
                out.push(TAG_HARD_STATE);
                out.extend_from_slice(&hs.term.0.to_le_bytes());
                out.extend_from_slice(&hs.vote.map_or(0, |id| id.0).to_le_bytes());
                out.extend_from_slice(&hs.commit.0.to_le_bytes());
            }
            Record::Compact(c) => {
                out.push(TAG_COMPACT);
                out.extend_from_slice(&c.index.0.to_le_bytes());
                out.extend_from_slice(&c.term.0.to_le_bytes());
                out.push(u8::from(c.discard_suffix));
            }
        }
    }
}

/// Appends `e` as an Entry record, the same bytes as
/// `Record::Entry(e).encode(out)`, without owning the entry.
pub(crate) fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    let mut head = [0u8; ENTRY_FIXED_BYTES];
    head[0] = TAG_ENTRY;
    head[1..9].copy_from_slice(&e.term.0.to_le_bytes());
    head[9..17].copy_from_slice(&e.index.0.to_le_bytes());
    head[17] = match &e.payload {
        Payload::Blank => KIND_BLANK,
        Payload::Command(_) => KIND_COMMAND,
        Payload::Membership(m) if m.addresses().is_empty() => KIND_MEMBERSHIP,
        Payload::Membership(_) => KIND_MEMBERSHIP_WITH_ADDRESSES,
    };
    out.extend_from_slice(&head);
    match &e.payload {
        Payload::Blank => {}
        Payload::Command(data) => out.extend_from_slice(data),
        Payload::Membership(m) if m.addresses().is_empty() => encode_id_lists(m, out),
        Payload::Membership(m) => encode_membership(m, out),
    }
}

/// Decodes a whole record; a command body is a zero-copy slice of `payload`.
pub(crate) fn decode(payload: &Bytes) -> Result<Record, DecodeError> {
    let mut r = Reader::new(payload);
    match decode_head(&mut r)? {
        Head::Entry { index, term, kind } => {
            let payload = match kind {
                KIND_BLANK => Payload::Blank,
                KIND_COMMAND => Payload::Command(payload.slice(r.pos..)),
                _ => Payload::Membership(decode_membership_from(
                    &mut r,
                    kind == KIND_MEMBERSHIP_WITH_ADDRESSES,
                )?),
            };
            if kind != KIND_COMMAND {
                r.finish()?;
            }
            Ok(Record::Entry(Entry {
                term,
                index,
                payload,
            }))
        }
        Head::HardState(hs) => Ok(Record::HardState(hs)),
        Head::Compact(c) => Ok(Record::Compact(c)),
    }
}

/// Decodes everything but a command's body, validating the rest, so that
/// recovery can check every record without copying entry data.
pub(crate) fn decode_meta(payload: &[u8]) -> Result<RecordMeta, DecodeError> {
    let mut r = Reader::new(payload);
    match decode_head(&mut r)? {
        Head::Entry { index, term, kind } => {
            if kind >= KIND_MEMBERSHIP {
                decode_membership_from(&mut r, kind == KIND_MEMBERSHIP_WITH_ADDRESSES)?;
            }
            if kind != KIND_COMMAND {
                r.finish()?;
            }
            Ok(RecordMeta::Entry { index, term })
        }
        Head::HardState(hs) => Ok(RecordMeta::HardState(hs)),
        Head::Compact(c) => Ok(RecordMeta::Compact(c)),
    }
}

enum Head {
    Entry {
        index: LogIndex,
        term: Term,
        kind: u8,
    },
    HardState(HardState),
    Compact(CompactPoint),
}

fn decode_head(r: &mut Reader<'_>) -> Result<Head, DecodeError> {
    match r.u8()? {
        TAG_ENTRY => {
            let term = Term(r.u64()?);
            let index = LogIndex(r.u64()?);
            let kind = r.u8()?;
            if kind > KIND_MEMBERSHIP_WITH_ADDRESSES {
                return Err(DecodeError::UnknownEntryKind(kind));
            }
            Ok(Head::Entry { index, term, kind })
        }
        TAG_HARD_STATE => {
            let term = Term(r.u64()?);
            let vote = Some(r.u64()?).filter(|&v| v != 0).map(NodeId);
            let commit = LogIndex(r.u64()?);
            r.finish()?;
            Ok(Head::HardState(HardState { term, vote, commit }))
        }
        TAG_COMPACT => {
            let index = LogIndex(r.u64()?);
            let term = Term(r.u64()?);
            let discard_suffix = r.flag()?;
            r.finish()?;
            Ok(Head::Compact(CompactPoint {
                index,
                term,
                discard_suffix,
            }))
        }
        tag => Err(DecodeError::UnknownTag(tag)),
    }
}

/// Bytes [`encode_membership`] appends for `m`.
pub(crate) fn membership_len(m: &Membership) -> usize {
    let addresses: usize = m
        .addresses()
        .values()
        .map(|addr| ADDRESS_FIXED_BYTES + addr.len())
        .sum();
    id_lists_len(m) + 4 + addresses
}

/// Bytes [`encode_id_lists`] appends for `m`.
fn id_lists_len(m: &Membership) -> usize {
    3 * 4 + 8 * (m.voters().len() + m.outgoing().len() + m.learners().len())
}

/// Appends `m` whole: its three id lists, then its addresses.
pub(crate) fn encode_membership(m: &Membership, out: &mut Vec<u8>) {
    encode_id_lists(m, out);
    let count = u32::try_from(m.addresses().len()).expect("a membership has fewer than 2^32 nodes");
    out.extend_from_slice(&count.to_le_bytes());
    for (id, addr) in m.addresses() {
        let len = u16::try_from(addr.len()).expect("a membership's addresses are at most 1 KiB");
        out.extend_from_slice(&id.0.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(addr.as_bytes());
    }
}

/// Appends `m`'s three id lists: voters, outgoing, learners (the layout
/// of kind 2, which has no addresses).
fn encode_id_lists(m: &Membership, out: &mut Vec<u8>) {
    for set in [m.voters(), m.outgoing(), m.learners()] {
        let count = u32::try_from(set.len()).expect("a membership has fewer than 2^32 nodes");
        out.extend_from_slice(&count.to_le_bytes());
        for id in set {
            out.extend_from_slice(&id.0.to_le_bytes());
        }
    }
}

/// Decodes a membership that must fill `bytes` exactly: its id lists,
/// followed by its addresses if `with_addresses` (what
/// [`encode_membership`] writes).
pub(crate) fn decode_membership(
    bytes: &[u8],
    with_addresses: bool,
) -> Result<Membership, DecodeError> {
    let mut r = Reader::new(bytes);
    let m = decode_membership_from(&mut r, with_addresses)?;
    r.finish()?;
    Ok(m)
}

fn decode_membership_from(
    r: &mut Reader<'_>,
    with_addresses: bool,
) -> Result<Membership, DecodeError> {
    let voters = decode_id_list(r)?;
    let outgoing = decode_id_list(r)?;
    let learners = decode_id_list(r)?;
    let m = Membership::from_parts(voters, outgoing, learners)
        .map_err(DecodeError::InvalidMembership)?;
    if !with_addresses {
        return Ok(m);
    }
    let addresses = decode_addresses(r)?;
    m.with_addresses(addresses)
        .map_err(DecodeError::InvalidMembership)
}

/// Decodes an address list; that each belongs to a member is the
/// membership's own check.
fn decode_addresses(r: &mut Reader<'_>) -> Result<BTreeMap<NodeId, String>, DecodeError> {
    let count = r.u32()? as usize;
    if count > r.remaining() / ADDRESS_FIXED_BYTES {
        return Err(DecodeError::Truncated);
    }
    let mut addresses = BTreeMap::new();
    let mut previous = None;
    for _ in 0..count {
        let id = next_increasing_id(r, &mut previous)?;
        let len = usize::from(u16::from_le_bytes(r.take()?));
        if len == 0 || len > ADDRESS_BYTES_MAX {
            return Err(DecodeError::BadAddress(len));
        }
        let bytes = r.slice(len)?;
        let addr = std::str::from_utf8(bytes).map_err(|_| DecodeError::BadAddress(len))?;
        addresses.insert(NodeId(id), addr.to_owned());
    }
    Ok(addresses)
}

fn decode_id_list(r: &mut Reader<'_>) -> Result<BTreeSet<NodeId>, DecodeError> {
    let count = r.u32()? as usize;
    // Check the claimed count against the bytes present before looping, so a
    // corrupt count cannot make us spin (or allocate) for 2^32 ids.
    if count > r.remaining() / 8 {
        return Err(DecodeError::Truncated);
    }
    let mut ids = BTreeSet::new();
    let mut previous = None;
    for _ in 0..count {
        ids.insert(NodeId(next_increasing_id(r, &mut previous)?));
    }
    Ok(ids)
}

/// Reads the next id of a list whose ids must strictly increase (so that
/// one configuration has one encoding), after `previous`.
fn next_increasing_id(r: &mut Reader<'_>, previous: &mut Option<u64>) -> Result<u64, DecodeError> {
    let id = r.u64()?;
    if previous.is_some_and(|p| p >= id) {
        return Err(DecodeError::UnsortedIds);
    }
    *previous = Some(id);
    Ok(id)
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).ok_or(DecodeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice.try_into().expect("slice has length N"))
    }

    fn slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(DecodeError::BadFlag(other)),
        }
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    fn roundtrip(record: Record) {
        let mut buf = Vec::new();
        record.encode(&mut buf);
        assert_eq!(buf.len(), record.encoded_len());
        assert_eq!(decode(&Bytes::from(buf.clone())).unwrap(), record);
        let meta = decode_meta(&buf).unwrap();
        match (&record, meta) {
            (Record::Entry(e), RecordMeta::Entry { index, term }) => {
                assert_eq!((e.index, e.term), (index, term));
            }
            (Record::HardState(hs), RecordMeta::HardState(m)) => assert_eq!(hs, &m),
            (Record::Compact(c), RecordMeta::Compact(m)) => assert_eq!(c, &m),
            _ => panic!("meta kind differs from record kind"),
        }
    }

    #[test]
    fn every_record_kind_roundtrips() {
        let entry = |payload| {
            Record::Entry(Entry {
                term: Term(3),
                index: LogIndex(9),
                payload,
            })
        };
        roundtrip(entry(Payload::Blank));
        roundtrip(entry(Payload::Command(Bytes::from_static(b"put k v"))));
        roundtrip(entry(Payload::Command(Bytes::new())));
        let joint = Membership::from_parts(ids(&[4, 5]), ids(&[1, 2, 3]), ids(&[7])).unwrap();
        roundtrip(entry(Payload::Membership(joint.clone())));
        let addressed = joint
            .with_addresses(BTreeMap::from([
                (NodeId(1), "10.0.0.1:2380".to_owned()),
                (NodeId(7), "[::1]:2380".to_owned()),
            ]))
            .unwrap();
        roundtrip(entry(Payload::Membership(addressed)));
        roundtrip(Record::HardState(HardState {
            term: Term(7),
            vote: Some(NodeId(2)),
            commit: LogIndex(5),
        }));
        roundtrip(Record::HardState(HardState::default()));
        roundtrip(Record::Compact(CompactPoint {
            index: LogIndex(100),
            term: Term(4),
            discard_suffix: true,
        }));
    }

    /// A configuration entry as builds before addresses wrote it (kind 2,
    /// bytes laid out by hand) decodes as a configuration without
    /// addresses, and one without addresses is still written that way.
    #[test]
    fn a_configuration_entry_of_the_old_kind_still_decodes() {
        let mut old = vec![TAG_ENTRY];
        old.extend_from_slice(&4u64.to_le_bytes());
        old.extend_from_slice(&12u64.to_le_bytes());
        old.push(2);
        for list in [&[1u64, 2][..], &[][..], &[3u64][..]] {
            old.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for id in list {
                old.extend_from_slice(&id.to_le_bytes());
            }
        }
        let expected = Entry {
            term: Term(4),
            index: LogIndex(12),
            payload: Payload::Membership(Membership::new(ids(&[1, 2]), ids(&[3])).unwrap()),
        };
        assert_eq!(
            decode(&Bytes::from(old.clone())).unwrap(),
            Record::Entry(expected.clone())
        );
        let mut written = Vec::new();
        encode_entry(&expected, &mut written);
        assert_eq!(written, old);
    }

    /// A member's id and its address's bytes, as laid out on disk.
    type RawAddress<'a> = (u64, &'a [u8]);

    fn addressed_entry(addresses: &[RawAddress<'_>]) -> Vec<u8> {
        let mut buf = vec![TAG_ENTRY];
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.push(KIND_MEMBERSHIP_WITH_ADDRESSES);
        for list in [&[1u64, 2][..], &[][..], &[][..]] {
            buf.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for id in list {
                buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        buf.extend_from_slice(&(addresses.len() as u32).to_le_bytes());
        for (id, addr) in addresses {
            buf.extend_from_slice(&id.to_le_bytes());
            buf.extend_from_slice(&(addr.len() as u16).to_le_bytes());
            buf.extend_from_slice(addr);
        }
        buf
    }

    #[test]
    fn hostile_addresses_are_decode_errors() {
        assert!(decode_meta(&addressed_entry(&[(1, b"a:1"), (2, b"b:2")])).is_ok());
        let long = vec![b'x'; ADDRESS_BYTES_MAX + 1];
        let cases: [(&[RawAddress<'_>], DecodeError); 5] = [
            (&[(1, b"")], DecodeError::BadAddress(0)),
            (&[(1, &long)], DecodeError::BadAddress(long.len())),
            (&[(1, b"\xff\xfe")], DecodeError::BadAddress(2)),
            (&[(2, b"b"), (1, b"a")], DecodeError::UnsortedIds),
            (
                &[(9, b"z:9")],
                DecodeError::InvalidMembership(MembershipError::AddressOfNonMember(NodeId(9))),
            ),
        ];
        for (addresses, expected) in cases {
            assert_eq!(decode_meta(&addressed_entry(addresses)), Err(expected));
        }
        let mut huge = addressed_entry(&[]);
        let at = huge.len() - 4;
        huge[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_meta(&huge), Err(DecodeError::Truncated));
        let mut cut = addressed_entry(&[(1, b"a:1")]);
        cut.pop();
        assert_eq!(decode_meta(&cut), Err(DecodeError::Truncated));
    }

    #[test]
    fn huge_membership_count_is_rejected_without_allocating() {
        let mut buf = vec![TAG_ENTRY];
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.extend_from_slice(&1u64.to_le_bytes());
        buf.push(KIND_MEMBERSHIP);
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_meta(&buf), Err(DecodeError::Truncated));
    }

    #[test]
    fn invalid_membership_is_a_decode_error_not_a_panic() {
        let mut buf = Vec::new();
        for list in [&[][..], &[1u64][..], &[][..]] {
            buf.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for id in list {
                buf.extend_from_slice(&id.to_le_bytes());
            }
        }
        assert_eq!(
            decode_membership(&buf, false),
            Err(DecodeError::InvalidMembership(MembershipError::NoVoters))
        );
    }

    proptest! {
        /// Arbitrary bytes either decode or yield an error; they never panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_meta(&bytes);
            let _ = decode(&Bytes::from(bytes.clone()));
            let _ = decode_membership(&bytes, false);
            let _ = decode_membership(&bytes, true);
        }
    }
}
