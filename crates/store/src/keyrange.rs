//! etcd's key-range convention, in one place.
//!
//! A request names `key` and `range_end`:
//! - an empty `range_end` means the single key `key`;
//! - `range_end == "\0"` means every key `>= key`;
//! - otherwise the half-open interval `[key, range_end)`, empty when
//!   `range_end <= key`.

use bytes::Bytes;
use std::ops::Bound;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    Single(Bytes),
    From(Bytes),
    Between(Bytes, Bytes),
}

impl KeyRange {
    pub fn new(key: &Bytes, range_end: &Bytes) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.clone())
        } else if range_end.as_ref() == [0] {
            KeyRange::From(key.clone())
        } else {
            KeyRange::Between(key.clone(), range_end.clone())
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_ref(),
            KeyRange::From(key) => k >= key.as_ref(),
            KeyRange::Between(a, b) => k >= a.as_ref() && k < b.as_ref(),
        }
    }

    /// Bounds for a `BTreeMap<Bytes, _>` range scan, or `None` when empty.
    pub fn bounds(&self) -> Option<(Bound<&[u8]>, Bound<&[u8]>)> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k.as_ref()), Bound::Included(k.as_ref()))),
            KeyRange::From(k) => Some((Bound::Included(k.as_ref()), Bound::Unbounded)),
            KeyRange::Between(a, b) => {
                if b <= a {
                    None
                } else {
                    Some((Bound::Included(a.as_ref()), Bound::Excluded(b.as_ref())))
                }
            }
        }
    }

    /// Whether two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let (Some((a0, a1)), Some((b0, b1))) = (self.bounds(), other.bounds()) else {
            return false;
        };
        below_end(a0, b1) && below_end(b0, a1)
    }
}

/// Is the start bound `s` strictly before the end bound `e` (i.e. do they leave room for a key)?
fn below_end(s: Bound<&[u8]>, e: Bound<&[u8]>) -> bool {
    let Bound::Included(s) = s else { return true };
    match e {
        Bound::Unbounded => true,
        Bound::Included(e) => s <= e,
        Bound::Excluded(e) => s < e,
    }
}

/// The `range_end` that selects every key with the given prefix (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"abc").as_ref(), b"abd");
        assert_eq!(prefix_end(b"a\xff").as_ref(), b"b");
        assert_eq!(prefix_end(b"\xff\xff").as_ref(), b"\0");
    }

    #[test]
    fn ranges() {
        let r = KeyRange::new(&Bytes::from("b"), &Bytes::from("d"));
        assert!(r.contains(b"b") && r.contains(b"c") && !r.contains(b"d") && !r.contains(b"a"));
        let inverted = KeyRange::new(&Bytes::from("d"), &Bytes::from("b"));
        assert!(inverted.bounds().is_none());
        let from = KeyRange::new(&Bytes::from("b"), &Bytes::from_static(&[0]));
        assert!(from.contains(b"zzz") && !from.contains(b"a"));
        assert!(r.overlaps(&KeyRange::Single(Bytes::from("c"))));
        assert!(!r.overlaps(&KeyRange::Single(Bytes::from("d"))));
        assert!(from.overlaps(&r));
    }
}
