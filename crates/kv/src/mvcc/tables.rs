//! redb table layouts.

use redb::TableDefinition;

/// `(revision main, revision sub)` → a `Revisioned` row (a put or a deletion).
pub const KV: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("kv");
/// Store positions, see [`meta_keys`].
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// lease ID → `LeaseRecord`.
pub const LEASES: TableDefinition<i64, &[u8]> = TableDefinition::new("leases");
/// member ID → etcd `Member` (name and URLs).
pub const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");

/// `(member ID, etcd AlarmType)` → nothing: the active alarms.
pub const ALARMS: TableDefinition<(u64, i32), ()> = TableDefinition::new("alarms");
/// user name → authpb `User` (its password as a bcrypt hash).
pub const AUTH_USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_users");
/// role name → authpb `Role`.
pub const AUTH_ROLES: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_roles");

pub mod meta_keys {
    pub const APPLIED_INDEX: &str = "applied_index";
    pub const APPLIED_TERM: &str = "applied_term";
    pub const CURRENT_REVISION: &str = "current_revision";
    pub const COMPACTED_REVISION: &str = "compacted_revision";
    /// The next row a compaction step examines, as its revision's main and
    /// sub parts; absent when no compaction has rows left to delete.
    pub const COMPACTION_CURSOR_MAIN: &str = "compaction_cursor_main";
    pub const COMPACTION_CURSOR_SUB: &str = "compaction_cursor_sub";
    /// 1 while auth is enabled.
    pub const AUTH_ENABLED: &str = "auth_enabled";
    pub const AUTH_REVISION: &str = "auth_revision";
}
