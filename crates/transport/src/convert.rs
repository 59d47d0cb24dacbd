//! Conversions between the core's messages and their protobuf form.
//!
//! Encoding cannot fail. Decoding validates everything the core relies on
//! and would otherwise assert on (reserved node ids, missing fields,
//! non-consecutive entries, malformed configurations), so a bad peer costs
//! a rejected message, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use keel_raft::{
    AppendResult, Entry, LogIndex, Membership, MembershipError, Message, MessageBody, NodeId,
    Payload, ReadId, SnapshotMeta, Term,
};

use crate::pb;
use crate::pb::raft_message::Body;

/// Why a received protobuf message cannot become a core message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The named required field is absent (or holds an unknown oneof variant).
    #[error("required field `{0}` is missing (or an unknown oneof variant was sent)")]
    Missing(&'static str),
    /// The named field holds node id 0, which no node may have.
    #[error("field `{0}` holds node id 0, which is reserved")]
    ZeroNodeId(&'static str),
    /// The entries of an AppendEntries are not at consecutive indexes.
    #[error("entry {found} does not follow entry {expected_after} in AppendEntries")]
    EntriesNotConsecutive {
        /// The index the entry should have followed.
        expected_after: LogIndex,
        /// The index the entry has.
        found: LogIndex,
    },
    /// A configuration names this node's address twice.
    #[error("a configuration gives node {0} more than one address")]
    DuplicateAddress(NodeId),
    /// A snapshot or configuration entry carries a membership that fails Raft's checks.
    #[error("a snapshot or configuration entry carries an invalid configuration: {0}")]
    Membership(#[from] MembershipError),
}

fn node(id: u64, field: &'static str) -> Result<NodeId, DecodeError> {
    if id == 0 {
        return Err(DecodeError::ZeroNodeId(field));
    }
    Ok(NodeId(id))
}

/// Encodes a core message.
pub fn encode_message(m: &Message) -> pb::RaftMessage {
    let body = match &m.body {
        MessageBody::VoteRequest {
            pre_vote,
            last_log_index,
            last_log_term,
            transfer,
        } => Body::VoteRequest(pb::VoteRequest {
            pre_vote: *pre_vote,
            last_log_index: last_log_index.0,
            last_log_term: last_log_term.0,
            transfer: *transfer,
        }),
        MessageBody::VoteResponse { pre_vote, granted } => Body::VoteResponse(pb::VoteResponse {
            pre_vote: *pre_vote,
            granted: *granted,
        }),
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
        } => Body::AppendEntries(pb::AppendEntries {
            prev_log_index: prev_log_index.0,
            prev_log_term: prev_log_term.0,
            entries: entries.iter().map(encode_entry).collect(),
            leader_commit: leader_commit.0,
        }),
        MessageBody::Commit {
            prev_log_index,
            prev_log_term,
            leader_commit,
        } => Body::Commit(pb::Commit {
            prev_log_index: prev_log_index.0,
            prev_log_term: prev_log_term.0,
            leader_commit: leader_commit.0,
        }),
        MessageBody::AppendResponse(result) => Body::AppendResponse(encode_append_result(*result)),
        MessageBody::Heartbeat { commit, round } => Body::Heartbeat(pb::Heartbeat {
            commit: commit.0,
            round: *round,
        }),
        MessageBody::HeartbeatResponse { round } => {
            Body::HeartbeatResponse(pb::HeartbeatResponse { round: *round })
        }
        MessageBody::InstallSnapshot { meta } => Body::InstallSnapshot(pb::InstallSnapshot {
            meta: Some(encode_snapshot_meta(meta)),
        }),
        MessageBody::TimeoutNow => Body::TimeoutNow(pb::TimeoutNow {}),
        MessageBody::ReadIndexRequest { id } => {
            Body::ReadIndexRequest(pb::ReadIndexRequest { id: id.0 })
        }
        MessageBody::ReadIndexResponse { id, index } => {
            Body::ReadIndexResponse(pb::ReadIndexResponse {
                id: id.0,
                index: index.map(|i| i.0),
            })
        }
    };
    pb::RaftMessage {
        from: m.from.0,
        to: m.to.0,
        term: m.term.0,
        body: Some(body),
    }
}

/// Decodes and validates a message from a peer.
pub fn decode_message(m: pb::RaftMessage) -> Result<Message, DecodeError> {
    let from = node(m.from, "from")?;
    let to = node(m.to, "to")?;
    let body = match m.body.ok_or(DecodeError::Missing("body"))? {
        Body::VoteRequest(v) => MessageBody::VoteRequest {
            pre_vote: v.pre_vote,
            last_log_index: LogIndex(v.last_log_index),
            last_log_term: Term(v.last_log_term),
            transfer: v.transfer,
        },
        Body::VoteResponse(v) => MessageBody::VoteResponse {
            pre_vote: v.pre_vote,
            granted: v.granted,
        },
        Body::AppendEntries(a) => {
            let prev_log_index = LogIndex(a.prev_log_index);
            let entries = a
                .entries
                .into_iter()
                .map(decode_entry)
                .collect::<Result<Vec<_>, _>>()?;
            let mut expected_after = prev_log_index;
            for e in &entries {
                // Checked: a peer may send the last index there is.
                if expected_after.0.checked_add(1) != Some(e.index.0) {
                    return Err(DecodeError::EntriesNotConsecutive {
                        expected_after,
                        found: e.index,
                    });
                }
                expected_after = e.index;
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term: Term(a.prev_log_term),
                entries,
                leader_commit: LogIndex(a.leader_commit),
            }
        }
        Body::Commit(c) => MessageBody::Commit {
            prev_log_index: LogIndex(c.prev_log_index),
            prev_log_term: Term(c.prev_log_term),
            leader_commit: LogIndex(c.leader_commit),
        },
        Body::AppendResponse(r) => MessageBody::AppendResponse(decode_append_result(r)?),
        Body::Heartbeat(h) => MessageBody::Heartbeat {
            commit: LogIndex(h.commit),
            round: h.round,
        },
        Body::HeartbeatResponse(h) => MessageBody::HeartbeatResponse { round: h.round },
        Body::InstallSnapshot(s) => MessageBody::InstallSnapshot {
            meta: decode_snapshot_meta(s.meta.ok_or(DecodeError::Missing("meta"))?)?,
        },
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
        Body::ReadIndexRequest(r) => MessageBody::ReadIndexRequest { id: ReadId(r.id) },
        Body::ReadIndexResponse(r) => MessageBody::ReadIndexResponse {
            id: ReadId(r.id),
            index: r.index.map(LogIndex),
        },
    };
    Ok(Message {
        from,
        to,
        term: Term(m.term),
        body,
    })
}

fn encode_append_result(result: AppendResult) -> pb::AppendResponse {
    use pb::append_response::Result as R;
    let result = match result {
        AppendResult::Success { match_index } => R::Success(pb::AppendSuccess {
            match_index: match_index.0,
        }),
        AppendResult::Conflict {
            rejected,
            hint_index,
            hint_term,
        } => R::Conflict(pb::AppendConflict {
            rejected: rejected.0,
            hint_index: hint_index.0,
            hint_term: hint_term.map(|t| t.0),
        }),
    };
    pb::AppendResponse {
        result: Some(result),
    }
}

fn decode_append_result(r: pb::AppendResponse) -> Result<AppendResult, DecodeError> {
    use pb::append_response::Result as R;
    Ok(match r.result.ok_or(DecodeError::Missing("result"))? {
        R::Success(s) => AppendResult::Success {
            match_index: LogIndex(s.match_index),
        },
        R::Conflict(c) => AppendResult::Conflict {
            rejected: LogIndex(c.rejected),
            hint_index: LogIndex(c.hint_index),
            hint_term: c.hint_term.map(Term),
        },
    })
}

fn encode_entry(e: &Entry) -> pb::Entry {
    use pb::entry::Payload as P;
    let payload = match &e.payload {
        Payload::Blank => P::Blank(pb::Blank {}),
        Payload::Command(data) => P::Command(data.clone()),
        Payload::Membership(m) => P::Membership(encode_membership(m)),
    };
    pb::Entry {
        term: e.term.0,
        index: e.index.0,
        payload: Some(payload),
    }
}

fn decode_entry(e: pb::Entry) -> Result<Entry, DecodeError> {
    use pb::entry::Payload as P;
    let payload = match e.payload.ok_or(DecodeError::Missing("payload"))? {
        P::Blank(_) => Payload::Blank,
        P::Command(data) => Payload::Command(data),
        P::Membership(m) => Payload::Membership(decode_membership(m)?),
    };
    Ok(Entry {
        term: Term(e.term),
        index: LogIndex(e.index),
        payload,
    })
}

/// Encodes a configuration.
pub fn encode_membership(m: &Membership) -> pb::Membership {
    let ids = |set: &BTreeSet<NodeId>| set.iter().map(|id| id.0).collect();
    pb::Membership {
        voters: ids(m.voters()),
        outgoing: ids(m.outgoing()),
        learners: ids(m.learners()),
        addresses: m
            .addresses()
            .iter()
            .map(|(id, addr)| pb::MemberAddress {
                id: id.0,
                addr: addr.clone(),
            })
            .collect(),
    }
}

/// Decodes a configuration; three empty sets are the "none known yet"
/// configuration of a node waiting to join.
pub fn decode_membership(m: pb::Membership) -> Result<Membership, DecodeError> {
    if m.voters.is_empty() && m.outgoing.is_empty() && m.learners.is_empty() {
        return match m.addresses.first() {
            None => Ok(Membership::default()),
            Some(stray) => Err(MembershipError::AddressOfNonMember(NodeId(stray.id)).into()),
        };
    }
    let ids = |v: Vec<u64>| v.into_iter().map(NodeId).collect::<BTreeSet<_>>();
    let membership = Membership::from_parts(ids(m.voters), ids(m.outgoing), ids(m.learners))?;
    // The message as a whole is bounded by the transport's decoding
    // limit; the membership bounds each address and their number.
    let mut addresses = BTreeMap::new();
    for a in m.addresses {
        if addresses.insert(NodeId(a.id), a.addr).is_some() {
            return Err(DecodeError::DuplicateAddress(NodeId(a.id)));
        }
    }
    Ok(membership.with_addresses(addresses)?)
}

/// Encodes a snapshot's description.
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        index: meta.index.0,
        term: meta.term.0,
        membership: Some(encode_membership(&meta.membership)),
    }
}

/// Decodes a snapshot's description.
pub fn decode_snapshot_meta(meta: pb::SnapshotMeta) -> Result<SnapshotMeta, DecodeError> {
    Ok(SnapshotMeta {
        index: LogIndex(meta.index),
        term: Term(meta.term),
        membership: decode_membership(meta.membership.ok_or(DecodeError::Missing("membership"))?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership() -> Membership {
        Membership::new([NodeId(1), NodeId(2), NodeId(3)], [NodeId(4)])
            .unwrap()
            .with_addresses(BTreeMap::from([(NodeId(4), "10.0.0.4:7000".to_owned())]))
            .unwrap()
    }

    fn every_message() -> Vec<Message> {
        let bodies = vec![
            MessageBody::VoteRequest {
                pre_vote: true,
                last_log_index: LogIndex(7),
                last_log_term: Term(2),
                transfer: true,
            },
            MessageBody::VoteResponse {
                pre_vote: false,
                granted: true,
            },
            MessageBody::AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(1),
                entries: vec![
                    Entry {
                        term: Term(2),
                        index: LogIndex(5),
                        payload: Payload::Blank,
                    },
                    Entry {
                        term: Term(2),
                        index: LogIndex(6),
                        payload: Payload::Command(b"x=1".to_vec().into()),
                    },
                    Entry {
                        term: Term(2),
                        index: LogIndex(7),
                        payload: Payload::Membership(membership()),
                    },
                ],
                leader_commit: LogIndex(5),
            },
            MessageBody::Commit {
                prev_log_index: LogIndex(7),
                prev_log_term: Term(2),
                leader_commit: LogIndex(6),
            },
            MessageBody::AppendResponse(AppendResult::Success {
                match_index: LogIndex(9),
            }),
            MessageBody::AppendResponse(AppendResult::Conflict {
                rejected: LogIndex(9),
                hint_index: LogIndex(3),
                hint_term: None,
            }),
            MessageBody::Heartbeat {
                commit: LogIndex(3),
                round: 8,
            },
            MessageBody::HeartbeatResponse { round: 8 },
            MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    index: LogIndex(100),
                    term: Term(3),
                    membership: membership(),
                },
            },
            MessageBody::TimeoutNow,
            MessageBody::ReadIndexRequest { id: ReadId(5) },
            MessageBody::ReadIndexResponse {
                id: ReadId(5),
                index: Some(LogIndex(4)),
            },
            MessageBody::ReadIndexResponse {
                id: ReadId(6),
                index: None,
            },
        ];
        bodies
            .into_iter()
            .map(|body| Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(3),
                body,
            })
            .collect()
    }

    #[test]
    fn every_message_kind_survives_a_round_trip() {
        for m in every_message() {
            assert_eq!(decode_message(encode_message(&m)), Ok(m));
        }
    }

    #[test]
    fn reserved_node_id_is_rejected() {
        let mut m = encode_message(&every_message()[0]);
        m.from = 0;
        assert_eq!(decode_message(m), Err(DecodeError::ZeroNodeId("from")));
    }

    #[test]
    fn missing_body_is_rejected() {
        let mut m = encode_message(&every_message()[0]);
        m.body = None;
        assert_eq!(decode_message(m), Err(DecodeError::Missing("body")));
    }

    #[test]
    fn gap_between_entries_is_rejected() {
        let mut m = encode_message(&every_message()[2]);
        let Some(Body::AppendEntries(a)) = &mut m.body else {
            unreachable!("message 2 is AppendEntries")
        };
        a.entries[1].index = 9;
        assert!(matches!(
            decode_message(m),
            Err(DecodeError::EntriesNotConsecutive { .. })
        ));
    }

    #[test]
    fn entries_after_the_last_index_are_rejected() {
        let mut m = encode_message(&every_message()[2]);
        let Some(Body::AppendEntries(a)) = &mut m.body else {
            unreachable!("message 2 is AppendEntries")
        };
        a.prev_log_index = u64::MAX;
        a.entries.truncate(1);
        a.entries[0].index = 0;
        assert!(matches!(
            decode_message(m),
            Err(DecodeError::EntriesNotConsecutive { .. })
        ));
    }

    fn address(id: u64, addr: &str) -> pb::MemberAddress {
        pb::MemberAddress {
            id,
            addr: addr.to_owned(),
        }
    }

    #[test]
    fn configuration_addresses_roundtrip_and_an_old_peers_configuration_has_none() {
        let m = Membership::new([NodeId(1), NodeId(2)], [NodeId(3)])
            .unwrap()
            .with_addresses(BTreeMap::from([
                (NodeId(1), "a:1".to_owned()),
                (NodeId(3), "c:3".to_owned()),
            ]))
            .unwrap();
        assert_eq!(decode_membership(encode_membership(&m)).unwrap(), m);
        let old = pb::Membership {
            voters: vec![1, 2],
            learners: vec![3],
            ..Default::default()
        };
        assert!(decode_membership(old).unwrap().addresses().is_empty());
    }

    #[test]
    fn hostile_configuration_addresses_are_rejected() {
        let with = |addresses| pb::Membership {
            voters: vec![1, 2],
            addresses,
            ..Default::default()
        };
        assert_eq!(
            decode_membership(with(vec![address(1, "a"), address(1, "b")])),
            Err(DecodeError::DuplicateAddress(NodeId(1)))
        );
        assert_eq!(
            decode_membership(with(vec![address(7, "g:7")])),
            Err(DecodeError::Membership(
                MembershipError::AddressOfNonMember(NodeId(7))
            ))
        );
        let long = "x".repeat(keel_raft::ADDRESS_BYTES_MAX + 1);
        assert_eq!(
            decode_membership(with(vec![address(2, &long)])),
            Err(DecodeError::Membership(MembershipError::AddressLength {
                id: NodeId(2),
                len: long.len()
            }))
        );
        let stray = pb::Membership {
            addresses: vec![address(1, "a:1")],
            ..Default::default()
        };
        assert!(decode_membership(stray).is_err());
    }

    #[test]
    fn configuration_with_voter_also_learner_is_rejected() {
        let bad = pb::Membership {
            voters: vec![1, 2],
            outgoing: vec![],
            learners: vec![2],
            addresses: vec![],
        };
        assert_eq!(
            decode_membership(bad),
            Err(DecodeError::Membership(MembershipError::VoterIsLearner(
                NodeId(2)
            )))
        );
    }
}
