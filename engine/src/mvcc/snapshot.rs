//! Snapshots: the whole store as one byte stream, written from one read transaction and
//! restored into a fresh database in one write transaction.
//!
//! Format, byte by byte:
//!
//! ```text
//! offset  size  field
//! 0       8     magic "CAIRNSNP"
//! 8       4     format version, u32 big-endian (currently 1)
//! 12      …     records, table by table in table-id order, rows in key order:
//!                 table id   u8       1 current, 2 history, 3 changes, 4 leases,
//!                                     5 lease_keys, 6 meta (layouts in `mvcc::tables`)
//!                 key len    u32 BE
//!                 key        key len bytes
//!                 value len  u32 BE
//!                 value      value len bytes
//! …       9     terminating record: table id 0xff, key len 0, value len 0
//! …       32    SHA-256 of every byte before it (magic through the terminating record)
//! ```
//!
//! Nothing may follow the digest. Restore checks the magic, the version, every table id and the
//! digest before it commits anything.

use std::io::{self, Read, Write};

use redb::{ReadableTable, WriteTransaction};
use sha2::{Digest, Sha256};

use super::codec;
use super::error::{MvccError, MvccResult};
use super::tables::{self, ReadTables};
use super::write::read_meta_i64;

/// The first bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CAIRNSNP";
/// The snapshot format this code writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;
const END_TABLE: u8 = 0xff;

/// What a written snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The store revision captured.
    pub revision: i64,
    pub compact_revision: i64,
    /// Bytes written, digest included.
    pub size_bytes: u64,
    /// The trailing SHA-256 digest.
    pub sha256: [u8; 32],
    /// The raft state stored with the data (see [`super::MvccStore::apply`]), read in the same
    /// transaction: what the snapshot's raft metadata must be built from.
    pub raft_state: Option<Vec<u8>>,
}

/// Writes `tables` (all from one read transaction) to `out`.
pub(crate) fn write(tables: &ReadTables, out: &mut dyn Write) -> MvccResult<SnapshotInfo> {
    let mut out = HashingWriter {
        out,
        hasher: Sha256::new(),
        written: 0,
    };
    out.put(&SNAPSHOT_MAGIC)?;
    out.put(&codec::encode_u32(SNAPSHOT_FORMAT_VERSION))?;
    for (id, table) in tables.by_id() {
        for row in table.iter()? {
            let (key, value) = row?;
            out.record(id, key.value(), value.value())?;
        }
    }
    out.record(END_TABLE, &[], &[])?;
    let sha256: [u8; 32] = out.hasher.finalize_reset().into();
    out.out
        .write_all(&sha256)
        .map_err(|source| MvccError::SnapshotIo { source })?;
    out.out
        .flush()
        .map_err(|source| MvccError::SnapshotIo { source })?;
    Ok(SnapshotInfo {
        revision: read_meta_i64(&tables.meta, tables::META_CURRENT_REVISION)?.unwrap_or(1),
        compact_revision: read_meta_i64(&tables.meta, tables::META_COMPACT_REVISION)?.unwrap_or(0),
        size_bytes: out.written + sha256.len() as u64,
        sha256,
        raft_state: tables
            .meta
            .get(tables::META_RAFT_STATE)?
            .map(|row| row.value().to_vec()),
    })
}

struct HashingWriter<'a> {
    out: &'a mut dyn Write,
    hasher: Sha256,
    written: u64,
}

impl HashingWriter<'_> {
    fn put(&mut self, bytes: &[u8]) -> MvccResult<()> {
        self.out
            .write_all(bytes)
            .map_err(|source| MvccError::SnapshotIo { source })?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn record(&mut self, table: u8, key: &[u8], value: &[u8]) -> MvccResult<()> {
        let too_long = || MvccError::InvalidSnapshot {
            what: "row longer than 4 GiB",
        };
        self.put(&[table])?;
        self.put(&codec::encode_u32(
            u32::try_from(key.len()).map_err(|_| too_long())?,
        ))?;
        self.put(key)?;
        self.put(&codec::encode_u32(
            u32::try_from(value.len()).map_err(|_| too_long())?,
        ))?;
        self.put(value)
    }
}

/// Reads a snapshot from `input` into the (empty) tables of `txn`. The caller commits only if
/// this succeeds.
pub(crate) fn restore(txn: &WriteTransaction, input: &mut dyn Read) -> MvccResult<()> {
    let mut input = HashingReader {
        input,
        hasher: Sha256::new(),
    };
    if input.array::<8>()? != SNAPSHOT_MAGIC {
        return Err(MvccError::InvalidSnapshot { what: "bad magic" });
    }
    let version = codec::decode_u32(input.array()?);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(MvccError::SnapshotVersion {
            found: version,
            expected: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let mut opened = Vec::with_capacity(tables::ALL.len());
    for (id, definition) in tables::ALL {
        opened.push((id, txn.open_table(definition)?));
    }
    loop {
        let [id] = input.array()?;
        let key = input.sized()?;
        let value = input.sized()?;
        if id == END_TABLE {
            if !key.is_empty() || !value.is_empty() {
                return Err(MvccError::InvalidSnapshot {
                    what: "bad terminating record",
                });
            }
            break;
        }
        let (_, table) = opened
            .iter_mut()
            .find(|(table_id, _)| *table_id == id)
            .ok_or(MvccError::InvalidSnapshot {
                what: "unknown table id",
            })?;
        table.insert(key.as_slice(), value.as_slice())?;
    }
    let expected: [u8; 32] = input.hasher.finalize_reset().into();
    let mut digest = [0; 32];
    read_exact(input.input, &mut digest)?;
    if digest != expected {
        return Err(MvccError::InvalidSnapshot {
            what: "SHA-256 mismatch",
        });
    }
    // Only zero padding may follow: the Snapshot RPC pads the stream to etcd's 512-byte
    // alignment (see docs/architecture.md, "Snapshot format").
    let mut trailing = [0; 512];
    loop {
        match input.input.read(&mut trailing) {
            Ok(0) => return Ok(()),
            Ok(n) if trailing[..n].iter().all(|b| *b == 0) => {}
            Ok(_) => {
                return Err(MvccError::InvalidSnapshot {
                    what: "data after the digest",
                });
            }
            Err(source) => return Err(MvccError::SnapshotIo { source }),
        }
    }
}

struct HashingReader<'a> {
    input: &'a mut dyn Read,
    hasher: Sha256,
}

impl HashingReader<'_> {
    fn array<const N: usize>(&mut self) -> MvccResult<[u8; N]> {
        let mut bytes = [0; N];
        read_exact(self.input, &mut bytes)?;
        self.hasher.update(bytes);
        Ok(bytes)
    }

    /// A `u32 BE` length followed by that many bytes.
    fn sized(&mut self) -> MvccResult<Vec<u8>> {
        let len = codec::decode_u32(self.array()?);
        let mut bytes = Vec::new();
        let read = (&mut *self.input)
            .take(u64::from(len))
            .read_to_end(&mut bytes)
            .map_err(|source| MvccError::SnapshotIo { source })?;
        if read != len as usize {
            return Err(MvccError::InvalidSnapshot { what: "truncated" });
        }
        self.hasher.update(&bytes);
        Ok(bytes)
    }
}

fn read_exact(input: &mut dyn Read, bytes: &mut [u8]) -> MvccResult<()> {
    input.read_exact(bytes).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            MvccError::InvalidSnapshot { what: "truncated" }
        } else {
            MvccError::SnapshotIo { source }
        }
    })
}
