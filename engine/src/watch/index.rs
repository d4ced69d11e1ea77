//! Index of synced watchers by key range, so `publish` costs O(matching watchers), not O(all).
//!
//! Three buckets, by the shape of the range:
//! - exact keys: a hash map from key to watchers (one lookup per event);
//! - prefixes: a hash map from prefix to watchers, plus the set of distinct prefix lengths; an
//!   event key `k` is looked up as `k[..n]` for each length `n` in use. kube-apiserver watches a
//!   few prefixes of a few lengths (`/registry/pods/`, ...), so this is a handful of lookups no
//!   matter how many watchers share them. "Every key" (`"" .. "\0"`, or `"\0" .. "\0"` as
//!   clientv3 sends it) is the empty prefix.
//! - anything else (from-key, arbitrary intervals): scanned. These are rare in practice.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::range::KeyRange;
use super::watcher::WatcherKey;

#[derive(Debug, Default)]
pub(super) struct WatcherIndex {
    exact: HashMap<Bytes, Vec<WatcherKey>>,
    prefixes: HashMap<Bytes, Vec<WatcherKey>>,
    /// Prefix length → number of watchers with a prefix of that length.
    prefix_lens: BTreeMap<usize, usize>,
    scanned: HashMap<WatcherKey, KeyRange>,
    len: usize,
}

enum Bucket {
    Exact(Bytes),
    Prefix(Bytes),
    Scanned,
}

fn bucket(range: &KeyRange) -> Bucket {
    match range {
        KeyRange::Exact(key) => Bucket::Exact(key.clone()),
        KeyRange::Prefix(prefix) => Bucket::Prefix(prefix.clone()),
        // etcd keys are never empty, so ">= \0" is every key, like ">= \"\"".
        KeyRange::FromKey(start) if start.is_empty() || start.as_ref() == [0] => {
            Bucket::Prefix(Bytes::new())
        }
        KeyRange::FromKey(_) | KeyRange::Range { .. } => Bucket::Scanned,
    }
}

impl WatcherIndex {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn insert(&mut self, watcher: WatcherKey, range: &KeyRange) {
        match bucket(range) {
            Bucket::Exact(key) => self.exact.entry(key).or_default().push(watcher),
            Bucket::Prefix(prefix) => {
                *self.prefix_lens.entry(prefix.len()).or_default() += 1;
                self.prefixes.entry(prefix).or_default().push(watcher);
            }
            Bucket::Scanned => {
                self.scanned.insert(watcher, range.clone());
            }
        }
        self.len += 1;
    }

    /// Removes `watcher`, which must have been inserted with the same `range`.
    pub(super) fn remove(&mut self, watcher: WatcherKey, range: &KeyRange) -> bool {
        let removed = match bucket(range) {
            Bucket::Exact(key) => remove_from(&mut self.exact, &key, watcher),
            Bucket::Prefix(prefix) => {
                let removed = remove_from(&mut self.prefixes, &prefix, watcher);
                if removed && let Some(count) = self.prefix_lens.get_mut(&prefix.len()) {
                    *count -= 1;
                    if *count == 0 {
                        self.prefix_lens.remove(&prefix.len());
                    }
                }
                removed
            }
            Bucket::Scanned => self.scanned.remove(&watcher).is_some(),
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` once for every watcher whose range contains `key`.
    pub(super) fn for_each_match(&self, key: &[u8], mut f: impl FnMut(WatcherKey)) {
        if let Some(watchers) = self.exact.get(key) {
            watchers.iter().copied().for_each(&mut f);
        }
        for &len in self.prefix_lens.range(..=key.len()).map(|(len, _)| len) {
            if let Some(watchers) = self.prefixes.get(&key[..len]) {
                watchers.iter().copied().for_each(&mut f);
            }
        }
        for (&watcher, range) in &self.scanned {
            if range.contains(key) {
                f(watcher);
            }
        }
    }

    /// Every indexed watcher, in no particular order.
    pub(super) fn all(&self) -> impl Iterator<Item = WatcherKey> + '_ {
        let exact = self.exact.values().flatten().copied();
        let prefixed = self.prefixes.values().flatten().copied();
        exact.chain(prefixed).chain(self.scanned.keys().copied())
    }
}

fn remove_from(
    map: &mut HashMap<Bytes, Vec<WatcherKey>>,
    key: &Bytes,
    watcher: WatcherKey,
) -> bool {
    let Some(watchers) = map.get_mut(key) else {
        return false;
    };
    let Some(pos) = watchers.iter().position(|&w| w == watcher) else {
        return false;
    };
    watchers.swap_remove(pos);
    if watchers.is_empty() {
        map.remove(key);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &'static [u8], end: &'static [u8]) -> KeyRange {
        KeyRange::new(Bytes::from_static(key), Bytes::from_static(end)).expect("valid range")
    }

    fn matches(index: &WatcherIndex, key: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        index.for_each_match(key, |w| out.push(w.0));
        out.sort_unstable();
        out
    }

    #[test]
    fn matches_each_bucket_once() {
        let mut index = WatcherIndex::default();
        index.insert(WatcherKey(1), &range(b"/a/x", b""));
        index.insert(WatcherKey(2), &range(b"/a/", b"/a0"));
        index.insert(WatcherKey(3), &range(b"/", b"0"));
        index.insert(WatcherKey(4), &range(b"\0", b"\0"));
        index.insert(WatcherKey(5), &range(b"/a/m", b"\0"));
        index.insert(WatcherKey(6), &range(b"/a/a", b"/a/y"));
        assert_eq!(index.len(), 6);

        assert_eq!(matches(&index, b"/a/x"), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(matches(&index, b"/a/z"), vec![2, 3, 4, 5]);
        assert_eq!(matches(&index, b"/b"), vec![3, 4, 5]);
        assert_eq!(matches(&index, b"a"), vec![4, 5]);
        assert_eq!(matches(&index, b"/"), vec![3, 4]);
    }

    #[test]
    fn remove_undoes_insert() {
        let mut index = WatcherIndex::default();
        let ranges = [range(b"k", b""), range(b"/p/", b"/p0"), range(b"a", b"c")];
        for (i, r) in ranges.iter().enumerate() {
            index.insert(WatcherKey(i as u64), r);
            index.insert(WatcherKey(10 + i as u64), r);
        }
        for (i, r) in ranges.iter().enumerate() {
            assert!(index.remove(WatcherKey(i as u64), r));
            assert!(!index.remove(WatcherKey(i as u64), r));
        }
        assert_eq!(matches(&index, b"k"), vec![10]);
        assert_eq!(matches(&index, b"/p/q"), vec![11]);
        assert_eq!(matches(&index, b"b"), vec![12]);
        for (i, r) in ranges.iter().enumerate() {
            assert!(index.remove(WatcherKey(10 + i as u64), r));
        }
        assert!(index.is_empty());
        assert!(index.prefix_lens.is_empty());
        assert_eq!(index.all().count(), 0);
    }
}
