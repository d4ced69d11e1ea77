//! The encoding of peer messages: postcard over openraft's and Cairn's serde types.
//!
//! Both ends run the same build of these types, so a positional format is enough; the peer
//! service's proto package name carries the protocol version.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("peer message encoding: {0}")]
pub struct WireError(#[from] postcard::Error);

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, WireError> {
    Ok(Bytes::from(postcard::to_allocvec(value)?))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// The encoded size of `value`, without keeping the encoding.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::{Entry, LogId};

    #[test]
    fn entries_round_trip_and_sizes_agree() {
        use openraft::entry::RaftEntry as _;
        use openraft::vote::RaftLeaderIdExt as _;
        let leader =
            <crate::raft::types::TypeConfig as openraft::RaftTypeConfig>::LeaderId::new_committed(
                3, 7,
            );
        let entry = Entry::new_blank(LogId::new(leader, 42));
        let bytes = encode(&entry).unwrap();
        assert_eq!(encoded_len(&entry), bytes.len());
        let back: Entry = decode(&bytes).unwrap();
        assert_eq!(back.log_id, entry.log_id);
    }
}
