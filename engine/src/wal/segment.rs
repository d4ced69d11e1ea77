//! One segment file: its name, its record index and how its bytes are read.
//!
//! A segment is named `SSSSSSSSSSSSSSSS-IIIIIIIIIIIIIIII.wal`: its sequence number and the raft
//! index of its first record, both as 16 lower-case hex digits, so that names sort in log order.
//! Record `k` of a segment holds raft index `first_index + k`.
//!
//! The last segment is *active*: the writer appends to it and readers use positional reads. Every
//! other segment is *sealed*: fully written and synced, never written again, and read through a
//! memory map. (Truncation may cut a sealed segment; it drops the map first, under the index's
//! write lock, and maps the shorter file again.)

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;

use super::error::{IoContext, WalError, WalResult};
use super::record::{self, HEADER_LEN, RecordPos};

/// File name suffix of segments.
pub const SUFFIX: &str = ".wal";

/// The file name of segment `seq` starting at raft index `first_index`.
pub fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SUFFIX}")
}

/// Parses a segment file name into `(seq, first_index)`.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (seq, first) = stem.split_once('-')?;
    if seq.len() != 16 || first.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(first, 16).ok()?,
    ))
}

/// How a segment's bytes are reached.
pub enum SegmentData {
    /// Immutable, memory-mapped.
    Sealed(Mmap),
    /// Being appended to; read with `pread`. The writer holds another handle to the same file.
    Active(Arc<File>),
    /// Sealed but empty (nothing to map).
    Empty,
}

/// A segment as the shared index knows it: only records that are written and synced.
pub struct Segment {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
    pub records: Vec<RecordPos>,
    pub data: SegmentData,
}

impl Segment {
    /// The raft index after the last record.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.records.len() as u64
    }

    /// The raft index of the last record, if any.
    pub fn last_index(&self) -> Option<u64> {
        self.end_index()
            .checked_sub(1)
            .filter(|_| !self.records.is_empty())
    }

    /// The record holding raft `index`, if this segment has it.
    pub fn record(&self, index: u64) -> Option<RecordPos> {
        let k = usize::try_from(index.checked_sub(self.first_index)?).ok()?;
        self.records.get(k).copied()
    }

    /// Reads and verifies the payload of `pos`.
    pub fn read(&self, pos: RecordPos) -> WalResult<Bytes> {
        let corrupt = || WalError::Corrupt {
            segment: self.path.clone(),
            offset: pos.offset,
        };
        let frame_len = HEADER_LEN + pos.len as usize;
        match &self.data {
            SegmentData::Sealed(map) => {
                let start = usize::try_from(pos.offset).map_err(|_| corrupt())?;
                let frame = map.get(start..start + frame_len).ok_or_else(corrupt)?;
                let payload = record::decode(frame).map_err(|_| corrupt())?;
                Ok(Bytes::copy_from_slice(payload))
            }
            SegmentData::Active(file) => {
                let mut frame = vec![0u8; frame_len];
                file.read_exact_at(&mut frame, pos.offset).at(&self.path)?;
                let payload_len = record::decode(&frame).map_err(|_| corrupt())?.len();
                if payload_len != pos.len as usize {
                    return Err(corrupt());
                }
                let mut frame = Bytes::from(frame);
                Ok(frame.split_off(HEADER_LEN))
            }
            SegmentData::Empty => Err(corrupt()),
        }
    }

    /// Seals this segment: maps `file` (whose content must be final) for reads.
    pub fn seal(&mut self, file: &File) -> WalResult<()> {
        self.data = map_sealed(file, &self.path)?;
        Ok(())
    }
}

/// Maps a sealed segment for reading.
#[allow(unsafe_code)]
pub fn map_sealed(file: &File, path: &Path) -> WalResult<SegmentData> {
    let len = file.metadata().at(path)?.len();
    if len == 0 {
        return Ok(SegmentData::Empty);
    }
    // SAFETY: a sealed segment is never written again while it is mapped. The writer only maps a
    // segment after its last write and fsync; truncation (the one operation that shortens a
    // sealed file) first removes the map under the index's write lock, so no reader can touch
    // bytes past the new end; and files are unlinked only after their `Segment` (and so the map)
    // is dropped. Other processes are kept out of the directory by the lock file.
    let map = unsafe { Mmap::map(file) }.at(path)?;
    Ok(SegmentData::Sealed(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        let a = file_name(1, 0xff);
        assert_eq!(a, "0000000000000001-00000000000000ff.wal");
        assert_eq!(parse_file_name(&a), Some((1, 0xff)));
        assert!(file_name(2, 0x100) > a);
        assert_eq!(parse_file_name("0001-00ff.wal"), None);
        assert_eq!(parse_file_name("raft-meta"), None);
    }
}
