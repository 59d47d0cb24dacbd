//! The sequential specification: a store of independent string registers.
//!
//! Linearizability is always relative to a sequential model. This module is
//! the single source of truth for what each operation does to one key's
//! value and what it returns. The semantics are written once, generically
//! over the value type, so that the search (which works on small interned
//! integers for cheap hashing) and the human-readable explanations (which
//! work on the original strings) cannot disagree.

use std::fmt;

/// The input of one key-value operation: what the client asked for.
///
/// Every operation touches exactly one key, which is what lets the checker
/// split a history per key and check the keys independently (linearizability
/// is *local*: a history is linearizable iff every per-object sub-history is).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Unconditionally set `key` to `value`.
    Put { key: String, value: String },
    /// Read `key`; the output is the current value, `None` if absent.
    Get { key: String },
    /// Remove `key`; deleting an absent key is a successful no-op.
    Delete { key: String },
    /// Compare-and-swap: if the current value equals `expected` (`None`
    /// meaning "key absent"), set it to `new` (`None` meaning "delete").
    /// The output says whether the swap happened.
    Cas {
        key: String,
        expected: Option<String>,
        new: Option<String>,
    },
}

impl OpKind {
    /// Convenience constructor for [`OpKind::Put`].
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        OpKind::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Convenience constructor for [`OpKind::Get`].
    pub fn get(key: impl Into<String>) -> Self {
        OpKind::Get { key: key.into() }
    }

    /// Convenience constructor for [`OpKind::Delete`].
    pub fn delete(key: impl Into<String>) -> Self {
        OpKind::Delete { key: key.into() }
    }

    /// Convenience constructor for [`OpKind::Cas`].
    pub fn cas(key: impl Into<String>, expected: Option<&str>, new: Option<&str>) -> Self {
        OpKind::Cas {
            key: key.into(),
            expected: expected.map(str::to_owned),
            new: new.map(str::to_owned),
        }
    }

    /// The single key this operation touches.
    pub fn key(&self) -> &str {
        match self {
            OpKind::Put { key, .. }
            | OpKind::Get { key }
            | OpKind::Delete { key }
            | OpKind::Cas { key, .. } => key,
        }
    }

    /// The lower-case name used in JSON Lines and in messages.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Put { .. } => "put",
            OpKind::Get { .. } => "get",
            OpKind::Delete { .. } => "delete",
            OpKind::Cas { .. } => "cas",
        }
    }

    /// Whether `output` is the right *shape* of output for this operation
    /// (e.g. a `Get` must produce [`Output::Read`]). Histories are validated
    /// with this so the search never has to deal with ill-typed outputs.
    pub fn accepts_output(&self, output: &Output) -> bool {
        matches!(
            (self, output),
            (OpKind::Put { .. } | OpKind::Delete { .. }, Output::Unit)
                | (OpKind::Get { .. }, Output::Read(_))
                | (OpKind::Cas { .. }, Output::Cas(_))
        )
    }

    /// Translates the values of this operation with `intern`, dropping the
    /// key (the search handles one key at a time).
    pub(crate) fn command<V>(&self, mut intern: impl FnMut(&str) -> V) -> Command<V> {
        match self {
            OpKind::Put { value, .. } => Command::Put(intern(value)),
            OpKind::Get { .. } => Command::Get,
            OpKind::Delete { .. } => Command::Delete,
            OpKind::Cas { expected, new, .. } => Command::Cas {
                expected: expected.as_deref().map(&mut intern),
                new: new.as_deref().map(&mut intern),
            },
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpKind::Put { key, value } => write!(f, "put({key:?}, {value:?})"),
            OpKind::Get { key } => write!(f, "get({key:?})"),
            OpKind::Delete { key } => write!(f, "delete({key:?})"),
            OpKind::Cas { key, expected, new } => {
                write!(f, "cas({key:?}, expected {expected:?}, new {new:?})")
            }
        }
    }
}

/// The observed output of an operation that completed successfully.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// `Put` and `Delete` return nothing beyond "done".
    Unit,
    /// `Get` returns the value read, `None` if the key was absent.
    Read(Option<String>),
    /// `Cas` returns whether the swap took place.
    Cas(bool),
}

impl Output {
    /// Translates the values of this output with `intern`.
    pub(crate) fn response<V>(&self, intern: impl FnMut(&str) -> V) -> Response<V> {
        match self {
            Output::Unit => Response::Unit,
            Output::Read(value) => Response::Read(value.as_deref().map(intern)),
            Output::Cas(ok) => Response::Cas(*ok),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Unit => f.write_str("ok"),
            Output::Read(Some(value)) => write!(f, "{value:?}"),
            Output::Read(None) => f.write_str("<absent>"),
            Output::Cas(true) => f.write_str("swapped"),
            Output::Cas(false) => f.write_str("not swapped"),
        }
    }
}

/// A single-key operation over an arbitrary value type `V`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Command<V> {
    Put(V),
    Get,
    Delete,
    Cas { expected: Option<V>, new: Option<V> },
}

/// The output of a [`Command`], over the same value type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response<V> {
    Unit,
    Read(Option<V>),
    Cas(bool),
}

impl<V: Clone + PartialEq> Command<V> {
    /// The sequential semantics: applies the command to one key's current
    /// value (`None` = absent) and returns the new value and the output.
    pub(crate) fn apply(&self, state: &Option<V>) -> (Option<V>, Response<V>) {
        match self {
            Command::Put(value) => (Some(value.clone()), Response::Unit),
            Command::Get => (state.clone(), Response::Read(state.clone())),
            Command::Delete => (None, Response::Unit),
            Command::Cas { expected, new } => {
                if state == expected {
                    (new.clone(), Response::Cas(true))
                } else {
                    (state.clone(), Response::Cas(false))
                }
            }
        }
    }

    /// Whether the command overwrites the value without looking at it, so
    /// that whatever happened just before it is invisible afterwards.
    pub(crate) fn is_blind_write(&self) -> bool {
        matches!(self, Command::Put(_) | Command::Delete)
    }

    /// Applies the command if doing so is consistent with `observed`
    /// (`None` = unconstrained, used for indeterminate operations) and
    /// returns the new state, or `None` if the observation rules it out.
    pub(crate) fn step(
        &self,
        state: &Option<V>,
        observed: Option<&Response<V>>,
    ) -> Option<Option<V>> {
        let (next, output) = self.apply(state);
        match observed {
            Some(expected) if *expected != output => None,
            _ => Some(next),
        }
    }
}

/// Applies `op` to a key whose current value is `state` (`None` = absent),
/// returning the new value and the output a correct store would produce.
///
/// This is the reference behaviour the checker holds histories to; test
/// harnesses can use it to generate correct sequential executions.
pub fn apply(state: Option<&str>, op: &OpKind) -> (Option<String>, Output) {
    let command = op.command(str::to_owned);
    let (next, response) = command.apply(&state.map(str::to_owned));
    let output = match response {
        Response::Unit => Output::Unit,
        Response::Read(value) => Output::Read(value),
        Response::Cas(ok) => Output::Cas(ok),
    };
    (next, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete_follow_register_semantics() {
        let (s, out) = apply(None, &OpKind::put("k", "a"));
        assert_eq!((s.as_deref(), out), (Some("a"), Output::Unit));
        let (s, out) = apply(Some("a"), &OpKind::get("k"));
        assert_eq!(
            (s.as_deref(), out),
            (Some("a"), Output::Read(Some("a".into())))
        );
        let (s, out) = apply(Some("a"), &OpKind::delete("k"));
        assert_eq!((s, out), (None, Output::Unit));
        let (s, out) = apply(None, &OpKind::get("k"));
        assert_eq!((s, out), (None, Output::Read(None)));
    }

    #[test]
    fn cas_swaps_only_on_match_and_can_create_or_delete() {
        let (s, out) = apply(Some("a"), &OpKind::cas("k", Some("a"), Some("b")));
        assert_eq!((s.as_deref(), out), (Some("b"), Output::Cas(true)));
        let (s, out) = apply(Some("a"), &OpKind::cas("k", Some("x"), Some("b")));
        assert_eq!((s.as_deref(), out), (Some("a"), Output::Cas(false)));
        let (s, out) = apply(None, &OpKind::cas("k", None, Some("b")));
        assert_eq!((s.as_deref(), out), (Some("b"), Output::Cas(true)));
        let (s, out) = apply(Some("b"), &OpKind::cas("k", Some("b"), None));
        assert_eq!((s, out), (None, Output::Cas(true)));
        let (s, out) = apply(Some("b"), &OpKind::cas("k", None, Some("c")));
        assert_eq!((s.as_deref(), out), (Some("b"), Output::Cas(false)));
    }

    #[test]
    fn step_rejects_outputs_the_model_would_not_produce() {
        let get: Command<u32> = Command::Get;
        assert_eq!(
            get.step(&Some(1), Some(&Response::Read(Some(1)))),
            Some(Some(1))
        );
        assert_eq!(get.step(&Some(1), Some(&Response::Read(Some(2)))), None);
        assert_eq!(get.step(&Some(1), None), Some(Some(1)));
        let cas = Command::Cas {
            expected: Some(1),
            new: Some(2),
        };
        assert_eq!(cas.step(&Some(1), Some(&Response::Cas(false))), None);
        assert_eq!(
            cas.step(&Some(3), Some(&Response::Cas(false))),
            Some(Some(3))
        );
    }

    #[test]
    fn output_shape_must_match_the_operation() {
        assert!(OpKind::get("k").accepts_output(&Output::Read(None)));
        assert!(!OpKind::get("k").accepts_output(&Output::Unit));
        assert!(OpKind::put("k", "v").accepts_output(&Output::Unit));
        assert!(!OpKind::cas("k", None, None).accepts_output(&Output::Read(None)));
    }
}
