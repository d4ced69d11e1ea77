//! Who is asking: every gRPC call on the client port runs inside
//! [`cairn_engine::history::with_origin`], so that the revisions it writes are recorded in history
//! with their origin (the authenticated user and the client's user agent).
//!
//! ```text
//!  gRPC request ─► with_request_origin ─► with_origin(origin, handler)      (unary work)
//!                                      └► OriginBody: each poll of the response body in the
//!                                         same scope                        (streaming work)
//! ```
//!
//! One axum middleware around all gRPC routes, not one call per handler: a service added later
//! is covered without touching it. The user is empty for now: Cairn has no auth store
//! (Authenticate answers "authentication is not enabled"), so no request carries an
//! authenticated etcd user; once it has one, the user the `token` metadata resolves to goes here.

use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use cairn_engine::history::{Origin, with_origin};
use http_body::{Frame, SizeHint};

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
    let response = with_origin(origin.clone(), next.run(request)).await;
    response.map(|inner| Body::new(OriginBody { inner, origin }))
}

/// A response body polled inside the origin's scope: streaming calls (`Watch`, `LeaseKeepAlive`)
/// do their work as their body is polled, after the handler has returned.
struct OriginBody {
    inner: Body,
    origin: Origin,
}

impl http_body::Body for OriginBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let inner = &mut this.inner;
        let once = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *inner).poll_frame(cx)));
        let mut scoped = pin!(with_origin(this.origin.clone(), once));
        match scoped.as_mut().poll(cx) {
            Poll::Ready(polled) => polled,
            // Not reached: the scoped future is ready after one poll of the inner body.
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

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

    #[tokio::test]
    async fn wrapped_bodies_pass_frames_through() {
        let body = OriginBody {
            inner: Body::from("hello"),
            origin: Origin::default(),
        };
        let collected = body.collect().await.expect("a body").to_bytes();
        assert_eq!(&collected[..], b"hello");
    }
}
