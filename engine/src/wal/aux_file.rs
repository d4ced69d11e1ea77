//! Small auxiliary files beside the segments (the purge marker, raft metadata), each holding one
//! framed record and replaced atomically: write `NAME.tmp`, fsync it, rename over `NAME`, fsync
//! the directory. A reader sees the old or the new content, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;

use super::error::{IoContext, WalError, WalResult};
use super::record;

/// Suffix of files being written; removed on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// Whether `name` may be used for an auxiliary file: a plain file name that cannot be mistaken
/// for a segment, a temp file or the lock file.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name != super::LOCK_FILE
}

/// Replaces `dir/name` with one framed record holding `data`, durably.
pub fn write_atomic(dir: &Path, dir_file: &File, name: &str, data: &[u8]) -> WalResult<()> {
    if data.is_empty() || data.len() > record::MAX_PAYLOAD_LEN {
        return Err(WalError::RecordTooLarge {
            len: data.len(),
            max: record::MAX_PAYLOAD_LEN,
        });
    }
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let mut frame = Vec::new();
    record::encode_into(&mut frame, data);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .at(&tmp)?;
    file.write_all(&frame).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    fs::rename(&tmp, &path).at(&path)?;
    dir_file.sync_all().at(dir)
}

/// Reads the record in `dir/name`; `None` if the file does not exist.
pub fn read(dir: &Path, name: &str) -> WalResult<Option<Bytes>> {
    let path = dir.join(name);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io(path, e)),
    };
    match record::decode(&data) {
        Ok(payload) if record::frame_len(payload.len()) == data.len() as u64 => {
            Ok(Some(Bytes::copy_from_slice(payload)))
        }
        _ => Err(WalError::CorruptAux { path }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let dir_file = File::open(dir.path()).unwrap();
        assert_eq!(read(dir.path(), "meta").unwrap(), None);
        write_atomic(dir.path(), &dir_file, "meta", b"one").unwrap();
        write_atomic(dir.path(), &dir_file, "meta", b"two").unwrap();
        assert_eq!(
            read(dir.path(), "meta").unwrap().as_deref(),
            Some(&b"two"[..])
        );
        assert!(!dir.path().join("meta.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let dir_file = File::open(dir.path()).unwrap();
        write_atomic(dir.path(), &dir_file, "meta", b"payload").unwrap();
        let path = dir.path().join("meta");
        let mut data = fs::read(&path).unwrap();
        data[9] ^= 0xff;
        fs::write(&path, &data).unwrap();
        assert!(matches!(
            read(dir.path(), "meta"),
            Err(WalError::CorruptAux { .. })
        ));
    }

    #[test]
    fn names() {
        assert!(valid_name("raft-meta"));
        assert!(!valid_name("x.wal"));
        assert!(!valid_name("../x"));
        assert!(!valid_name(""));
    }
}
