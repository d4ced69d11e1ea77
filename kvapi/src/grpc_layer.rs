//! Axum middleware around the gRPC routes that counts and times every call, as
//! go-grpc-prometheus does for etcd: `grpc_server_started_total`, `grpc_server_handled_total`
//! (by status code) and `grpc_server_handling_seconds`.
//!
//! A call's status arrives in the response headers (trailers-only responses) or in the trailers
//! after the last message, so the response body is wrapped to see them; a body dropped before
//! its trailers is counted as `Canceled`. Only etcd's own methods are counted, so clients cannot
//! grow the label sets.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::metrics::Metrics;

/// A known gRPC method: `(service, method, type)`, as go-grpc-prometheus labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcMethod {
    pub service: &'static str,
    pub method: &'static str,
    pub kind: &'static str,
}

const UNARY: &str = "unary";
const SERVER_STREAM: &str = "server_stream";
const BIDI_STREAM: &str = "bidi_stream";

const METHODS: &[(&str, &[(&str, &str)])] = &[
    (
        "etcdserverpb.KV",
        &[
            ("Range", UNARY),
            ("Put", UNARY),
            ("DeleteRange", UNARY),
            ("Txn", UNARY),
            ("Compact", UNARY),
        ],
    ),
    ("etcdserverpb.Watch", &[("Watch", BIDI_STREAM)]),
    (
        "etcdserverpb.Lease",
        &[
            ("LeaseGrant", UNARY),
            ("LeaseRevoke", UNARY),
            ("LeaseKeepAlive", BIDI_STREAM),
            ("LeaseTimeToLive", UNARY),
            ("LeaseLeases", UNARY),
        ],
    ),
    (
        "etcdserverpb.Cluster",
        &[
            ("MemberAdd", UNARY),
            ("MemberRemove", UNARY),
            ("MemberUpdate", UNARY),
            ("MemberList", UNARY),
            ("MemberPromote", UNARY),
        ],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", UNARY),
            ("Status", UNARY),
            ("Defragment", UNARY),
            ("Hash", UNARY),
            ("HashKV", UNARY),
            ("Snapshot", SERVER_STREAM),
            ("MoveLeader", UNARY),
            ("Downgrade", UNARY),
        ],
    ),
    (
        "etcdserverpb.Auth",
        &[
            ("AuthEnable", UNARY),
            ("AuthDisable", UNARY),
            ("AuthStatus", UNARY),
            ("Authenticate", UNARY),
            ("UserAdd", UNARY),
            ("UserGet", UNARY),
            ("UserList", UNARY),
            ("UserDelete", UNARY),
            ("UserChangePassword", UNARY),
            ("UserGrantRole", UNARY),
            ("UserRevokeRole", UNARY),
            ("RoleAdd", UNARY),
            ("RoleGet", UNARY),
            ("RoleList", UNARY),
            ("RoleDelete", UNARY),
            ("RoleGrantPermission", UNARY),
            ("RoleRevokePermission", UNARY),
        ],
    ),
];

impl GrpcMethod {
    /// The method a request path (`/etcdserverpb.KV/Range`) names, if it is one of etcd's.
    pub fn from_path(path: &str) -> Option<Self> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let (service, methods) = METHODS.iter().find(|(name, _)| *name == service)?;
        let (method, kind) = methods.iter().find(|(name, _)| *name == method)?;
        Some(Self {
            service,
            method,
            kind,
        })
    }
}

/// Go's names for gRPC status codes, the `grpc_code` label values.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let Some(method) = GrpcMethod::from_path(request.uri().path()) else {
        return next.run(request).await;
    };
    metrics
        .grpc_started
        .with_label_values(&[method.method, method.service, method.kind])
        .inc();
    let call = Call {
        metrics,
        method,
        start: Instant::now(),
        done: false,
    };
    let response = next.run(request).await;
    if let Some(code) = grpc_status(response.headers()) {
        call.finish(code);
        return response;
    }
    response.map(|body| {
        Body::new(TrackedBody {
            inner: body,
            call: Some(call),
        })
    })
}

/// One call being timed; recorded once, when its status is known or when it is abandoned.
struct Call {
    metrics: Arc<Metrics>,
    method: GrpcMethod,
    start: Instant,
    done: bool,
}

impl Call {
    fn finish(mut self, code: i32) {
        self.record(code);
    }

    fn record(&mut self, code: i32) {
        if self.done {
            return;
        }
        self.done = true;
        let GrpcMethod {
            service,
            method,
            kind,
        } = self.method;
        self.metrics
            .grpc_handled
            .with_label_values(&[code_name(code), method, service, kind])
            .inc();
        self.metrics
            .grpc_handling_seconds
            .with_label_values(&[method, service, kind])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The body went away before its trailers: the client cancelled the call.
        self.record(1);
    }
}

struct TrackedBody {
    inner: Body,
    call: Option<Call>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(call) = self.call.take()
                {
                    call.finish(code);
                }
            }
            // A body that fails or ends without a status: the call failed for an unknown reason.
            Poll::Ready(Some(Err(_)) | None) => {
                if let Some(call) = self.call.take() {
                    call.finish(2);
                }
            }
            Poll::Pending => {}
        }
        polled
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
    use super::*;

    #[test]
    fn paths_name_etcd_methods_only() {
        assert_eq!(
            GrpcMethod::from_path("/etcdserverpb.KV/Range"),
            Some(GrpcMethod {
                service: "etcdserverpb.KV",
                method: "Range",
                kind: "unary"
            })
        );
        assert_eq!(
            GrpcMethod::from_path("/etcdserverpb.Watch/Watch").map(|m| m.kind),
            Some("bidi_stream")
        );
        assert_eq!(
            GrpcMethod::from_path("/etcdserverpb.Maintenance/Snapshot").map(|m| m.kind),
            Some("server_stream")
        );
        assert_eq!(GrpcMethod::from_path("/etcdserverpb.KV/Nope"), None);
        assert_eq!(GrpcMethod::from_path("/health"), None);
        assert_eq!(GrpcMethod::from_path(""), None);
    }

    #[test]
    fn code_names_are_gos() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(1), "Canceled");
        assert_eq!(code_name(9), "FailedPrecondition");
        assert_eq!(code_name(14), "Unavailable");
        assert_eq!(code_name(99), "Unknown");
    }
}
