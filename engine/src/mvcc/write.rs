//! `Writer`: the changes of one applied batch, staged in one redb write transaction.
//!
//! Each command runs between [`Writer::begin_command`] and [`Writer::end_command`]. Its changes
//! get the revision `(revision + 1, sub)` with `sub` counting 0, 1, 2… across the command; the
//! store revision moves forward by one at `end_command` only if the command changed something,
//! as etcd's write transaction does. Ranges run on the tables being written, so a txn's later
//! operations see its earlier writes.
//!
//! ```text
//! revision 7, command = txn { put a, delete b (exists), put c }
//!   put a     ─► current[a], history(a,8,0), changes(8,0)→a, event PUT    a@8
//!   delete b  ─► current[b] removed, history(b,8,1)=tombstone, changes(8,1)→b, event DELETE b@8
//!   put c     ─► history(c,8,2), …                                          event PUT    c@8
//!   end_command ─► revision 8
//! ```

use bytes::Bytes;
use redb::{ReadableTable, Table};

use super::codec::{self, CurrentRecord, HistoryRecord};
use super::error::{MvccError, MvccResult, OpResult};
use super::read::{KeySpan, ReadSource, Revisions};
use super::tables::{self, WriteTables};
use crate::error::KvError;
use crate::kv::{Event, EventKind, KeyValue};
use crate::request::{
    AlarmMember, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse,
};
use crate::revision::RevisionId;

type WriteTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// Stages the changes of one batch in a write transaction; see the module docs.
pub(crate) struct Writer<'txn> {
    pub(crate) tables: WriteTables<'txn>,
    /// The store revision after the commands applied so far.
    revision: i64,
    compact_revision: i64,
    alarms: Vec<AlarmMember>,
    alarms_dirty: bool,
    /// Changes made by the current command.
    sub: i64,
    events: Vec<Event>,
}

impl<'txn> Writer<'txn> {
    /// Starts a batch on `tables`, reading the revisions and alarms from the meta table.
    pub(crate) fn load(tables: WriteTables<'txn>) -> MvccResult<Self> {
        let revision = read_meta_i64(&tables.meta, tables::META_CURRENT_REVISION)?.unwrap_or(1);
        let compact_revision =
            read_meta_i64(&tables.meta, tables::META_COMPACT_REVISION)?.unwrap_or(0);
        let alarms = read_alarms(&tables.meta)?;
        Ok(Self {
            tables,
            revision,
            compact_revision,
            alarms,
            alarms_dirty: false,
            sub: 0,
            events: Vec::new(),
        })
    }

    /// The store revision after the commands ended so far.
    pub(crate) fn revision(&self) -> i64 {
        self.revision
    }

    pub(crate) fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub(crate) fn set_compact_revision(&mut self, revision: i64) -> MvccResult<()> {
        self.compact_revision = revision;
        self.tables.meta.insert(
            tables::META_COMPACT_REVISION,
            codec::encode_i64(revision).as_slice(),
        )?;
        Ok(())
    }

    /// The revisions reads inside the current command are judged against: the state they see
    /// includes the command's own changes.
    pub(crate) fn revisions(&self) -> Revisions {
        Revisions {
            current: self.revision + i64::from(self.sub > 0),
            compact: self.compact_revision,
        }
    }

    pub(crate) fn source(&self) -> ReadSource<'_, WriteTable<'txn>> {
        ReadSource {
            current: &self.tables.current,
            history: &self.tables.history,
        }
    }

    pub(crate) fn begin_command(&mut self) {
        self.sub = 0;
        self.events.clear();
    }

    /// Ends the current command: moves the revision forward if it changed anything and returns
    /// its events.
    pub(crate) fn end_command(&mut self) -> Vec<Event> {
        if self.sub > 0 {
            self.revision += 1;
        }
        self.sub = 0;
        std::mem::take(&mut self.events)
    }

    /// Drops the current command's events and fails unless it changed nothing: a request error
    /// must leave the store as it was.
    pub(crate) fn reject_command(&mut self, error: KvError) -> MvccResult<KvError> {
        self.events.clear();
        if self.sub > 0 {
            return Err(MvccError::PartialCommand { error });
        }
        Ok(error)
    }

    fn next_revision(&mut self) -> RevisionId {
        let rev = RevisionId {
            main: self.revision + 1,
            sub: self.sub,
        };
        self.sub += 1;
        rev
    }

    pub(crate) fn range(&self, req: &RangeRequest) -> OpResult<RangeResponse> {
        self.source().range(req, self.revisions())
    }

    pub(crate) fn lease_exists(&self, id: i64) -> MvccResult<bool> {
        Ok(self
            .tables
            .leases
            .get(codec::encode_i64(id).as_slice())?
            .is_some())
    }

    /// Puts one key. The caller has checked the lease; `ignore_value` / `ignore_lease` on a
    /// missing key fail here, before anything is written.
    pub(crate) fn put(&mut self, req: &PutRequest) -> OpResult<PutResponse> {
        let old = self.source().get(&req.key)?;
        if (req.ignore_value || req.ignore_lease) && old.is_none() {
            return Err(KvError::KeyNotFound.into());
        }
        let rev = self.next_revision();
        let value: &[u8] = match &old {
            Some(old) if req.ignore_value => &old.value,
            _ => &req.value,
        };
        let lease = match &old {
            Some(old) if req.ignore_lease => old.lease,
            _ => req.lease,
        };
        let (create_revision, version) = old
            .as_ref()
            .map_or((rev.main, 1), |old| (old.create_revision, old.version + 1));
        let current = CurrentRecord {
            create_revision,
            mod_revision: rev.main,
            version,
            lease,
            value,
        };
        let history = HistoryRecord {
            tombstone: false,
            create_revision,
            version,
            lease,
            value,
        };
        self.tables
            .current
            .insert(req.key.as_ref(), codec::encode_current(&current).as_slice())?;
        self.tables.history.insert(
            codec::history_key(&req.key, rev).as_slice(),
            codec::encode_history(&history).as_slice(),
        )?;
        self.tables
            .changes
            .insert(codec::encode_revision(rev).as_slice(), req.key.as_ref())?;
        let old_lease = old.as_ref().map_or(0, |old| old.lease);
        if old_lease != lease {
            if old_lease != 0 {
                self.tables
                    .lease_keys
                    .remove(codec::lease_key(old_lease, &req.key).as_slice())?;
            }
            if lease != 0 {
                self.tables
                    .lease_keys
                    .insert(codec::lease_key(lease, &req.key).as_slice(), &[][..])?;
            }
        }
        let kv = current.to_key_value(&req.key, true);
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: old.clone(),
        });
        Ok(PutResponse {
            prev_kv: if req.prev_kv { old } else { None },
        })
    }

    pub(crate) fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> MvccResult<DeleteRangeResponse> {
        let span = KeySpan::new(&req.key, &req.range_end);
        let revisions = self.revisions();
        let mut doomed = Vec::new();
        self.source()
            .visit(span, revisions.current, revisions, |kv| {
                doomed.push(kv.to_key_value(true));
            })?;
        let deleted = doomed.len() as i64;
        for kv in &doomed {
            self.delete_key(kv)?;
        }
        Ok(DeleteRangeResponse {
            deleted,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        })
    }

    /// Deletes the live key whose current version is `prev`: a tombstone in history, the key
    /// detached from its lease, a DELETE event.
    pub(crate) fn delete_key(&mut self, prev: &KeyValue) -> MvccResult<()> {
        let rev = self.next_revision();
        let tombstone = HistoryRecord {
            tombstone: true,
            create_revision: 0,
            version: 0,
            lease: 0,
            value: &[],
        };
        self.tables.current.remove(prev.key.as_ref())?;
        self.tables.history.insert(
            codec::history_key(&prev.key, rev).as_slice(),
            codec::encode_history(&tombstone).as_slice(),
        )?;
        self.tables
            .changes
            .insert(codec::encode_revision(rev).as_slice(), prev.key.as_ref())?;
        if prev.lease != 0 {
            self.tables
                .lease_keys
                .remove(codec::lease_key(prev.lease, &prev.key).as_slice())?;
        }
        let kv = KeyValue {
            key: prev.key.clone(),
            mod_revision: rev.main,
            ..KeyValue::default()
        };
        self.events.push(Event {
            kind: EventKind::Delete,
            kv,
            prev_kv: Some(prev.clone()),
        });
        Ok(())
    }

    /// The keys attached to lease `id`, in key order.
    pub(crate) fn lease_keys(&self, id: i64) -> MvccResult<Vec<Bytes>> {
        lease_keys(&self.tables.lease_keys, id)
    }

    pub(crate) fn alarms(&self) -> &[AlarmMember] {
        &self.alarms
    }

    pub(crate) fn alarms_mut(&mut self) -> &mut Vec<AlarmMember> {
        self.alarms_dirty = true;
        &mut self.alarms
    }

    /// Records the batch's final revision, the raft state and any alarm change in the meta table.
    pub(crate) fn finish(mut self, raft_state: &[u8]) -> MvccResult<(i64, i64)> {
        let meta = &mut self.tables.meta;
        meta.insert(
            tables::META_CURRENT_REVISION,
            codec::encode_i64(self.revision).as_slice(),
        )?;
        meta.insert(tables::META_RAFT_STATE, raft_state)?;
        if self.alarms_dirty {
            self.alarms.sort();
            self.alarms.dedup();
            let encoded = postcard::to_allocvec(&self.alarms)
                .map_err(|_| MvccError::corrupt("meta", "alarms do not encode"))?;
            meta.insert(tables::META_ALARMS, encoded.as_slice())?;
        }
        Ok((self.revision, self.compact_revision))
    }
}

/// Reads an integer row of the meta table.
pub(crate) fn read_meta_i64<T>(meta: &T, name: &[u8]) -> MvccResult<Option<i64>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    match meta.get(name)? {
        Some(row) => codec::decode_i64(row.value())
            .map(Some)
            .ok_or_else(|| MvccError::corrupt("meta", "undecodable integer")),
        None => Ok(None),
    }
}

/// Reads the alarm list of the meta table.
pub(crate) fn read_alarms<T>(meta: &T) -> MvccResult<Vec<AlarmMember>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    match meta.get(tables::META_ALARMS)? {
        Some(row) => postcard::from_bytes(row.value())
            .map_err(|_| MvccError::corrupt("meta", "undecodable alarms")),
        None => Ok(Vec::new()),
    }
}

/// The keys attached to lease `id`, in key order.
pub(crate) fn lease_keys<T>(table: &T, id: i64) -> MvccResult<Vec<Bytes>>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let start = codec::encode_i64(id);
    let mut keys = Vec::new();
    let rows = match id.checked_add(1) {
        Some(next) => table.range::<&[u8]>(start.as_slice()..codec::encode_i64(next).as_slice())?,
        None => table.range::<&[u8]>(start.as_slice()..)?,
    };
    for row in rows {
        let (key, _) = row?;
        let user_key = codec::lease_key_user_key(key.value())
            .ok_or_else(|| MvccError::corrupt("lease_keys", "short key"))?;
        keys.push(Bytes::copy_from_slice(user_key));
    }
    Ok(keys)
}
