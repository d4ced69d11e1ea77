//! Restore: put a key or a prefix back as history recorded it at an older revision, with one
//! ordinary transaction through raft (so it is replicated, watched and itself recorded).

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Node, ResponseHeader};
use crate::error::KvError;
use crate::history::{
    At, ChangeKind, History, HistoryError, KeyChange, KeyVersion, RestoreOutcome,
};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

/// Attempts when keys change between reading them and the guarded transaction.
const ATTEMPTS: usize = 3;

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The write failed as any write can (no leader, timeout, …).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The target revision is not in history (future, trimmed) or history failed.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// More keys differ than one transaction may change.
    #[error(
        "restoring would change {changes} keys, more than the {max} operations one transaction          may hold (--max-txn-ops); restore a narrower prefix"
    )]
    TooLarge { changes: usize, max: usize },
    /// The keys kept changing under the restore.
    #[error("the keys changed during each of {0} restore attempts; nothing was restored")]
    Contended(usize),
}

impl Node {
    /// Puts `key` (or, with `prefix`, every key starting with it) back as it was at
    /// `to_revision`: one ordinary transaction through raft (so it is replicated and recorded
    /// in history like any write), guarded so that it fails rather than overwrite a key changed
    /// meanwhile. Keys absent at `to_revision` are deleted.
    ///
    /// At most `max_ops` keys are changed (etcd's `--max-txn-ops` for one transaction).
    pub async fn history_restore(
        &self,
        key: Bytes,
        prefix: bool,
        to_revision: i64,
        max_ops: usize,
    ) -> Result<(RestoreOutcome, ResponseHeader), RestoreError> {
        let history = self.history().ok_or(HistoryError::Disabled)?;
        let target = read_target(history, key.clone(), prefix, to_revision).await?;
        for _ in 0..ATTEMPTS {
            let (current, header) = self
                .range(RangeRequest {
                    key: key.clone(),
                    range_end: if prefix {
                        prefix_end(&key)
                    } else {
                        Bytes::new()
                    },
                    ..RangeRequest::default()
                })
                .await?;
            let current: BTreeMap<Bytes, (Bytes, i64)> = current
                .kvs
                .into_iter()
                .map(|kv| (kv.key, (kv.value, kv.mod_revision)))
                .collect();
            let plan = plan(&target, &current);
            if plan.changes.len() > max_ops {
                return Err(RestoreError::TooLarge {
                    changes: plan.changes.len(),
                    max: max_ops,
                });
            }
            if plan.changes.is_empty() {
                return Ok((
                    RestoreOutcome {
                        revision: 0,
                        changes: Vec::new(),
                    },
                    header,
                ));
            }
            let (response, header) = self.txn(plan.txn).await?;
            if response.succeeded {
                return Ok((
                    RestoreOutcome {
                        revision: header.revision,
                        changes: plan.changes,
                    },
                    header,
                ));
            }
        }
        Err(RestoreError::Contended(ATTEMPTS))
    }
}

async fn read_target(
    history: History,
    key: Bytes,
    prefix: bool,
    to_revision: i64,
) -> Result<BTreeMap<Bytes, Bytes>, RestoreError> {
    let found: Vec<KeyVersion> = tokio::task::spawn_blocking(move || {
        if prefix {
            history.range(&key, At::Revision(to_revision), b"", 0)
        } else {
            history
                .get(&key, At::Revision(to_revision))
                .map(|kv| kv.into_iter().collect())
        }
    })
    .await
    .map_err(|err| KvError::Internal(err.to_string()))??;
    Ok(found.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

struct Plan {
    txn: TxnRequest,
    changes: Vec<KeyChange>,
}

/// The guarded transaction turning `current` (value, mod revision) into `target`.
fn plan(target: &BTreeMap<Bytes, Bytes>, current: &BTreeMap<Bytes, (Bytes, i64)>) -> Plan {
    let mut txn = TxnRequest::default();
    let mut changes = Vec::new();
    for (key, value) in target {
        match current.get(key) {
            Some((now, _)) if now == value => continue,
            Some((_, mod_revision)) => txn.compare.push(Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Mod(*mod_revision),
                key: key.clone(),
                range_end: Bytes::new(),
            }),
            None => txn.compare.push(Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(0),
                key: key.clone(),
                range_end: Bytes::new(),
            }),
        }
        txn.success.push(RequestOp::Put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..PutRequest::default()
        }));
        changes.push(KeyChange {
            key: key.clone(),
            kind: ChangeKind::Put,
        });
    }
    for (key, (_, mod_revision)) in current {
        if target.contains_key(key) {
            continue;
        }
        txn.compare.push(Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Mod(*mod_revision),
            key: key.clone(),
            range_end: Bytes::new(),
        });
        txn.success.push(RequestOp::DeleteRange(DeleteRangeRequest {
            key: key.clone(),
            range_end: Bytes::new(),
            prev_kv: false,
        }));
        changes.push(KeyChange {
            key: key.clone(),
            kind: ChangeKind::Delete,
        });
    }
    changes.sort_by(|a, b| a.key.cmp(&b.key));
    Plan { txn, changes }
}

/// etcd's prefix range end: the prefix with its last byte below 0xff incremented (and what
/// follows dropped); `"\0"` (every key) when there is none.
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_like_etcd() {
        assert_eq!(prefix_end(b"/a"), Bytes::from_static(b"/b"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::from_static(b"\0"));
        assert_eq!(prefix_end(b""), Bytes::from_static(b"\0"));
    }

    #[test]
    fn plan_puts_back_changed_and_missing_keys_and_deletes_new_ones() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let target = BTreeMap::from([
            (b("/a"), b("old")),
            (b("/b"), b("same")),
            (b("/c"), b("gone")),
        ]);
        let current = BTreeMap::from([
            (b("/a"), (b("new"), 7)),
            (b("/b"), (b("same"), 3)),
            (b("/d"), (b("added"), 9)),
        ]);
        let plan = plan(&target, &current);
        let changed: Vec<(&[u8], ChangeKind)> = plan
            .changes
            .iter()
            .map(|c| (c.key.as_ref(), c.kind))
            .collect();
        assert_eq!(
            changed,
            vec![
                (&b"/a"[..], ChangeKind::Put),
                (b"/c", ChangeKind::Put),
                (b"/d", ChangeKind::Delete)
            ]
        );
        assert_eq!(plan.txn.compare.len(), 3, "every touched key is guarded");
        assert_eq!(plan.txn.success.len(), 3);
    }
}
