//! The replicated state machine: a map of string registers, and the
//! encoding of the commands that change it.
//!
//! Commands carry the client id and request id that issued them: a
//! proposal only tells the client `(term, index)`, and the entry that
//! commits at that index may be another leader's, so the client recognises
//! its own entry by this tag when it is applied.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use keel_linearizability::Output;

use crate::rng::Fnv;

/// Who issued a command: `(client, request)`, unique over a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    pub client: u32,
    pub request: u32,
}

/// A write to the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Sets `key` to `new` (`None`: delete) if it holds `expected`
    /// (`None`: absent).
    Cas {
        key: String,
        expected: Option<String>,
        new: Option<String>,
    },
}

/// A tagged write, as it travels in a log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: Tag,
    pub op: KvOp,
}

/// Why an entry's bytes are not a command. Only a corrupted or foreign
/// entry produces this; the simulator treats it as a violation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("command truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown operation code {0}")]
    UnknownOp(u8),
    #[error("string at byte {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("{0} trailing bytes after the command")]
    Trailing(usize),
}

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CAS: u8 = 3;

impl Command {
    /// `[client u32][request u32][op u8]` then length-prefixed strings; an
    /// optional string is a presence byte followed by the string.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        out.put_u32(self.tag.client);
        out.put_u32(self.tag.request);
        match &self.op {
            KvOp::Put { key, value } => {
                out.put_u8(OP_PUT);
                put_str(&mut out, key);
                put_str(&mut out, value);
            }
            KvOp::Delete { key } => {
                out.put_u8(OP_DELETE);
                put_str(&mut out, key);
            }
            KvOp::Cas { key, expected, new } => {
                out.put_u8(OP_CAS);
                put_str(&mut out, key);
                put_opt(&mut out, expected.as_deref());
                put_opt(&mut out, new.as_deref());
            }
        }
        out.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let tag = Tag {
            client: r.u32()?,
            request: r.u32()?,
        };
        let op = match r.u8()? {
            OP_PUT => KvOp::Put {
                key: r.string()?,
                value: r.string()?,
            },
            OP_DELETE => KvOp::Delete { key: r.string()? },
            OP_CAS => KvOp::Cas {
                key: r.string()?,
                expected: r.opt()?,
                new: r.opt()?,
            },
            other => return Err(DecodeError::UnknownOp(other)),
        };
        if r.at != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - r.at));
        }
        Ok(Command { tag, op })
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u16(u16::try_from(s.len()).expect("keys and values are short"));
    out.put_slice(s.as_bytes());
}

fn put_opt(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_u8(0),
        Some(s) => {
            out.put_u8(1);
            put_str(out, s);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.at + n;
        if end > self.bytes.len() {
            return Err(DecodeError::Truncated(self.at));
        }
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let at = self.at;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::NotUtf8(at))
    }

    fn opt(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }
}

/// The state machine's whole state; also a snapshot's data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvState {
    map: BTreeMap<String, String>,
}

impl KvState {
    /// Applies one write and returns what the client is told.
    pub fn apply(&mut self, op: &KvOp) -> Output {
        match op {
            KvOp::Put { key, value } => {
                self.map.insert(key.clone(), value.clone());
                Output::Unit
            }
            KvOp::Delete { key } => {
                self.map.remove(key);
                Output::Unit
            }
            KvOp::Cas { key, expected, new } => {
                if self.map.get(key) != expected.as_ref() {
                    return Output::Cas(false);
                }
                match new {
                    Some(value) => self.map.insert(key.clone(), value.clone()),
                    None => self.map.remove(key),
                };
                Output::Cas(true)
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }

    /// A fingerprint for comparing replicas' states at one index.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::default();
        self.map.hash(&mut h);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let ops = [
            KvOp::Put {
                key: "k".into(),
                value: "v".into(),
            },
            KvOp::Delete { key: "k".into() },
            KvOp::Cas {
                key: "k".into(),
                expected: None,
                new: Some("x".into()),
            },
        ];
        for op in ops {
            let command = Command {
                tag: Tag {
                    client: 3,
                    request: 9,
                },
                op,
            };
            assert_eq!(Command::decode(&command.encode()), Ok(command));
        }
        assert_eq!(Command::decode(&[0, 0]), Err(DecodeError::Truncated(0)));
    }

    #[test]
    fn cas_swaps_only_on_a_match() {
        let mut kv = KvState::default();
        let cas = |expected: Option<&str>, new: Option<&str>| KvOp::Cas {
            key: "k".into(),
            expected: expected.map(str::to_owned),
            new: new.map(str::to_owned),
        };
        assert_eq!(kv.apply(&cas(Some("a"), Some("b"))), Output::Cas(false));
        assert_eq!(kv.apply(&cas(None, Some("b"))), Output::Cas(true));
        assert_eq!(kv.get("k"), Some("b".into()));
        assert_eq!(kv.apply(&cas(Some("b"), None)), Output::Cas(true));
        assert_eq!(kv.get("k"), None);
    }
}
