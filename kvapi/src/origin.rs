//! Who is asking: every gRPC call on the client port runs inside
//! [`cairn_engine::history::with_origin`], so that the revisions it writes are recorded in history
//! with their origin (the authenticated user and the client's user agent).
//!
//! ```text
//!  gRPC request ─► with_request_origin ─► with_origin(origin, handler)
//! ```
//!
//! Only the handler's future runs in the scope, not the polling of a streaming response body:
//! no etcd streaming call writes (`Watch` and `LeaseKeepAlive` only read or renew), so a per-frame
//! scope would cost an allocation per message for nothing.
//!
//! One axum middleware around all gRPC routes, not one call per handler: a service added later
//! is covered without touching it. The user is empty for now: Cairn has no auth store
//! (Authenticate answers "authentication is not enabled"), so no request carries an
//! authenticated etcd user; once it has one, the user the `token` metadata resolves to goes here.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use cairn_engine::history::{Origin, with_origin};

/// The longest user agent kept; longer ones are cut (on a character boundary). Every revision
/// stores its origin, so a client must not be able to make that record large.
pub const MAX_AGENT_BYTES: usize = 256;

/// The origin of a request, from its headers.
pub fn request_origin(headers: &http::HeaderMap) -> Origin {
    let agent = headers
        .get(http::header::USER_AGENT)
        .map(|value| {
            truncate(
                String::from_utf8_lossy(value.as_bytes()).trim(),
                MAX_AGENT_BYTES,
            )
        })
        .unwrap_or_default();
    Origin {
        user: String::new(),
        agent,
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    text[..end].to_owned()
}

/// Axum middleware for the gRPC routes: runs the call, and every poll of its response body,
/// with the request's origin set.
pub async fn with_request_origin(request: Request, next: Next) -> Response {
    let origin = request_origin(request.headers());
    with_origin(origin, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(agent: &[u8]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_bytes(agent).expect("a header value"),
        );
        headers
    }

    #[test]
    fn the_agent_is_the_user_agent_header() {
        let origin = request_origin(&headers(b"etcdctl/3.4 grpc-go/1.26.0"));
        assert_eq!(origin.agent, "etcdctl/3.4 grpc-go/1.26.0");
        assert_eq!(origin.user, "");
        assert!(request_origin(&http::HeaderMap::new()).is_unknown());
    }

    #[test]
    fn odd_agents_are_kept_readable_and_short() {
        // obs-text bytes are legal in header values; they become replacement characters.
        let origin = request_origin(&headers(b"agent \xff"));
        assert_eq!(origin.agent, "agent \u{fffd}");

        let long = "é".repeat(MAX_AGENT_BYTES);
        let origin = request_origin(&headers(long.as_bytes()));
        assert_eq!(origin.agent.len(), MAX_AGENT_BYTES);
        assert!(long.starts_with(&origin.agent));

        let odd = format!("a{}", "é".repeat(MAX_AGENT_BYTES));
        let origin = request_origin(&headers(odd.as_bytes()));
        assert_eq!(origin.agent.len(), MAX_AGENT_BYTES - 1);
    }
}
