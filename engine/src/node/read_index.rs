//! Linearizable reads, batched: every read waiting while a read-index round is in flight shares
//! the next round, so N concurrent reads cost one raft round, not N. On a follower the round asks
//! the leader for its read index (one peer message per round) and waits for the local apply.
//!
//! ```text
//!  range ─► wait() ─► queue ─► [round: read_barrier (leader read index → applied ≥ index)]
//!                                   └─► wakes every waiter collected for this round
//! ```

use tokio::sync::{mpsc, oneshot};

use super::Node;
use crate::error::{KvError, KvResult};

type Waiter = oneshot::Sender<KvResult<()>>;

/// Hands out read-index rounds shared by concurrent readers.
#[derive(Clone)]
pub(crate) struct ReadIndex {
    queue: mpsc::UnboundedSender<Waiter>,
}

/// The waiting readers, consumed by [`serve_rounds`].
pub(crate) struct Waiters(mpsc::UnboundedReceiver<Waiter>);

impl ReadIndex {
    pub(crate) fn new() -> (Self, Waiters) {
        let (queue, waiting) = mpsc::unbounded_channel::<Waiter>();
        (Self { queue }, Waiters(waiting))
    }

    /// Returns once this member has applied everything committed when the call was made.
    pub(crate) async fn wait(&self) -> KvResult<()> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| KvError::Stopping)?;
        rx.await.map_err(|_| KvError::Stopping)?
    }
}

/// Runs read-index rounds for the node until it stops.
pub(crate) async fn serve_rounds(node: Node, waiters: Waiters) {
    let mut waiting = waiters.0;
    while let Some(first) = waiting.recv().await {
        let mut round = vec![first];
        while let Ok(next) = waiting.try_recv() {
            round.push(next);
        }
        let result = node.read_barrier().await;
        for waiter in round {
            let _ = waiter.send(result.clone());
        }
    }
}
