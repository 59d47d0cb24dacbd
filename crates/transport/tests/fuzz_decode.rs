//! Whatever a peer sends, the receiver's decoding ends in a value or a
//! typed error, never a panic: arbitrary bytes as every message the peer
//! listener accepts, and well-formed protobuf whose content is wrong
//! (reserved ids, entries out of order, indexes at the end of the range,
//! invalid configurations, missing fields).

use bytes::Bytes;
use keel_raft::{MessageBody, Payload};
use keel_transport::pb::append_response::Result as AppendResult;
use keel_transport::pb::entry::Payload as PbPayload;
use keel_transport::pb::raft_message::Body;
use keel_transport::{decode_membership, decode_message, decode_snapshot_meta, pb};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use prost::Message as _;

/// Ids and indexes where bugs live: zero, small, and the top of the range.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        1..8u64,
        Just(u64::MAX - 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

/// Addresses for ids members may or may not have, of lengths around the
/// cap (empty, short, 1 KiB, just over).
fn addresses() -> impl Strategy<Value = Vec<pb::MemberAddress>> {
    let len = prop_oneof![Just(0usize), 1..16usize, Just(1024), Just(1025)];
    vec(
        (edgy_u64(), len).prop_map(|(id, len)| pb::MemberAddress {
            id,
            addr: "a".repeat(len),
        }),
        0..4,
    )
}

fn membership() -> impl Strategy<Value = pb::Membership> {
    (
        vec(edgy_u64(), 0..4),
        vec(edgy_u64(), 0..4),
        vec(edgy_u64(), 0..4),
        addresses(),
    )
        .prop_map(|(voters, outgoing, learners, addresses)| pb::Membership {
            voters,
            outgoing,
            learners,
            addresses,
        })
}

fn snapshot_meta() -> impl Strategy<Value = pb::SnapshotMeta> {
    (edgy_u64(), edgy_u64(), option::of(membership())).prop_map(|(index, term, membership)| {
        pb::SnapshotMeta {
            index,
            term,
            membership,
        }
    })
}

fn entry() -> impl Strategy<Value = pb::Entry> {
    let payload = option::of(prop_oneof![
        Just(PbPayload::Blank(pb::Blank {})),
        vec(any::<u8>(), 0..16).prop_map(|b| PbPayload::Command(Bytes::from(b))),
        membership().prop_map(PbPayload::Membership),
    ]);
    (edgy_u64(), edgy_u64(), payload).prop_map(|(term, index, payload)| pb::Entry {
        term,
        index,
        payload,
    })
}

/// Entries that are mostly consecutive after `prev` (so decoding gets to
/// the later checks), sometimes anything at all.
fn append_entries() -> impl Strategy<Value = pb::AppendEntries> {
    (
        edgy_u64(),
        edgy_u64(),
        vec(entry(), 0..4),
        edgy_u64(),
        any::<bool>(),
    )
        .prop_map(
            |(prev_log_index, prev_log_term, mut entries, leader_commit, follow)| {
                if follow {
                    for (i, e) in entries.iter_mut().enumerate() {
                        e.index = prev_log_index.wrapping_add(i as u64 + 1);
                    }
                }
                pb::AppendEntries {
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                }
            },
        )
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<bool>(), edgy_u64(), edgy_u64(), any::<bool>()).prop_map(|(p, i, t, x)| {
            Body::VoteRequest(pb::VoteRequest {
                pre_vote: p,
                last_log_index: i,
                last_log_term: t,
                transfer: x,
            })
        }),
        (any::<bool>(), any::<bool>()).prop_map(|(pre_vote, granted)| {
            Body::VoteResponse(pb::VoteResponse { pre_vote, granted })
        }),
        append_entries().prop_map(Body::AppendEntries),
        option::of(prop_oneof![
            edgy_u64()
                .prop_map(|match_index| AppendResult::Success(pb::AppendSuccess { match_index })),
            (edgy_u64(), edgy_u64(), option::of(edgy_u64())).prop_map(|(r, i, t)| {
                AppendResult::Conflict(pb::AppendConflict {
                    rejected: r,
                    hint_index: i,
                    hint_term: t,
                })
            }),
        ])
        .prop_map(|result| Body::AppendResponse(pb::AppendResponse { result })),
        (edgy_u64(), edgy_u64())
            .prop_map(|(commit, round)| Body::Heartbeat(pb::Heartbeat { commit, round })),
        edgy_u64().prop_map(|round| Body::HeartbeatResponse(pb::HeartbeatResponse { round })),
        option::of(snapshot_meta())
            .prop_map(|meta| Body::InstallSnapshot(pb::InstallSnapshot { meta })),
        Just(Body::TimeoutNow(pb::TimeoutNow {})),
        edgy_u64().prop_map(|id| Body::ReadIndexRequest(pb::ReadIndexRequest { id })),
        (edgy_u64(), option::of(edgy_u64())).prop_map(|(id, index)| {
            Body::ReadIndexResponse(pb::ReadIndexResponse { id, index })
        }),
    ]
}

fn raft_message() -> impl Strategy<Value = pb::RaftMessage> {
    (edgy_u64(), edgy_u64(), edgy_u64(), option::of(body())).prop_map(|(from, to, term, body)| {
        pb::RaftMessage {
            from,
            to,
            term,
            body,
        }
    })
}

/// Decodes `m` and checks what a decoded message promises the core.
fn decode_and_check(m: pb::RaftMessage) {
    let Ok(decoded) = decode_message(m) else {
        return;
    };
    assert_ne!(
        decoded.from.0, 0,
        "a decoded message never comes from node 0"
    );
    assert_ne!(decoded.to.0, 0, "a decoded message never goes to node 0");
    if let MessageBody::AppendEntries {
        prev_log_index,
        entries,
        ..
    } = &decoded.body
    {
        let mut expected = prev_log_index.0;
        for e in entries {
            assert_eq!(
                Some(e.index.0),
                expected.checked_add(1),
                "entries follow prev"
            );
            expected = e.index.0;
            if let Payload::Membership(m) = &e.payload {
                assert!(!m.voters().contains(&keel_raft::NodeId(0)));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in vec(any::<u8>(), 0..256)) {
        if let Ok(m) = pb::RaftMessage::decode(bytes.as_slice()) {
            decode_and_check(m);
        }
        if let Ok(batch) = pb::MessageBatch::decode(bytes.as_slice()) {
            batch.messages.into_iter().for_each(decode_and_check);
        }
        if let Ok(chunk) = pb::SnapshotChunk::decode(bytes.as_slice()) {
            chunk.message.into_iter().for_each(decode_and_check);
        }
        if let Ok(query) = pb::SnapshotQuery::decode(bytes.as_slice()) {
            query.message.into_iter().for_each(decode_and_check);
        }
        if let Ok(meta) = pb::SnapshotMeta::decode(bytes.as_slice()) {
            let _ = decode_snapshot_meta(meta);
        }
    }

    #[test]
    fn well_formed_messages_with_bad_content_get_typed_errors(m in raft_message()) {
        decode_and_check(m.clone());
        // The same message through the bytes a peer would send.
        let bytes = m.encode_to_vec();
        decode_and_check(pb::RaftMessage::decode(bytes.as_slice()).expect("own encoding decodes"));
    }

    #[test]
    fn snapshot_descriptions_and_configurations_never_panic(
        meta in snapshot_meta(),
        m in membership(),
    ) {
        if let Ok(meta) = decode_snapshot_meta(meta) {
            prop_assert!(!meta.membership.voters().contains(&keel_raft::NodeId(0)));
        }
        let _ = decode_membership(m);
    }
}
