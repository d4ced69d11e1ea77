//! Keys and values of the generated load.
//!
//! A key is its index in the key space as zero-padded decimal, right-aligned in `key_size`
//! bytes (longer when the index needs more digits), after an optional prefix:
//! `key_size = 8`, index 42 → `00000042`.

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use rand::rngs::StdRng;

use super::cli::KeyArgs;

/// Picks keys from a key space, in order or at random.
#[derive(Clone, Debug)]
pub struct KeyGen {
    prefix: Bytes,
    size: usize,
    space: u64,
    sequential: bool,
}

impl KeyGen {
    pub fn new(prefix: &[u8], args: &KeyArgs) -> Self {
        Self {
            prefix: Bytes::copy_from_slice(prefix),
            size: args.key_size,
            space: args.key_space_size.max(1),
            sequential: args.sequential_keys,
        }
    }

    /// The key for request number `seq`.
    pub fn pick(&self, seq: u64, rng: &mut StdRng) -> Bytes {
        let index = if self.sequential {
            seq % self.space
        } else {
            rng.random_range(0..self.space)
        };
        self.key(index)
    }

    /// The key at `index` of the key space.
    pub fn key(&self, index: u64) -> Bytes {
        key_at(&self.prefix, self.size, index)
    }

    pub fn space(&self) -> u64 {
        self.space
    }

    /// Every key of the space, in order.
    pub fn all(&self) -> impl Iterator<Item = Bytes> + '_ {
        (0..self.space).map(|i| self.key(i))
    }
}

/// `prefix` followed by `index` in decimal, zero-padded to `size` bytes.
pub fn key_at(prefix: &[u8], size: usize, index: u64) -> Bytes {
    let digits = index.to_string();
    let mut key = BytesMut::with_capacity(prefix.len() + size.max(digits.len()));
    key.put_slice(prefix);
    key.put_bytes(b'0', size.saturating_sub(digits.len()));
    key.put_slice(digits.as_bytes());
    key.freeze()
}

/// The first key after every key starting with `prefix` (etcd's `GetPrefixRangeEnd`); `"\0"`
/// (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// A value of `size` bytes.
pub fn value(size: usize) -> Bytes {
    Bytes::from(vec![b'v'; size])
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn keys_are_padded_decimal() {
        assert_eq!(key_at(b"", 8, 42), Bytes::from_static(b"00000042"));
        assert_eq!(key_at(b"p/", 2, 12345), Bytes::from_static(b"p/12345"));
    }

    #[test]
    fn sequential_keys_wrap_around_the_space() {
        let args = KeyArgs {
            key_size: 4,
            value_size: 8,
            key_space_size: 3,
            sequential_keys: true,
        };
        let keys = KeyGen::new(b"", &args);
        let mut rng = StdRng::seed_from_u64(1);
        let picked: Vec<Bytes> = (0..4).map(|seq| keys.pick(seq, &mut rng)).collect();
        assert_eq!(picked, ["0000", "0001", "0002", "0000"]);
    }

    #[test]
    fn random_keys_stay_in_the_space() {
        let args = KeyArgs {
            key_size: 4,
            value_size: 8,
            key_space_size: 10,
            sequential_keys: false,
        };
        let keys = KeyGen::new(b"k", &args);
        let mut rng = StdRng::seed_from_u64(7);
        for seq in 0..100 {
            let key = keys.pick(seq, &mut rng);
            assert!(keys.all().any(|k| k == key));
        }
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"abc"), Bytes::from_static(b"abd"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff"), Bytes::from_static(b"\0"));
    }
}
