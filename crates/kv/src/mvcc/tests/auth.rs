//! Auth commands through apply: etcd's rules, the recheck of a command's
//! permissions at its log position, and auth state across a reopen and a
//! snapshot.

use bytes::Bytes;

use crate::auth::hash_password;
use crate::command::{decode_result, encode_as, member_caller};
use crate::error::KvError;
use crate::mvcc::{EntryPayload, Store};
use crate::proto::authpb::Permission;
use crate::proto::authpb::permission::Type as PermType;
use crate::proto::command::command::Op;
use crate::proto::command::command_result::Result as Outcome;
use crate::proto::command::{Authenticate, Caller};
use crate::proto::etcdserverpb::*;

struct Auth {
    dir: tempfile::TempDir,
    store: Store,
    index: u64,
}

impl Auth {
    fn new() -> Auth {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("kv.redb"), false).unwrap();
        Auth {
            dir,
            store,
            index: 0,
        }
    }

    fn run_as(&mut self, caller: Caller, op: Op) -> Result<Outcome, KvError> {
        self.index += 1;
        let bytes = encode_as(op, caller);
        let applied = self
            .store
            .apply(&[(self.index, 1, EntryPayload::Command(&bytes))])
            .unwrap();
        decode_result(applied[0].result.as_ref().unwrap()).map(|(_, o)| o)
    }

    fn admin(&mut self, op: Op) -> Result<Outcome, KvError> {
        let caller = self.user("root");
        self.run_as(caller, op)
    }

    /// `name`, stamped with the auth revision the store is at now.
    fn user(&self, name: &str) -> Caller {
        Caller {
            user: name.into(),
            auth_revision: self.store.auth().revision,
            member: false,
        }
    }

    fn add_user(&mut self, name: &str) {
        self.admin(Op::UserAdd(AuthUserAddRequest {
            name: name.into(),
            hashed_password: hash_password("pw", 4).unwrap(),
            ..Default::default()
        }))
        .unwrap();
    }

    fn grant(&mut self, user: &str, role: &str) -> Result<Outcome, KvError> {
        self.admin(Op::UserGrantRole(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        }))
    }

    /// root (with the root role), alice with role `app` holding read-write
    /// on the prefix `app/`, and auth enabled.
    fn enabled() -> Auth {
        let mut a = Auth::new();
        a.add_user("root");
        a.add_user("alice");
        assert!(matches!(
            a.admin(Op::AuthEnable(AuthEnableRequest {})),
            Err(KvError::RootRoleNotExist)
        ));
        a.grant("root", "root").unwrap();
        a.admin(Op::RoleAdd(AuthRoleAddRequest { name: "app".into() }))
            .unwrap();
        a.admin(Op::RoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(Permission {
                perm_type: PermType::Readwrite as i32,
                key: "app/".into(),
                range_end: "app0".into(),
            }),
        }))
        .unwrap();
        a.grant("alice", "app").unwrap();
        a.admin(Op::AuthEnable(AuthEnableRequest {})).unwrap();
        a
    }
}

fn put(key: &str) -> Op {
    Op::Put(PutRequest {
        key: Bytes::from(key.to_owned()),
        value: Bytes::from_static(b"v"),
        ..Default::default()
    })
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let mut a = Auth::new();
    assert!(matches!(
        a.admin(Op::AuthEnable(AuthEnableRequest {})),
        Err(KvError::RootUserNotExist)
    ));
    let enabled = Auth::enabled();
    assert!(enabled.store.auth().enabled);
}

#[test]
fn a_command_is_checked_again_at_apply_against_its_auth_revision() {
    let mut a = Auth::enabled();
    let alice = a.user("alice");
    a.run_as(alice.clone(), put("app/1")).unwrap();
    assert!(matches!(
        a.run_as(alice.clone(), put("other")),
        Err(KvError::PermissionDenied)
    ));
    // Checked before the revoke, applied after it: refused as stale, and
    // refused for lack of permission once stamped anew.
    a.admin(Op::RoleRevokePermission(AuthRoleRevokePermissionRequest {
        role: "app".into(),
        key: "app/".into(),
        range_end: "app0".into(),
    }))
    .unwrap();
    assert!(matches!(
        a.run_as(alice, put("app/2")),
        Err(KvError::AuthOldRevision)
    ));
    let alice = a.user("alice");
    assert!(matches!(
        a.run_as(alice, put("app/2")),
        Err(KvError::PermissionDenied)
    ));
    // Unauthenticated callers are refused; a member's own commands are not.
    assert!(matches!(
        a.run_as(Caller::default(), put("app/3")),
        Err(KvError::UserEmpty)
    ));
    a.run_as(member_caller(), put("app/3")).unwrap();
}

#[test]
fn root_keeps_its_user_and_role_while_auth_is_enabled() {
    let mut a = Auth::enabled();
    let delete_root = Op::UserDelete(AuthUserDeleteRequest {
        name: "root".into(),
    });
    assert!(matches!(
        a.admin(delete_root.clone()),
        Err(KvError::InvalidAuthMgmt)
    ));
    assert!(matches!(
        a.admin(Op::UserRevokeRole(AuthUserRevokeRoleRequest {
            name: "root".into(),
            role: "root".into(),
        })),
        Err(KvError::InvalidAuthMgmt)
    ));
    assert!(matches!(
        a.run_as(
            a.user("alice"),
            Op::RoleAdd(AuthRoleAddRequest { name: "x".into() })
        ),
        Err(KvError::PermissionDenied)
    ));
    a.admin(Op::AuthDisable(AuthDisableRequest {})).unwrap();
    a.run_as(Caller::default(), delete_root).unwrap();
}

#[test]
fn authenticate_makes_a_token_from_the_entry_index() {
    let mut a = Auth::enabled();
    let outcome = a
        .run_as(
            Caller::default(),
            Op::Authenticate(Authenticate {
                name: "alice".into(),
                token_prefix: "abcdefghijklmnop".into(),
            }),
        )
        .unwrap();
    let Outcome::Authenticate(reply) = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(reply.token, format!("abcdefghijklmnop.{}", a.index));
    assert!(matches!(
        a.run_as(
            Caller::default(),
            Op::Authenticate(Authenticate {
                name: "nobody".into(),
                token_prefix: "abc".into(),
            }),
        ),
        Err(KvError::AuthFailed)
    ));
}

#[test]
fn auth_state_survives_a_reopen_and_a_snapshot() {
    let a = Auth::enabled();
    let before = a.store.auth();
    let mut snapshot = Vec::new();
    a.store.write_snapshot(&mut snapshot).unwrap();
    let path = a.dir.path().join("kv.redb");
    drop(a.store);
    let reopened = Store::open(&path, false).unwrap();
    assert_eq!(reopened.auth(), before);

    let other = tempfile::tempdir().unwrap();
    let restored = Store::open(&other.path().join("kv.redb"), false).unwrap();
    assert_ne!(restored.auth(), before);
    restored
        .restore_snapshot(&mut snapshot.as_slice(), 100)
        .unwrap();
    assert_eq!(restored.auth(), before);
    assert!(restored.auth().enabled);
}
