//! Lease records: grant and revoke as applied commands.
//!
//! The store only records which leases exist (with their granted TTL) and which keys each one
//! holds; expiry is the lessor's business. Revoking deletes every attached key at one revision,
//! in key order, each with a DELETE event carrying `prev_kv`.

use super::codec;
use super::error::OpResult;
use super::write::Writer;
use crate::error::KvError;

/// etcd's largest lease TTL, in seconds (`MaxLeaseTTL`).
pub(crate) const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// Creates lease `id` with `ttl` seconds.
pub(crate) fn grant(writer: &mut Writer<'_>, id: i64, ttl: i64) -> OpResult<()> {
    if writer.lease_exists(id)? {
        return Err(KvError::LeaseExists.into());
    }
    if ttl > MAX_LEASE_TTL {
        return Err(KvError::LeaseTtlTooLarge.into());
    }
    writer.tables.leases.insert(
        codec::encode_i64(id).as_slice(),
        codec::encode_i64(ttl).as_slice(),
    )?;
    Ok(())
}

/// Removes lease `id`, deleting its keys.
pub(crate) fn revoke(writer: &mut Writer<'_>, id: i64) -> OpResult<()> {
    if !writer.lease_exists(id)? {
        return Err(KvError::LeaseNotFound.into());
    }
    for key in writer.lease_keys(id)? {
        if let Some(prev) = writer.source().get(&key)? {
            writer.delete_key(&prev)?;
        }
        writer
            .tables
            .lease_keys
            .remove(codec::lease_key(id, &key).as_slice())?;
    }
    writer
        .tables
        .leases
        .remove(codec::encode_i64(id).as_slice())?;
    Ok(())
}
