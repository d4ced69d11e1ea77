//! `--history-retention`: bounding history by age or size, independently of MVCC compaction.
//!
//! Trimming before revision `N` keeps everything a query at `N` or later can reach:
//! - objects: those reachable from `N`'s tree (marked by a walk of it) and those (re)written by
//!   a batch at or after `N` (the `written` stamp of `backend.rs`); by induction over revisions,
//!   every tree of a kept commit is made of exactly those. So are the trees a kept tree stored
//!   as a delta is resolved through (`delta.rs`), down the chain. The rest is swept: rows
//!   removed, packs rewritten without the swept objects.
//! - `key_log`, `revisions`, `changed`, `operations` rows before `N` go (a key's value at `N`
//!   and the revision that wrote it come from `N`'s tree).
//!
//! The trim is itself recorded, as a jj operation ("trim history before revision N"), and the
//! oldest kept commit keeps its parent id: history before it is simply not there any more.
//! Members trim on their own clocks, so they may keep different amounts of history; the commit
//! ids of what they keep still agree.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;
use std::time::Duration;

use jj_lib::backend::{TreeId, TreeValue};
use jj_lib::object_id::ObjectId;
use redb::{ReadableDatabase, ReadableTable};

use super::backend::{
    Kind, OBJECTS, PACK_GROUPS, PACKS, object_key, packed_object_key, split_object_key,
};
use super::error::{HistoryError, HistoryResult};
use super::index::{self, Head, OperationRecord};
use super::pack;
use super::revision_blocks::{self, RevisionRows};

/// How much history to keep. The default keeps everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Trim revisions older than this.
    pub max_age: Option<Duration>,
    /// Trim the oldest revisions while the history database holds more than this.
    pub max_bytes: Option<u64>,
}

impl Retention {
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

impl std::fmt::Display for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.max_age, self.max_bytes) {
            (None, None) => f.write_str("keep everything"),
            (Some(age), _) => write!(f, "keep {}s", age.as_secs()),
            (None, Some(bytes)) => write!(f, "keep {bytes} bytes"),
        }
    }
}

impl FromStr for Retention {
    type Err = String;

    /// `0` / `all` (keep everything), an age (`90d`, `12h`, `30m`, `45s`) or a size (`10GiB`,
    /// `500MB`, `1048576`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() || text == "0" || text.eq_ignore_ascii_case("all") {
            return Ok(Self::default());
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: expected a number then a unit, like 30d or 10GiB"))?;
        let seconds = |factor: u64| {
            Ok(Self {
                max_age: Some(Duration::from_secs(number.saturating_mul(factor))),
                max_bytes: None,
            })
        };
        let bytes = |factor: u64| {
            Ok(Self {
                max_age: None,
                max_bytes: Some(number.saturating_mul(factor)),
            })
        };
        match unit {
            "s" => seconds(1),
            "m" => seconds(60),
            "h" => seconds(3600),
            "d" => seconds(86_400),
            "w" => seconds(7 * 86_400),
            "" | "B" => bytes(1),
            "KB" => bytes(1000),
            "MB" => bytes(1000 * 1000),
            "GB" => bytes(1000 * 1000 * 1000),
            "KiB" => bytes(1 << 10),
            "MiB" => bytes(1 << 20),
            "GiB" => bytes(1 << 30),
            "TiB" => bytes(1 << 40),
            other => Err(format!(
                "{text:?}: unknown unit {other:?} (ages: s, m, h, d, w; sizes: B, KB, MB, GB, \
                 KiB, MiB, GiB, TiB)"
            )),
        }
    }
}

/// The revision to trim before, if `retention` asks for a trim now.
pub(crate) fn trim_point(
    db: &super::db::HistoryDb,
    head: &Head,
    retention: &Retention,
    now_unix_ms: u64,
) -> HistoryResult<Option<i64>> {
    let oldest = head.oldest_revision.max(2);
    if head.revision <= oldest {
        return Ok(None);
    }
    let txn = db.db.begin_read()?;
    let rows = RevisionRows::open(&txn)?;
    let time_of = |revision: i64| -> HistoryResult<u64> {
        let (record, _) = rows
            .get(revision)?
            .ok_or_else(|| HistoryError::Corrupt(format!("no row for revision {revision}")))?;
        Ok(record.time_unix_ms)
    };
    let mut point = oldest;
    if let Some(age) = retention.max_age {
        let cutoff = now_unix_ms.saturating_sub(age.as_millis() as u64);
        // The first revision at or after the cutoff (times never decrease).
        let (mut low, mut high) = (oldest, head.revision);
        while low < high {
            let middle = low + (high - low) / 2;
            if time_of(middle)? < cutoff {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        point = point.max(low);
    }
    if let Some(max_bytes) = retention.max_bytes {
        let used = used_bytes(db)?;
        if used > max_bytes {
            // Drop the oldest share of revisions that brings the size to 80% of the bound,
            // assuming revisions cost alike.
            let span = head.revision - oldest;
            let keep = (span as f64 * (max_bytes as f64 * 0.8 / used as f64)) as i64;
            point = point.max(head.revision - keep.max(1));
        }
    }
    Ok((point > oldest).then_some(point))
}

/// Bytes the history database holds (live data, not free pages).
pub(crate) fn used_bytes(db: &super::db::HistoryDb) -> HistoryResult<u64> {
    let txn = db.db.begin_write()?;
    let stats = txn.stats()?;
    let used = stats.stored_bytes() + stats.metadata_bytes();
    txn.abort()?;
    Ok(used)
}

/// Trims everything before revision `keep_from`; returns the new head (with the trim's
/// operation recorded).
pub(crate) fn trim(
    db: &super::db::HistoryDb,
    head: &Head,
    keep_from: i64,
    now_unix_ms: u64,
    reason: &str,
) -> HistoryResult<Head> {
    let read = db.db.begin_read()?;
    let (record, _) = RevisionRows::open(&read)?
        .get(keep_from)?
        .ok_or(HistoryError::NoSuchRevision(keep_from))?;
    // Mark what the oldest kept tree reaches.
    let mut marked: HashSet<Vec<u8>> = HashSet::new();
    mark_tree(db, &TreeId::new(record.tree_id.clone()), &mut marked)?;
    // Sweep objects written before `keep_from` that it does not reach, except the bases of the
    // trees kept as deltas (`delta.rs`), down their chains. An object may be both packed and a
    // row of its own (written again later): each copy is judged by when it was written.
    let objects = read.open_table(OBJECTS)?;
    let groups = read.open_table(PACK_GROUPS)?;
    let packs = read.open_table(PACKS)?;
    let mut doomed_rows = HashSet::new();
    let mut doomed_packed = HashSet::new();
    let mut bases = Vec::new();
    for row in objects.iter()? {
        let (key, value) = row?;
        let written = index::decode_i64(value.value()).unwrap_or(i64::MAX);
        if written < keep_from && !marked.contains(key.value()) {
            doomed_rows.insert(key.value().to_vec());
        } else if let Some(base) = key
            .value()
            .first()
            .and_then(|&kind| delta_base(kind, value.value().get(8..)))
        {
            bases.push(base);
        }
    }
    let mut judge_pack = |locator: u64, pack: &[u8]| {
        let written = i64::try_from(locator).unwrap_or(i64::MAX);
        for object in pack::objects(pack) {
            let key = packed_object_key(locator, &object);
            if written < keep_from && !marked.contains(&key) {
                doomed_packed.insert(key);
            } else if let Some(base) = delta_base(object.kind, Some(object.bytes)) {
                bases.push(base);
            }
        }
    };
    for row in groups.iter()? {
        let (_, group) = row?;
        for (locator, pack) in pack::sections(group.value()) {
            judge_pack(locator, pack);
        }
    }
    for row in packs.iter()? {
        let (locator, pack) = row?;
        judge_pack(locator.value(), pack.value());
    }
    while let Some(base) = bases.pop() {
        let spared = doomed_rows.remove(&base) | doomed_packed.remove(&base);
        if spared
            && let Some(next) = db
                .backend
                .stored_object(&base)
                .map_err(HistoryError::storage)?
                .and_then(|bytes| delta_base(Kind::Tree as u8, Some(&bytes)))
        {
            bases.push(next);
        }
    }
    let operations = read.open_table(index::OPERATIONS)?;
    let mut doomed_operations = Vec::new();
    for row in operations.iter()? {
        let (seq, value) = row?;
        let record: OperationRecord = postcard::from_bytes(value.value())
            .map_err(|_| HistoryError::Corrupt("undecodable operation row".to_owned()))?;
        if record.last_revision < keep_from {
            doomed_operations.push(seq.value().to_vec());
        }
    }
    drop((objects, groups, packs, operations));
    drop(read);

    let mut head = head.clone();
    db.backend.buffer.set_writing(head.revision);
    let operation = db.op_store.append(
        &mut head,
        format!("trim history before revision {keep_from} ({reason})"),
        (now_unix_ms, now_unix_ms),
        BTreeMap::from([
            ("cairn.trimmed_before".to_owned(), keep_from.to_string()),
            ("cairn.retention".to_owned(), reason.to_owned()),
        ]),
        [],
    )?;
    head.oldest_revision = keep_from;

    let txn = db.db.begin_write()?;
    db.backend
        .buffer
        .flush_into(&txn)
        .map_err(HistoryError::storage)?;
    {
        let mut table = txn.open_table(OBJECTS)?;
        for key in &doomed_rows {
            table.remove(key.as_slice())?;
        }
        let locators: BTreeSet<u64> = doomed_packed
            .iter()
            .filter_map(|key| split_object_key(key))
            .map(|(locator, _)| locator)
            .collect();
        remove_grouped(&mut txn.open_table(PACK_GROUPS)?, &locators, &doomed_packed)?;
        remove_packed(&mut txn.open_table(PACKS)?, &locators, &doomed_packed)?;
        trim_key_log(&mut txn.open_table(index::KEY_LOG)?, keep_from)?;
        let mut table = txn.open_table(index::OPERATIONS)?;
        for key in &doomed_operations {
            table.remove(key.as_slice())?;
        }
        table.insert(
            head.operation_seq.to_be_bytes().as_slice(),
            postcard::to_allocvec(&OperationRecord {
                operation_id: operation.to_bytes(),
                first_revision: 0,
                last_revision: keep_from,
            })
            .map_err(HistoryError::storage)?
            .as_slice(),
        )?;
        revision_blocks::remove_before(&txn, keep_from)?;
        let changed_below = index::changed_key(keep_from, 0);
        txn.open_table(index::CHANGED)?
            .retain_in::<&[u8], _>(..changed_below.as_slice(), |_, _| false)?;
        let mut meta = txn.open_table(index::META)?;
        let bytes = postcard::to_allocvec(&head).map_err(HistoryError::storage)?;
        meta.insert(index::META_HEAD, bytes.as_slice())?;
    }
    txn.commit()?;
    tracing::info!(
        keep_from,
        objects = doomed_rows.len() + doomed_packed.len(),
        reason,
        "trimmed history"
    );
    Ok(head)
}

/// Removes the `key_log` rows before `keep_from`: whole spans below its span, then the rows of
/// its span that are older.
fn trim_key_log(
    key_log: &mut redb::Table<&'static [u8], &'static [u8]>,
    keep_from: i64,
) -> HistoryResult<()> {
    let span = index::key_log_span(keep_from);
    let span_start = span.to_be_bytes();
    key_log.retain_in::<&[u8], _>(..span_start.as_slice(), |_, _| false)?;
    let kept = |row_key: &[u8], _: &[u8]| {
        index::split_key_log_key(row_key).is_none_or(|(_, revision)| revision >= keep_from)
    };
    match span.checked_add(1) {
        Some(next) => {
            let next_start = next.to_be_bytes();
            key_log.retain_in::<&[u8], _>(span_start.as_slice()..next_start.as_slice(), kept)?;
        }
        None => key_log.retain_in::<&[u8], _>(span_start.as_slice().., kept)?,
    }
    Ok(())
}

/// Rewrites the groups holding `doomed` objects (packed at `locators`) without them (removing
/// sections and groups left empty; a group keeps its key, still at or before its first
/// section).
fn remove_grouped(
    groups: &mut redb::Table<u64, &'static [u8]>,
    locators: &BTreeSet<u64>,
    doomed: &HashSet<Vec<u8>>,
) -> HistoryResult<()> {
    let mut holding = BTreeSet::new();
    for &locator in locators {
        if let Some(row) = groups.range(..=locator)?.next_back() {
            holding.insert(row?.0.value());
        }
    }
    for first in holding {
        let Some(row) = groups.get(first)? else {
            continue;
        };
        let mut kept_group = Vec::new();
        for (locator, section) in pack::sections(row.value()) {
            let kept = without_doomed(locator, section, doomed);
            if !kept.is_empty() {
                pack::push_section(&mut kept_group, locator, &kept);
            }
        }
        drop(row);
        store_or_remove(groups, first, &kept_group)?;
    }
    Ok(())
}

/// Rewrites the packs (format 5) holding `doomed` objects (at `locators`) without them
/// (removing packs left empty).
fn remove_packed(
    packs: &mut redb::Table<u64, &'static [u8]>,
    locators: &BTreeSet<u64>,
    doomed: &HashSet<Vec<u8>>,
) -> HistoryResult<()> {
    for &locator in locators {
        let Some(row) = packs.get(locator)? else {
            continue;
        };
        let kept = without_doomed(locator, row.value(), doomed);
        drop(row);
        store_or_remove(packs, locator, &kept)?;
    }
    Ok(())
}

/// Stores `bytes` as the row `key`, or removes the row when nothing is left.
fn store_or_remove(
    table: &mut redb::Table<u64, &'static [u8]>,
    key: u64,
    bytes: &[u8],
) -> HistoryResult<()> {
    if bytes.is_empty() {
        table.remove(key)?;
    } else {
        table.insert(key, bytes)?;
    }
    Ok(())
}

/// `locator`'s pack without its `doomed` objects.
fn without_doomed(locator: u64, pack: &[u8], doomed: &HashSet<Vec<u8>>) -> Vec<u8> {
    let mut kept = Vec::new();
    for object in pack::objects(pack) {
        if !doomed.contains(&packed_object_key(locator, &object)) {
            pack::push(&mut kept, object.kind, object.hash, object.bytes);
        }
    }
    kept
}

/// The `objects` key of the base of a tree stored as a delta; `kind` and `bytes` are the
/// object's (`None`: no bytes).
fn delta_base(kind: u8, bytes: Option<&[u8]>) -> Option<Vec<u8>> {
    if kind != Kind::Tree as u8 {
        return None;
    }
    let delta = super::delta::decode(bytes?)?;
    Some(object_key(Kind::Tree, delta.base))
}

fn mark_tree(
    db: &super::db::HistoryDb,
    id: &TreeId,
    marked: &mut HashSet<Vec<u8>>,
) -> HistoryResult<()> {
    if !marked.insert(object_key(Kind::Tree, id.as_bytes())) {
        return Ok(());
    }
    let tree = db.backend.tree(id)?;
    for entry in tree.entries() {
        match entry.value() {
            TreeValue::Tree(child) => mark_tree(db, child, marked)?,
            TreeValue::File { id, .. } => {
                marked.insert(object_key(Kind::File, id.as_bytes()));
            }
            TreeValue::Symlink(_) | TreeValue::GitSubmodule(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_parses_ages_and_sizes() {
        assert!(Retention::from_str("0").unwrap().keeps_everything());
        assert!(Retention::from_str("all").unwrap().keeps_everything());
        assert_eq!(
            Retention::from_str("30d").unwrap().max_age,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            Retention::from_str("12h").unwrap().max_age,
            Some(Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            Retention::from_str("10GiB").unwrap().max_bytes,
            Some(10 << 30)
        );
        assert_eq!(
            Retention::from_str("500MB").unwrap().max_bytes,
            Some(500_000_000)
        );
        assert!(Retention::from_str("10 parsecs").is_err());
        assert!(Retention::from_str("d").is_err());
    }
}
