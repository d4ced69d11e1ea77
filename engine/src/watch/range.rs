//! The key range a watcher covers, decoded from etcd's `(key, range_end)` convention.

use bytes::Bytes;

use super::WatchError;

/// A watched key range.
///
/// etcd encodes all of these as `(key, range_end)`: empty `range_end` = one key; `"\0"` = every
/// key `>= key`; otherwise `[key, range_end)`. A range whose end is the prefix end of its start
/// (`/registry/pods/` .. `/registry/pods0`) is recognised as a prefix, because that is the shape
/// kube-apiserver uses and prefixes can be indexed cheaply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum KeyRange {
    Exact(Bytes),
    Prefix(Bytes),
    FromKey(Bytes),
    Range { start: Bytes, end: Bytes },
}

impl KeyRange {
    pub(super) fn new(key: Bytes, range_end: Bytes) -> Result<Self, WatchError> {
        if range_end.is_empty() {
            return Ok(Self::Exact(key));
        }
        if range_end.as_ref() == [0] {
            return Ok(Self::FromKey(key));
        }
        if prefix_end(&key).is_some_and(|end| end == range_end.as_ref()) {
            return Ok(Self::Prefix(key));
        }
        if key >= range_end {
            return Err(WatchError::EmptyRange);
        }
        Ok(Self::Range {
            start: key,
            end: range_end,
        })
    }

    pub(super) fn contains(&self, key: &[u8]) -> bool {
        match self {
            Self::Exact(k) => k.as_ref() == key,
            Self::Prefix(p) => key.starts_with(p),
            Self::FromKey(start) => key >= start.as_ref(),
            Self::Range { start, end } => key >= start.as_ref() && key < end.as_ref(),
        }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is none
/// (`prefix` is empty or all `0xff`; etcd then uses `"\0"`, "no end").
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &'static [u8], end: &'static [u8]) -> KeyRange {
        KeyRange::new(Bytes::from_static(key), Bytes::from_static(end)).expect("valid range")
    }

    #[test]
    fn prefix_end_increments_last_non_ff_byte() {
        assert_eq!(
            prefix_end(b"/registry/pods/"),
            Some(b"/registry/pods0".to_vec())
        );
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn classifies_etcd_ranges() {
        assert_eq!(range(b"k", b""), KeyRange::Exact(Bytes::from_static(b"k")));
        assert_eq!(
            range(b"k", b"\0"),
            KeyRange::FromKey(Bytes::from_static(b"k"))
        );
        assert_eq!(
            range(b"/a/", b"/a0"),
            KeyRange::Prefix(Bytes::from_static(b"/a/"))
        );
        assert_eq!(
            range(b"a\xff", b"b"),
            KeyRange::Prefix(Bytes::from_static(b"a\xff"))
        );
        assert!(matches!(range(b"a", b"c"), KeyRange::Range { .. }));
        assert_eq!(
            KeyRange::new(Bytes::from_static(b"b"), Bytes::from_static(b"a")),
            Err(WatchError::EmptyRange)
        );
        assert_eq!(
            KeyRange::new(Bytes::from_static(b"a"), Bytes::from_static(b"a")),
            Err(WatchError::EmptyRange)
        );
    }

    #[test]
    fn contains_follows_etcd() {
        let exact = range(b"k", b"");
        assert!(exact.contains(b"k"));
        assert!(!exact.contains(b"k1"));

        let prefix = range(b"/a/", b"/a0");
        assert!(prefix.contains(b"/a/"));
        assert!(prefix.contains(b"/a/x"));
        assert!(!prefix.contains(b"/a0"));
        assert!(!prefix.contains(b"/a"));

        let from = range(b"m", b"\0");
        assert!(from.contains(b"m"));
        assert!(from.contains(b"zzz"));
        assert!(!from.contains(b"l"));

        let interval = range(b"b", b"d");
        assert!(interval.contains(b"b"));
        assert!(interval.contains(b"cz"));
        assert!(!interval.contains(b"d"));
        assert!(!interval.contains(b"a"));
    }
}
