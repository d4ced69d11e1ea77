//! Member and cluster identity, fixed when the data dir is first created.
//!
//! Like etcd, a member id is derived from its peer URLs and the cluster token, and the cluster id
//! from the member ids, so the same `--initial-cluster` always yields the same ids. Once written
//! to `member/identity`, the stored identity is authoritative.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub cluster_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: String,
        source: postcard::Error,
    },
    #[error(
        "the data dir belongs to cluster token {stored:?}, but --initial-cluster-token is \
         {configured:?}; use the token the cluster was created with, or an empty --data-dir"
    )]
    TokenMismatch { stored: String, configured: String },
}

fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The member id etcd-style: a hash of the sorted peer URLs and the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let joined = urls.join(",");
    hash_u64(&[joined.as_bytes(), token.as_bytes()]).max(1)
}

/// The cluster id: a hash of the sorted member ids.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    hash_u64(&[&bytes]).max(1)
}

/// Loads the stored identity, or stores `fresh` if there is none.
pub fn load_or_create(path: &Path, fresh: Identity) -> Result<Identity, IdentityError> {
    let display = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let stored: Identity =
                postcard::from_bytes(&bytes).map_err(|source| IdentityError::Corrupt {
                    path: display,
                    source,
                })?;
            // The other --initial-* flags only matter when the data dir is created (as in etcd),
            // but a different token means the command line is meant for another cluster.
            if stored.cluster_token != fresh.cluster_token {
                return Err(IdentityError::TokenMismatch {
                    stored: stored.cluster_token,
                    configured: fresh.cluster_token,
                });
            }
            if stored.name != fresh.name {
                tracing::warn!(stored = %stored.name, configured = %fresh.name,
                    "member name differs from the one stored in the data dir; keeping the stored one");
            }
            Ok(stored)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let io_err = |source| IdentityError::Io {
                path: display.clone(),
                source,
            };
            let bytes = postcard::to_allocvec(&fresh).map_err(|source| IdentityError::Corrupt {
                path: display.clone(),
                source,
            })?;
            let tmp = path.with_extension("tmp");
            let mut file = std::fs::File::create(&tmp).map_err(io_err)?;
            file.write_all(&bytes).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            std::fs::rename(&tmp, path).map_err(io_err)?;
            crate::raft::state_machine::sync_dir(path).map_err(io_err)?;
            Ok(fresh)
        }
        Err(source) => Err(IdentityError::Io {
            path: display,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_order_independent() {
        let a = vec![
            "http://127.0.0.1:2380".to_string(),
            "http://10.0.0.1:2380".to_string(),
        ];
        let b = vec![a[1].clone(), a[0].clone()];
        assert_eq!(member_id(&a, "t"), member_id(&b, "t"));
        assert_ne!(member_id(&a, "t"), member_id(&a, "u"));
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
    }

    #[test]
    fn stored_identity_wins_over_later_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let first = Identity {
            name: "a".into(),
            member_id: 7,
            cluster_id: 9,
            cluster_token: "t".into(),
        };
        assert_eq!(load_or_create(&path, first.clone()).unwrap(), first);
        let renamed = Identity {
            name: "b".into(),
            member_id: 8,
            ..first.clone()
        };
        assert_eq!(load_or_create(&path, renamed).unwrap(), first);
        let other = Identity {
            cluster_token: "x".into(),
            ..first.clone()
        };
        assert!(matches!(
            load_or_create(&path, other),
            Err(IdentityError::TokenMismatch { .. })
        ));
    }
}
