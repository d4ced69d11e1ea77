//! How a store snapshot goes on the wire, as etcd frames it for `etcdctl snapshot save`.
//!
//! etcd streams its page-aligned bolt file, then one last message holding the SHA-256 of every
//! byte sent before it; clients write all blobs to one file and accept it only if its size is
//! `512·n + 32` (clientv3 `hasChecksum`). The engine's snapshot has no alignment, so it is
//! padded with zeros to a multiple of 512 bytes before the digest:
//!
//! ```text
//!  engine snapshot bytes │ zero padding (0..=511 bytes) │ SHA-256 of everything before (32)
//!  ◄──── remaining_bytes counts down over these ────────►│ remaining_bytes = 0
//! ```
//!
//! Restoring such a file means dropping the last 32 bytes (after checking them) and the zero
//! padding after the engine snapshot's own end.

use bytes::Bytes;
use cairn_engine::KvError;
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::pb::etcdserverpb as pb;
use crate::status::kv_error;

/// The alignment `etcdctl snapshot save` checks (bolt's page-size granularity).
pub const SNAPSHOT_ALIGNMENT: u64 = 512;

/// Zero bytes needed after `len` bytes to reach the alignment.
pub fn padding(len: u64) -> u64 {
    (SNAPSHOT_ALIGNMENT - len % SNAPSHOT_ALIGNMENT) % SNAPSHOT_ALIGNMENT
}

/// Turns the engine's snapshot chunks into etcd's `SnapshotResponse` sequence.
pub struct SnapshotFrames {
    total: u64,
    padded: u64,
    sent: u64,
    digest: Sha256,
    header: Option<pb::ResponseHeader>,
    version: String,
}

impl SnapshotFrames {
    /// `total` is the engine snapshot's size; `header` goes into the first message only.
    pub fn new(total: u64, header: pb::ResponseHeader, version: String) -> Self {
        Self {
            total,
            padded: total + padding(total),
            sent: 0,
            digest: Sha256::new(),
            header: Some(header),
            version,
        }
    }

    fn message(&mut self, blob: Bytes, remaining_bytes: u64) -> pb::SnapshotResponse {
        pb::SnapshotResponse {
            header: self.header.take(),
            remaining_bytes,
            blob,
            version: self.version.clone(),
        }
    }

    /// The message carrying the next chunk of the engine snapshot.
    pub fn chunk(&mut self, blob: Bytes) -> Result<pb::SnapshotResponse, Status> {
        self.sent += blob.len() as u64;
        if self.sent > self.total {
            return Err(kv_error(KvError::Internal(format!(
                "snapshot larger than the announced {} bytes",
                self.total
            ))));
        }
        self.digest.update(&blob);
        let remaining = self.padded - self.sent;
        Ok(self.message(blob, remaining))
    }

    /// The padding (if any) and the digest, once the engine's chunks are all sent.
    pub fn finish(mut self) -> Result<Vec<pb::SnapshotResponse>, Status> {
        if self.sent != self.total {
            return Err(kv_error(KvError::Internal(format!(
                "snapshot ended after {} of {} bytes",
                self.sent, self.total
            ))));
        }
        let mut out = Vec::with_capacity(2);
        let pad = self.padded - self.total;
        if pad > 0 {
            let zeros = Bytes::from(vec![0u8; pad as usize]);
            self.digest.update(&zeros);
            out.push(self.message(zeros, 0));
        }
        let digest = Bytes::from(std::mem::take(&mut self.digest).finalize().to_vec());
        out.push(self.message(digest, 0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(total: u64) -> SnapshotFrames {
        let header = pb::ResponseHeader {
            revision: 9,
            ..Default::default()
        };
        SnapshotFrames::new(total, header, "3.6.0".to_owned())
    }

    #[test]
    fn padding_reaches_the_alignment() {
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
        assert_eq!(padding(1063), 473);
    }

    #[test]
    fn etcdctl_accepts_the_byte_stream() {
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut f = frames(1000);
        let mut messages = vec![
            f.chunk(Bytes::copy_from_slice(&data[..600]))
                .expect("chunk"),
            f.chunk(Bytes::copy_from_slice(&data[600..]))
                .expect("chunk"),
        ];
        messages.extend(f.finish().expect("complete"));

        let remaining: Vec<u64> = messages.iter().map(|m| m.remaining_bytes).collect();
        assert_eq!(remaining, vec![424, 24, 0, 0]);
        assert_eq!(messages[0].header.map(|h| h.revision), Some(9));
        assert!(messages[1..].iter().all(|m| m.header.is_none()));
        assert!(messages.iter().all(|m| m.version == "3.6.0"));

        let file: Vec<u8> = messages.iter().flat_map(|m| m.blob.to_vec()).collect();
        assert_eq!(file.len() % 512, 32, "clientv3 hasChecksum");
        let (body, digest) = file.split_at(file.len() - 32);
        assert_eq!(&body[..1000], &data[..]);
        assert!(body[1000..].iter().all(|&b| b == 0));
        assert_eq!(digest, Sha256::digest(body).as_slice());
    }

    #[test]
    fn aligned_snapshots_get_no_padding_message() {
        let mut f = frames(512);
        f.chunk(Bytes::from(vec![1u8; 512])).expect("chunk");
        let tail = f.finish().expect("complete");
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].blob.len(), 32);
    }

    #[test]
    fn size_mismatches_are_errors() {
        let mut f = frames(10);
        assert!(f.chunk(Bytes::from(vec![0u8; 11])).is_err());
        let mut f = frames(10);
        f.chunk(Bytes::from(vec![0u8; 4])).expect("chunk");
        assert!(f.finish().is_err());
    }
}
