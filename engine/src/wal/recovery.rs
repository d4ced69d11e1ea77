//! Opening a WAL directory: find the segments, verify every record, repair a torn tail.
//!
//! - Sealed segments (all but the last) must decode completely; any bad frame is
//!   [`WalError::Corrupt`], because their records were acknowledged.
//! - The last segment may end in a torn write (short frame, bad crc, zero-filled tail): it is
//!   truncated after its last good record, with a warning. If nothing good remains it is deleted.
//! - Segments wholly at or below the purge marker (left by a crash during a purge) are deleted.
//! - Leftover `*.tmp` files from an interrupted auxiliary-file write are deleted.
//! - The remaining segments must form one consecutive run of indexes.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{IoContext, WalError, WalResult};
use super::record;
use super::segment::{self, Segment, SegmentData, map_sealed};
use super::writer::Active;
use super::{PURGED_FILE, aux_file};

/// What was found on disk, ready to serve.
pub struct Recovered {
    pub segments: Vec<Segment>,
    pub active: Option<Active>,
    pub purged: Option<u64>,
    pub next_seq: u64,
}

struct Found {
    seq: u64,
    first_index: u64,
    path: PathBuf,
}

pub fn recover(dir: &Path, dir_file: &File) -> WalResult<Recovered> {
    let mut found = list(dir, dir_file)?;
    let purged = read_purge_marker(dir)?;
    let next_seq = found.last().map_or(0, |f| f.seq + 1);

    // A crash during a purge may leave segments that are wholly purged.
    if let Some(p) = purged {
        while found.len() >= 2 && found[1].first_index <= p.saturating_add(1) {
            let gone = found.remove(0);
            fs::remove_file(&gone.path).at(&gone.path)?;
        }
        dir_file.sync_all().at(dir)?;
    }

    let mut segments = Vec::with_capacity(found.len());
    let mut active = None;
    let count = found.len();
    for (k, f) in found.into_iter().enumerate() {
        if k + 1 < count {
            segments.push(open_sealed(f)?);
        } else if let Some((segment, a)) = open_last(f, dir, dir_file)? {
            segments.push(segment);
            active = Some(a);
        }
    }

    if let (Some(p), Some(last)) = (purged, segments.last())
        && last.last_index().is_none_or(|l| l <= p)
        && segments.len() == 1
    {
        let path = last.path.clone();
        segments.clear();
        active = None;
        fs::remove_file(&path).at(&path)?;
        dir_file.sync_all().at(dir)?;
    }

    for pair in segments.windows(2) {
        let expected = pair[0].end_index();
        if pair[1].first_index != expected {
            return Err(WalError::Gap {
                segment: pair[1].path.clone(),
                expected,
                found: pair[1].first_index,
            });
        }
    }

    Ok(Recovered {
        segments,
        active,
        purged,
        next_seq,
    })
}

/// Lists the segments in sequence order and removes leftover temp files.
fn list(dir: &Path, dir_file: &File) -> WalResult<Vec<Found>> {
    let mut found = Vec::new();
    let mut removed_tmp = false;
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(aux_file::TMP_SUFFIX) {
            fs::remove_file(entry.path()).at(&entry.path())?;
            removed_tmp = true;
        } else if name.ends_with(segment::SUFFIX) {
            let (seq, first_index) =
                segment::parse_file_name(name).ok_or_else(|| WalError::BadFileName {
                    name: name.to_owned(),
                })?;
            found.push(Found {
                seq,
                first_index,
                path: entry.path(),
            });
        }
    }
    if removed_tmp {
        dir_file.sync_all().at(dir)?;
    }
    found.sort_by_key(|f| f.seq);
    Ok(found)
}

fn read_purge_marker(dir: &Path) -> WalResult<Option<u64>> {
    let Some(data) = aux_file::read(dir, PURGED_FILE)? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = data.as_ref().try_into().map_err(|_| WalError::CorruptAux {
        path: dir.join(PURGED_FILE),
    })?;
    Ok(Some(u64::from_le_bytes(bytes)))
}

fn open_sealed(f: Found) -> WalResult<Segment> {
    let file = File::open(&f.path).at(&f.path)?;
    let data = map_sealed(&file, &f.path)?;
    let scan = match &data {
        SegmentData::Sealed(map) => record::scan(map),
        SegmentData::Active(_) | SegmentData::Empty => record::Scan {
            bad: Some((0, record::BadFrame::ShortHeader)),
            ..record::Scan::default()
        },
    };
    if let Some((offset, _)) = scan.bad {
        return Err(WalError::Corrupt {
            segment: f.path,
            offset,
        });
    }
    Ok(Segment {
        seq: f.seq,
        first_index: f.first_index,
        path: f.path,
        records: scan.records,
        data,
    })
}

/// Opens the last segment for appending, cutting a torn tail; `None` if nothing good remains
/// (the file is then deleted).
fn open_last(f: Found, dir: &Path, dir_file: &File) -> WalResult<Option<(Segment, Active)>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f.path)
        .at(&f.path)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).at(&f.path)?;
    let scan = record::scan(&data);
    drop(data);
    if let Some((offset, reason)) = scan.bad {
        tracing::warn!(
            segment = %f.path.display(),
            offset,
            ?reason,
            "truncating torn or corrupt tail of the last wal segment"
        );
        file.set_len(offset).at(&f.path)?;
        file.sync_all().at(&f.path)?;
    }
    if scan.records.is_empty() {
        drop(file);
        fs::remove_file(&f.path).at(&f.path)?;
        dir_file.sync_all().at(dir)?;
        return Ok(None);
    }
    let size = scan.valid_len();
    let count = scan.records.len() as u64;
    let file = Arc::new(file);
    let segment = Segment {
        seq: f.seq,
        first_index: f.first_index,
        path: f.path.clone(),
        records: scan.records,
        data: SegmentData::Active(Arc::clone(&file)),
    };
    let active = Active {
        seq: f.seq,
        first_index: f.first_index,
        path: f.path,
        file,
        size,
        count,
    };
    Ok(Some((segment, active)))
}
