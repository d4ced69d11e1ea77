//! The lessor: lease expiry bookkeeping (never deletes keys itself).
//!
//! Leases live in the MVCC store (created and revoked by applied commands); the lessor keeps only
//! what is not replicated: when each lease expires. Like etcd's `lessor.go`:
//!
//! - Only the primary (the raft leader) tracks expiry. On promotion every lease gets a fresh
//!   deadline of `now + ttl + extend`, so an election never makes a lease expire early; a
//!   follower's leases never expire locally.
//! - [`Lessor::expired`] reports leases past their deadline; the node then *proposes* a revoke
//!   through raft, which deletes the keys at one revision. A lease being revoked is not reported
//!   again until `revoke_retry` has passed, so a slow proposal does not cause a storm.
//! - Keep-alives renew the deadline in memory only (etcd does the same; a new leader restarts
//!   every TTL anyway).
//!
//! Time comes in through [`Clock`], so tests drive it by hand.

mod clock;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use clock::{Clock, ManualClock, SystemClock};

/// etcd's `MaxLeaseTTL`: 9,000,000,000 seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug)]
struct LeaseTimer {
    ttl: i64,
    deadline: Option<Instant>,
    revoke_requested: Option<Instant>,
}

#[derive(Debug, Default)]
struct LessorState {
    leases: HashMap<i64, LeaseTimer>,
    primary: bool,
}

/// Tracks lease deadlines on the leader.
pub struct Lessor {
    clock: Box<dyn Clock>,
    min_ttl: i64,
    revoke_retry: Duration,
    state: Mutex<LessorState>,
}

impl Lessor {
    /// `min_ttl` is the smallest TTL granted (etcd: 1.5 election timeouts, rounded up).
    pub fn new(clock: Box<dyn Clock>, min_ttl: i64) -> Self {
        Self {
            clock,
            min_ttl,
            revoke_retry: Duration::from_secs(3),
            state: Mutex::new(LessorState::default()),
        }
    }

    /// The TTL a grant request for `ttl` seconds actually gets.
    pub fn effective_ttl(&self, ttl: i64) -> i64 {
        ttl.max(self.min_ttl)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LessorState> {
        // The state is plain data updated in single statements; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an applied grant.
    pub fn grant(&self, id: i64, ttl: i64) {
        let now = self.clock.now();
        let mut state = self.lock();
        let deadline = state.primary.then(|| now + secs(ttl));
        state.leases.insert(
            id,
            LeaseTimer {
                ttl,
                deadline,
                revoke_requested: None,
            },
        );
    }

    /// Records an applied revoke.
    pub fn revoke(&self, id: i64) {
        self.lock().leases.remove(&id);
    }

    /// Forgets everything (before re-loading from a newly installed snapshot).
    pub fn clear(&self) {
        self.lock().leases.clear();
    }

    /// Renews a lease; returns its TTL, or `None` if it does not exist or has already expired
    /// (its revoke may be on its way: renewing it would tell the holder a session is alive
    /// whose keys are about to go, as etcd's lessor refuses too).
    pub fn renew(&self, id: i64) -> Option<i64> {
        let now = self.clock.now();
        let mut state = self.lock();
        let primary = state.primary;
        let lease = state.leases.get_mut(&id)?;
        if primary {
            let expired =
                lease.deadline.is_some_and(|d| d <= now) || lease.revoke_requested.is_some();
            if expired {
                return None;
            }
            lease.deadline = Some(now + secs(lease.ttl));
        }
        Some(lease.ttl)
    }

    /// `(granted ttl, remaining seconds)`; remaining is the granted TTL on a non-primary member.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let now = self.clock.now();
        let state = self.lock();
        let lease = state.leases.get(&id)?;
        let remaining = match lease.deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(now);
                // etcd rounds the remaining time up to whole seconds.
                left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0)
            }
            None => lease.ttl,
        };
        Some((lease.ttl, remaining))
    }

    pub fn ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Leases past their deadline whose revoke should be proposed now, at most `limit`.
    pub fn expired(&self, limit: usize) -> Vec<i64> {
        let now = self.clock.now();
        let retry = self.revoke_retry;
        let mut state = self.lock();
        if !state.primary {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (id, lease) in &mut state.leases {
            if out.len() >= limit {
                break;
            }
            let due = lease.deadline.is_some_and(|d| d <= now);
            let recently_requested = lease.revoke_requested.is_some_and(|at| now < at + retry);
            if due && !recently_requested {
                lease.revoke_requested = Some(now);
                out.push(*id);
            }
        }
        out
    }

    /// This member became leader: every lease gets `now + ttl + extend`.
    pub fn promote(&self, extend: Duration) {
        let now = self.clock.now();
        let mut state = self.lock();
        state.primary = true;
        for lease in state.leases.values_mut() {
            lease.deadline = Some(now + secs(lease.ttl) + extend);
            lease.revoke_requested = None;
        }
    }

    /// This member lost leadership: stop tracking deadlines.
    pub fn demote(&self) {
        let mut state = self.lock();
        state.primary = false;
        for lease in state.leases.values_mut() {
            lease.deadline = None;
            lease.revoke_requested = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn lessor() -> (Lessor, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        (Lessor::new(Box::new(Arc::clone(&clock)), 2), clock)
    }

    #[test]
    fn follower_leases_never_expire() {
        let (lessor, clock) = lessor();
        lessor.grant(1, 5);
        clock.advance(Duration::from_secs(60));
        assert!(lessor.expired(10).is_empty());
        assert_eq!(lessor.remaining(1), Some((5, 5)));
    }

    #[test]
    fn primary_expires_after_ttl_and_reports_once_per_retry() {
        let (lessor, clock) = lessor();
        lessor.promote(Duration::ZERO);
        lessor.grant(7, 5);
        clock.advance(Duration::from_secs(4));
        assert!(lessor.expired(10).is_empty());
        assert_eq!(lessor.remaining(7), Some((5, 1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(lessor.expired(10), vec![7]);
        assert!(
            lessor.expired(10).is_empty(),
            "not re-reported before the retry interval"
        );
        clock.advance(Duration::from_secs(3));
        assert_eq!(
            lessor.expired(10),
            vec![7],
            "re-reported after the retry interval"
        );
        lessor.revoke(7);
        assert!(lessor.expired(10).is_empty());
    }

    #[test]
    fn keepalive_pushes_the_deadline() {
        let (lessor, clock) = lessor();
        lessor.promote(Duration::ZERO);
        lessor.grant(1, 10);
        clock.advance(Duration::from_secs(9));
        assert_eq!(lessor.renew(1), Some(10));
        clock.advance(Duration::from_secs(9));
        assert!(lessor.expired(10).is_empty());
        assert_eq!(lessor.renew(2), None);
    }

    #[test]
    fn an_expired_lease_cannot_be_renewed() {
        let (lessor, clock) = lessor();
        lessor.promote(Duration::ZERO);
        lessor.grant(1, 5);
        clock.advance(Duration::from_secs(5));
        assert_eq!(lessor.renew(1), None, "past its deadline");
        assert_eq!(lessor.expired(10), vec![1]);
        assert_eq!(lessor.renew(1), None, "revoke requested");
    }

    #[test]
    fn promotion_restarts_every_ttl_with_extension() {
        let (lessor, clock) = lessor();
        lessor.grant(1, 10);
        clock.advance(Duration::from_secs(100));
        lessor.promote(Duration::from_secs(2));
        clock.advance(Duration::from_secs(11));
        assert!(lessor.expired(10).is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(lessor.expired(10), vec![1]);
        lessor.demote();
        assert!(lessor.expired(10).is_empty());
    }

    #[test]
    fn min_ttl_is_enforced_and_limit_respected() {
        let (lessor, clock) = lessor();
        assert_eq!(lessor.effective_ttl(1), 2);
        assert_eq!(lessor.effective_ttl(30), 30);
        lessor.promote(Duration::ZERO);
        for id in 1..=5 {
            lessor.grant(id, 2);
        }
        clock.advance(Duration::from_secs(2));
        assert_eq!(lessor.expired(3).len(), 3);
        assert_eq!(lessor.expired(3).len(), 2);
        assert_eq!(lessor.ids(), vec![1, 2, 3, 4, 5]);
    }
}
