//! The writer thread: the only code that writes segment files.
//!
//! It takes every queued operation at once, writes the appends' frames with one `pwrite` per
//! segment, and covers them with ONE `fdatasync` before completing their callbacks (group
//! commit). Truncation, purge, auxiliary-file writes and flushes are barriers: queued appends
//! before them are synced and completed first, so every write is applied in submission order.
//!
//! ```text
//!  submitters ──Op──► channel ──► recv + try_iter (the batch)
//!                                   │ appends: frame, pwrite        ─┐
//!                                   │ other op: sync appends, run op │ fdatasync once,
//!                                   ▼ end of batch                  ─┘ publish to index, callbacks
//! ```
//!
//! After any I/O failure the writer stops accepting work: a failed `fdatasync` may have dropped
//! dirty pages, and retrying it can report success for data that is gone.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;

use super::error::{IoContext, WalError, WalResult};
use super::index::{Shared, write_lock};
use super::record::{self, RecordPos};
use super::segment::{self, Segment, SegmentData};
use super::{PURGED_FILE, WalOptions, WalStats, aux_file};

/// Completion callback of an operation. Runs on the writer thread: it must not block.
pub type Done = Box<dyn FnOnce(WalResult<()>) + Send>;

/// Work for the writer thread.
pub enum Op {
    Append {
        ticket: u64,
        entries: Vec<(u64, Bytes)>,
        done: Done,
    },
    TruncateAfter {
        index: Option<u64>,
        done: Done,
    },
    Purge {
        upto: u64,
        done: Done,
    },
    WriteAux {
        name: String,
        data: Bytes,
        done: Done,
    },
    Flush {
        done: Done,
    },
}

impl Op {
    fn complete(self, result: WalResult<()>) {
        let done = match self {
            Op::Append { done, .. }
            | Op::TruncateAfter { done, .. }
            | Op::Purge { done, .. }
            | Op::WriteAux { done, .. }
            | Op::Flush { done } => done,
        };
        done(result);
    }
}

/// The segment being appended to.
pub struct Active {
    pub seq: u64,
    pub first_index: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes written or buffered.
    pub size: u64,
    /// Records written or buffered.
    pub count: u64,
}

/// A record written but not yet visible in the shared index.
struct Unpublished {
    seq: u64,
    index: u64,
    pos: RecordPos,
    ticket: u64,
}

pub struct Writer {
    pub dir: PathBuf,
    pub dir_file: File,
    pub shared: Arc<RwLock<Shared>>,
    pub stats: Arc<WalStats>,
    pub options: WalOptions,
    pub active: Option<Active>,
    pub next_seq: u64,
    /// Frames of `active` not yet written; they end at `active.size`.
    buf: Vec<u8>,
    /// Whether `active` has writes not covered by an fdatasync.
    dirty: bool,
    unpublished: Vec<Unpublished>,
    waiters: Vec<Done>,
    failed: Option<WalError>,
}

impl Writer {
    pub fn new(
        dir: PathBuf,
        dir_file: File,
        shared: Arc<RwLock<Shared>>,
        stats: Arc<WalStats>,
        options: WalOptions,
        active: Option<Active>,
        next_seq: u64,
    ) -> Self {
        Self {
            dir,
            dir_file,
            shared,
            stats,
            options,
            active,
            next_seq,
            buf: Vec::new(),
            dirty: false,
            unpublished: Vec::new(),
            waiters: Vec::new(),
            failed: None,
        }
    }

    /// Serves `rx` until every sender is gone.
    pub fn run(mut self, rx: &Receiver<Op>) {
        while let Ok(op) = rx.recv() {
            self.handle(op);
            for op in rx.try_iter() {
                self.handle(op);
            }
            self.stats.record_batch();
            self.finish_appends();
        }
    }

    fn handle(&mut self, op: Op) {
        if let Some(cause) = &self.failed {
            op.complete(Err(WalError::Failed {
                cause: Box::new(cause.clone()),
            }));
            return;
        }
        match op {
            Op::Append {
                ticket,
                entries,
                done,
            } => match self.write_entries(ticket, entries) {
                Ok(()) => self.waiters.push(done),
                Err(e) => {
                    self.fail(&e);
                    done(Err(e));
                }
            },
            other => {
                self.finish_appends();
                if self.failed.is_some() {
                    return self.handle(other);
                }
                let result = match &other {
                    Op::TruncateAfter { index, .. } => self.truncate_after(*index),
                    Op::Purge { upto, .. } => self.purge(*upto),
                    Op::WriteAux { name, data, .. } => {
                        aux_file::write_atomic(&self.dir, &self.dir_file, name, data)
                    }
                    Op::Flush { .. } | Op::Append { .. } => Ok(()),
                };
                if let Err(e) = &result {
                    self.fail(e);
                }
                other.complete(result);
            }
        }
    }

    /// Stops the log: later operations fail with `cause`; unsynced appends are dropped.
    fn fail(&mut self, cause: &WalError) {
        tracing::error!(error = %cause, dir = %self.dir.display(), "wal failed; refusing further writes");
        self.failed = Some(cause.clone());
        self.unpublished.clear();
        self.buf.clear();
        let mut shared = write_lock(&self.shared);
        shared.failed = Some(cause.clone());
        shared.pending.clear();
        drop(shared);
        for done in self.waiters.drain(..) {
            done(Err(cause.clone()));
        }
    }

    fn write_entries(&mut self, ticket: u64, entries: Vec<(u64, Bytes)>) -> WalResult<()> {
        for (index, payload) in entries {
            let frame_len = record::frame_len(payload.len());
            if self
                .active
                .as_ref()
                .is_some_and(|a| a.count > 0 && a.size + frame_len > self.options.segment_size)
            {
                self.roll()?;
            }
            let mut active = match self.active.take() {
                Some(active) => active,
                None => self.create_segment(index)?,
            };
            let expected = active.first_index + active.count;
            if index != expected {
                self.active = Some(active);
                return Err(WalError::NonContiguous {
                    expected,
                    found: index,
                });
            }
            let pos = RecordPos {
                offset: active.size,
                len: payload.len() as u32,
            };
            record::encode_into(&mut self.buf, &payload);
            active.size += frame_len;
            active.count += 1;
            self.stats.record_append(payload.len());
            self.unpublished.push(Unpublished {
                seq: active.seq,
                index,
                pos,
                ticket,
            });
            self.active = Some(active);
        }
        Ok(())
    }

    /// Writes buffered frames to the active segment.
    fn write_buf(&mut self) -> WalResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(active) = &self.active else {
            return Ok(());
        };
        let offset = active.size - self.buf.len() as u64;
        active
            .file
            .write_all_at(&self.buf, offset)
            .at(&active.path)?;
        self.buf.clear();
        self.dirty = true;
        Ok(())
    }

    /// Makes everything written to the active segment durable.
    fn sync_active(&mut self) -> WalResult<()> {
        self.write_buf()?;
        if !self.dirty {
            return Ok(());
        }
        if let Some(active) = &self.active {
            let started = Instant::now();
            active.file.sync_data().at(&active.path)?;
            let elapsed = started.elapsed();
            self.stats.record_fsync(elapsed);
            if let Some(observe) = &self.options.on_fsync {
                observe(elapsed);
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// Syncs the written appends, makes them visible in the index and completes them.
    fn finish_appends(&mut self) {
        if self.waiters.is_empty() && self.unpublished.is_empty() {
            return;
        }
        if let Err(e) = self.sync_active() {
            self.fail(&e);
            return;
        }
        self.publish();
        for done in self.waiters.drain(..) {
            done(Ok(()));
        }
    }

    fn publish(&mut self) {
        let mut shared = write_lock(&self.shared);
        for u in self.unpublished.drain(..) {
            if let Some(segment) = shared.segments.iter_mut().rev().find(|s| s.seq == u.seq) {
                debug_assert_eq!(segment.end_index(), u.index);
                segment.records.push(u.pos);
            }
            if shared
                .pending
                .get(&u.index)
                .is_some_and(|p| p.ticket == u.ticket)
            {
                shared.pending.remove(&u.index);
            }
        }
    }

    /// Seals the active segment (synced, then mapped for readers); the next append opens a new
    /// one.
    fn roll(&mut self) -> WalResult<()> {
        self.sync_active()?;
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        let mut shared = write_lock(&self.shared);
        if let Some(segment) = shared.segments.iter_mut().find(|s| s.seq == active.seq) {
            segment.seal(&active.file)?;
        }
        Ok(())
    }

    /// Creates the next segment, starting at `first_index`, and shows it (empty) to readers.
    fn create_segment(&mut self, first_index: u64) -> WalResult<Active> {
        let seq = self.next_seq;
        let path = self.dir.join(segment::file_name(seq, first_index));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        self.dir_file.sync_all().at(&self.dir)?;
        self.next_seq += 1;
        let file = Arc::new(file);
        write_lock(&self.shared).segments.push(Segment {
            seq,
            first_index,
            path: path.clone(),
            records: Vec::new(),
            data: SegmentData::Active(Arc::clone(&file)),
        });
        Ok(Active {
            seq,
            first_index,
            path,
            file,
            size: 0,
            count: 0,
        })
    }

    /// Removes every record after `index` (all of them for `None`): later segments are deleted
    /// from the last one backwards, then the segment holding `index + 1` is cut at that record.
    /// A crash part way leaves a shorter log, never a hole.
    fn truncate_after(&mut self, index: Option<u64>) -> WalResult<()> {
        let target = index.map_or(0, |n| n.saturating_add(1));
        let shared = Arc::clone(&self.shared);
        let mut shared = write_lock(&shared);
        while let Some(last) = shared.segments.last_mut() {
            if last.first_index >= target {
                let seq = last.seq;
                let path = last.path.clone();
                // Drop the segment (and its map) before unlinking its file.
                shared.segments.pop();
                if self.active.as_ref().is_some_and(|a| a.seq == seq) {
                    self.active = None;
                }
                fs::remove_file(&path).at(&path)?;
                self.dir_file.sync_all().at(&self.dir)?;
                continue;
            }
            if let Some(pos) = last.record(target) {
                let keep = usize::try_from(target - last.first_index).unwrap_or(usize::MAX);
                if let Some(active) = self.active.as_mut().filter(|a| a.seq == last.seq) {
                    active.file.set_len(pos.offset).at(&active.path)?;
                    active.file.sync_all().at(&active.path)?;
                    active.size = pos.offset;
                    active.count = keep as u64;
                    last.records.truncate(keep);
                } else {
                    // A sealed segment: unmap before shortening the file, map it again after.
                    last.data = SegmentData::Empty;
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&last.path)
                        .at(&last.path)?;
                    file.set_len(pos.offset).at(&last.path)?;
                    file.sync_all().at(&last.path)?;
                    last.records.truncate(keep);
                    last.seal(&file)?;
                }
            }
            break;
        }
        Ok(())
    }

    /// Records `upto` as purged (durably, first), then deletes the segments whose every record
    /// is at or below it.
    fn purge(&mut self, upto: u64) -> WalResult<()> {
        if read_purged(&self.shared).is_some_and(|p| p >= upto) {
            return Ok(());
        }
        aux_file::write_atomic(&self.dir, &self.dir_file, PURGED_FILE, &upto.to_le_bytes())?;
        let shared = Arc::clone(&self.shared);
        let mut shared = write_lock(&shared);
        shared.purged = Some(upto);
        let whole = shared
            .segments
            .iter()
            .take_while(|s| s.end_index() <= upto.saturating_add(1))
            .count();
        let removed: Vec<Segment> = shared.segments.drain(..whole).collect();
        drop(shared);
        if removed.is_empty() {
            return Ok(());
        }
        for segment in removed {
            if self.active.as_ref().is_some_and(|a| a.seq == segment.seq) {
                self.active = None;
            }
            let path = segment.path.clone();
            // The map goes before the file.
            drop(segment);
            fs::remove_file(&path).at(&path)?;
        }
        self.dir_file.sync_all().at(&self.dir)
    }
}

fn read_purged(shared: &RwLock<Shared>) -> Option<u64> {
    super::index::read_lock(shared).purged
}
