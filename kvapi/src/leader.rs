//! etcd's `hasleader` contract: a request carrying the gRPC metadata `hasleader: true` is refused
//! with "etcdserver: no leader" when the member knows no leader, and a stream opened that way is
//! cancelled with the same error once the leader has been gone for a while (etcd: three election
//! timeouts), so that clients move to a member that is part of a quorum.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::watch;
use tonic::Status;

use crate::context::Ctx;
use crate::status::EtcdError;

/// etcd's `rpctypes.MetadataRequireLeaderKey`.
pub const REQUIRE_LEADER_KEY: &str = "hasleader";
/// etcd's `rpctypes.MetadataHasLeader`.
pub const HAS_LEADER: &str = "true";

/// Whether a request asks to be served only while there is a leader.
pub fn requires_leader(headers: &http::HeaderMap) -> bool {
    headers
        .get(REQUIRE_LEADER_KEY)
        .is_some_and(|v| v.as_bytes() == HAS_LEADER.as_bytes())
}

/// Axum middleware for the gRPC routes: refuses `hasleader` calls while there is no leader.
pub async fn require_leader(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    if requires_leader(request.headers()) && ctx.node.leader_watch().borrow().is_none() {
        return Status::from(EtcdError::NoLeader).into_http();
    }
    next.run(request).await
}

/// Completes once the member has had no leader for `grace` without interruption.
///
/// Never completes if the leader watch closes (the node is stopping; streams end through the
/// server's shutdown instead).
pub async fn leader_lost(mut leader: watch::Receiver<Option<u64>>, grace: Duration) {
    loop {
        let open = leader.wait_for(Option::is_none).await.is_ok();
        if !open {
            return std::future::pending().await;
        }
        let came_back = tokio::select! {
            () = tokio::time::sleep(grace) => false,
            back = leader.wait_for(Option::is_some) => back.is_ok(),
        };
        let watch_closed = leader.has_changed().is_err();
        if watch_closed {
            return std::future::pending().await;
        }
        if !came_back && leader.borrow().is_none() {
            return;
        }
    }
}

/// [`leader_lost`] for a stream whose request asked for it; otherwise never completes.
pub async fn stream_leader_lost(
    wanted: bool,
    leader: watch::Receiver<Option<u64>>,
    grace: Duration,
) {
    if wanted {
        leader_lost(leader, grace).await;
    } else {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_key_and_value_are_etcds() {
        let mut headers = http::HeaderMap::new();
        assert!(!requires_leader(&headers));
        headers.insert("hasleader", http::HeaderValue::from_static("false"));
        assert!(!requires_leader(&headers));
        headers.insert("hasleader", http::HeaderValue::from_static("true"));
        assert!(requires_leader(&headers));
    }

    #[tokio::test(start_paused = true)]
    async fn leader_lost_waits_for_a_continuous_absence() {
        let (tx, rx) = watch::channel(Some(1));
        let lost = tokio::spawn(leader_lost(rx, Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!lost.is_finished());

        tx.send_replace(None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        tx.send_replace(Some(2)); // back before the grace period ended
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!lost.is_finished());

        tx.send_replace(None);
        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert!(lost.is_finished());
    }
}
