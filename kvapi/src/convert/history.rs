//! Conversions between the history service's wire messages (`pb::history`) and the engine's
//! history model, in both directions: the server answers with `*_to_pb`, clients built on this
//! crate (kvctl) read answers back with `*_from_pb`.
//!
//! Keys and values stay `bytes::Bytes` on both sides, so nothing is copied. Reading an answer
//! never fails: a field a server left out takes its default, an unknown change kind reads as a
//! put (the only other kind the wire defines).

use cairn_engine::history::{
    BlameLine, ChangeKind, HistoryStatus, KeyChange, KeyDiff, KeyVersion, OperationEntry, Origin,
    RestoreOutcome, RevisionDetail, RevisionEntry,
};

use crate::pb::history as pb;

// ---- engine → wire ----

pub fn origin_to_pb(origin: Origin) -> pb::Origin {
    pb::Origin {
        user: origin.user,
        agent: origin.agent,
    }
}

pub fn change_to_pb(change: KeyChange) -> pb::KeyChange {
    let kind = match change.kind {
        ChangeKind::Put => pb::ChangeKind::Put,
        ChangeKind::Delete => pb::ChangeKind::Delete,
    };
    pb::KeyChange {
        key: change.key,
        kind: kind.into(),
    }
}

pub fn revision_to_pb(entry: RevisionEntry) -> pb::Revision {
    pb::Revision {
        revision: entry.revision,
        commit_id: entry.commit_id,
        parent_commit_id: entry.parent_commit_id,
        time_unix_ms: entry.time_unix_ms,
        log_term: entry.log_term,
        log_index: entry.log_index,
        origin: Some(origin_to_pb(entry.origin)),
        changes: entry.changes.into_iter().map(change_to_pb).collect(),
        changes_total: entry.changes_total,
    }
}

pub fn diff_to_pb(diff: KeyDiff) -> pb::KeyDiff {
    pb::KeyDiff {
        key: diff.key,
        before: diff.before,
        after: diff.after,
    }
}

pub fn detail_to_pb(detail: RevisionDetail) -> pb::ShowResponse {
    pb::ShowResponse {
        revision: Some(revision_to_pb(detail.entry)),
        diffs: detail.diffs.into_iter().map(diff_to_pb).collect(),
    }
}

pub fn key_version_to_pb(kv: KeyVersion) -> pb::KeyVersion {
    pb::KeyVersion {
        key: kv.key,
        value: kv.value,
        mod_revision: kv.mod_revision,
        revision: kv.revision,
    }
}

pub fn blame_to_pb(line: BlameLine) -> pb::BlameLine {
    pb::BlameLine {
        key: line.key,
        revision: line.revision,
        commit_id: line.commit_id,
        time_unix_ms: line.time_unix_ms,
        origin: Some(origin_to_pb(line.origin)),
    }
}

pub fn operation_to_pb(op: OperationEntry) -> pb::Operation {
    pb::Operation {
        operation_id: op.operation_id,
        time_unix_ms: op.time_unix_ms,
        description: op.description,
        first_revision: op.first_revision,
        last_revision: op.last_revision,
        attributes: op
            .attributes
            .into_iter()
            .map(|(key, value)| pb::Attribute { key, value })
            .collect(),
    }
}

pub fn status_to_pb(status: &HistoryStatus) -> pb::StatusResponse {
    pb::StatusResponse {
        head_revision: status.head_revision,
        head_commit_id: status.head_commit_id.clone(),
        applied_revision: status.applied_revision,
        oldest_revision: status.oldest_revision,
        db_size_bytes: status.db_size_bytes,
        lag: status.lag(),
    }
}

// ---- wire → engine ----

pub fn origin_from_pb(origin: Option<pb::Origin>) -> Origin {
    origin
        .map(|o| Origin {
            user: o.user,
            agent: o.agent,
        })
        .unwrap_or_default()
}

pub fn change_from_pb(change: pb::KeyChange) -> KeyChange {
    let kind = match change.kind() {
        pb::ChangeKind::Put => ChangeKind::Put,
        pb::ChangeKind::Delete => ChangeKind::Delete,
    };
    KeyChange {
        key: change.key,
        kind,
    }
}

pub fn revision_from_pb(r: pb::Revision) -> RevisionEntry {
    RevisionEntry {
        revision: r.revision,
        commit_id: r.commit_id,
        parent_commit_id: r.parent_commit_id,
        time_unix_ms: r.time_unix_ms,
        log_term: r.log_term,
        log_index: r.log_index,
        origin: origin_from_pb(r.origin),
        changes: r.changes.into_iter().map(change_from_pb).collect(),
        changes_total: r.changes_total,
    }
}

pub fn diff_from_pb(diff: pb::KeyDiff) -> KeyDiff {
    KeyDiff {
        key: diff.key,
        before: diff.before,
        after: diff.after,
    }
}

pub fn detail_from_pb(show: pb::ShowResponse) -> RevisionDetail {
    RevisionDetail {
        // A server always sends the revision; a missing one reads as "nothing recorded".
        entry: show.revision.map_or_else(
            || RevisionEntry {
                revision: 0,
                commit_id: String::new(),
                parent_commit_id: String::new(),
                time_unix_ms: 0,
                log_term: 0,
                log_index: 0,
                origin: Origin::default(),
                changes: Vec::new(),
                changes_total: 0,
            },
            revision_from_pb,
        ),
        diffs: show.diffs.into_iter().map(diff_from_pb).collect(),
    }
}

pub fn key_version_from_pb(kv: pb::KeyVersion) -> KeyVersion {
    KeyVersion {
        key: kv.key,
        value: kv.value,
        mod_revision: kv.mod_revision,
        revision: kv.revision,
    }
}

pub fn blame_from_pb(line: pb::BlameLine) -> BlameLine {
    BlameLine {
        key: line.key,
        revision: line.revision,
        commit_id: line.commit_id,
        time_unix_ms: line.time_unix_ms,
        origin: origin_from_pb(line.origin),
    }
}

pub fn operation_from_pb(op: pb::Operation) -> OperationEntry {
    OperationEntry {
        operation_id: op.operation_id,
        time_unix_ms: op.time_unix_ms,
        description: op.description,
        first_revision: op.first_revision,
        last_revision: op.last_revision,
        attributes: op
            .attributes
            .into_iter()
            .map(|a| (a.key, a.value))
            .collect(),
    }
}

pub fn status_from_pb(status: &pb::StatusResponse) -> HistoryStatus {
    HistoryStatus {
        head_revision: status.head_revision,
        head_commit_id: status.head_commit_id.clone(),
        applied_revision: status.applied_revision,
        oldest_revision: status.oldest_revision,
        db_size_bytes: status.db_size_bytes,
    }
}

pub fn restore_from_pb(r: pb::RestoreResponse) -> RestoreOutcome {
    RestoreOutcome {
        revision: r.revision,
        changes: r.changes.into_iter().map(change_from_pb).collect(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn entry() -> RevisionEntry {
        RevisionEntry {
            revision: 7,
            commit_id: "ab".repeat(20),
            parent_commit_id: "cd".repeat(20),
            time_unix_ms: 1_700_000_000_123,
            log_term: 2,
            log_index: 9,
            origin: Origin {
                user: "root".into(),
                agent: "etcdctl/3.4".into(),
            },
            changes: vec![
                KeyChange {
                    key: Bytes::from_static(b"/a"),
                    kind: ChangeKind::Put,
                },
                KeyChange {
                    key: Bytes::from_static(b"/b\xff"),
                    kind: ChangeKind::Delete,
                },
            ],
            changes_total: 5,
        }
    }

    #[test]
    fn revisions_round_trip() {
        assert_eq!(revision_from_pb(revision_to_pb(entry())), entry());
    }

    #[test]
    fn details_diffs_and_reads_round_trip() {
        let detail = RevisionDetail {
            entry: entry(),
            diffs: vec![
                KeyDiff {
                    key: Bytes::from_static(b"/a"),
                    before: None,
                    after: Some(Bytes::from_static(b"1")),
                },
                KeyDiff {
                    key: Bytes::from_static(b"/b"),
                    before: Some(Bytes::new()),
                    after: None,
                },
            ],
        };
        assert_eq!(detail_from_pb(detail_to_pb(detail.clone())), detail);
        let kv = KeyVersion {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            mod_revision: 3,
            revision: 5,
        };
        assert_eq!(key_version_from_pb(key_version_to_pb(kv.clone())), kv);
    }

    #[test]
    fn blame_operations_and_status_round_trip() {
        let line = BlameLine {
            key: Bytes::from_static(b"/k"),
            revision: 4,
            commit_id: "01".repeat(20),
            time_unix_ms: 5,
            origin: Origin::default(),
        };
        assert_eq!(blame_from_pb(blame_to_pb(line.clone())), line);
        let op = OperationEntry {
            operation_id: "ee".repeat(64),
            time_unix_ms: 6,
            description: "apply 3..4".into(),
            first_revision: 3,
            last_revision: 4,
            attributes: vec![("raft.log_id".into(), "2-9".into())],
        };
        assert_eq!(operation_from_pb(operation_to_pb(op.clone())), op);
        let status = HistoryStatus {
            head_revision: 10,
            head_commit_id: "ff".repeat(20),
            applied_revision: 12,
            oldest_revision: 2,
            db_size_bytes: 4096,
        };
        let wire = status_to_pb(&status);
        assert_eq!(wire.lag, 2);
        assert_eq!(status_from_pb(&wire), status);
    }

    #[test]
    fn missing_and_unknown_fields_read_as_defaults() {
        let change = change_from_pb(pb::KeyChange {
            key: Bytes::from_static(b"k"),
            kind: 42,
        });
        assert_eq!(change.kind, ChangeKind::Put);
        assert_eq!(origin_from_pb(None), Origin::default());
        let detail = detail_from_pb(pb::ShowResponse::default());
        assert_eq!(detail.entry.revision, 0);
        assert!(detail.diffs.is_empty());
    }
}
