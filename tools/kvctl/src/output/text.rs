//! Text output: a jj-style graph for `log` and `oplog`, headers and unified diffs for `show` and
//! `diff`, tables for `blame` and `status`.
//!
//! ```text
//! @  12  3f2a1b9c0d4e  2026-11-22 10:00:00 +00:00  alice via etcdctl/3.4
//! │  + /registry/pods/default/web
//! │  - /registry/pods/default/old
//! ○  11  9c1d0e2f3a4b  2026-11-22 09:59:58 +00:00
//! │  + /config/feature
//! ~  (older revisions not shown)
//! ```

use std::fmt::Write as _;

use cairn_engine::history::{
    BlameLine, ChangeKind, HistoryStatus, KeyChange, KeyDiff, KeyVersion, OperationEntry,
    RestoreOutcome, RevisionDetail, RevisionEntry,
};

use super::{Style, origin_text, short_id};
use crate::render::{Rendering, render_key, render_value, unified_diff};

/// Changed keys listed per revision in `log`; the rest are counted.
pub const LOG_CHANGES_SHOWN: usize = 10;

const NODE: &str = "○";
const EDGE: &str = "│";
const ELIDED: &str = "~";

/// The first line of a revision: number, short commit id, time, origin (if known).
fn revision_line(entry: &RevisionEntry, style: &Style) -> String {
    let mut line = format!(
        "{}  {}  {}",
        style.revision(entry.revision),
        style.commit(&entry.commit_id),
        style.time(entry.time_unix_ms)
    );
    if let Some(origin) = origin_text(&entry.origin) {
        let _ = write!(line, "  {origin}");
    }
    line
}

fn change_line(change: &KeyChange, style: &Style) -> String {
    let marker = match change.kind {
        ChangeKind::Put => style.put_marker(),
        ChangeKind::Delete => style.delete_marker(),
    };
    format!("{marker} {}", render_key(&change.key))
}

/// The changed keys of a revision: at most [`LOG_CHANGES_SHOWN`], then how many more.
fn change_lines(entry: &RevisionEntry, style: &Style) -> Vec<String> {
    let mut lines: Vec<String> = entry
        .changes
        .iter()
        .take(LOG_CHANGES_SHOWN)
        .map(|change| change_line(change, style))
        .collect();
    let shown = lines.len() as u64;
    let total = entry.changes_total.max(entry.changes.len() as u64);
    if total > shown {
        lines.push(style.dim(&format!("… and {} more", total - shown)));
    } else if total == 0 {
        lines.push(style.dim("(no key changes)"));
    }
    lines
}

/// `log`: newest first; `head` (the newest recorded revision) gets `@`, the others `○`; `more`
/// ends the graph with `~` when older matching revisions were left out.
pub fn log(entries: &[RevisionEntry], head: Option<i64>, more: bool, style: &Style) -> String {
    let mut out = String::new();
    for (i, entry) in entries.iter().enumerate() {
        let node = if Some(entry.revision) == head {
            style.head_node()
        } else {
            NODE.to_owned()
        };
        let _ = writeln!(out, "{node}  {}", revision_line(entry, style));
        let last = i + 1 == entries.len() && !more;
        let edge = if last { " " } else { EDGE };
        for line in change_lines(entry, style) {
            let _ = writeln!(out, "{edge}  {line}");
        }
    }
    if more {
        let _ = writeln!(
            out,
            "{ELIDED}  {}",
            style.dim("(older revisions not shown; raise --limit)")
        );
    }
    out
}

fn rendering(key: &[u8], value: Option<&bytes::Bytes>) -> Option<Rendering> {
    value.map(|value| render_value(key, value))
}

/// One key's change between revisions `from` and `to`, as a unified diff of its renderings.
/// Changes a diff of renderings cannot show (an empty value created or deleted, bytes that
/// render alike) get one line saying so.
pub fn key_diff(diff: &KeyDiff, from: i64, to: i64, style: &Style) -> String {
    let key = render_key(&diff.key);
    let before = rendering(&diff.key, diff.before.as_ref());
    let after = rendering(&diff.key, diff.after.as_ref());
    let label = |revision: i64, present: bool| {
        if present {
            format!("{key} @ {revision}")
        } else {
            format!("{key} @ {revision} (absent)")
        }
    };
    let text = unified_diff(
        before.as_ref(),
        after.as_ref(),
        &label(from, before.is_some()),
        &label(to, after.is_some()),
        style.color,
    );
    if !text.is_empty() {
        return text;
    }
    let note = match (&diff.before, &diff.after) {
        (None, Some(_)) => "created with an empty value",
        (Some(_), None) => "deleted (its value was empty)",
        (Some(a), Some(b)) if a != b => "bytes changed, renderings are equal",
        _ => "unchanged",
    };
    let marker = match (&diff.before, &diff.after) {
        (None, Some(_)) => style.put_marker(),
        (Some(_), None) => style.delete_marker(),
        _ => "~".to_owned(),
    };
    format!("{marker} {key} @ {from}..{to}: {note}\n")
}

/// `show`: the revision's header, then a unified diff per changed key.
pub fn show(detail: &RevisionDetail, style: &Style) -> String {
    let entry = &detail.entry;
    let mut out = String::new();
    let _ = writeln!(out, "revision {}", style.revision(entry.revision));
    let _ = writeln!(out, "commit   {}", entry.commit_id);
    let _ = writeln!(out, "parent   {}", entry.parent_commit_id);
    let _ = writeln!(out, "time     {}", style.time(entry.time_unix_ms));
    if let Some(origin) = origin_text(&entry.origin) {
        let _ = writeln!(out, "origin   {origin}");
    }
    let _ = writeln!(
        out,
        "raft     term {}, index {}",
        entry.log_term, entry.log_index
    );
    let total = entry.changes_total.max(detail.diffs.len() as u64);
    let _ = writeln!(out, "changes  {total}");
    for diff in &detail.diffs {
        out.push('\n');
        out.push_str(&key_diff(diff, entry.revision - 1, entry.revision, style));
    }
    out
}

/// The line above a `diff`'s per-key diffs.
pub fn diff_header(from: i64, to: i64, keys: usize) -> String {
    let noun = if keys == 1 { "key" } else { "keys" };
    format!("diff {from}..{to}: {keys} {noun} changed\n")
}

/// `diff` all at once (the command renders key by key, with a progress bar).
pub fn diff(from: i64, to: i64, diffs: &[KeyDiff], style: &Style) -> String {
    let mut out = diff_header(from, to, diffs.len());
    for diff in diffs {
        out.push('\n');
        out.push_str(&key_diff(diff, from, to, style));
    }
    out
}

/// `get`: the rendered value, ending with a line break.
pub fn value(kv: &KeyVersion) -> String {
    let mut text = render_value(&kv.key, &kv.value).text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `blame`: one row per key, the revision that last changed it.
pub fn blame(lines: &[BlameLine], style: &Style) -> String {
    let width = lines
        .iter()
        .map(|line| line.revision.to_string().len())
        .chain(["REVISION".len()])
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    let time_width = lines.first().map_or(25, |line| {
        super::local_time(line.time_unix_ms, &style.zone).len()
    });
    let _ = writeln!(
        out,
        "{:>width$}  {:<12}  {:<time_width$}  KEY",
        "REVISION", "COMMIT", "TIME"
    );
    for line in lines {
        // Padding is computed on the plain text: colour escapes have no width.
        let pad = width.saturating_sub(line.revision.to_string().len());
        let commit_pad = 12usize.saturating_sub(short_id(&line.commit_id).chars().count());
        let _ = writeln!(
            out,
            "{}{}  {}{}  {}  {}",
            " ".repeat(pad),
            style.revision(line.revision),
            style.commit(&line.commit_id),
            " ".repeat(commit_pad),
            style.time(line.time_unix_ms),
            render_key(&line.key)
        );
    }
    out
}

/// `oplog`: one node per operation, newest first, with its revisions and attributes.
pub fn oplog(operations: &[OperationEntry], style: &Style) -> String {
    let mut out = String::new();
    for (i, op) in operations.iter().enumerate() {
        let revisions = match (op.first_revision, op.last_revision) {
            (0, 0) => "maintenance".to_owned(),
            (first, last) if first == last => format!("revision {}", style.revision(first)),
            (first, last) => format!(
                "revisions {}..{}",
                style.revision(first),
                style.revision(last)
            ),
        };
        let _ = writeln!(
            out,
            "{NODE}  {}  {}  {revisions}",
            style.commit(&op.operation_id),
            style.time(op.time_unix_ms)
        );
        let edge = if i + 1 == operations.len() { " " } else { EDGE };
        if !op.description.is_empty() {
            let _ = writeln!(out, "{edge}  {}", op.description);
        }
        for (key, value) in &op.attributes {
            let _ = writeln!(out, "{edge}  {}", style.dim(&format!("{key}: {value}")));
        }
    }
    out
}

/// `status`.
pub fn status(status: &HistoryStatus) -> String {
    format!(
        "head      {} {}\napplied   {} (lag {})\noldest    {}\ndb size   {}\n",
        status.head_revision,
        short_id(&status.head_commit_id),
        status.applied_revision,
        status.lag(),
        status.oldest_revision,
        indicatif::HumanBytes(status.db_size_bytes),
    )
}

/// `restore`: what was written, or that nothing needed to be.
pub fn restore(
    key: &[u8],
    prefix: bool,
    to_revision: i64,
    outcome: &RestoreOutcome,
    style: &Style,
) -> String {
    let what = if prefix {
        format!("keys under {}", render_key(key))
    } else {
        render_key(key)
    };
    if outcome.revision == 0 {
        return format!("nothing to restore: {what} already as at revision {to_revision}\n");
    }
    let mut out = format!(
        "restored {what} to revision {to_revision} as revision {}\n",
        style.revision(outcome.revision)
    );
    for change in &outcome.changes {
        let _ = writeln!(out, "   {}", change_line(change, style));
    }
    out
}
