//! The leader's check of a forwarded command (`check_forwarded`) on
//! arbitrary input: it ends in `Ok` or a typed rejection, never a panic,
//! and lets nothing through that a client's request could not be.

use bytes::Bytes;
use keel_kv::error::KvError;
use keel_kv::proto::command::Command;
use keel_kv::proto::command::command::Op;
use keel_kv::proto::etcdserverpb::request_op::Request;
use keel_kv::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, Member, MemberRemoveRequest, PutRequest, RequestOp,
    TxnRequest,
};
use keel_kv::replica::{ForwardRejected, check_forwarded};
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message as _;

const MAX_REQUEST_BYTES: usize = 64;

fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just(Bytes::new()), "[a-c]{1,3}".prop_map(Bytes::from)]
}

fn put() -> impl Strategy<Value = PutRequest> {
    (key(), vec(any::<u8>(), 0..80)).prop_map(|(key, value)| PutRequest {
        key,
        value: value.into(),
        ..Default::default()
    })
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    let op = prop_oneof![
        put().prop_map(Request::RequestPut),
        key().prop_map(|key| Request::RequestDeleteRange(DeleteRangeRequest {
            key,
            ..Default::default()
        })),
    ];
    vec(op, 0..4).prop_map(|ops| TxnRequest {
        success: ops
            .into_iter()
            .map(|r| RequestOp { request: Some(r) })
            .collect(),
        ..Default::default()
    })
}

fn command() -> impl Strategy<Value = Command> {
    let op = prop_oneof![
        put().prop_map(Op::Put),
        key().prop_map(|key| Op::DeleteRange(DeleteRangeRequest {
            key,
            ..Default::default()
        })),
        txn().prop_map(Op::Txn),
        (any::<i64>(), any::<i64>())
            .prop_map(|(id, ttl)| Op::LeaseGrant(LeaseGrantRequest { id, ttl })),
        prop_oneof![Just(0u64), any::<u64>()].prop_map(|id| Op::MemberSet(Member {
            id,
            ..Default::default()
        })),
        prop_oneof![Just(0u64), any::<u64>()]
            .prop_map(|id| Op::MemberRemove(MemberRemoveRequest { id })),
    ];
    proptest::option::weighted(0.9, op).prop_map(|op| Command { op, caller: None })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_are_decoded_and_checked_without_panic(bytes in vec(any::<u8>(), 0..128)) {
        if check_forwarded(&bytes, MAX_REQUEST_BYTES).is_ok() {
            let command = Command::decode(bytes.as_slice()).expect("accepted bytes decode");
            prop_assert!(command.op.is_some());
            // etcd exempts a txn of ranges alone from the limit (it never
            // proposes one), and so does Keel.
            let ranges_only = matches!(&command.op, Some(Op::Txn(t)) if t
                .success
                .iter()
                .chain(&t.failure)
                .all(|op| matches!(op.request, Some(Request::RequestRange(_)))));
            prop_assert!(bytes.len() <= MAX_REQUEST_BYTES || ranges_only);
        }
    }

    #[test]
    fn well_formed_commands_are_refused_as_a_client_request_would_be(c in command()) {
        let bytes = c.encode_to_vec();
        let verdict = check_forwarded(&bytes, MAX_REQUEST_BYTES);
        match &c.op {
            None => prop_assert!(matches!(verdict, Err(ForwardRejected::Empty))),
            Some(Op::Put(p)) if p.key.is_empty() => {
                prop_assert!(matches!(verdict, Err(ForwardRejected::Invalid(KvError::EmptyKey))));
            }
            Some(Op::MemberSet(Member { id: 0, .. }))
            | Some(Op::MemberRemove(MemberRemoveRequest { id: 0 }))
            | Some(Op::LeaseGrant(LeaseGrantRequest { id: 0, .. })) => {
                prop_assert!(matches!(verdict, Err(ForwardRejected::Invalid(_))));
            }
            Some(_) if bytes.len() > MAX_REQUEST_BYTES => {
                prop_assert!(verdict.is_err());
            }
            Some(_) => {}
        }
        if let Err(e) = verdict {
            let status = tonic::Status::from(e);
            prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
        }
    }
}
