//! Linearizable reads, batched: every read waiting while a read-index round is in flight shares
//! the next round, so N concurrent reads cost one raft round, not N.
//!
//! ```text
//!  range ─► wait() ─► queue ─► [round: ensure_linearizable(ReadIndex) → applied ≥ read index]
//!                                   └─► wakes every waiter collected for this round
//! ```

use tokio::sync::{mpsc, oneshot};

use crate::error::{KvError, KvResult};
use crate::raft::types::Raft;

type Waiter = oneshot::Sender<KvResult<()>>;

/// Hands out read-index rounds shared by concurrent readers.
#[derive(Clone)]
pub(crate) struct ReadIndex {
    queue: mpsc::UnboundedSender<Waiter>,
}

impl ReadIndex {
    /// Starts the round loop; the handle stops it.
    pub(crate) fn spawn(raft: Raft) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Waiter>();
        let handle = tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut round = vec![first];
                while let Ok(next) = waiting.try_recv() {
                    round.push(next);
                }
                let read = raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex);
                let result = match tokio::time::timeout(super::REQUEST_TIMEOUT, read).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(err)) => Err(super::errors::from_read_error(&err)),
                    Err(_) => Err(KvError::Timeout),
                };
                for waiter in round {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        (Self { queue }, handle)
    }

    /// Returns once this member has applied everything committed when the call was made.
    pub(crate) async fn wait(&self) -> KvResult<()> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| KvError::Stopping)?;
        rx.await.map_err(|_| KvError::Stopping)?
    }
}
