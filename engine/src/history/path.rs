//! Key ↔ repo path: how etcd keys (arbitrary bytes) become paths in the history's trees.
//!
//! A key is split at `/` into segments; every segment but the last names a directory, the last
//! names a file. Each segment is escaped so that any byte string round-trips:
//!
//! ```text
//!  byte in [A-Za-z0-9._-:@+=,]   kept as is
//!  any other byte                %XX (upper-case hex)
//!  the empty segment             %          (a lone `%`: escapes are always `%` + 2 hex digits)
//!  file (the last segment)       escaped + `~`   (`~` is always escaped inside segments)
//!
//!  /registry/pods/default/web-0  →  %/registry/pods/default/web-0~
//!  /registry/pods                →  %/registry/pods~      (coexists with the directory `pods`)
//!  a\x00b                         →  a%00b~
//! ```
//!
//! Because files end in `~` and directories never do, a key and its "children" coexist.
//!
//! Large directories are sharded by the history writer: a directory with more than
//! [`SHARD_THRESHOLD`] entries splits into sixteen shard directories `#0` … `#f` by the
//! `level`-th hex digit of the SHA-256 of the entry name, recursively. `#` is always escaped in
//! segments, so shard directories are recognisable and skipped when a path is turned back into
//! a key. One write then rewrites O(depth) trees of bounded size whatever the directory's size.

use sha2::{Digest, Sha256};

/// A directory (or shard) with more entries than this is split into shards.
pub const SHARD_THRESHOLD: usize = 32;

/// Marks a file component.
const FILE_SUFFIX: char = '~';
/// Starts a shard directory's name.
pub const SHARD_PREFIX: char = '#';

fn keeps(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"._-:@+=,".contains(&byte)
}

/// Escapes one segment (bytes without `/`).
fn escape_segment(segment: &[u8], out: &mut String) {
    if segment.is_empty() {
        out.push('%');
        return;
    }
    for &byte in segment {
        if keeps(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble)])
}

/// The path components of `key`: directories, then the file.
pub fn key_components(key: &[u8]) -> Vec<String> {
    let mut components = Vec::new();
    key_components_into(key, &mut components);
    components
}

/// [`key_components`] into `components`, whose strings are reused (the writer's path: a key
/// after another, without allocating).
pub fn key_components_into(key: &[u8], components: &mut Vec<String>) {
    let count = key.split(|&b| b == b'/').count();
    components.truncate(count);
    components.resize_with(count, String::new);
    for (component, segment) in components.iter_mut().zip(key.split(|&b| b == b'/')) {
        component.clear();
        escape_segment(segment, component);
    }
    if let Some(file) = components.last_mut() {
        file.push(FILE_SUFFIX);
    }
}

/// The directory components under which every key starting with `prefix` lives, and the escaped
/// start of the remaining segment (which may be a directory or a file name).
pub fn prefix_components(prefix: &[u8]) -> (Vec<String>, Vec<u8>) {
    let segments: Vec<&[u8]> = prefix.split(|&b| b == b'/').collect();
    let (partial, dirs) = segments
        .split_last()
        .expect("split yields at least one segment");
    let dirs = dirs
        .iter()
        .map(|segment| {
            let mut component = String::new();
            escape_segment(segment, &mut component);
            component
        })
        .collect();
    (dirs, partial.to_vec())
}

/// Whether `component` names a shard directory.
pub fn is_shard(component: &str) -> bool {
    component.starts_with(SHARD_PREFIX)
}

/// The names of the shard directories, by hex digit.
const SHARD_NAMES: [&str; 16] = [
    "#0", "#1", "#2", "#3", "#4", "#5", "#6", "#7", "#8", "#9", "#a", "#b", "#c", "#d", "#e", "#f",
];

/// The hash that places `name` in shards: [`shard_at`] of it for each level.
pub fn shard_hash(name: &str) -> [u8; 32] {
    Sha256::digest(name.as_bytes()).into()
}

/// The shard (`#0` … `#f`) that the entry with [`shard_hash`] `hash` belongs to at shard `level`
/// (0 = first split).
pub fn shard_at(hash: &[u8; 32], level: usize) -> &'static str {
    let byte = hash[(level / 2) % hash.len()];
    let nibble = if level.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0x0f
    };
    SHARD_NAMES[usize::from(nibble)]
}

/// The shard (`#0` … `#f`) that `name` belongs to at shard `level` (0 = first split).
pub fn shard_of(name: &str, level: usize) -> String {
    shard_at(&shard_hash(name), level).to_owned()
}

/// Turns path components back into the key, skipping shard directories. `None` if they do not
/// come from [`key_components`] (no file last, a bad escape).
pub fn key_from_components<'a>(components: impl IntoIterator<Item = &'a str>) -> Option<Vec<u8>> {
    let mut key = Vec::new();
    let mut file_seen = false;
    let mut first = true;
    for component in components {
        if is_shard(component) {
            continue;
        }
        if file_seen {
            return None;
        }
        let segment = match component.strip_suffix(FILE_SUFFIX) {
            Some(name) => {
                file_seen = true;
                name
            }
            None => component,
        };
        if !first {
            key.push(b'/');
        }
        first = false;
        unescape_segment(segment, &mut key)?;
    }
    file_seen.then_some(key)
}

/// Unescapes one segment (directory name, or file name without its suffix).
pub fn unescape_segment(segment: &str, out: &mut Vec<u8>) -> Option<()> {
    if segment == "%" {
        return Some(());
    }
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let high = from_hex(*bytes.get(index + 1)?)?;
            let low = from_hex(*bytes.get(index + 2)?)?;
            let decoded = (high << 4) | low;
            // Only the canonical form: an escape of a kept byte would make two paths one key.
            if keeps(decoded) {
                return None;
            }
            out.push(decoded);
            index += 3;
        } else if keeps(byte) {
            out.push(byte);
            index += 1;
        } else {
            return None;
        }
    }
    Some(())
}

fn from_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    fn path_of(key: &[u8]) -> String {
        key_components(key).join("/")
    }

    #[test]
    fn kubernetes_keys_read_naturally() {
        assert_eq!(
            path_of(b"/registry/pods/default/web-0"),
            "%/registry/pods/default/web-0~"
        );
        assert_eq!(path_of(b"/registry/pods"), "%/registry/pods~");
        assert_eq!(path_of(b"a\x00b"), "a%00b~");
        assert_eq!(path_of(b""), "%~");
        assert_eq!(path_of(b"/"), "%/%~");
        assert_eq!(path_of(b"a~b#c%"), "a%7Eb%23c%25~");
    }

    #[test]
    fn a_key_and_its_children_coexist() {
        let parent = key_components(b"/a/b");
        let child = key_components(b"/a/b/c");
        assert_ne!(parent[2], child[2], "file b~ and directory b differ");
    }

    #[test]
    fn shards_are_skipped_when_reading_back() {
        let mut components = key_components(b"/x/y");
        components.insert(1, shard_of("x", 0));
        components.insert(2, shard_of("x", 1));
        let key = key_from_components(components.iter().map(String::as_str));
        assert_eq!(key.as_deref(), Some(&b"/x/y"[..]));
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in [
            &["a%61~"][..],
            &["a"],
            &["a~", "b~"],
            &["%4"],
            &["a b~"],
            &[""],
        ] {
            assert_eq!(key_from_components(bad.iter().copied()), None, "{bad:?}");
        }
    }

    #[test]
    fn prefix_components_split_at_the_last_slash() {
        assert_eq!(
            prefix_components(b"/registry/pods/def"),
            (
                vec!["%".to_owned(), "registry".to_owned(), "pods".to_owned()],
                b"def".to_vec()
            )
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            key in proptest::collection::vec(any::<u8>(), 0..40),
            before in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let components = key_components(&key);
            // Strings reused from another key's components make the same components.
            let mut reused = key_components(&before);
            key_components_into(&key, &mut reused);
            prop_assert_eq!(&reused, &components);
            for component in &components {
                prop_assert!(!component.is_empty() && !component.contains('/'));
                prop_assert!(!is_shard(component));
                prop_assert!(jj_lib::repo_path::RepoPathComponentBuf::new(component.clone()).is_ok());
            }
            let back = key_from_components(components.iter().map(String::as_str));
            prop_assert_eq!(back, Some(key));
        }

        #[test]
        fn no_collisions(keys in proptest::collection::vec(
            proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'%'), Just(b'~'), Just(b'a'), any::<u8>()], 0..8),
            1..64,
        )) {
            let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
            for key in keys {
                let path = path_of(&key);
                if let Some(other) = seen.insert(path.clone(), key.clone()) {
                    prop_assert_eq!(other, key, "{} maps two keys", path);
                }
            }
        }

        #[test]
        fn shards_are_hex_digits(name in "[a-z0-9%~]{1,20}", level in 0usize..8) {
            let shard = shard_of(&name, level);
            prop_assert!(is_shard(&shard) && shard.len() == 2);
        }
    }
}
