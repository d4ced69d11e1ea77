//! What happens after a batch is applied: events to the watch hub, leases to the lessor, the
//! revisions made to the history recorder.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::kv::Event;
use crate::lease::Lessor;
use crate::mvcc::{ApplyInput, ApplyOutput, MvccStore, RecordedRevision};
use crate::raft::state_machine::ApplyObserver;
use crate::request::{Command, CommandResponse};
use crate::watch::WatchHub;

/// Counters the applier maintains for metrics.
#[derive(Debug, Default)]
pub(crate) struct ApplyCounters {
    pub(crate) applied: AtomicU64,
}

pub(crate) struct NodeObserver {
    /// Woken when a Compact is applied: the background compactor has work.
    pub(crate) compactions: Arc<tokio::sync::Notify>,
    pub(crate) hub: Arc<WatchHub>,
    pub(crate) lessor: Arc<Lessor>,
    pub(crate) counters: Arc<ApplyCounters>,
    /// The history recorder, handed every revision and told about every applied batch (None
    /// when history is off).
    pub(crate) history: Option<Arc<crate::history::Recording>>,
}

impl ApplyObserver for NodeObserver {
    fn applied(&self, input: &ApplyInput<'_>, output: &ApplyOutput, events: Vec<Event>) {
        let Some(proposal) = input.proposal else {
            return;
        };
        self.counters.applied.fetch_add(1, Ordering::Relaxed);
        if let Some(history) = &self.history
            && let Some(revision) = RecordedRevision::applied(input, output.revision, &events)
        {
            history.revision_applied(revision);
        }
        if !events.is_empty() {
            self.hub.publish(output.revision, Arc::from(events));
        }
        match (&proposal.command, &output.result) {
            (Command::LeaseGrant { .. }, Ok(CommandResponse::LeaseGrant { id, ttl })) => {
                self.lessor.grant(*id, *ttl);
            }
            (Command::LeaseRevoke { id }, Ok(_)) => self.lessor.revoke(*id),
            (Command::Compact { .. }, Ok(_)) => self.compactions.notify_one(),
            _ => {}
        }
    }

    /// A snapshot replaced the store: watchers catch up from the new store's history, and the
    /// lessor starts over from its leases.
    fn batch_applied(&self, revision: i64) {
        if let Some(history) = &self.history {
            history.batch_applied(revision);
        }
    }

    fn restored(&self, store: &MvccStore) {
        if let Some(history) = &self.history {
            history.restored(store.current_revision());
        }
        self.hub.restored();
        self.lessor.clear();
        match store.leases() {
            Ok(leases) => {
                for (id, ttl) in leases {
                    self.lessor.grant(id, ttl);
                }
            }
            Err(err) => tracing::error!(%err, "reading leases from an installed snapshot"),
        }
    }
}
