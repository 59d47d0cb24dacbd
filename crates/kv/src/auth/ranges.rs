//! Whether a user's permitted key ranges cover a requested one.
//!
//! etcd's rules: a permission with an empty `range_end` is one key, one
//! with `range_end` "\0" reaches every key from `key` on, any other is the
//! half-open range `[key, range_end)`. A request for one key is permitted
//! when any permission contains the key; a request for a range only when
//! the union of permissions covers the whole range.

use bytes::Bytes;

/// A half-open key interval; `end: None` reaches past every key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Interval {
    pub start: Bytes,
    pub end: Option<Bytes>,
}

impl Interval {
    /// The interval of a permission or request `(key, range_end)`;
    /// `None` for a single key.
    pub fn of(key: &[u8], range_end: &[u8]) -> Option<Interval> {
        match range_end {
            [] => None,
            [0] => Some(Interval {
                start: Bytes::copy_from_slice(key),
                end: None,
            }),
            end => Some(Interval {
                start: Bytes::copy_from_slice(key),
                end: Some(Bytes::copy_from_slice(end)),
            }),
        }
    }

    /// The interval holding just `key`: `[key, key + "\0")`.
    pub fn point(key: &[u8]) -> Interval {
        let mut end = key.to_vec();
        end.push(0);
        Interval {
            start: Bytes::copy_from_slice(key),
            end: Some(end.into()),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= &self.start[..] && self.end.as_ref().is_none_or(|end| key < &end[..])
    }

    fn is_empty(&self) -> bool {
        self.end.as_ref().is_some_and(|end| end <= &self.start)
    }
}

/// Whether `key` lies in any of `granted`.
pub(crate) fn any_contains(granted: &[Interval], key: &[u8]) -> bool {
    granted.iter().any(|g| g.contains(key))
}

/// Whether the union of `granted` covers all of `wanted`. An empty wanted
/// range (end before start) asks for nothing and is covered.
pub(crate) fn covers(granted: &[Interval], wanted: &Interval) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let mut sorted: Vec<&Interval> = granted.iter().filter(|g| !g.is_empty()).collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start));
    // Sweep from the wanted start: each interval that begins at or before
    // the point reached so far may push that point on.
    let mut reached: Bytes = wanted.start.clone();
    for g in sorted {
        if g.start > reached {
            break;
        }
        match &g.end {
            None => return true,
            Some(end) if *end > reached => reached = end.clone(),
            Some(_) => {}
        }
        if wanted.end.as_ref().is_some_and(|end| reached >= *end) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(start: &str, end: &str) -> Interval {
        Interval::of(start.as_bytes(), end.as_bytes()).unwrap()
    }

    #[test]
    fn a_prefix_permission_covers_ranges_inside_it_and_not_beyond() {
        let granted = [iv("foo", "fop")];
        assert!(covers(&granted, &iv("foo", "fop")));
        assert!(covers(&granted, &iv("foo1", "foo9")));
        assert!(!covers(&granted, &iv("foo", "foq")));
        assert!(!covers(&granted, &iv("a", "\0")));
        assert!(any_contains(&granted, b"foo/bar"));
        assert!(!any_contains(&granted, b"fop"));
    }

    #[test]
    fn adjacent_permissions_cover_their_union_and_a_gap_does_not() {
        assert!(covers(&[iv("a", "c"), iv("c", "e")], &iv("b", "d")));
        assert!(!covers(&[iv("a", "c"), iv("d", "e")], &iv("b", "d")));
    }

    #[test]
    fn from_key_permission_covers_everything_after_it() {
        let granted = [iv("m", "\0")];
        assert!(covers(&granted, &iv("n", "\0")));
        assert!(covers(&granted, &iv("m", "zzz")));
        assert!(!covers(&granted, &iv("a", "n")));
    }

    #[test]
    fn a_single_key_permission_covers_only_that_key() {
        let granted = [Interval::point(b"k")];
        assert!(any_contains(&granted, b"k"));
        assert!(!any_contains(&granted, b"k1"));
        assert!(!covers(&granted, &iv("k", "l")));
    }
}
