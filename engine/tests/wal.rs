//! The write-ahead log on real files: framing, recovery of torn tails, segment roll-over,
//! truncation, purge and group commit. Every test reopens the log and checks that the state it
//! reads back is the state it had before closing.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_engine::wal::{Wal, WalError, WalOptions};

/// Frame header size: `[len u32][crc u32]`.
const HEADER: u64 = 8;

fn payload(i: u64, tag: &str) -> Bytes {
    Bytes::from(format!("{tag}-{i:08}"))
}

fn records(range: std::ops::RangeInclusive<u64>, tag: &str) -> Vec<(u64, Bytes)> {
    range.map(|i| (i, payload(i, tag))).collect()
}

fn small_segments(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

/// Everything a reader can observe.
#[derive(Debug, PartialEq)]
struct State {
    first: Option<u64>,
    last: Option<u64>,
    purged: Option<u64>,
    records: Vec<(u64, Bytes)>,
}

fn state(wal: &Wal) -> State {
    State {
        first: wal.first_index(),
        last: wal.last_index(),
        purged: wal.purged_index(),
        records: wal.read(..).unwrap(),
    }
}

/// Closes `wal`, opens the directory again and checks nothing observable changed.
fn reopen(wal: Wal, options: &WalOptions) -> Wal {
    let dir = wal.dir().to_path_buf();
    let before = state(&wal);
    drop(wal);
    let wal = Wal::open(&dir, options.clone()).unwrap();
    assert_eq!(state(&wal), before, "state changed across reopen");
    wal
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// (seq, first index) from a segment file name.
fn parse_segment(path: &Path) -> (u64, u64) {
    let name = path.file_stem().unwrap().to_str().unwrap();
    let (seq, first) = name.split_once('-').unwrap();
    (
        u64::from_str_radix(seq, 16).unwrap(),
        u64::from_str_radix(first, 16).unwrap(),
    )
}

fn last_segment(dir: &Path) -> PathBuf {
    segment_files(dir).pop().unwrap()
}

fn append_to_file(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn append_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default();
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&wal).records, vec![]);

    wal.append(records(1..=50, "a")).wait().unwrap();
    wal.append(records(51..=100, "a")).wait().unwrap();
    assert_eq!(wal.read(..).unwrap(), records(1..=100, "a"));
    assert_eq!(wal.read(10..13).unwrap(), records(10..=12, "a"));
    assert_eq!(wal.read(90..1000).unwrap(), records(90..=100, "a"));
    assert_eq!(wal.read(0..5).unwrap(), records(1..=4, "a"));
    assert_eq!(wal.get(7).unwrap(), Some(payload(7, "a")));
    assert_eq!(wal.get(101).unwrap(), None);
    assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(100)));

    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), records(1..=100, "a"));
    wal.append(records(101..=101, "a")).wait().unwrap();
    reopen(wal, &options);
}

#[test]
fn appends_are_readable_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let completions: Vec<_> = (1..=200).map(|i| wal.append(records(i..=i, "p"))).collect();
    // Some of these are still queued for the writer: they are served from memory.
    assert_eq!(wal.read(..).unwrap(), records(1..=200, "p"));
    for c in completions {
        c.wait().unwrap();
    }
    assert_eq!(wal.read(..).unwrap(), records(1..=200, "p"));
}

#[test]
fn appends_must_be_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    // An empty, never purged log starts anywhere.
    wal.append(records(5..=6, "c")).wait().unwrap();
    assert!(matches!(
        wal.append(records(8..=8, "c")).wait(),
        Err(WalError::NonContiguous {
            expected: 7,
            found: 8
        })
    ));
    assert!(matches!(
        wal.append(records(6..=6, "c")).wait(),
        Err(WalError::NonContiguous {
            expected: 7,
            found: 6
        })
    ));
    assert!(matches!(
        wal.append(vec![(7, Bytes::new())]).wait(),
        Err(WalError::EmptyRecord)
    ));
    // Rejected appends leave no trace.
    assert_eq!(wal.read(..).unwrap(), records(5..=6, "c"));
    wal.append(records(7..=7, "c")).wait().unwrap();
}

#[test]
fn torn_tail_short_frame_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default();
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=10, "t")).wait().unwrap();
    drop(wal);

    // Cut the last record in half.
    let path = last_segment(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 5).unwrap();
    drop(file);

    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(wal.read(..).unwrap(), records(1..=9, "t"));
    assert_eq!(wal.last_index(), Some(9));
    let frame = HEADER + payload(10, "t").len() as u64;
    assert_eq!(fs::metadata(&path).unwrap().len(), len - frame);

    // The log continues where the good records end.
    wal.append(records(10..=12, "u")).wait().unwrap();
    let wal = reopen(wal, &options);
    let mut want = records(1..=9, "t");
    want.extend(records(10..=12, "u"));
    assert_eq!(wal.read(..).unwrap(), want);
}

#[test]
fn torn_tail_of_garbage_or_zeros_is_truncated_on_open() {
    for tail in [
        b"\x10\x00\x00\x00garbage-that-is-not-a-record".to_vec(),
        vec![0u8; 4096],
        vec![0xff; 3],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions::default();
        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        wal.append(records(1..=10, "g")).wait().unwrap();
        drop(wal);

        let path = last_segment(dir.path());
        let len = fs::metadata(&path).unwrap().len();
        append_to_file(&path, &tail);

        let wal = Wal::open(dir.path(), options.clone()).unwrap();
        assert_eq!(wal.read(..).unwrap(), records(1..=10, "g"));
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        wal.append(records(11..=11, "g")).wait().unwrap();
        reopen(wal, &options);
    }
}

#[test]
fn torn_first_record_of_last_segment_removes_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(64);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=6, "f")).wait().unwrap();
    drop(wal);
    let before = segment_files(dir.path());
    assert!(before.len() >= 2);

    // Zero the last segment: nothing good remains in it.
    let path = before.last().unwrap();
    let (_, first) = parse_segment(path);
    let len = fs::metadata(path).unwrap().len();
    fs::write(path, vec![0u8; len as usize]).unwrap();

    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(wal.read(..).unwrap(), records(1..=first - 1, "f"));
    assert_eq!(segment_files(dir.path()).len(), before.len() - 1);
    // Appending continues in a fresh segment.
    wal.append(records(first..=first + 3, "n")).wait().unwrap();
    let wal = reopen(wal, &options);
    assert_eq!(wal.last_index(), Some(first + 3));
}

#[test]
fn corrupt_record_in_the_last_segment_truncates_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default();
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=10, "m")).wait().unwrap();
    drop(wal);

    // Flip a payload byte of record 5 (all records have the same size).
    let frame = HEADER + payload(1, "m").len() as u64;
    let path = last_segment(dir.path());
    let mut data = fs::read(&path).unwrap();
    let offset = 4 * frame;
    data[(offset + HEADER + 2) as usize] ^= 0x55;
    fs::write(&path, &data).unwrap();

    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(wal.read(..).unwrap(), records(1..=4, "m"));
    assert_eq!(fs::metadata(&path).unwrap().len(), offset);
    reopen(wal, &options);
}

#[test]
fn corrupt_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(100);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=20, "s")).wait().unwrap();
    drop(wal);
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);

    let frame = HEADER + payload(1, "s").len() as u64;
    let sealed = &files[0];
    let mut data = fs::read(sealed).unwrap();
    data[(frame + HEADER) as usize] ^= 0x01;
    fs::write(sealed, &data).unwrap();

    match Wal::open(dir.path(), options) {
        Err(WalError::Corrupt { segment, offset }) => {
            assert_eq!(&segment, sealed);
            assert_eq!(offset, frame);
        }
        other => panic!("expected a corrupt-segment error, got {other:?}"),
    }
    // Nothing was repaired or deleted behind the operator's back.
    assert_eq!(segment_files(dir.path()), files);
    assert_eq!(fs::read(sealed).unwrap(), data);
}

#[test]
fn torn_tail_in_a_sealed_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(100);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=20, "s")).wait().unwrap();
    drop(wal);
    let files = segment_files(dir.path());
    let len = fs::metadata(&files[0]).unwrap().len();
    append_to_file(&files[0], &[0u8; 16]);
    assert!(matches!(
        Wal::open(dir.path(), options),
        Err(WalError::Corrupt { offset, .. }) if offset == len
    ));
}

#[test]
fn segments_roll_over_and_are_named_by_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(256);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    for i in 1..=100 {
        wal.append(records(i..=i, "r")).wait().unwrap();
    }
    wal.append(records(101..=200, "r")).wait().unwrap();
    let files = segment_files(dir.path());
    let frame = HEADER + payload(1, "r").len() as u64;
    let per_segment = 256 / frame;
    assert_eq!(files.len() as u64, 200_u64.div_ceil(per_segment));
    let mut next_first = 1;
    for (k, file) in files.iter().enumerate() {
        let (seq, first) = parse_segment(file);
        assert_eq!(seq, k as u64);
        assert_eq!(first, next_first);
        let len = fs::metadata(file).unwrap().len();
        assert!(len <= 256);
        next_first += len / frame;
    }
    assert_eq!(next_first, 201);
    assert_eq!(wal.segment_count(), files.len());
    assert_eq!(wal.read(..).unwrap(), records(1..=200, "r"));
    assert_eq!(wal.read(37..=41).unwrap(), records(37..=41, "r"));

    let wal = reopen(wal, &options);
    wal.append(records(201..=230, "r")).wait().unwrap();
    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), records(1..=230, "r"));
}

#[test]
fn oversized_record_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(64);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    let big = Bytes::from(vec![7u8; 1000]);
    wal.append(vec![
        (1, payload(1, "x")),
        (2, big.clone()),
        (3, payload(3, "x")),
    ])
    .wait()
    .unwrap();
    assert_eq!(segment_files(dir.path()).len(), 3);
    let wal = reopen(wal, &options);
    assert_eq!(wal.get(2).unwrap(), Some(big));
}

#[test]
fn purge_deletes_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(100);
    let frame = HEADER + payload(1, "p").len() as u64;
    let per_segment = 100 / frame;
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=30, "p")).wait().unwrap();
    let files = segment_files(dir.path());

    // Purge up to the middle of the third segment: the first two go, the third stays.
    let upto = 2 * per_segment + 2;
    wal.purge(upto).wait().unwrap();
    let left = segment_files(dir.path());
    assert_eq!(left, files[2..].to_vec());
    assert_eq!(parse_segment(&left[0]).1, 2 * per_segment + 1);
    assert_eq!(wal.first_index(), Some(upto + 1));
    assert_eq!(wal.purged_index(), Some(upto));
    assert_eq!(wal.read(..).unwrap(), records(upto + 1..=30, "p"));
    assert_eq!(wal.get(upto).unwrap(), None);
    let wal = reopen(wal, &options);

    // Purging an index at or below the purge point changes nothing.
    wal.purge(1).wait().unwrap();
    assert_eq!(wal.purged_index(), Some(upto));
    let wal = reopen(wal, &options);

    // Purging everything deletes every segment; the log continues right after the purge point.
    wal.purge(40).wait().unwrap();
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!((wal.first_index(), wal.last_index()), (None, None));
    assert!(matches!(
        wal.append(records(31..=31, "p")).wait(),
        Err(WalError::NonContiguous {
            expected: 41,
            found: 31
        })
    ));
    let wal = reopen(wal, &options);
    wal.append(records(41..=45, "q")).wait().unwrap();
    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), records(41..=45, "q"));
    assert_eq!(wal.first_index(), Some(41));
}

#[test]
fn interrupted_purge_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(100);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=30, "i")).wait().unwrap();
    let files = segment_files(dir.path());
    let saved: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| (f.clone(), fs::read(f).unwrap()))
        .collect();
    wal.purge(20).wait().unwrap();
    let after = state(&wal);
    drop(wal);
    // As if the crash came after the purge marker was durable but before the unlinks were.
    for (path, data) in &saved {
        fs::write(path, data).unwrap();
    }
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(state(&wal), after);
    assert!(parse_segment(&segment_files(dir.path())[0]).1 <= 21);
    assert!(segment_files(dir.path()).len() < files.len());
    reopen(wal, &options);
}

#[test]
fn truncate_after_then_append_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let options = small_segments(100);
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(1..=40, "old")).wait().unwrap();
    let segments_before = segment_files(dir.path()).len();

    // Cut inside the active segment.
    wal.truncate_after(Some(38)).wait().unwrap();
    assert_eq!(wal.read(..).unwrap(), records(1..=38, "old"));
    let wal = reopen(wal, &options);

    // Cut inside a sealed segment, deleting the later ones.
    wal.truncate_after(Some(12)).wait().unwrap();
    assert!(segment_files(dir.path()).len() < segments_before);
    assert_eq!(wal.last_index(), Some(12));
    assert_eq!(wal.read(..).unwrap(), records(1..=12, "old"));
    wal.append(records(13..=25, "new")).wait().unwrap();
    let mut want = records(1..=12, "old");
    want.extend(records(13..=25, "new"));
    assert_eq!(wal.read(..).unwrap(), want);
    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), want);

    // Truncating past the end changes nothing; truncating everything empties the log.
    wal.truncate_after(Some(100)).wait().unwrap();
    assert_eq!(wal.read(..).unwrap(), want);
    wal.truncate_after(None).wait().unwrap();
    assert!(segment_files(dir.path()).is_empty());
    assert_eq!(wal.read(..).unwrap(), vec![]);
    let wal = reopen(wal, &options);
    wal.append(records(7..=9, "again")).wait().unwrap();
    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), records(7..=9, "again"));
}

#[test]
fn truncate_then_append_without_waiting_reads_the_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(records(1..=10, "old")).wait().unwrap();
    let truncated = wal.truncate_after(Some(5));
    // A queued truncation hides the records at once.
    assert_eq!(wal.read(..).unwrap(), records(1..=5, "old"));
    assert_eq!(wal.last_index(), Some(5));
    let appended = wal.append(records(6..=8, "new"));
    let mut want = records(1..=5, "old");
    want.extend(records(6..=8, "new"));
    assert_eq!(wal.read(..).unwrap(), want);
    truncated.wait().unwrap();
    appended.wait().unwrap();
    assert_eq!(wal.read(..).unwrap(), want);
    reopen(wal, &WalOptions::default());
}

#[test]
fn purge_and_truncate_in_one_segment_log() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default();
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    wal.append(records(0..=10, "o")).wait().unwrap();
    wal.purge(3).wait().unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), records(4..=10, "o"));
    wal.truncate_after(Some(6)).wait().unwrap();
    let wal = reopen(wal, &options);
    assert_eq!(wal.read(..).unwrap(), records(4..=6, "o"));
}

#[test]
fn auxiliary_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions::default();
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    assert_eq!(wal.read_aux("raft-meta").unwrap(), None);
    wal.write_aux("raft-meta", Bytes::from_static(b"v1"))
        .wait()
        .unwrap();
    wal.write_aux("raft-meta", Bytes::from_static(b"v2"))
        .wait()
        .unwrap();
    assert!(matches!(
        wal.write_aux("x.wal", Bytes::from_static(b"v")).wait(),
        Err(WalError::BadAuxName { .. })
    ));
    let wal = reopen(wal, &options);
    assert_eq!(
        wal.read_aux("raft-meta").unwrap().as_deref(),
        Some(&b"v2"[..])
    );
}

#[test]
fn a_directory_is_opened_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Locked { .. })
    ));
    drop(wal);
    Wal::open(dir.path(), WalOptions::default()).unwrap();
}

#[test]
fn concurrent_appends_share_fsyncs() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 100;
    // On the real disk under target/, not a tmpfs, so fsync has its real cost.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let fsync_observed = Arc::new(Mutex::new(0u64));
    let observed = Arc::clone(&fsync_observed);
    let options = WalOptions {
        on_fsync: Some(Arc::new(move |_| {
            *observed.lock().unwrap() += 1;
        })),
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(dir.path(), options).unwrap());
    let next = Arc::new(Mutex::new(1u64));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let wal = Arc::clone(&wal);
            let next = Arc::clone(&next);
            std::thread::spawn(move || {
                for _ in 0..PER_THREAD {
                    let completion = {
                        let mut next = next.lock().unwrap();
                        let index = *next;
                        *next += 1;
                        wal.append(records(index..=index, "gc"))
                    };
                    completion.wait().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let appends = THREADS * PER_THREAD;
    let stats = wal.stats();
    assert_eq!(stats.entry_count(), appends);
    assert!(stats.fsync_count() > 0);
    assert!(
        stats.fsync_count() < appends,
        "{} fsyncs for {appends} appends",
        stats.fsync_count()
    );
    assert_eq!(*fsync_observed.lock().unwrap(), stats.fsync_count());
    assert!(stats.fsync_seconds() > 0.0);
    assert_eq!(wal.read(..).unwrap(), records(1..=appends, "gc"));
}
