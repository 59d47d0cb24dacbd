//! The two ways applying a committed command can go wrong, told apart by
//! type (see the rule in `crate::rejection`).

use crate::error::KvError;
use crate::rejection::Rejection;

/// Why a command did not apply.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// What the command says is refused: every replica refuses it alike.
    Rejected(Rejection),
    /// This replica failed (its database or its own records): it must stop.
    Failed(KvError),
}

impl From<Rejection> for ApplyError {
    fn from(r: Rejection) -> ApplyError {
        ApplyError::Rejected(r)
    }
}

/// Inside apply, a `KvError` only ever comes from the store itself
/// (`Storage`, `Corrupt`): refusals are built as [`Rejection`]s.
impl From<KvError> for ApplyError {
    fn from(e: KvError) -> ApplyError {
        debug_assert!(
            matches!(
                e,
                KvError::Storage(_) | KvError::Corrupt { .. } | KvError::Io(_)
            ),
            "a refusal built as a KvError inside apply would stop the member: {e}"
        );
        ApplyError::Failed(e)
    }
}
