//! [`Completion`]: the outcome of a queued WAL operation, usable from async code (`.await`) and
//! from plain threads ([`Completion::wait`]) alike, inside or outside a runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::error::{WalError, WalResult};
use super::writer::Done;

#[derive(Default)]
struct Slot {
    result: Option<WalResult<()>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Inner {
    slot: Mutex<Slot>,
    ready: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves a completion exactly once: with the operation's result, or with
/// [`WalError::Closed`] if dropped unused (the writer thread died with the operation queued).
struct Resolver {
    inner: Option<Arc<Inner>>,
}

impl Resolver {
    fn resolve(mut self, result: WalResult<()>) {
        if let Some(inner) = self.inner.take() {
            let mut slot = inner.lock();
            slot.result = Some(result);
            let waker = slot.waker.take();
            drop(slot);
            inner.ready.notify_all();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if self.inner.is_some() {
            Resolver {
                inner: self.inner.take(),
            }
            .resolve(Err(WalError::Closed));
        }
    }
}

/// The outcome of a submitted operation: `.await` it, or [`Completion::wait`] on a thread that
/// may block.
#[must_use = "a completion reports whether the operation is durable"]
pub struct Completion {
    inner: Arc<Inner>,
}

impl Completion {
    /// An already resolved completion.
    pub(crate) fn ready(result: WalResult<()>) -> Self {
        let (completion, done) = Self::channel();
        done(result);
        completion
    }

    /// A completion and the callback that resolves it.
    pub(crate) fn channel() -> (Self, Done) {
        let inner = Arc::new(Inner::default());
        let resolver = Resolver {
            inner: Some(Arc::clone(&inner)),
        };
        let done: Done = Box::new(move |result| resolver.resolve(result));
        (Self { inner }, done)
    }

    /// Blocks the current thread until the operation completes. In async code, `.await` the
    /// completion instead: blocking would stall a runtime worker.
    pub fn wait(self) -> WalResult<()> {
        let mut slot = self.inner.lock();
        loop {
            if let Some(result) = slot.result.take() {
                return result;
            }
            slot = self
                .inner
                .ready
                .wait(slot)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Future for Completion {
    type Output = WalResult<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.inner.lock();
        if let Some(result) = slot.result.take() {
            Poll::Ready(result)
        } else {
            slot.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_once_from_another_thread() {
        let (completion, done) = Completion::channel();
        let t = std::thread::spawn(move || done(Ok(())));
        completion.wait().unwrap();
        t.join().unwrap();
    }

    #[test]
    fn dropped_callback_reports_closed() {
        let (completion, done) = Completion::channel();
        drop(done);
        assert!(matches!(completion.wait(), Err(WalError::Closed)));
    }

    #[tokio::test]
    async fn can_be_awaited() {
        let (completion, done) = Completion::channel();
        tokio::spawn(async move { done(Err(WalError::EmptyRecord)) });
        assert!(matches!(completion.await, Err(WalError::EmptyRecord)));
        assert!(Completion::ready(Ok(())).await.is_ok());
    }
}
